"""No numpy view of a temporary SimpleITK image: a view is only valid while its image lives.

``sitk.GetArrayViewFromImage(f(...))`` hands out a view of an image nobody holds; once it is freed the
view reads freed memory (garbage values, NaN in training caches, or a crash). Every view must be of an
image kept in a name for as long as the view is used.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("PancreasSegLib", "PancreasSeg", "PancreasSegWeb", "benchmarks")


def views_of_temporaries(root: Path = ROOT) -> list[str]:
    found = []
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "GetArrayViewFromImage" and node.args
                        and isinstance(node.args[0], ast.Call)):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_no_array_view_is_taken_of_a_temporary_image():
    assert views_of_temporaries() == []


def test_the_check_finds_such_a_view(tmp_path):
    (tmp_path / "PancreasSegLib").mkdir()
    (tmp_path / "PancreasSegLib" / "bad.py").write_text(
        "import SimpleITK as sitk\nv = sitk.GetArrayViewFromImage(sitk.Image(2, 2, sitk.sitkUInt8))\n")
    for folder in FOLDERS[1:]:
        (tmp_path / folder).mkdir()
    assert views_of_temporaries(tmp_path) == ["PancreasSegLib/bad.py:2"]


def test_the_segmenter_cache_of_a_phantom_is_finite_and_windowed():
    from PancreasSegLib.model.configs import default_config, training_settings
    from PancreasSegLib.phantoms.generator import make_phantom
    from PancreasSegLib.training.caches import segmenter_arrays

    config = default_config()
    image, label = make_phantom(3, preset="small")
    for seed in range(3):
        arrays = segmenter_arrays(image, label, config["stages"]["segmenter"], training_settings(config, "segmenter"),
                                  np.random.default_rng(seed), 1)
        crop = arrays["image"].astype(np.float32)
        assert np.isfinite(crop).all() and crop.min() >= 0.0 and crop.max() <= 1.0
        assert arrays["label"].sum() > 0
