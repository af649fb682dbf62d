"""The quality record and its "unsure" flags: measures, calibration, judging, and how they reach the user."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from bundle_doubles import make_random_bundle
from inference_doubles import blob_volume, test_config

from PancreasSegLib.cli import main
from PancreasSegLib.evaluation.calibration import calibration_records, flag_counts
from PancreasSegLib.model.bundle import Bundle, load_config
from PancreasSegLib.pipeline.quality import MEASURES, calibrate, detection_score, judge, measure


def _image(shape_zyx=(10, 20, 20), value=40):
    image = sitk.GetImageFromArray(np.full(shape_zyx, value, np.int16))
    image.SetSpacing((1.0, 1.0, 2.0))
    return image


def test_measures_of_a_label_inside_and_at_the_edge_of_the_scan():
    image = _image()
    label = np.zeros((4, 6, 6), np.uint8)
    label[1:3, 2:4, 2:4] = 1
    fg = np.where(label > 0, 0.9, 0.0).astype(np.float32)
    fg[1, 2, 2] = 0.6  # one uncertain voxel of the 8 labelled ones
    inside = measure(image, label, fg, (5, 5, 3), 0.8)
    assert inside["volume_ml"] == 0.016  # 8 voxels of 2 mm3
    assert inside["scan_edge_fraction"] == 0.0 and inside["label_hu"] == 40.0 and inside["detection_score"] == 0.8
    assert inside["uncertain_fraction"] == pytest.approx(1 / 8)
    assert inside["mean_probability"] == pytest.approx((7 * 0.9 + 0.6) / 8, abs=1e-4)
    label[0, 2:4, 2:4] = 1  # the gland now reaches the first slice of the scan
    at_edge = measure(image, label, np.maximum(fg, label * 0.9), (5, 5, 0), None)
    assert at_edge["volume_ml"] == 0.024
    assert at_edge["scan_edge_fraction"] == 1.0 and at_edge["detection_score"] is None


def test_nothing_found_has_no_gland_measures_and_is_always_flagged():
    measures = measure(_image(), None, None, None, None)
    assert measures["mean_probability"] is None and measures["volume_ml"] == 0.0
    assert judge(measures, None, found=False) and judge(measures, {"ranges": {}}, found=False)


def test_detection_score_is_the_mean_best_score_of_the_slices_that_hit():
    scores = [np.array([0.2]), np.array([0.9, 0.6]), np.array([]), np.array([0.7])]
    assert detection_score(scores, 0.5) == pytest.approx(0.8)
    assert detection_score(scores, 0.95) is None


def _records(values: list[float], dice: list[float]) -> list[dict]:
    return [{"dice": d, "found": True, "measures": {"mean_probability": v, "volume_ml": 60.0 + v}}
            for v, d in zip(values, dice)]


def test_calibration_keeps_the_range_of_the_good_cases_widened_until_left_out_cases_pass():
    dense = list(np.linspace(0.8, 1.0, 21))  # each left-out case lies within a tenth of the others' span
    records = _records(dense + [0.1], [0.9] * 21 + [0.2])  # the failure does not widen the range
    calibration = calibrate(records)
    assert calibration["widen"] == 0.1 and calibration["leave_one_out_flagged"] <= 0.1
    assert calibration["ranges"]["mean_probability"] == [pytest.approx(0.78), pytest.approx(1.02)]
    assert calibration["good_cases"] == 21 and set(calibration["ranges"]) <= set(MEASURES)
    sparse = calibrate(_records([0.8, 0.9, 1.0], [0.9] * 3))  # 0.8 and 1.0 pass only once widened by the span
    assert sparse["widen"] == 1.0 and sparse["ranges"]["mean_probability"] == [pytest.approx(0.6), pytest.approx(1.2)]
    with pytest.raises(ValueError, match="only 2 validation case"):
        calibrate(records[-3:])


def test_judge_flags_only_the_suspicious_side_of_each_range():
    calibration = {"ranges": {"mean_probability": [0.7, 0.95], "volume_ml": [30.0, 120.0],
                              "scan_edge_fraction": [0.0, 0.1]}}
    assert judge({"mean_probability": 0.99, "volume_ml": 60.0, "scan_edge_fraction": 0.0}, calibration) == []
    low = judge({"mean_probability": 0.5, "volume_ml": 200.0, "scan_edge_fraction": 0.6}, calibration)
    assert len(low) == 3 and all(w.startswith("unsure: ") for w in low)
    assert "mean foreground probability (0.5) is below" in low[0] and "(200) is above" in low[1]
    assert judge({"mean_probability": 0.5}, None) == []  # an uncalibrated bundle flags nothing found


def test_flag_counts_count_flagged_failures_and_unflagged_good_results():
    calibration = calibrate(_records([0.8, 0.9, 1.0], [0.9, 0.9, 0.9]))
    test = _records([0.9, 0.3, 0.95], [0.9, 0.1, 0.3]) + [{"dice": 0.0, "found": False, "measures": {}}]
    counts = flag_counts(test, calibration)
    assert counts == {"cases": 4, "flagged": 2, "failures": 3, "failures_flagged": 2, "good": 1, "good_flagged": 0}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quality")
    image, label = blob_volume()
    ct, ref = folder / "images" / "case_0000.nii.gz", folder / "labels" / "case.nii.gz"
    for path, volume in ((ct, image), (ref, label)):
        path.parent.mkdir()
        sitk.WriteImage(volume, str(path))
    roi = folder / "roi.json"
    roi.write_text(json.dumps({"center": [10.0, 5.0, 0.0], "size": [70.0, 50.0, 50.0], "margin_mm": 20.0}))
    return {"bundle": make_random_bundle(folder / "bundle", seed=0, config=test_config()), "ct": ct, "ref": ref,
            "roi": roi}


def test_an_unsure_result_is_written_flagged_with_a_record_a_done_event_and_one_stderr_line(case, tmp_path, capsys):
    import shutil

    bundle = tmp_path / "bundle"
    config = load_config(case["bundle"])
    shutil.copytree(case["bundle"], bundle)
    config["quality"] = {"ranges": {"volume_ml": [1.0, 2.0]}}  # no result of this double is that small
    (bundle / "model.json").write_text(json.dumps(config), encoding="utf-8")
    out = tmp_path / "seg.nii.gz"
    assert main(["segment", str(case["ct"]), "-o", str(out), "--model", str(bundle), "--roi", str(case["roi"]),
                 "--progress", "jsonl"]) == 0
    captured = capsys.readouterr()
    done = json.loads(captured.out.splitlines()[-1])
    assert done["unsure"] is True and len(done["warnings"]) == 1 and "the volume" in done["warnings"][0]
    record = json.loads((tmp_path / "seg.nii.gz.quality.json").read_text(encoding="utf-8"))
    assert record["unsure"] is True and record["warnings"] == done["warnings"] and record["calibrated"] is True
    assert record["measures"]["volume_ml"] == done["volume_ml"] == done["quality"]["volume_ml"]
    assert done["outputs"]["quality"] == str(tmp_path / "seg.nii.gz.quality.json") and out.is_file()
    lines = [line for line in captured.err.splitlines() if "unsure" in line]
    assert len(lines) == 1 and lines[0].startswith("pancreasseg segment: warning: case_0000.nii.gz: unsure:")


def test_calibrate_writes_ranges_into_model_json_and_leaves_the_weights_alone(case, tmp_path, capsys):
    import shutil

    cts = []
    for i in range(3):
        cts.append(tmp_path / f"c{i}_0000.nii.gz")
        shutil.copy(case["ct"], cts[-1])
    pred, ref, wrong = tmp_path / "pred", tmp_path / "ref", tmp_path / "wrong"
    for folder in (pred, ref, wrong):
        folder.mkdir()
    assert main(["segment", *map(str, cts), "-o", str(pred), "--model", str(case["bundle"]), "--roi",
                 str(case["roi"]), "--progress", "none"]) == 0
    empty = sitk.Image(sitk.ReadImage(str(case["ref"])))
    empty *= 0
    for i in range(3):  # references equal to the predictions (Dice 1), and references they miss (Dice 0)
        shutil.copy(pred / f"c{i}.nii.gz", ref / f"c{i}.nii.gz")
        sitk.WriteImage(empty, str(wrong / f"c{i}.nii.gz"))
    records = calibration_records(pred, ref)
    assert [r["case_id"] for r in records] == ["c0", "c1", "c2"] and [r["dice"] for r in records] == [1.0] * 3
    bundle = tmp_path / "bundle"
    shutil.copytree(case["bundle"], bundle)
    before = Bundle.load(bundle).provenance()["sha256"]
    assert main(["calibrate", str(bundle), "--pred", str(pred), "--ref", str(wrong)]) == 2
    assert "only 0 validation case(s) with Dice >= 0.8" in capsys.readouterr().err
    assert "quality" not in load_config(bundle)
    assert main(["calibrate", str(bundle), "--pred", str(pred), "--ref", str(ref)]) == 0
    quality = load_config(bundle)["quality"]
    assert quality["format"] == "pancreasseg-quality/1" and quality["cases"] == 3 and "volume_ml" in quality["ranges"]
    assert quality["validation"] == "ref: c0, c1, c2"
    assert Bundle.load(bundle).provenance()["sha256"] == before
    lo, hi = quality["ranges"]["volume_ml"]
    assert lo <= records[0]["measures"]["volume_ml"] <= hi  # the validation result itself is inside its range
