"""``pancreasseg segment``: outputs, exit codes, the jsonl stream and cancellation, in-process and as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: F401
from bundle_doubles import make_random_bundle  # noqa: E402
from inference_doubles import blob_volume, same_grid, test_config  # noqa: E402

from PancreasSegLib.cli import main  # noqa: E402
from PancreasSegLib.io.volumes import read_volume  # noqa: E402
from PancreasSegLib.progress import STAGES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("segment")
    config = test_config()
    seeing = make_random_bundle(folder / "seeing", seed=0, config=config)
    config["postprocessing"]["border_guard_mm"] = 0.0
    unguarded = make_random_bundle(folder / "unguarded", seed=0, config=config)
    config["stages"]["localizer"]["score_threshold"] = 1.01  # a localizer that never finds anything
    blind = make_random_bundle(folder / "blind", seed=0, config=config)
    image, _ = blob_volume()
    ct = folder / "case_0000.nii.gz"
    sitk.WriteImage(image, str(ct))
    roi = folder / "roi.json"
    roi.write_text(json.dumps({"center": [10.0, 5.0, 0.0], "size": [70.0, 50.0, 50.0], "margin_mm": 20.0}))
    return {"seeing": seeing, "unguarded": unguarded, "blind": blind, "ct": ct, "roi": roi, "image": image}


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_no_pancreas_exits_2_with_one_line_and_writes_nothing(files, tmp_path, capsys):
    out = tmp_path / "seg.nii.gz"
    code = main(["segment", str(files["ct"]), "-o", str(out), "--model", str(files["blind"]), "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [f"pancreasseg segment: error: {files['ct']}: no pancreas found "
                                        "(the localizer found nothing)"]
    assert list(tmp_path.iterdir()) == []


def test_allow_empty_writes_an_empty_label_map_on_the_input_grid(files, tmp_path):
    out = tmp_path / "seg.nrrd"
    assert main(["segment", str(files["ct"]), "-o", str(out), "--model", str(files["blind"]),
                 "--progress", "none", "--allow-empty"]) == 0
    label = read_volume(out)
    assert same_grid(label, read_volume(files["ct"])) and not sitk.GetArrayViewFromImage(label).any()


def test_the_jsonl_stream_is_one_object_per_line_and_ends_with_done(files, tmp_path, capsys):
    out, roi_out = tmp_path / "seg.seg.nrrd", tmp_path / "roi_out.json"
    assert main(["segment", str(files["ct"]), "-o", str(out), "--model", str(files["seeing"]), "--roi",
                 str(files["roi"]), "--roi-out", str(roi_out), "--progress", "jsonl"]) == 0
    events = _events(capsys.readouterr().out)
    progress, done = events[:-1], events[-1]
    assert progress and all(e["event"] == "progress" for e in progress)
    assert all(e["stage"] in STAGES and 0.0 <= e["fraction"] <= 1.0 and isinstance(e["message"], str)
               for e in progress)
    assert {e["stage"] for e in progress} >= {"read", "segment", "postprocess", "write"}
    assert done["event"] == "done"
    assert done["outputs"]["segmentation"] == str(out) and out.is_file()
    assert done["outputs"]["roi"] == str(roi_out)
    assert done["roi"] == json.loads(roi_out.read_text(encoding="utf-8"))
    assert done["roi"]["coordinate_system"] == "LPS" and done["roi"]["margin_mm"] == 20.0
    assert done["seconds"] > 0 and done["found"] is True


def test_the_jsonl_stream_ends_with_an_error_for_bad_input(files, tmp_path, capsys):
    code = main(["segment", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "seg.nii.gz"),
                 "--model", str(files["seeing"]), "--progress", "jsonl"])
    events = _events(capsys.readouterr().out)
    assert code == 2
    assert events[-1] == {"event": "error", "message": f"{tmp_path / 'missing.nii.gz'}: no such file or folder"}


def test_a_tampered_bundle_is_refused_naming_it(files, tmp_path, capsys):
    import shutil

    bundle = shutil.copytree(files["seeing"], tmp_path / "bundle")
    with open(bundle / "localizer.safetensors", "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xfe")
    code = main(["segment", str(files["ct"]), "-o", str(tmp_path / "seg.nii.gz"), "--model", str(bundle),
                 "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2 and str(bundle) in err and "sha256" in err
    assert not (tmp_path / "seg.nii.gz").exists()


def test_roi_out_fed_back_with_roi_gives_the_same_segmentation(files, tmp_path):
    first, second, roi = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz", tmp_path / "r.json"
    # Without the border guard the ROI written is exactly the box segmented (a random network would grow it).
    common = ["--model", str(files["unguarded"]), "--progress", "none"]
    assert main(["segment", str(files["ct"]), "-o", str(first), "--roi", str(files["roi"]), "--roi-out", str(roi),
                 *common]) == 0
    assert main(["segment", str(files["ct"]), "-o", str(second), "--roi", str(roi), *common]) == 0
    a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (first, second))
    assert a.any() and (a == b).all()


def test_several_inputs_are_written_into_the_output_folder_by_case_name(files, tmp_path, capsys):
    other = tmp_path / "other.nrrd"
    sitk.WriteImage(files["image"], str(other))
    out = tmp_path / "results"
    out.mkdir()
    assert main(["segment", str(files["ct"]), str(other), "-o", str(out), "--model", str(files["seeing"]),
                 "--roi", str(files["roi"]), "--progress", "jsonl"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["case.nii.gz", "case.nii.gz.quality.json", "other.nii.gz",
                                                     "other.nii.gz.quality.json"]  # each with its quality record
    events = _events(capsys.readouterr().out)
    assert [e["event"] for e in events if e["event"] != "progress"] == ["case", "case", "done"]
    assert len(events[-1]["outputs"]["segmentation"]) == 2


@pytest.mark.parametrize("args, match", [
    (["-o", "{tmp}/nowhere/seg.nii.gz"], "does not exist"),
    (["-o", "{tmp}/seg.png"], "unsupported label file type .png"),
    (["-o", "{tmp}/seg.nii.gz", "--surface", "{tmp}/s.obj"], "--surface must end in .stl or .vtp"),
    (["-o", "{tmp}/seg.nii.gz", "--roi", "{tmp}/none.json"], "none.json: no such file"),
])
def test_bad_options_exit_2_before_any_work(files, tmp_path, capsys, args, match):
    args = [a.format(tmp=tmp_path) for a in args]
    code = main(["segment", str(files["ct"]), *args, "--model", str(files["seeing"]), "--progress", "none"])
    assert code == 2 and match in capsys.readouterr().err


def test_surface_and_probabilities_are_written_with_the_segmentation(files, tmp_path, capsys):
    surface, prob = tmp_path / "pancreas.stl", tmp_path / "prob.nii.gz"
    assert main(["segment", str(files["ct"]), "-o", str(tmp_path / "s.nii.gz"), "--model", str(files["seeing"]),
                 "--roi", str(files["roi"]), "--surface", str(surface), "--probabilities", str(prob),
                 "--progress", "jsonl"]) == 0
    done = _events(capsys.readouterr().out)[-1]
    assert surface.stat().st_size > 0 and done["outputs"]["surface"] == str(surface)
    assert done["surface_volume_ml"] == pytest.approx(done["volume_ml"], rel=0.3)
    probabilities = read_volume(prob)
    assert same_grid(probabilities, read_volume(files["ct"]))
    values = sitk.GetArrayViewFromImage(probabilities)
    assert values.min() >= 0.0 and values.max() <= 1.0 and values.max() >= 0.5


def test_snapshot_output_is_a_png(files, tmp_path):
    snapshot = tmp_path / "qa.png"
    assert main(["segment", str(files["ct"]), "-o", str(tmp_path / "s.nii.gz"), "--model", str(files["seeing"]),
                 "--roi", str(files["roi"]), "--snapshot", str(snapshot), "--progress", "none"]) == 0
    assert snapshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_signal_inside_the_cancellable_block_becomes_cancelled():
    from PancreasSegLib.errors import Cancelled
    from PancreasSegLib.progress import cancel_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Cancelled), cancel_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this at once
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_to_a_running_segment_process_leaves_no_file(files, tmp_path):
    # A slow configuration (fine grid, small windows) so that the signal arrives mid-segmentation.
    config = test_config()
    config["stages"]["segmenter"].update(spacing_xyz_mm=[1.0, 1.0, 1.0], patch_size_zyx=[8, 8, 8], overlap=0.5)
    bundle = make_random_bundle(tmp_path / "slow", seed=0, config=config)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "seg.nii.gz"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "PancreasSegLib", "segment", str(files["ct"]), "-o", str(out),
                             "--model", str(bundle), "--phase2-only", "--progress", "jsonl",
                             "--roi-out", str(work / "roi.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=work)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if json.loads(line).get("stage") == "segment":
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "cancelled" in err
    assert json.loads((lines + rest.splitlines())[-1])["event"] == "error"
    assert list(work.iterdir()) == []  # neither the output nor a temporary file
