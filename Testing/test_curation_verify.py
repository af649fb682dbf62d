"""``pancreasseg verify``: every kind of damage is reported, one problem per line, with exit status 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from curation_data import make_case

from PancreasSegLib.cli import main
from PancreasSegLib.curation import export_case, journal, verify_dataset


@pytest.fixture
def dataset(tmp_path) -> Path:
    folder = tmp_path / "Dataset503_Verify"
    for seed in range(2):
        image, label, proposal = make_case(seed)
        export_case(image, label, folder, proposal=proposal, reviewer="dr-a")
    image, label, proposal = make_case(0)
    export_case(image, label, folder, proposal=proposal, case_id="case_0001", status="approved")
    return folder


def _write_label(path: Path, change) -> None:
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    change(array)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path))


def _set(array, value):
    array[0, 0, 0] = value


DAMAGE = {
    "label removed": (lambda d: (d / "labelsTr/case_0002.nii.gz").unlink(), "case_0002: image without label"),
    "provenance removed": (lambda d: (d / "provenance/case_0002.json").unlink(), "case_0002: no provenance"),
    "numTraining wrong": (lambda d: (d / "dataset.json").write_text(json.dumps(
        json.loads((d / "dataset.json").read_text(encoding="utf-8")) | {"numTraining": 5})), "numTraining is 5"),
    "undeclared value": (lambda d: _write_label(d / "labelsTr/case_0002.nii.gz", lambda a: _set(a, 7)),
                         "case_0002: label holds undeclared label value(s) 7"),
    "label edited behind our back": (lambda d: _write_label(d / "labelsTr/case_0002.nii.gz", lambda a: _set(a, 2)),
                                     "case_0002: the label's voxels are not those the provenance records"),
    "label on another grid": (lambda d: sitk.WriteImage(sitk.Image([14, 12, 9], sitk.sitkUInt8),
                                                        str(d / "labelsTr/case_0002.nii.gz")),
                              "case_0002: label grid does not match the image: size differs"),
    "unreadable image": (lambda d: (d / "imagesTr/case_0002_0000.nii.gz").write_bytes(b"\x1f\x8b broken"),
                         "case_0002: cannot be read"),
    "history entry incomplete": (lambda d: next((d / "history/case_0001").iterdir()).joinpath(
        "label.nii.gz").unlink(), "misses provenance.json or label.nii.gz"),
    "history removed": (lambda d: shutil.rmtree(d / "history"),
                        "case_0001: provenance revision 2 but history holds 0 earlier export(s)"),
    "stray file": (lambda d: (d / "imagesTr/notes.txt").write_text("x"), "imagesTr/notes.txt: unexpected file"),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_verify_reports_each_kind_of_damage(dataset, name):
    damage, expected = DAMAGE[name]
    assert verify_dataset(dataset).ok
    damage(dataset)
    result = verify_dataset(dataset)
    assert not result.ok
    assert any(expected in problem for problem in result.problems), result.problems


def test_cli_verify_exits_0_with_a_summary_and_2_with_one_problem_per_line(dataset, capsys):
    assert main(["verify", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"{dataset}: OK, 2 case(s) (1 approved, 1 corrected), 1 history entry"
    (dataset / "provenance/case_0002.json").unlink()
    (dataset / "labelsTr/case_0001.nii.gz").unlink()
    assert main(["verify", str(dataset)]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{dataset}: {len(lines) - 1} problem(s)"
    assert "case_0001: image without label (labelsTr/case_0001.nii.gz)" in lines
    assert "case_0002: no provenance (provenance/case_0002.json)" in lines


def test_cli_verify_of_a_missing_folder_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "PancreasSegLib", "verify", str(tmp_path / "nothing")],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [f"{tmp_path / 'nothing'}: 1 problem(s)", "no such dataset folder"]


def _interrupted_export(dataset: Path) -> None:
    """Stage and commit a re-export of case_0002 as an export does, then stop (as if killed)."""
    _, label, _ = make_case(1)
    array = sitk.GetArrayFromImage(label)
    array[array == 2] = 1
    stage = journal.begin(dataset, "case_0002")
    relabelled = sitk.GetImageFromArray(array)
    relabelled.CopyInformation(label)
    sitk.WriteImage(relabelled, str(stage / "label.nii.gz"))
    prov = json.loads((dataset / "provenance/case_0002.json").read_text(encoding="utf-8"))
    from PancreasSegLib.curation.provenance import array_sha256

    prov.update(revision=2, note="staged", label_sha256=array_sha256(array), comparison=None)
    (stage / "provenance.json").write_text(json.dumps(prov))
    journal.commit(dataset, "case_0002", "20990101T000000.000000Z", image_to_history=False, has_proposal=False)


def test_no_recover_reports_an_interrupted_export_and_writes_nothing(dataset):
    _interrupted_export(dataset)
    before = sorted(str(p) for p in dataset.rglob("*"))
    result = verify_dataset(dataset, recover=False)
    assert any("unfinished export" in p for p in result.problems)
    assert sorted(str(p) for p in dataset.rglob("*")) == before


def test_recovery_rolls_a_committed_export_forward(dataset):
    _interrupted_export(dataset)
    result = verify_dataset(dataset)
    assert result.problems == []
    assert result.recovered == ["finished the interrupted export of case_0002"]
    assert json.loads((dataset / "provenance/case_0002.json").read_text(encoding="utf-8"))["note"] == "staged"
    assert not (dataset / "proposals/case_0002.nii.gz").exists()
    assert (dataset / "history/case_0002/20990101T000000.000000Z/proposal.nii.gz").is_file()


def test_recovery_discards_an_uncommitted_export(dataset):
    stage = journal.begin(dataset, "case_0009")
    (stage / "label.nii.gz").write_bytes(b"half")
    result = verify_dataset(dataset)
    assert result.ok and result.cases == 2
    assert result.recovered == ["discarded the unfinished (uncommitted) export of case_0009"]
    assert not stage.exists()
    assert np.array_equal(sorted(p.name for p in (dataset / "provenance").iterdir()),
                          ["case_0001.json", "case_0002.json"])


def test_a_plain_nnunet_dataset_without_provenance_is_checked_at_the_nnunet_level(tmp_path, capsys):
    from PancreasSegLib.datasets.nnunet import image_path, label_path, write_dataset_json

    folder = tmp_path / "Dataset001_Plain"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    image, label, _ = make_case(0)
    sitk.WriteImage(image, str(image_path(folder, "p1")))
    sitk.WriteImage(label, str(label_path(folder, "p1")))
    write_dataset_json(folder, ["p1"])
    assert main(["verify", str(folder)]) == 0
    assert "plain nnU-Net dataset" in capsys.readouterr().out
    assert not (folder / ".lock").exists()  # nothing to recover, nothing written
    (folder / "labelsTr/p1.nii.gz").unlink()
    assert verify_dataset(folder).problems == ["p1: image without label (labelsTr/p1.nii.gz)"]
