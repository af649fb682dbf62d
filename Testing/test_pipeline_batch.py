"""Batches: reading and writing overlap with compute, and nothing else changes (events, errors, staging, cancel)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk
from bundle_doubles import make_random_bundle
from inference_doubles import blob_volume, same_grid, test_config

from PancreasSegLib.cli import main
from PancreasSegLib.errors import Cancelled, InputError
from PancreasSegLib.io.volumes import read_volume
from PancreasSegLib.pipeline.batch import BatchCase, BatchRunner
from PancreasSegLib.pipeline.predictor import Predictor
from PancreasSegLib.pipeline.roi import read_roi

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    bundle = make_random_bundle(folder / "bundle", seed=0, config=test_config())
    cts = []
    for seed in range(3):
        image, _ = blob_volume(shape_zyx=(24, 40, 48), seed=seed, center_mm=(10.0 + 2 * seed, 5.0, 0.0))
        cts.append(folder / f"case{seed}_0000.nii.gz")
        sitk.WriteImage(image, str(cts[-1]))
    bad = folder / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really a gzip file")
    roi = folder / "roi.json"
    roi.write_text(json.dumps({"center": [10.0, 5.0, 0.0], "size": [60.0, 40.0, 40.0], "margin_mm": 20.0}))
    return {"bundle": bundle, "cts": cts, "bad": bad, "roi": roi}


def _segment(files, inputs, out: Path, overlap: bool, monkeypatch, capsys) -> tuple[int, list[dict], str]:
    monkeypatch.setenv("PANCREASSEG_OVERLAP", "1" if overlap else "0")
    out.mkdir()
    code = main(["segment", *map(str, inputs), "-o", str(out), "--model", str(files["bundle"]), "--roi",
                 str(files["roi"]), "--progress", "jsonl", "--device", "cpu"])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def _without_times(events: list[dict], out: Path) -> list[str]:
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("timings", "seconds")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value.replace(str(out), "OUT") if isinstance(value, str) else value

    return [json.dumps(strip(event), sort_keys=True) for event in events]


def test_overlapped_batch_gives_the_same_events_and_files_as_a_plain_loop(files, tmp_path, monkeypatch, capsys):
    plain, overlapped = tmp_path / "plain", tmp_path / "overlapped"
    code_a, events_a, _ = _segment(files, files["cts"], plain, False, monkeypatch, capsys)
    code_b, events_b, _ = _segment(files, files["cts"], overlapped, True, monkeypatch, capsys)
    assert code_a == code_b == 0
    assert _without_times(events_a, plain) == _without_times(events_b, overlapped)
    assert [e["event"] for e in events_b].count("case") == 3 and events_b[-1]["event"] == "done"
    stages = [e["stage"] for e in events_b if e["event"] == "progress"]
    assert stages.count("read") == 6 and stages[0] == "read" and stages[-1] == "write"
    names = sorted(p.name for p in overlapped.iterdir() if not p.name.endswith(".quality.json"))
    assert names == sorted(p.name for p in plain.iterdir() if not p.name.endswith(".quality.json")) == \
        ["case0.nii.gz", "case1.nii.gz", "case2.nii.gz"]
    assert sorted(p.name for p in overlapped.iterdir() if p.name.endswith(".quality.json")) == \
        [f"{n}.quality.json" for n in names]
    for name in names:
        a, b = read_volume(plain / name), read_volume(overlapped / name)
        assert same_grid(a, b) and sitk.GetArrayFromImage(a).tolist() == sitk.GetArrayFromImage(b).tolist()


def test_a_bad_input_in_the_middle_stops_there_with_one_line_as_before(files, tmp_path, monkeypatch, capsys):
    inputs = [files["cts"][0], files["bad"], files["cts"][1]]
    code_a, events_a, err_a = _segment(files, inputs, tmp_path / "plain", False, monkeypatch, capsys)
    code_b, events_b, err_b = _segment(files, inputs, tmp_path / "overlapped", True, monkeypatch, capsys)
    assert code_a == code_b == 2
    assert err_b == err_a and len(err_b.strip().splitlines()) == 1 and str(files["bad"]) in err_b
    assert _without_times(events_a, tmp_path / "plain") == _without_times(events_b, tmp_path / "overlapped")
    assert events_b[-1]["event"] == "error"
    assert sorted(p.name for p in (tmp_path / "overlapped").iterdir()) == ["case0.nii.gz",
                                                                         "case0.nii.gz.quality.json"]  # no staging


def test_a_cancel_while_a_write_is_in_flight_leaves_only_complete_files(files, tmp_path):
    predictor = Predictor.from_bundle(files["bundle"], "cpu")
    roi = read_roi(files["roi"])
    cases = [BatchCase(ct, tmp_path / f"out{i}.nii.gz", compute={"roi": roi}) for i, ct in enumerate(files["cts"])]
    seen = []

    def progress(stage, fraction, message=""):
        seen.append(stage)
        if stage == "write" and fraction == 0.0:
            raise Cancelled("cancelled")

    with pytest.raises(Cancelled):
        BatchRunner(predictor).run(cases, progress)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left in ([], ["out0.nii.gz"])  # the first case committed before the cancel reached it, or not at all
    for name in left:
        assert same_grid(read_volume(tmp_path / name), read_volume(files["cts"][0]))
    assert seen.count("write") == 1


def test_a_write_told_not_to_commit_writes_nothing(files, tmp_path):
    predictor = Predictor.from_bundle(files["bundle"], "cpu")
    roi = read_roi(files["roi"])
    case = predictor.read_case(files["cts"][0])
    prediction = predictor.compute_case(case, roi=roi)
    with pytest.raises(Cancelled):
        predictor.write_case(case, prediction, tmp_path / "out.nii.gz", roi_out=tmp_path / "roi.json",
                             may_commit=lambda: False)
    assert list(tmp_path.iterdir()) == []
    written = predictor.write_case(case, prediction, tmp_path / "out.nii.gz", may_commit=lambda: True)
    assert written.outputs == {"segmentation": str(tmp_path / "out.nii.gz")} and set(written.seconds) >= {"read",
                                                                                                        "write"}


def test_a_read_error_surfaces_as_the_same_input_error(files):
    predictor = Predictor.from_bundle(files["bundle"], "cpu")
    with pytest.raises(InputError) as plain:
        BatchRunner(predictor, overlap=False).run([BatchCase(files["bad"], files["bad"].with_name("x.nii.gz"))])
    with pytest.raises(InputError) as overlapped:
        BatchRunner(predictor).run([BatchCase(files["cts"][0], files["cts"][0].with_name("y.nii.gz"),
                                              compute={"allow_empty": True}),
                                    BatchCase(files["bad"], files["bad"].with_name("x.nii.gz"))])
    assert str(overlapped.value) == str(plain.value) and str(files["bad"]) in str(plain.value)
    files["cts"][0].with_name("y.nii.gz").unlink()


def test_sigterm_to_a_batch_process_exits_130_and_leaves_no_partial_file(files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "PancreasSegLib", "segment", *map(str, files["cts"]), "-o",
                             str(out), "--model", str(files["bundle"]), "--roi", str(files["roi"]), "--progress",
                             "jsonl"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if json.loads(line).get("event") == "case":  # the first case is done; the second is on its way
            proc.send_signal(signal.SIGTERM)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    left = sorted(p.name for p in out.iterdir() if not p.name.endswith(".quality.json"))
    assert left[0] == "case0.nii.gz" and set(left) <= {"case0.nii.gz", "case1.nii.gz"}  # no staging folder
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".quality.json")) == \
        [f"{n}.quality.json" for n in left]  # a label and its record are renamed into place together
    for name in left:
        assert same_grid(read_volume(out / name), read_volume(files["cts"][0]))
