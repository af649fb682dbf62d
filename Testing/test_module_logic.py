"""The Slicer module's Logic, driven through test doubles of the scene and the process runner."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from module_doubles import FakeRunner, FakeScene, writeFakeBundle, writeFakeOutput
from PancreasSegModuleLib.logicTypes import Callbacks, ExportOptions, SegmentOptions
from PancreasSegModuleLib.roiGeometry import rasBox, roiFromRas
from PancreasSegModuleLib.segmentationLogic import SegmentationLogic

from PancreasSegLib.labels import PANCREAS, TUMOR
from PancreasSegLib.pipeline.roi import ROI

ROI_LPS = {"coordinate_system": "LPS", "center": [10.0, 20.0, 30.0], "size": [60.0, 40.0, 50.0],
           "axes": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "margin_mm": 20.0}


@pytest.fixture
def model(tmp_path):
    return writeFakeBundle(tmp_path / "pancreas-phantom-v1", labels=(PANCREAS, TUMOR))


@pytest.fixture
def env(tmp_path):
    scene, runner = FakeScene(), FakeRunner()
    answers = []
    logic = SegmentationLogic(scene, runner, pythonExecutable="/opt/slicer/bin/PythonSlicer",
                              libraryRoot="/src/PancreasSeg", confirm=lambda q: answers.pop(0) if answers else False,
                              tempRoot=str(tmp_path))
    volume = scene.add("CT abdomen", "volume")
    return logic, scene, runner, volume, answers


class Recorder:
    def __init__(self):
        self.progress, self.done, self.errors, self.cancelled = [], [], [], 0

    def callbacks(self):
        return Callbacks(onProgress=lambda f, m: self.progress.append((f, m)), onDone=self.done.append,
                         onError=self.errors.append, onCancelled=self._cancel)

    def _cancel(self):
        self.cancelled += 1


def done_line(roi=ROI_LPS):
    return json.dumps({"event": "done", "outputs": {}, "roi": roi, "seconds": 1.0}) + "\n"


def test_segment_command_line_has_model_device_margin_jsonl_and_roi_out(env, model):
    logic, scene, runner, volume, _ = env
    logic.segment(volume, SegmentOptions(str(model), device="cuda", marginMm=15.0))
    args = runner.args
    assert args[:5] == ["/opt/slicer/bin/PythonSlicer", "-m", "PancreasSegLib", "segment", args[4]]
    assert args[4].endswith("input.nrrd") and scene.calls[0] == ("writeVolume", "CT abdomen", args[4])
    assert runner.argument("--model") == str(model)
    assert runner.argument("--device") == "cuda"
    assert runner.argument("--margin-mm") == "15"
    assert runner.argument("--progress") == "jsonl"
    assert runner.argument("--roi-out").endswith("roi.json")
    assert "--roi" not in args and "--probabilities" not in args


def test_child_gets_the_library_on_its_pythonpath_and_unbuffered_output(env, model):
    logic, _, runner, volume, _ = env
    logic.segment(volume, SegmentOptions(str(model)))
    assert runner.env["PYTHONPATH"].split(os.pathsep)[0] == "/src/PancreasSeg"
    assert runner.env["PYTHONUNBUFFERED"] == "1"


def test_keep_probabilities_adds_the_probabilities_output(env, model):
    logic, _, runner, volume, _ = env
    logic.segment(volume, SegmentOptions(str(model), keepProbabilities=True))
    assert runner.argument("--probabilities").endswith("probabilities.nrrd")


@pytest.mark.parametrize("options, message", [
    ({"device": "tpu"}, "Unknown device"),
    ({"marginMm": -1.0}, "ROI margin"),
])
def test_bad_options_are_refused_with_a_clear_message(env, model, options, message):
    logic, scene, runner, volume, _ = env
    with pytest.raises(ValueError, match=message):
        logic.segment(volume, SegmentOptions(str(model), **options))
    assert runner.args is None


def test_no_volume_or_bad_model_folder_is_refused_before_anything_runs(env, tmp_path):
    logic, scene, runner, volume, _ = env
    with pytest.raises(ValueError, match="Select a CT volume"):
        logic.segment(None, SegmentOptions(str(tmp_path)))
    with pytest.raises(ValueError, match="model.json is missing"):
        logic.segment(volume, SegmentOptions(str(tmp_path)))
    with pytest.raises(ValueError, match="weights file"):
        logic.segment(volume, SegmentOptions(str(writeFakeBundle(tmp_path / "no-weights", weights=False))))
    assert runner.args is None and scene.calls == []


def test_progress_follows_json_lines_split_across_chunks_and_ignores_garbage(env, model):
    logic, _, runner, volume, _ = env
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), rec.callbacks())
    runner.play([
        "Warning: some library banner\n",
        '{"event": "progress", "stage": "read", "fraction": 1.0, "message": "read"}\n{"event": "prog',
        'ress", "stage": "localize", "fraction": 0.5, "message": "localizing"}\n',
        "not json {\n", '["a list"]\n', '{"no_event": 1}\n',
        '{"event": "progress", "stage": "segment", "fraction": 1.0, "message": "segmenting"}\n',
        done_line(),
    ], before_finish=lambda: writeFakeOutput(runner.args))
    assert [m for _, m in rec.progress] == ["read", "localizing", "segmenting"]
    fractions = [f for f, _ in rec.progress]
    assert fractions == sorted(fractions) and 0.0 < fractions[0] < fractions[-1] <= 1.0
    assert rec.errors == [] and len(rec.done) == 1


def test_result_is_named_after_the_volume_with_coded_labels_proposal_and_ras_roi(env, model):
    logic, scene, runner, volume, _ = env
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model), showRoi=False), rec.callbacks())
    runner.play([done_line()], before_finish=lambda: writeFakeOutput(runner.args))
    result = rec.done[0]
    assert result.segmentation.name == "CT abdomen pancreas"
    assert result.segmentation.props["referenceVolume"] is volume
    assert [label.name for label in result.segmentation.props["labels"]] == ["Pancreas", "Pancreatic tumor"]
    assert result.proposal.name == "CT abdomen pancreas proposal" and result.proposal.props["hidden"]
    roi = result.roi.props["geometry"]
    assert isinstance(roi, ROI) and roi.center == (10.0, 20.0, 30.0) and roi.margin_mm == 20.0  # the command's LPS
    box = rasBox(roi)  # what the markups ROI node gets
    assert box.center == (-10.0, -20.0, 30.0) and box.size == (60.0, 40.0, 50.0)
    assert box.axes == ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0))
    assert result.roi.props["visible"] is False and result.warnings == []  # a usual result is not unsure
    assert scene.findResult(volume) is result
    assert ("showResult", "CT abdomen pancreas") in scene.calls


def test_roi_falls_back_to_the_roi_out_file_when_done_has_none(env, model):
    logic, scene, runner, volume, _ = env
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), rec.callbacks())

    def write():
        writeFakeOutput(runner.args)
        Path(runner.argument("--roi-out")).write_text(json.dumps(ROI_LPS))

    runner.play([json.dumps({"event": "done", "outputs": {}}) + "\n"], before_finish=write)
    assert rasBox(rec.done[0].roi.props["geometry"]).center == (-10.0, -20.0, 30.0)


def test_an_unsure_result_carries_the_runs_warnings(env, model):
    logic, scene, runner, volume, _ = env
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), rec.callbacks())
    warning = "unsure: the volume (0.5) is below what the model showed on validation data (from 35)"
    runner.play([json.dumps({"event": "done", "outputs": {}, "roi": ROI_LPS, "warnings": [warning]}) + "\n"],
                before_finish=lambda: writeFakeOutput(runner.args))
    assert rec.done[0].warnings == [warning]


def test_an_roi_with_axes_that_are_not_orthonormal_fails_the_run_and_leaves_the_scene(env, model):
    logic, scene, runner, volume, _ = env
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), rec.callbacks())
    nodes = list(scene.nodes)
    skewed = dict(ROI_LPS, axes=[[1, 0, 0], [0.6, 0.8, 0], [0, 0, 1]])
    runner.play([done_line(skewed)], before_finish=lambda: writeFakeOutput(runner.args))
    assert len(rec.errors) == 1 and "orthogonal unit vectors" in rec.errors[0] and rec.done == []
    assert scene.nodes == nodes and scene.results == []


def test_the_ras_adapter_is_the_library_roi_flipped_and_checks_what_it_reads():
    roi = ROI.from_json(dict(ROI_LPS, axes=[[0.6, 0.8, 0], [-0.8, 0.6, 0], [0, 0, 1]]))
    box = rasBox(roi)
    ras = roi.to_json(coordinate_system="RAS")
    assert list(box.center) == ras["center"] and [list(a) for a in box.axes] == ras["axes"]
    assert box.center == (-10.0, -20.0, 30.0) and box.axes[0] == (-0.6, -0.8, 0.0)
    back = roiFromRas(box.center, box.size, box.axes)
    assert back.center == pytest.approx(roi.center) and back.size == roi.size
    assert all(a == pytest.approx(b) for a, b in zip(back.axes, roi.axes))
    with pytest.raises(ValueError, match="orthogonal unit vectors"):
        roiFromRas((0, 0, 0), (10, 10, 10), ((1, 0, 0), (1, 0, 0), (0, 0, 1)))
    with pytest.raises(ValueError, match="size must be positive"):
        roiFromRas((0, 0, 0), (10, 0, 10), ((1, 0, 0), (0, 1, 0), (0, 0, 1)))


def test_error_event_message_is_surfaced_and_scene_unchanged(env, model):
    logic, scene, runner, volume, _ = env
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), rec.callbacks())
    nodes_before = list(scene.nodes)
    runner.play(['{"event": "error", "message": "input.nrrd: no pancreas found"}\n'], stderr="trace\n", exitCode=2)
    assert rec.errors == ["input.nrrd: no pancreas found"] and rec.done == []
    assert scene.nodes == nodes_before and scene.results == []
    assert not logic.isRunning()


def test_last_stderr_line_is_the_message_when_there_is_no_error_event(env, model):
    logic, _, runner, volume, _ = env
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), rec.callbacks())
    runner.play([], stderr="loading\npancreasseg segment: error: out of memory\n\n", exitCode=1)
    assert rec.errors == ["pancreasseg segment: error: out of memory"]


def test_force_adds_the_switch_only_when_ticked(env, model):
    logic, _, runner, volume, _ = env
    logic.segment(volume, SegmentOptions(str(model)))
    assert "--force" not in runner.args
    runner.play([], exitCode=130)
    logic.segment(volume, SegmentOptions(str(model), force=True))
    assert "--force" in runner.args


def test_a_non_hu_refusal_names_the_checkbox_that_overrides_it(env, model):
    from PancreasSegModuleLib.segmentFlow import FORCE_CHECKBOX_TEXT

    logic, _, runner, volume, _ = env
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), rec.callbacks())
    runner.play(['{"event": "error", "message": "in.nrrd: does not look like a CT: values 0..255 '
                 '(use --force to segment it anyway)"}\n'], exitCode=2)
    assert len(rec.errors) == 1 and "--force" not in rec.errors[0]
    assert f"tick '{FORCE_CHECKBOX_TEXT}' under Advanced" in rec.errors[0]
    ui = (Path(__file__).resolve().parents[1] / "PancreasSeg/Resources/UI/PancreasSeg.ui").read_text(encoding="utf-8")
    assert f"<string>{FORCE_CHECKBOX_TEXT}:</string>" in ui and "<string>force</string>" in ui


def test_temporary_folder_is_removed_after_the_run(env, model, tmp_path):
    logic, _, runner, volume, _ = env
    logic.segment(volume, SegmentOptions(str(model)))
    temp = Path(runner.args[4]).parent
    assert temp.is_dir()
    runner.play([], stderr="boom\n", exitCode=1)
    assert not temp.exists()


def test_cancel_kills_the_runner_and_leaves_the_scene_untouched(env, model):
    logic, scene, runner, volume, _ = env
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), rec.callbacks())
    assert logic.isRunning()
    nodes_before = list(scene.nodes)
    logic.cancel()
    assert runner.cancelCalls == 1
    runner.play([done_line()], before_finish=lambda: writeFakeOutput(runner.args))
    assert rec.cancelled == 1 and rec.done == [] and rec.errors == []
    assert scene.nodes == nodes_before and not logic.isRunning()


def test_second_run_while_running_is_refused(env, model):
    logic, _, runner, volume, _ = env
    logic.segment(volume, SegmentOptions(str(model)))
    with pytest.raises(ValueError, match="already in progress"):
        logic.segment(volume, SegmentOptions(str(model)))


def _segment_once(logic, runner, volume, model, content=b"first"):
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), rec.callbacks())
    runner.play([done_line()], before_finish=lambda: writeFakeOutput(runner.args, content))
    return rec.done[0]


def test_rerun_asks_and_keeps_the_old_result_when_declined(env, model):
    logic, scene, runner, volume, answers = env
    first = _segment_once(logic, runner, volume, model)
    runner.args = None
    answers.append(False)
    assert logic.segment(volume, SegmentOptions(str(model))) is False
    assert runner.args is None and scene.findResult(volume) is first


def test_rerun_replaces_the_old_result_only_after_confirmation(env, model):
    logic, scene, runner, volume, answers = env
    first = _segment_once(logic, runner, volume, model)
    answers.append(True)
    second = _segment_once(logic, runner, volume, model, b"second")
    assert scene.findResult(volume) is second
    assert first.segmentation not in scene.nodes and first.proposal not in scene.nodes and first.roi not in scene.nodes
    assert second.segmentation.props["source"] == b"second"


def test_failed_rerun_keeps_the_old_result(env, model):
    logic, scene, runner, volume, answers = env
    first = _segment_once(logic, runner, volume, model)
    answers.append(True)
    logic.segment(volume, SegmentOptions(str(model)))
    runner.play([], stderr="error\n", exitCode=1)
    assert scene.findResult(volume) is first and first.segmentation in scene.nodes


def test_rerun_inside_roi_writes_the_moved_roi_in_lps_and_keeps_the_roi_node(env, model):
    logic, scene, runner, volume, answers = env
    first = _segment_once(logic, runner, volume, model)
    moved = roiFromRas((5.0, -7.0, 12.0), (30.0, 30.0, 40.0), ((1, 0, 0), (0, 1, 0), (0, 0, 1)))
    first.roi.props["geometry"] = moved
    answers.append(True)
    captured = {}

    def check():
        captured.update(json.loads(Path(runner.argument("--roi")).read_text(encoding="utf-8")))
        writeFakeOutput(runner.args)

    rec = Recorder()
    logic.rerunInsideRoi(volume, SegmentOptions(str(model), marginMm=20.0), rec.callbacks())
    assert runner.argument("--margin-mm") == "0"
    runner.play([done_line()], before_finish=check)
    assert captured["coordinate_system"] == "LPS" and captured["center"] == [-5.0, 7.0, 12.0]
    assert captured["axes"][0] == [-1.0, -0.0, 0.0] and captured["size"] == [30.0, 30.0, 40.0]
    assert rec.done[0].roi is first.roi and first.roi in scene.nodes


def test_rerun_inside_roi_without_a_result_is_refused(env, model):
    logic, _, _, volume, _ = env
    with pytest.raises(ValueError, match="no ROI"):
        logic.rerunInsideRoi(volume, SegmentOptions(str(model)))


def test_correct_opens_the_segment_editor_with_segmentation_and_volume(env, model):
    logic, scene, runner, volume, _ = env
    result = _segment_once(logic, runner, volume, model)
    logic.openInSegmentEditor(volume)
    assert scene.calls[-1] == ("openSegmentEditor", result.segmentation.name, "CT abdomen")


def test_export_command_line_holds_every_field_and_the_summary_is_parsed(env, model, tmp_path):
    logic, scene, runner, volume, _ = env
    _segment_once(logic, runner, volume, model)
    rec = Recorder()
    options = ExportOptions(str(tmp_path / "Dataset001_Pancreas"), "case_0001", "AB", "approved", "looks fine")
    logic.exportForTraining(volume, options, callbacks=rec.callbacks())
    args = runner.args
    assert args[:4] == ["/opt/slicer/bin/PythonSlicer", "-m", "PancreasSegLib", "export"]
    assert runner.argument("--dataset") == options.datasetFolder and runner.argument("--case-id") == "case_0001"
    assert runner.argument("--reviewer") == "AB" and runner.argument("--status") == "approved"
    assert runner.argument("--note") == "looks fine" and args[-1] == "--json"
    assert Path(runner.argument("--label")).read_bytes() == b"first"
    assert Path(runner.argument("--proposal")).read_bytes() == b"first"
    runner.play(["progress text\n", json.dumps({"dice": 0.912, "volume_change_ml": -3.25, "case_id": "case_0001"})])
    summary = rec.done[0]
    assert summary.dice == pytest.approx(0.912) and summary.volumeChangeMl == pytest.approx(-3.25)
    assert "0.912" in summary.text and "-3.2 mL" in summary.text


def test_export_refuses_bad_case_ids_and_missing_dataset_parent(env, model, tmp_path):
    logic, _, runner, volume, _ = env
    _segment_once(logic, runner, volume, model)
    runner.args = None
    with pytest.raises(ValueError, match="invalid case ID"):
        logic.exportForTraining(volume, ExportOptions(str(tmp_path / "ds"), "../evil"))
    with pytest.raises(ValueError, match="does not exist"):
        logic.exportForTraining(volume, ExportOptions(str(tmp_path / "no" / "ds"), "case1"))
    with pytest.raises(ValueError, match="Status"):
        logic.exportForTraining(volume, ExportOptions(str(tmp_path / "ds"), "case1", status="maybe"))
    assert runner.args is None


@pytest.mark.parametrize("folder", [".", "", "  "])
def test_an_unset_dataset_folder_is_no_dataset_folder_chosen_and_nothing_is_written(env, model, tmp_path, monkeypatch,
                                                                                     folder):
    logic, scene, runner, volume, _ = env
    _segment_once(logic, runner, volume, model)
    work = tmp_path / "slicer-working-folder"
    work.mkdir()
    monkeypatch.chdir(work)  # "." would be Slicer's working folder
    runner.args, calls = None, len(scene.calls)
    with pytest.raises(ValueError, match="No dataset folder chosen"):
        logic.exportForTraining(volume, ExportOptions(folder, "case_0001"))
    with pytest.raises(ValueError, match="No dataset folder chosen"):
        logic.openCase(folder, "case_0001")
    assert runner.args is None and scene.calls[calls:] == [] and os.listdir(work) == []


def test_the_model_choices_always_hold_and_point_at_the_model_in_use(tmp_path):
    from PancreasSegModuleLib.modelBundle import modelChoices

    bundled, tuned, other = tmp_path / "bundled", str(tmp_path / "v2"), str(tmp_path / "elsewhere" / "m")
    choices, index = modelChoices(bundled, [tuned], str(bundled))
    assert [c.path for c in choices] == [str(bundled), tuned] and index == 0
    choices, index = modelChoices(bundled, [tuned], tuned + "/")
    assert choices[index].path == tuned and len(choices) == 2
    choices, index = modelChoices(bundled, [tuned], other)
    assert choices[index].path == other and choices[index].label == "m (from a folder)"
    choices, index = modelChoices(bundled, [tuned], ".")
    assert choices[index].path == "" and "no model" in choices[index].label


def test_export_without_a_json_summary_reports_an_error(env, model, tmp_path):
    logic, _, runner, volume, _ = env
    _segment_once(logic, runner, volume, model)
    rec = Recorder()
    logic.exportForTraining(volume, ExportOptions(str(tmp_path / "ds"), "case1"), callbacks=rec.callbacks())
    runner.play(["nothing useful\n"])
    assert rec.errors and "no JSON summary" in rec.errors[0]


def test_open_case_loads_image_label_and_hidden_proposal(env, tmp_path):
    logic, scene, _, _, _ = env
    dataset = tmp_path / "Dataset001_Pancreas"
    for sub, name, content in (("imagesTr", "case1_0000.nii.gz", b"img"), ("labelsTr", "case1.nii.gz", b"lab"),
                               ("proposals", "case1.nii.gz", b"prop")):
        (dataset / sub).mkdir(parents=True, exist_ok=True)
        (dataset / sub / name).write_bytes(content)
    (dataset / "dataset.json").write_text(json.dumps({"file_ending": ".nii.gz"}))
    result = logic.openCase(str(dataset), "case1")
    assert result.volume.props["path"].endswith("imagesTr/case1_0000.nii.gz")
    assert result.segmentation.props["source"] == b"lab" and not result.segmentation.props["hidden"]
    assert result.proposal.props["source"] == b"prop" and result.proposal.props["hidden"]
    assert scene.findResult(result.volume) is result


def test_open_case_names_the_missing_file(env, tmp_path):
    logic, _, _, _, _ = env
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "imagesTr" / "case1_0000.nii.gz").write_bytes(b"img")
    with pytest.raises(ValueError, match="labelsTr/case1.nii.gz is missing"):
        logic.openCase(str(tmp_path), "case1")


FAKE_COMMAND = r'''
import json, sys, time
args = sys.argv[1:]
assert args[:2] == ["-m", "PancreasSegLib"], args
out = args[args.index("-o") + 1]
for stage in ("read", "localize", "segment", "postprocess", "write"):
    print(json.dumps({"event": "progress", "stage": stage, "fraction": 1.0, "message": stage}), flush=True)
open(out, "wb").write(b"real")
print(json.dumps({"event": "done", "outputs": {"segmentation": out}, "roi": %s}), flush=True)
'''


def test_logic_with_the_real_background_runner_imports_the_result(tmp_path, model):
    from PancreasSegModuleLib.processRunner import BackgroundProcess

    script = tmp_path / "fake_python"
    script.write_text(f"#!{sys.executable}\n" + FAKE_COMMAND % json.dumps(ROI_LPS))
    script.chmod(0o755)
    scene = FakeScene()
    logic = SegmentationLogic(scene, BackgroundProcess(), pythonExecutable=str(script), tempRoot=str(tmp_path))
    volume = scene.add("CT", "volume")
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), rec.callbacks())
    result = logic.wait(timeoutSeconds=60)
    assert result.segmentation.props["source"] == b"real"
    assert [m for _, m in rec.progress] == ["read", "localize", "segment", "postprocess", "write"]
