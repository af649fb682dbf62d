"""Security: no unpickling, verified weights, no network at run time, no path escapes, no patient data in outputs."""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from bundle_doubles import make_random_bundle
from ct_samples import PATIENT, abdomen, write_dicom_ct
from inference_doubles import blob_volume, test_config

from PancreasSegLib.cli import main
from PancreasSegLib.errors import InputError
from PancreasSegLib.model.bundle import Bundle, sha256_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_random_bundle(tmp_path_factory.mktemp("bundle") / "tiny", seed=3, config=test_config())


def copy_bundle(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def edit_weights_entry(folder: Path, stage: str, **fields) -> None:
    manifest = folder / "model.json"
    config = json.loads(manifest.read_text(encoding="utf-8"))
    config["stages"][stage]["weights"].update(fields)
    manifest.write_text(json.dumps(config))


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: proof that a pickle was executed."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# --- bundles ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["segmenter.safetensors", "segmenter.pt"])
def test_a_malicious_pickle_with_a_matching_sha256_is_refused_without_being_executed(bundle, tmp_path, capsys, name):
    folder = copy_bundle(bundle, tmp_path)
    marker = tmp_path / "pwned"
    (folder / name).write_bytes(pickle.dumps({"state_dict": _Payload(str(marker))}))
    # The attacker controls model.json as well: the sha256 matches, only the format check stands.
    edit_weights_entry(folder, "segmenter", file=name, sha256=sha256_file(folder / name))
    with pytest.raises(InputError, match="safetensors"):
        Bundle.load(folder)
    code = main(["segment", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "s.nii.gz"), "--model", str(folder)])
    assert code == 2
    assert not marker.exists()
    # The payload really does run when unpickled: the test would notice if the loader ever did.
    pickle.loads((folder / name).read_bytes())
    assert marker.exists()


def test_a_tampered_weights_file_is_refused_by_its_sha256(bundle, tmp_path):
    folder = copy_bundle(bundle, tmp_path)
    data = bytearray((folder / "localizer.safetensors").read_bytes())
    data[-1] ^= 0x01
    (folder / "localizer.safetensors").write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt or tampered"):
        Bundle.load(folder)


@pytest.mark.parametrize("name", ["../segmenter.safetensors", "/opt/segmenter.safetensors", "..", "sub/x.safetensors"])
def test_a_weights_file_name_that_leaves_the_bundle_is_refused(bundle, tmp_path, name):
    folder = copy_bundle(bundle, tmp_path)
    edit_weights_entry(folder, "segmenter", file=name)
    with pytest.raises(InputError, match="must lie in the bundle folder"):
        Bundle.load(folder)


def test_a_weights_file_that_links_outside_the_bundle_is_refused(bundle, tmp_path):
    folder = copy_bundle(bundle, tmp_path)
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(folder / "segmenter.safetensors", outside)
    (folder / "segmenter.safetensors").symlink_to(outside)  # same bytes, same sha256: only the link is wrong
    with pytest.raises(InputError, match="link to a file outside the bundle folder"):
        Bundle.load(folder)


def test_the_library_never_downloads_and_builds_networks_without_pretrained_weights():
    sources = {p: p.read_text(encoding="utf-8") for p in (ROOT / "PancreasSegLib").rglob("*.py")}
    for path, text in sources.items():
        for word in ("torch.hub", "urlopen", "import requests", "load_state_dict_from_url",
                     "pickle.load", "weights=\"DEFAULT\"", "pretrained=True"):
            assert word not in text, f"{word} in {path.relative_to(ROOT)}"
        # torch.load only with its restricted unpickler (tensors and plain containers), and never on a bundle:
        # training checkpoints keep the optimizer state in the work folder, outside the bundle.
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"unrestricted torch.load in {path.relative_to(ROOT)}"
    assert "torch.load(" not in sources[ROOT / "PancreasSegLib" / "model" / "bundle.py"]
    assert "weights=None" in sources[ROOT / "PancreasSegLib" / "model" / "networks.py"]


# --- no network -------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket or resolve a name fails the test."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    class NoSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            refuse("socket", *args)

    monkeypatch.setattr(socket, "socket", NoSocket)
    for name in ("create_connection", "getaddrinfo", "gethostbyname", "socketpair"):
        monkeypatch.setattr(socket, name, refuse)
    return attempts


def test_segment_runs_with_sockets_blocked(bundle, tmp_path, capsys, no_network):
    image, _ = blob_volume()
    ct = tmp_path / "ct.nii.gz"
    sitk.WriteImage(image, str(ct))
    roi = tmp_path / "roi.json"
    roi.write_text(json.dumps({"center": [10.0, 5.0, 0.0], "size": [70.0, 50.0, 50.0], "margin_mm": 20.0}))
    code = main(["segment", str(ct), "-o", str(tmp_path / "seg.seg.nrrd"), "--model", str(bundle), "--roi", str(roi),
                 "--progress", "none", "--allow-empty", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert no_network == []


def test_the_curated_export_runs_with_sockets_blocked(bundle, tmp_path, capsys, no_network):
    from curation_data import make_case

    paths = {}
    for name, image in zip(("image", "label", "proposal"), make_case(0)):
        paths[name] = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(image, str(paths[name]))
    code = main(["export", "--image", str(paths["image"]), "--label", str(paths["label"]), "--proposal",
                 str(paths["proposal"]), "--dataset", str(tmp_path / "ds"), "--model", str(bundle), "--json"])
    assert code == 0, capsys.readouterr().err
    assert no_network == []


# --- datasets ---------------------------------------------------------------------------------------------------------


def _msd_source(tmp_path: Path, image_name: str, label_name: str) -> Path:
    src = tmp_path / "Task07_Pancreas"
    (src / "imagesTr").mkdir(parents=True)
    (src / "labelsTr").mkdir()
    (src / "dataset.json").write_text(json.dumps({"training": [{"image": image_name, "label": label_name}]}))
    return src


@pytest.mark.parametrize("entry", ["../outside/pancreas_001.nii.gz", "/etc/passwd", "./imagesTr/../../x.nii.gz",
                                   "./imagesTr/link.nii.gz"])
def test_a_dataset_json_training_entry_that_leaves_the_dataset_is_refused(tmp_path, entry):
    from PancreasSegLib.datasets.convert import convert_msd

    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "pancreas_001.nii.gz").write_bytes(b"secret")
    src = _msd_source(tmp_path, entry, "./labelsTr/pancreas_001.nii.gz")
    (src / "imagesTr" / "link.nii.gz").symlink_to(tmp_path / "outside" / "pancreas_001.nii.gz")
    with pytest.raises(InputError, match="points outside the dataset folder"):
        convert_msd(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_training_case_that_links_outside_the_dataset_is_refused(tmp_path):
    from curation_data import make_case

    from PancreasSegLib.checks.dataset import check_training_dataset
    from PancreasSegLib.datasets.nnunet import write_dataset_json

    folder = tmp_path / "Dataset001_X"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    image, label, _ = make_case(0)
    sitk.WriteImage(image, str(tmp_path / "elsewhere.nii.gz"))
    (folder / "imagesTr" / "case_0001_0000.nii.gz").symlink_to(tmp_path / "elsewhere.nii.gz")
    sitk.WriteImage(label, str(folder / "labelsTr" / "case_0001.nii.gz"))
    write_dataset_json(folder, ["case_0001"])
    with pytest.raises(InputError, match="link to a file outside the dataset folder"):
        check_training_dataset(folder)


@pytest.mark.parametrize("sub", ["labelsTr", "imagesTr", ".staging", "history"])
def test_an_export_into_a_dataset_whose_folder_is_a_link_is_refused_and_writes_nothing(tmp_path, sub):
    from curation_data import make_case

    from PancreasSegLib.curation.export import export_case

    image, label, _ = make_case(0)
    dataset = tmp_path / "ds"
    export_case(image, label, dataset, case_id="case_0001")
    outside = tmp_path / "outside"
    outside.mkdir()
    if (dataset / sub).exists():
        shutil.rmtree(dataset / sub)
    (dataset / sub).symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match=f"{sub} is a symbolic link"):
        export_case(image, label, dataset, case_id="case_0002")
    assert list(outside.iterdir()) == []


# --- patient data -----------------------------------------------------------------------------------------------------


def _contents(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    if path.name.endswith(".seg.nrrd") or path.name.endswith(".nrrd"):
        header, _, body = data.partition(b"\n\n")
        try:
            body = gzip.decompress(body)
        except OSError:
            pass
        data = header + b"\n\n" + body
    return data


@pytest.mark.parametrize("ext", [".seg.nrrd", ".nrrd", ".nii.gz"])
def test_segment_outputs_from_a_dicom_series_carry_no_patient_data(bundle, tmp_path, capsys, ext):
    image = abdomen()
    write_dicom_ct(tmp_path / "dicom", np.clip(sitk.GetArrayFromImage(image), -1024, 3000), 1.0, -1024.0,
                   spacing=image.GetSpacing())
    assert PATIENT[0].encode() in next((tmp_path / "dicom").iterdir()).read_bytes()  # the source does carry them
    out = tmp_path / "out"
    out.mkdir()
    roi = tmp_path / "roi.json"
    roi.write_text(json.dumps({"center": [38.0, 30.0, 18.0], "size": [50.0, 40.0, 30.0], "margin_mm": 20.0}))
    code = main(["segment", str(tmp_path / "dicom"), "-o", str(out / f"seg{ext}"), "--model", str(bundle),
                 "--roi", str(roi), "--roi-out", str(out / "roi.json"), "--probabilities", str(out / "prob.nrrd"),
                 "--snapshot", str(out / "qa.png"), "--progress", "jsonl", "--allow-empty", "--device", "cpu"])
    stream = capsys.readouterr().out
    assert code == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([f"seg{ext}", f"seg{ext}.quality.json", "roi.json", "prob.nrrd", "qa.png"])
    for path in out.iterdir():
        data = _contents(path)
        for secret in PATIENT:
            assert secret.encode() not in data, f"{secret} in {path.name}"
    for secret in PATIENT:
        assert secret not in stream
