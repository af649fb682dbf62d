"""The module's "Fine-tune on curated set", dependency checks and model notes, through the test doubles."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
from module_doubles import FakeRunner, FakeScene, writeFakeBundle, writeFakeOutput
from PancreasSegModuleLib import dependencies
from PancreasSegModuleLib.logicTypes import (
    Callbacks,
    ExportOptions,
    FineTuneOptions,
    SegmentationResult,
    SegmentOptions,
)
from PancreasSegModuleLib.modelBundle import validateModelFolder
from PancreasSegModuleLib.segmentationLogic import SegmentationLogic

from PancreasSegLib.pipeline.roi import ROI


@pytest.fixture
def model(tmp_path):
    return writeFakeBundle(tmp_path / "models" / "pancreas-phantom-v1")


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "curated" / "Dataset501_Curated"
    (folder / "labelsTr").mkdir(parents=True)
    (folder / "dataset.json").write_text("{}")
    return folder


@pytest.fixture
def env(tmp_path):
    scene, runner, asked = FakeScene(), FakeRunner(), []
    answer = {"value": True}

    def check(action):
        asked.append(action)
        return answer["value"]

    runs = tmp_path / "runs"
    runs.mkdir()
    logic = SegmentationLogic(scene, runner, pythonExecutable="PythonSlicer", confirm=lambda q: True,
                              tempRoot=str(runs), checkDependencies=check)
    return logic, scene, runner, asked, answer, runs


class Recorder:
    def __init__(self):
        self.progress, self.done, self.errors, self.cancelled, self.messages = [], [], [], 0, []

    def callbacks(self):
        return Callbacks(onProgress=lambda f, m: self.progress.append((f, m)), onDone=self.done.append,
                         onError=self.errors.append, onCancelled=self._cancel, onMessage=self.messages.append)

    def _cancel(self):
        self.cancelled += 1


def _event(**data) -> str:
    return json.dumps(data) + "\n"


# -- fine-tune --------------------------------------------------------------------------------------------

def test_fine_tune_runs_train_on_the_dataset_from_the_current_model_into_a_bundle_beside_the_dataset(
        env, model, dataset):
    logic, _, runner, asked, _, _ = env
    assert logic.fineTune(str(model), FineTuneOptions(str(dataset), "pancreas-curated-v2", 5.0, "cpu"))
    expected_output = str(dataset.parent / "pancreas-curated-v2")
    assert runner.args == ["PythonSlicer", "-m", "PancreasSegLib", "train", str(dataset), "-o", expected_output,
                           "--stage", "both", "--init", str(model), "--minutes", "5", "--device", "cpu",
                           "--progress", "jsonl"]
    assert asked == ["train"] and logic.runningKind == "train"


def test_fine_tune_command_line_is_one_the_real_train_command_accepts(env, model, dataset):
    from PancreasSegLib.commands import train

    logic, _, runner, _, _, _ = env
    logic.fineTune(str(model), FineTuneOptions(str(dataset), "v2", 2.5))
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(runner.args[4:])
    assert (args.dataset, args.init, args.minutes, args.stage, args.progress) == (
        str(dataset), str(model), 2.5, "both", "jsonl")
    assert args.output == str(dataset.parent / "v2")


@pytest.mark.parametrize("change, message", [
    ({"bundleName": ""}, "Give the new model a name"),
    ({"bundleName": "../evil"}, "Invalid model name"),
    ({"bundleName": "a/b"}, "Invalid model name"),
    ({"minutes": 0.0}, "time budget"),
    ({"datasetFolder": ""}, "No dataset folder chosen"),
    ({"datasetFolder": "."}, "No dataset folder chosen"),
])
def test_fine_tune_refuses_bad_names_budgets_and_datasets_before_anything_runs(env, model, dataset, change,
                                                                                 message):
    logic, _, runner, asked, _, runs = env
    options = {"datasetFolder": str(dataset), "bundleName": "v2", "minutes": 10.0, **change}
    with pytest.raises(ValueError, match=message):
        logic.fineTune(str(model), FineTuneOptions(**options))
    assert runner.args is None and asked == [] and list(runs.iterdir()) == []


def test_fine_tune_refuses_a_folder_that_is_not_a_curated_dataset_and_an_existingwriteFakeBundle(env, model, dataset,
                                                                                         tmp_path):
    logic, _, runner, _, _, _ = env
    with pytest.raises(ValueError, match="not a curated dataset"):
        logic.fineTune(str(model), FineTuneOptions(str(tmp_path), "v2"))
    writeFakeBundle(dataset.parent / "taken")
    with pytest.raises(ValueError, match="already exists"):
        logic.fineTune(str(model), FineTuneOptions(str(dataset), "taken"))
    assert runner.args is None


def test_fine_tune_progress_follows_the_training_stages_and_stderr_lines_become_messages(env, model, dataset):
    logic, _, runner, _, _, _ = env
    rec = Recorder()
    logic.fineTune(str(model), FineTuneOptions(str(dataset), "v2"), rec.callbacks())
    runner.play([
        _event(event="progress", stage="preprocess", fraction=1.0, message="case 3 of 3"),
        _event(event="progress", stage="localizer", fraction=0.5, message="localizer iteration 4"),
        _event(event="progress", stage="segmenter", fraction=0.2, message="segmenter iteration 2"),
        _event(event="progress", stage="segmenter", fraction=0.9, message="segmenter iteration 9"),
    ], stderr="pancreasseg train: error: dataset.json: no training cases\n", exitCode=2)
    fractions = [f for f, _ in rec.progress]
    assert fractions == sorted(fractions) and fractions[0] == pytest.approx(0.1) and fractions[-1] < 1.0
    assert rec.messages == ["pancreasseg train: error: dataset.json: no training cases"]
    assert rec.errors == ["pancreasseg train: error: dataset.json: no training cases"]


def test_successful_fine_tune_registers_the_new_bundle_as_a_model_choice(env, model, dataset):
    logic, _, runner, _, _, runs = env
    rec = Recorder()
    logic.fineTune(str(model), FineTuneOptions(str(dataset), "v2"), rec.callbacks())
    output = runner.argument("-o")
    runner.play([_event(event="done", outputs={"bundle": output}, roi=None, seconds=1.0)],
                before_finish=lambda: writeFakeBundle(Path(output), name="v2"))
    assert rec.errors == [] and len(rec.done) == 1
    info = rec.done[0]
    assert str(info.path) == output and info.name == "v2"
    assert logic.registeredModels == [output] and not logic.isRunning()
    logic.registerModel(output)  # registering again keeps one entry
    assert logic.registeredModels == [output] and list(runs.iterdir()) == []


@pytest.mark.parametrize("how", ["failed", "cancelled", "no bundle written"])
def test_nothing_is_registered_when_fine_tuning_fails_or_is_cancelled(env, model, dataset, how):
    logic, _, runner, _, _, runs = env
    rec = Recorder()
    logic.fineTune(str(model), FineTuneOptions(str(dataset), "v2"), rec.callbacks())
    output = runner.argument("-o")
    if how == "failed":
        runner.play([_event(event="error", message="segmenter: the loss became nan")], exitCode=1)
    elif how == "cancelled":
        logic.cancel()
        runner.play([], exitCode=130)
    else:
        runner.play([_event(event="done", outputs={"bundle": output})])
    assert logic.registeredModels == [] and rec.done == []
    assert rec.cancelled == (how == "cancelled") and len(rec.errors) == (how != "cancelled")
    if how == "failed":
        assert rec.errors == ["segmenter: the loss became nan"]
    assert list(runs.iterdir()) == [] and not logic.isRunning()


def test_a_second_fine_tune_while_one_runs_is_refused(env, model, dataset):
    logic, _, _, _, _, _ = env
    logic.fineTune(str(model), FineTuneOptions(str(dataset), "v2"))
    with pytest.raises(ValueError, match="already in progress"):
        logic.fineTune(str(model), FineTuneOptions(str(dataset), "v3"))


# -- dependencies before every background command ---------------------------------------------------------

def test_every_action_that_starts_a_command_checks_its_dependencies_first(env, model, dataset, tmp_path):
    logic, scene, runner, asked, _, _ = env
    volume = scene.add("CT", "volume")
    logic.segment(volume, SegmentOptions(str(model)))
    runner.play([], before_finish=lambda: writeFakeOutput(runner.args))
    roi = scene.add("ROI", "roi", geometry=ROI((0, 0, 0), (50, 50, 50)))
    result = scene.findResult(volume)
    result.roi = roi
    logic.rerunInsideRoi(volume, SegmentOptions(str(model)))
    runner.play([], before_finish=lambda: writeFakeOutput(runner.args))
    logic.exportForTraining(volume, ExportOptions(str(tmp_path / "ds"), "case1"))
    runner.play(['{"dice": 1.0}'])
    logic.fineTune(str(model), FineTuneOptions(str(dataset), "v2"))
    assert asked == ["segment", "segment", "export", "train"]


def test_declined_dependencies_start_nothing_and_leave_no_temporary_folder(env, model, dataset, tmp_path):
    logic, scene, runner, asked, answer, runs = env
    answer["value"] = False
    volume = scene.add("CT", "volume")
    assert logic.segment(volume, SegmentOptions(str(model))) is False
    scene.linkResult(SegmentationResult(volume, scene.add("seg", "segmentation", source=b"x"),
                                        roi=scene.add("ROI", "roi", geometry=ROI((0, 0, 0), (5, 5, 5)))))
    assert logic.rerunInsideRoi(volume, SegmentOptions(str(model))) is False
    assert logic.exportForTraining(volume, ExportOptions(str(tmp_path / "ds"), "case1")) is False
    assert logic.fineTune(str(model), FineTuneOptions(str(dataset), "v2")) is False
    assert runner.args is None and list(runs.iterdir()) == [] and not logic.isRunning()
    assert asked == ["segment", "segment", "export", "train"]


def test_export_needs_no_pytorch_but_segment_and_train_do():
    def finder(name):
        return object() if name == "SimpleITK" else None
    assert dependencies.missingPackages("export", finder) == []
    assert "torch" in dependencies.missingPackages("segment", finder)
    assert dependencies.missingPackages("train", finder) == dependencies.missingPackages("segment", finder)
    with pytest.raises(KeyError):
        dependencies.missingPackages("anything", finder)


# -- export records the model of the proposal ----------------------------------------------------------------

def test_export_passes_the_model_that_made_the_proposal(env, model, tmp_path):
    logic, scene, runner, _, _, _ = env
    volume = scene.add("CT", "volume")
    logic.segment(volume, SegmentOptions(str(model)))
    runner.play([], before_finish=lambda: writeFakeOutput(runner.args))
    logic.exportForTraining(volume, ExportOptions(str(tmp_path / "ds"), "case1"))
    assert runner.argument("--model") == str(model)
    runner.play(['{"dice": 1.0}'])
    shutil.rmtree(model)  # a bundle deleted since the segmentation: export without it rather than fail
    logic.exportForTraining(volume, ExportOptions(str(tmp_path / "ds"), "case1"))
    assert "--model" not in runner.args


# -- what the UI says about the model -----------------------------------------------------------------------

def test_the_bundled_phantom_model_carries_the_phantom_research_use_note(tmp_path):
    info = validateModelFolder(writeFakeBundle(tmp_path / "m", description="Two-phase pancreas model trained on "
                                                                   "synthetic phantoms."))
    assert info.trainedOnPhantoms
    assert "trained on synthetic phantoms" in info.warning.lower() and "research use only" in info.warning
    assert "synthetic phantoms" in info.summary


def test_a_random_bundle_is_called_untrained_and_another_model_still_research_use_only(tmp_path):
    random = validateModelFolder(writeFakeBundle(tmp_path / "r", name="pancreas-random-tiny",
                                         description="Untrained two-phase pancreas model (random weights)."))
    assert random.untrained and "random weights" in random.warning
    other = validateModelFolder(writeFakeBundle(tmp_path / "o", name="curated-v2", description="Fine-tuned."))
    assert not other.untrained and not other.trainedOnPhantoms
    assert other.warning == "Research use only, not for clinical use."
