"""The segment command's cold start: the heavy modules it does not import; the light imports change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch
from bundle_doubles import make_random_bundle
from inference_doubles import blob_volume, test_config

ROOT = Path(__file__).resolve().parents[1]
#: What ``import monai`` and ``import torchvision`` pull in and inference never uses.
NOT_IMPORTED = ("torch._dynamo", "sympy", "triton", "scipy.stats", "scipy.signal", "matplotlib",
                "matplotlib.pyplot", "sklearn", "monai.transforms", "monai.apps.datasets", "monai.losses",
                "monai.metrics", "monai.networks.nets.swin_unetr")
#: What the segment path must import (proof that both phases ran through the light imports).
IMPORTED = ("monai.networks.nets.dynunet", "monai.inferers.utils", "torchvision.models.detection.mask_rcnn",
            "torchvision.ops.roi_align")


def _python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PANCREASSEG_FULL_IMPORTS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "Testing"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cold")
    bundle = make_random_bundle(folder / "bundle", seed=0, config=test_config())
    image, _ = blob_volume()
    ct = folder / "case_0000.nii.gz"
    sitk.WriteImage(image, str(ct))
    roi = folder / "roi.json"
    roi.write_text(json.dumps({"center": [10.0, 5.0, 0.0], "size": [70.0, 50.0, 50.0], "margin_mm": 20.0}))
    return {"bundle": bundle, "ct": ct, "roi": roi, "folder": folder}


def test_segment_imports_neither_dynamo_nor_the_rest_of_monai(case):
    full = ["segment", str(case["ct"]), "-o", str(case["folder"] / "a.nii.gz"), "--model", str(case["bundle"]),
            "--progress", "none", "--allow-empty"]
    roi = ["segment", str(case["ct"]), "-o", str(case["folder"] / "b.nii.gz"), "--model", str(case["bundle"]),
           "--progress", "none", "--allow-empty", "--roi", str(case["roi"])]
    code = ("import json, sys; from PancreasSegLib.cli import main; "
            f"codes = [main({full!r}), main({roi!r})]; "
            f"print(json.dumps([codes, sorted(m for m in {NOT_IMPORTED + IMPORTED!r} if m in sys.modules)]))")
    result = _python(code)
    assert result.returncode == 0, result.stderr
    codes, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert codes == [0, 0]
    assert [m for m in NOT_IMPORTED if m in loaded] == []
    assert [m for m in IMPORTED if m not in loaded] == []
    assert (case["folder"] / "a.nii.gz").is_file() and (case["folder"] / "b.nii.gz").is_file()


def test_the_lightly_imported_networks_compute_what_the_normal_ones_do(case, tmp_path):
    # The same bundle's segmenter and localizer, loaded through the light imports in a child process and the
    # normal way here, give the same outputs on the same input.
    torch.manual_seed(1)
    volume, slices = torch.rand(1, 1, 32, 32, 32), torch.rand(2, 1, 64, 64)
    torch.save({"volume": volume, "slices": slices}, tmp_path / "inputs.pt")
    code = (
        "import sys, torch; torch.set_grad_enabled(False)\n"
        "from PancreasSegLib.model import light_imports; assert light_imports.enable()\n"
        "from PancreasSegLib.model.bundle import Bundle\n"
        f"b = Bundle.load({str(case['bundle'])!r}); x = torch.load({str(tmp_path / 'inputs.pt')!r})\n"
        "b.localizer.eval()\n"
        "out = {'seg': b.segmenter(x['volume']), 'boxes': [d['boxes'] for d in b.localizer(list(x['slices']))]}\n"
        f"torch.save(out, {str(tmp_path / 'light.pt')!r})\n"
        "print('torch._dynamo' in sys.modules, 'monai.transforms' in sys.modules, type(b.segmenter).__module__)\n"
        # torchvision's roi_align holds a stand-in for one function of torch._dynamo, which imports the real one
        "answer = sys.modules['torchvision.ops.roi_align'].is_compile_supported('cpu')\n"
        "print('torch._dynamo' in sys.modules, isinstance(answer, bool))\n")
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "monai.networks.nets.dynunet", "True", "True"]
    from PancreasSegLib.model.bundle import Bundle

    bundle = Bundle.load(case["bundle"])
    bundle.localizer.eval()
    light = torch.load(tmp_path / "light.pt")
    with torch.no_grad():
        assert torch.allclose(light["seg"], bundle.segmenter(volume), atol=1e-5)
        boxes = [d["boxes"] for d in bundle.localizer(list(slices))]
    assert len(boxes) == len(light["boxes"]) == 2
    assert all(a.shape == b.shape and torch.allclose(a, b, atol=1e-4) for a, b in zip(light["boxes"], boxes))


def test_light_imports_stay_off_when_monai_is_already_imported_or_switched_off(monkeypatch):
    import monai  # noqa: F401  (the whole package, as training imports it)

    from PancreasSegLib.model import light_imports

    assert light_imports.enable() is False  # switched off in the test process (conftest)
    monkeypatch.delenv("PANCREASSEG_FULL_IMPORTS")
    assert light_imports.enable() is False  # MONAI is already there
    assert light_imports.is_enabled() is False
    assert not any(isinstance(f, light_imports._LazyPackageFinder) for f in sys.meta_path)
