"""Exporting reviewed cases into a curated nnU-Net v2 dataset: files, provenance, history, refusals."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import DIRECTIONS
from curation_data import PATIENT_BIRTH_DATE, PATIENT_ID, PATIENT_NAME, make_case, write_dicom_series

from PancreasSegLib.cli import main
from PancreasSegLib.curation import DatasetBusy, DatasetLock, export_case, verify_dataset
from PancreasSegLib.curation.provenance import compare, sha256_text
from PancreasSegLib.errors import InputError


def write_case(folder: Path, seed: int = 0, **geometry) -> dict[str, Path]:
    image, label, proposal = make_case(seed, **geometry)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"image": folder / f"ct{seed}.nii.gz", "label": folder / f"label{seed}.nii.gz",
             "proposal": folder / f"proposal{seed}.nii.gz"}
    for key, img in zip(paths, (image, label, proposal)):
        sitk.WriteImage(img, str(paths[key]))
    return paths


def checksums(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))}


def read_label(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture
def dataset_with_three_cases(tmp_path):
    """Three exported cases, the first one exported twice (so with one history entry)."""
    dataset = tmp_path / "Dataset501_Curated"
    inputs = [write_case(tmp_path / "in", seed) for seed in range(3)]
    for n, paths in enumerate(inputs):
        export_case(paths["image"], paths["label"], dataset, proposal=paths["proposal"], reviewer="dr-a",
                    note=f"first pass {n}")
    _, label, _ = make_case(0)
    relabelled = sitk.GetArrayFromImage(label)
    relabelled[relabelled == 2] = 1
    second = sitk.GetImageFromArray(relabelled)
    second.CopyInformation(label)
    export_case(inputs[0]["image"], second, dataset, proposal=inputs[0]["proposal"], case_id="case_0001",
                reviewer="dr-b", status="approved", note="second pass")
    return dataset, inputs


def test_three_cases_and_a_re_export_make_a_dataset_that_verifies(dataset_with_three_cases):
    dataset, _ = dataset_with_three_cases
    result = verify_dataset(dataset)
    assert result.problems == []
    assert (result.cases, result.history_entries) == (3, 1)
    meta = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))
    assert meta["numTraining"] == 3
    assert meta["file_ending"] == ".nii.gz" and meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {"background": 0, "pancreas": 1, "tumor": 2}
    assert meta["curation"]["cases_by_status"] == {"corrected": 2, "approved": 1, "rejected": 0}
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == [
        f"case_000{i}_0000.nii.gz" for i in (1, 2, 3)]


def test_the_dataset_passes_nnunet_integrity_check_and_loads_with_monai(dataset_with_three_cases):
    from monai.data import load_decathlon_datalist
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    dataset, _ = dataset_with_three_cases
    verify_dataset_integrity(str(dataset), num_processes=1)  # raises on any problem
    items = load_decathlon_datalist(str(dataset / "dataset.json"), data_list_key="training", base_dir=str(dataset))
    assert len(items) == 3
    assert all(Path(item["image"]).is_file() and Path(item["label"]).is_file() for item in items)


def test_re_export_keeps_the_earlier_label_proposal_and_provenance_in_history(dataset_with_three_cases):
    dataset, inputs = dataset_with_three_cases
    entries = list((dataset / "history" / "case_0001").iterdir())
    assert len(entries) == 1
    old = json.loads((entries[0] / "provenance.json").read_text(encoding="utf-8"))
    new = json.loads((dataset / "provenance" / "case_0001.json").read_text(encoding="utf-8"))
    assert (old["note"], old["revision"], old["status"]) == ("first pass 0", 1, "corrected")
    assert (new["note"], new["revision"], new["status"], new["reviewer"]) == ("second pass", 2, "approved", "dr-b")
    assert new["created"] == old["created"] and new["updated"] > old["updated"]
    assert np.array_equal(read_label(entries[0] / "label.nii.gz"), read_label(inputs[0]["label"]))
    assert 2 not in read_label(dataset / "labelsTr" / "case_0001.nii.gz")
    assert (entries[0] / "proposal.nii.gz").is_file()
    assert not (entries[0] / "image_0000.nii.gz").exists()  # same image: not copied again


def test_provenance_records_geometry_effort_and_the_model_bundle(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "localizer.safetensors").write_bytes(b"weights-1")
    (bundle / "segmenter.safetensors").write_bytes(b"weights-2")
    digest = hashlib.sha256(b"weights-2").hexdigest()
    (bundle / "model.json").write_text(json.dumps({
        "name": "pancreas-phantom", "version": "1.2.0",
        "stages": [{"name": "localizer", "weights": "localizer.safetensors"},
                   {"name": "segmenter", "weights": "segmenter.safetensors", "sha256": digest}]}))
    paths = write_case(tmp_path / "in", 4, direction=DIRECTIONS["oblique"])
    result = export_case(paths["image"], paths["label"], tmp_path / "ds", proposal=paths["proposal"],
                         model=bundle, reviewer="dr-c", note="tail edited")
    prov = json.loads((tmp_path / "ds" / "provenance" / f"{result.case_id}.json").read_text(encoding="utf-8"))
    assert prov["model"] == {"name": "pancreas-phantom", "version": "1.2.0", "weights": {
        "localizer.safetensors": hashlib.sha256(b"weights-1").hexdigest(), "segmenter.safetensors": digest}}
    image = sitk.ReadImage(str(paths["image"]))
    assert prov["image"]["size"] == list(image.GetSize())
    assert np.allclose(prov["image"]["direction"], image.GetDirection())
    assert prov["comparison"]["dice"] == pytest.approx(result.dice)
    assert prov["source"] == {"kind": "file"}
    assert prov["created"].endswith("Z") and prov["reviewer"] == "dr-c"
    written = sitk.ReadImage(str(tmp_path / "ds" / "labelsTr" / f"{result.case_id}.nii.gz"))
    assert np.allclose(written.GetDirection(), image.GetDirection(), atol=1e-6)
    assert verify_dataset(tmp_path / "ds").ok


def test_a_bundle_whose_weights_do_not_match_their_sha256_is_refused(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "segmenter.safetensors").write_bytes(b"tampered")
    (bundle / "model.json").write_text(json.dumps({"name": "m", "weights": {
        "segmenter.safetensors": {"sha256": "0" * 64}}}))
    paths = write_case(tmp_path / "in")
    with pytest.raises(InputError, match="sha256"):
        export_case(paths["image"], paths["label"], tmp_path / "ds", model=bundle)
    assert not (tmp_path / "ds").exists()


def test_comparison_counts_dice_volume_change_and_edited_slices():
    proposal = np.zeros((4, 3, 3), np.uint8)
    proposal[0:2] = 1
    correction = proposal.copy()
    correction[1, 0, 0] = 0
    correction[3, 1, 1] = 2
    out = compare(proposal, correction, (2.0, 1.0, 0.5), {"background": 0, "pancreas": 1, "tumor": 2})
    assert out["edited_slices"] == 2
    assert out["volume_change_ml"] == pytest.approx(0.0)  # one voxel removed, one added, 1 mm^3 each
    assert out["dice"] == pytest.approx(2 * 17 / 36, abs=1e-6)
    assert out["dice_per_label"]["tumor"] == 0.0
    assert out["proposal_ml"] == pytest.approx(0.018)


def test_automatic_case_ids_count_up_and_are_never_reused(tmp_path):
    paths = write_case(tmp_path / "in")
    ids = [export_case(paths["image"], paths["label"], tmp_path / "ds").case_id for _ in range(2)]
    export_case(paths["image"], paths["label"], tmp_path / "ds", case_id="case_0007")
    ids.append(export_case(paths["image"], paths["label"], tmp_path / "ds").case_id)
    assert ids == ["case_0001", "case_0002", "case_0008"]
    assert "ct0" not in json.dumps(json.loads((tmp_path / "ds" / "dataset.json").read_text(encoding="utf-8")))


def test_a_label_within_the_grid_tolerance_is_written_on_the_image_grid_exactly(tmp_path):
    image, label, _ = make_case(1)
    label.SetOrigin(tuple(v + 5e-5 for v in image.GetOrigin()))
    result = export_case(image, label, tmp_path / "ds")
    written = sitk.ReadImage(str(tmp_path / "ds" / "labelsTr" / f"{result.case_id}.nii.gz"))
    assert written.GetOrigin() == sitk.ReadImage(str(tmp_path / "ds" / "imagesTr" /
                                                     f"{result.case_id}_0000.nii.gz")).GetOrigin()


def _shifted(label, **change):
    out = sitk.Image(label)
    if "origin" in change:
        out.SetOrigin(tuple(v + change["origin"] for v in label.GetOrigin()))
    if "spacing" in change:
        out.SetSpacing(tuple(v + change["spacing"] for v in label.GetSpacing()))
    if "direction" in change:
        out.SetDirection(DIRECTIONS["oblique"])
    return out


def _bad_value(label):
    array = sitk.GetArrayFromImage(label)
    array[0, 0, 0] = 3
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(label)
    return out


def _cropped(label):
    return label[:, :, 1:]


REFUSALS = {
    "origin off by 0.05 mm": (lambda lab: _shifted(lab, origin=0.05), {}, "origin differs"),
    "spacing off": (lambda lab: _shifted(lab, spacing=0.01), {}, "spacing differs"),
    "direction off": (lambda lab: _shifted(lab, direction=True), {}, "direction differs"),
    "size differs": (_cropped, {}, "size differs"),
    "undeclared value": (_bad_value, {}, "undeclared label value"),
    "case ID with a path": (None, {"case_id": "../escape"}, "invalid case ID"),
    "case ID with a separator": (None, {"case_id": "a/b"}, "invalid case ID"),
    "bad status": (None, {"status": "maybe"}, "invalid status"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_a_refused_export_leaves_the_dataset_byte_for_byte_unchanged(tmp_path, name):
    make_label, options, message = REFUSALS[name]
    paths = write_case(tmp_path / "in", 2)
    dataset = tmp_path / "ds"
    export_case(paths["image"], paths["label"], dataset, proposal=paths["proposal"])
    before = checksums(dataset)
    label = sitk.ReadImage(str(paths["label"]))
    bad = tmp_path / "in" / "bad.nii.gz"
    sitk.WriteImage(make_label(label) if make_label else label, str(bad))
    with pytest.raises(InputError, match=message):
        export_case(paths["image"], bad, dataset, **options)
    assert checksums(dataset) == before


def test_a_bad_proposal_or_a_2d_image_is_refused_before_anything_is_written(tmp_path):
    paths = write_case(tmp_path / "in", 3)
    flat = tmp_path / "in" / "flat.nii.gz"
    sitk.WriteImage(sitk.Image(10, 10, sitk.sitkInt16), str(flat))
    with pytest.raises(InputError, match="not a 3D"):
        export_case(flat, paths["label"], tmp_path / "ds")
    with pytest.raises(InputError, match="origin differs"):
        export_case(paths["image"], paths["label"], tmp_path / "ds",
                    proposal=_shifted(sitk.ReadImage(str(paths["proposal"])), origin=0.5))
    assert not (tmp_path / "ds").exists()


def test_a_folder_that_is_not_a_dataset_is_not_written_into(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    paths = write_case(tmp_path / "in")
    with pytest.raises(InputError, match="not a dataset folder"):
        export_case(paths["image"], paths["label"], home)
    assert [p.name for p in home.iterdir()] == ["notes.txt"]


def test_an_export_waits_for_the_lock_and_gives_up_with_a_clear_error(tmp_path):
    paths = write_case(tmp_path / "in")
    dataset = tmp_path / "ds"
    export_case(paths["image"], paths["label"], dataset)
    before = checksums(dataset)
    with DatasetLock(dataset, timeout=0), pytest.raises(DatasetBusy, match=r"holds the dataset lock \(pid \d+"):
        export_case(paths["image"], paths["label"], dataset, lock_timeout=0.2)
    after = checksums(dataset)
    assert {k: v for k, v in after.items() if k != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}


def test_concurrent_exporters_take_turns_and_get_distinct_case_ids(tmp_path):
    paths = write_case(tmp_path / "in")
    dataset = tmp_path / "ds"
    command = [sys.executable, "-m", "PancreasSegLib", "export", "--image", str(paths["image"]), "--label",
               str(paths["label"]), "--proposal", str(paths["proposal"]), "--dataset", str(dataset), "--json"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    ids = sorted(json.loads(out)["case_id"] for out, _ in outputs)
    assert ids == ["case_0001", "case_0002", "case_0003"]
    assert verify_dataset(dataset).ok


def test_a_dicom_series_is_exported_without_any_patient_data_or_uid(tmp_path):
    image, label, proposal = make_case(5)
    uid = write_dicom_series(tmp_path / "dicom", image)
    dataset = tmp_path / "ds"
    result = export_case(tmp_path / "dicom", label, dataset, proposal=proposal, reviewer="dr-a")
    prov = json.loads((dataset / "provenance" / f"{result.case_id}.json").read_text(encoding="utf-8"))
    assert prov["source"] == {"kind": "dicom-series", "series_uid_sha256": sha256_text(uid)}
    assert verify_dataset(dataset).ok
    secrets = [PATIENT_NAME, PATIENT_NAME.split("^")[0], PATIENT_ID, PATIENT_BIRTH_DATE, uid]
    for path in dataset.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                data = gzip.decompress(data)
            for secret in secrets:
                assert secret.encode() not in data, f"{secret} found in {path.relative_to(dataset)}"


def test_cli_export_prints_a_json_summary(tmp_path, capsys):
    paths = write_case(tmp_path / "in")
    code = main(["export", "--image", str(paths["image"]), "--label", str(paths["label"]), "--proposal",
                 str(paths["proposal"]), "--dataset", str(tmp_path / "ds"), "--reviewer", "dr-a", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["case_id"] == "case_0001" and out["status"] == "corrected"
    assert 0 < out["dice"] < 1 and out["edited_slices"] > 0 and "volume_change_ml" in out


def test_cli_export_prints_one_human_line_and_one_error_line(tmp_path, capsys):
    paths = write_case(tmp_path / "in")
    args = ["export", "--image", str(paths["image"]), "--label", str(paths["label"]), "--dataset",
            str(tmp_path / "ds")]
    assert main([*args, "--proposal", str(paths["proposal"])]) == 0
    out = capsys.readouterr().out
    assert out.startswith("exported case_0001 (corrected, revision 1)") and "Dice" in out
    assert main([*args, "--case-id", "x/../y"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pancreasseg export: error:") and "invalid case ID" in err and err.count("\n") == 1


def test_an_interrupt_before_the_commit_point_leaves_nothing_and_after_it_finishes_the_export(tmp_path,
                                                                                            monkeypatch):
    from PancreasSegLib.curation import journal

    paths = write_case(tmp_path / "in")
    dataset = tmp_path / "ds"
    export_case(paths["image"], paths["label"], dataset)
    before = checksums(dataset)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(journal, "commit", interrupted)
        with pytest.raises(KeyboardInterrupt):
            export_case(paths["image"], paths["label"], dataset, proposal=paths["proposal"])
    after = checksums(dataset)
    assert {k: v for k, v in after.items() if k != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}

    real_apply, calls = journal.apply, []

    def apply_once_interrupted(*args):
        calls.append(args)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_apply(*args)

    monkeypatch.setattr(journal, "apply", apply_once_interrupted)
    result = export_case(paths["image"], paths["label"], dataset, proposal=paths["proposal"])
    assert result.case_id == "case_0002" and verify_dataset(dataset).cases == 2
