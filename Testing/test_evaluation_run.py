"""``pancreasseg evaluate``: case matching, outputs, empty masks and clear errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from PancreasSegLib.cli import main
from PancreasSegLib.io.volumes import write_labelmap


def label_image(shift=0, empty=False, tumor=True):
    array = np.zeros((8, 16, 16), np.uint8)
    if not empty:
        array[2:6, 4 + shift:11 + shift, 3:12] = 1
        if tumor:
            array[3:5, 6:8, 5:7] = 2
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 2.5))
    image.SetOrigin((-20.0, 10.0, 30.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    return image


@pytest.fixture
def folders(tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir()
    pred.mkdir()
    for case in ("case_a", "case_b", "case_c"):
        sitk.WriteImage(label_image(), str(ref / f"{case}.nii.gz"))
    sitk.WriteImage(label_image(), str(pred / "case_a.nii.gz"))
    write_labelmap(label_image(shift=1), pred / "case_b.seg.nrrd")
    sitk.WriteImage(label_image(empty=True), str(pred / "case_c.nii.gz"))
    (pred / "._case_a.nii.gz").write_bytes(b"\x00\x05\x16\x07 resource fork")
    return pred, ref


def test_evaluate_writes_csv_json_and_png_and_prints_a_table(folders, tmp_path, capsys):
    pred, ref = folders
    out = tmp_path / "eval"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "-o", str(out), "--structures", "pancreas",
                 "tumor"]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [(r["case"], r["structure"]) for r in rows] == [
        ("case_a", "pancreas"), ("case_a", "tumor"), ("case_b", "pancreas"), ("case_b", "tumor"),
        ("case_c", "pancreas"), ("case_c", "tumor")]
    assert float(rows[0]["dice"]) == 1.0 and 0.5 < float(rows[2]["dice"]) < 1.0
    assert rows[4]["hd95_mm"] == ""  # empty prediction: undefined
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    hd95 = summary["summary"]["pancreas"]["hd95_mm"]
    assert hd95["n"] == 2 and hd95["n_undefined"] == 1
    dice = summary["summary"]["pancreas"]["dice"]
    assert dice["n"] == 3 and dice["mean"] == pytest.approx(np.mean([1.0, float(rows[2]["dice"]), 0.0]))
    assert set(dice) == {"mean", "median", "std", "min", "max", "n", "n_undefined"}
    assert len(summary["cases"]) == 6 and any("undefined" in note for note in summary["notes"])
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "case_b" in printed and "mean (n=3)" in printed


def test_a_dataset_root_as_reference_uses_its_labels_folder(folders, tmp_path):
    pred, ref = folders
    dataset = tmp_path / "Dataset001_Pancreas"
    dataset.mkdir()
    ref.rename(dataset / "labelsTr")
    assert main(["evaluate", "--pred", str(pred), "--ref", str(dataset), "-o", str(tmp_path / "e"), "--quiet"]) == 0


def test_two_single_files_are_one_case(tmp_path):
    sitk.WriteImage(label_image(), str(tmp_path / "ref.nii.gz"))
    sitk.WriteImage(label_image(shift=1), str(tmp_path / "pred.nrrd"))
    assert main(["evaluate", "--pred", str(tmp_path / "pred.nrrd"), "--ref", str(tmp_path / "ref.nii.gz"),
                 "-o", str(tmp_path / "e"), "--quiet"]) == 0
    assert json.loads((tmp_path / "e" / "summary.json").read_text(encoding="utf-8"))["cases"][0]["case"] == "ref"


def test_a_missing_prediction_is_named_and_exits_2(folders, tmp_path, capsys):
    pred, ref = folders
    (pred / "case_b.seg.nrrd").unlink()
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "-o", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "no prediction for case case_b" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()


def test_an_empty_folder_exits_2(folders, tmp_path, capsys):
    _, ref = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--pred", str(empty), "--ref", str(ref), "-o", str(tmp_path / "e")]) == 2
    assert "holds no label files" in capsys.readouterr().err


def test_a_prediction_on_another_grid_is_refused_with_the_case_named(folders, tmp_path, capsys):
    pred, ref = folders
    other = label_image()
    other.SetSpacing((1.0, 1.0, 2.5))
    sitk.WriteImage(other, str(pred / "case_a.nii.gz"))
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "-o", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "case case_a" in err and "spacing" in err and "--resample" in err
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "-o", str(tmp_path / "e"), "--resample",
                 "--quiet"]) == 0
    assert "resampled" in json.loads((tmp_path / "e" / "summary.json").read_text(encoding="utf-8"))["notes"][0]


def test_evaluate_runs_as_a_real_subprocess(folders, tmp_path):
    pred, ref = folders
    done = subprocess.run([sys.executable, "-m", "PancreasSegLib", "evaluate", "--pred", str(pred), "--ref", str(ref),
                           "-o", str(tmp_path / "e")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and (tmp_path / "e" / "metrics.csv").is_file()
