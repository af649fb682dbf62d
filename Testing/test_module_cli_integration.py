"""The module's Logic driving the REAL command line (no Slicer): real runner, real files, real JSON.

The scene is the test double, extended to read and write real images; the command is
``python -m PancreasSegLib`` of this checkout; the model a tiny random bundle; the CT a coarse phantom.
These tests pin what the Logic passes (argument names, output file names) to what the commands accept,
and what it reads (jsonl events, ``done`` outputs and ROI, ``export --json`` keys) to what they print.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from bundle_doubles import make_random_bundle
from module_doubles import FakeScene
from PancreasSegModuleLib.logicTypes import Callbacks, ExportOptions, SegmentationResult, SegmentOptions
from PancreasSegModuleLib.processRunner import BackgroundProcess
from PancreasSegModuleLib.roiGeometry import rasBox
from PancreasSegModuleLib.segmentationLogic import SegmentationLogic

from PancreasSegLib.model.configs import tiny_config
from PancreasSegLib.phantoms.generator import make_phantom
from PancreasSegLib.pipeline.roi import ROI

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600


class FileScene(FakeScene):
    """The scene double with real files: volumes hold a SimpleITK image, segmentations a label array."""

    def addVolume(self, name, image):
        return self.add(name, "volume", image=image)

    def writeVolume(self, volumeNode, path):
        self.calls.append(("writeVolume", volumeNode.name, path))
        sitk.WriteImage(volumeNode.props["image"], path)

    def importSegmentation(self, path, volumeNode, name, labels, hidden=False):
        self.calls.append(("importSegmentation", path, volumeNode.name, name, hidden))
        label = sitk.ReadImage(path)
        return self.add(name, "segmentation", array=sitk.GetArrayFromImage(label), labels=list(labels),
                        hidden=hidden, referenceVolume=volumeNode, grid=_grid(label))

    def copySegmentation(self, segmentationNode, name):
        self.calls.append(("copySegmentation", segmentationNode.name, name))
        return self.add(name, "segmentation", array=segmentationNode.props["array"].copy(), hidden=True)

    def exportLabelmap(self, segmentationNode, volumeNode, path, labels):
        self.calls.append(("exportLabelmap", segmentationNode.name, volumeNode.name, path))
        label = sitk.GetImageFromArray(segmentationNode.props["array"].astype(np.uint8))
        label.CopyInformation(volumeNode.props["image"])
        sitk.WriteImage(label, path)

    def loadVolume(self, path, name):
        self.calls.append(("loadVolume", path, name))
        return self.add(name, "volume", image=sitk.ReadImage(path), path=path)

    def loadProbabilityMap(self, path, name):
        return self.add(name, "volume", image=sitk.ReadImage(path))


class RecordingProcess(BackgroundProcess):
    """The real runner, also keeping the command line and every stdout line for the assertions."""

    def start(self, args, onStdout=None, **kwargs):
        self.args, self.lines = list(args), []

        def record(text):
            self.lines.append(text)
            if onStdout is not None:
                onStdout(text)

        super().start(args, onStdout=record, **kwargs)

    def argument(self, flag):
        return self.args[self.args.index(flag) + 1]

    def events(self):
        return [json.loads(line) for line in "".join(self.lines).splitlines() if line.startswith("{")]


class Recorder:
    def __init__(self):
        self.progress, self.done, self.errors, self.cancelled = [], [], [], 0

    def callbacks(self, onProgress=None):
        def progress(fraction, message):
            self.progress.append((fraction, message))
            if onProgress is not None:
                onProgress(fraction, message)

        return Callbacks(onProgress=progress, onDone=self.done.append, onError=self.errors.append,
                         onCancelled=self._cancel)

    def _cancel(self):
        self.cancelled += 1


def _grid(image):
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def _same_grid(a, b, tolerance=1e-9):
    """Same size, and spacing, origin and direction equal up to round-off (not up to float32 headers)."""
    return a[0] == b[0] and all(np.allclose(x, y, rtol=0, atol=tolerance) for x, y in zip(a[1:], b[1:]))


@pytest.fixture(scope="module")
def phantom():
    # Coarse (6 mm) so that the real command runs in seconds; oblique, as the phantom generator makes it.
    return make_phantom(3, preset="small", spacing=(6.0, 6.0, 6.0))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    # A random localizer scores below any sensible threshold; at 0 it always "finds" something, so the
    # whole two-phase path runs.
    eager = tiny_config()
    eager["stages"]["localizer"]["score_threshold"] = 0.0
    found = make_random_bundle(root / "random-eager", seed=0, config=eager)
    silent = make_random_bundle(root / "random", seed=0)
    corrupt = Path(shutil.copytree(silent, root / "corrupt"))
    weights = corrupt / "segmenter.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    return {"found": found, "silent": silent, "corrupt": corrupt}


@pytest.fixture
def env(tmp_path, phantom):
    scene = FileScene()
    runner = RecordingProcess(terminateGraceSeconds=10.0)
    answers = []
    runs = tmp_path / "runs"
    runs.mkdir()
    logic = SegmentationLogic(scene, runner, pythonExecutable="", libraryRoot=str(ROOT),
                              commandPrefix=[sys.executable, "-m", "PancreasSegLib"],
                              confirm=lambda question: answers.pop(0) if answers else False, tempRoot=str(runs))
    volume = scene.addVolume("CT phantom", phantom[0])
    return logic, scene, runner, volume, answers, runs


def _wait(logic):
    try:
        return logic.wait(timeoutSeconds=TIMEOUT)
    except RuntimeError:
        return None  # the callbacks hold what happened


def test_segment_pancreas_runs_the_real_command_and_imports_the_files_it_reports(env, bundles, phantom):
    logic, _, runner, volume, _, runs = env
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(bundles["found"]), device="cpu", keepProbabilities=True),
                  rec.callbacks())
    result = _wait(logic)
    assert rec.errors == [] and rec.done == [result]

    # What the Logic asked for is what the command wrote and reported in its "done" event.
    done = runner.events()[-1]
    assert done["event"] == "done"
    assert done["outputs"]["segmentation"] == runner.argument("-o") and runner.argument("-o").endswith(
        "segmentation.nrrd")
    assert done["outputs"]["roi"] == runner.argument("--roi-out") and runner.argument("--roi-out").endswith("roi.json")
    assert done["outputs"]["probabilities"] == runner.argument("--probabilities")
    assert runner.argument("--model") == str(bundles["found"]) and runner.argument("--progress") == "jsonl"

    # The imported label map has exactly the CT's grid; the proposal is a hidden copy of it.
    image = phantom[0]
    assert _same_grid(result.segmentation.props["grid"], _grid(image))
    assert result.segmentation.name == "CT phantom pancreas" and result.segmentation.props["referenceVolume"] is volume
    assert np.array_equal(result.proposal.props["array"], result.segmentation.props["array"])
    assert result.proposal.props["hidden"] and result.probabilities is not None
    assert result.modelPath == str(bundles["found"])

    # The ROI node gets the command's LPS box in RAS.
    roi = rasBox(result.roi.props["geometry"])
    lps = done["roi"]
    assert roi.center == pytest.approx((-lps["center"][0], -lps["center"][1], lps["center"][2]))
    assert roi.size == pytest.approx(tuple(lps["size"]))
    assert roi.axes[1] == pytest.approx((-lps["axes"][1][0], -lps["axes"][1][1], lps["axes"][1][2]))

    # The bar followed the real stream: every stage, never backwards, ending full.
    fractions = [f for f, _ in rec.progress]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    stages = [e["stage"] for e in runner.events() if e["event"] == "progress"]
    assert {"read", "localize", "segment", "postprocess", "write"} <= set(stages)
    assert any(m.startswith("reading ") for _, m in rec.progress)
    assert list(runs.iterdir()) == []  # the temporary run folder is gone


def test_rerun_inside_roi_runs_phase_2_only_inside_the_moved_roi(env, bundles, phantom):
    logic, scene, runner, volume, answers, runs = env
    image = phantom[0]
    center = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    axes = np.array(image.GetDirection()).reshape(3, 3).T  # columns: the i, j, k axes in LPS
    # A previous result whose ROI the user moved onto the middle of the CT.
    moved = ROI.from_json({"center": list(center), "size": [90.0, 90.0, 60.0], "axes": axes.tolist()})
    previous = SegmentationResult(volume, scene.add("old", "segmentation", array=np.zeros(1)),
                                  roi=scene.add("old ROI", "roi", geometry=moved))
    scene.linkResult(previous)
    answers.append(True)
    rec = Recorder()
    logic.rerunInsideRoi(volume, SegmentOptions(str(bundles["silent"]), device="cpu"), rec.callbacks())
    assert runner.argument("--margin-mm") == "0" and runner.argument("--roi").endswith("roi-in.json")
    result = _wait(logic)
    assert rec.errors == [], rec.errors
    stages = {e["stage"] for e in runner.events() if e["event"] == "progress"}
    assert "localize" not in stages and "segment" in stages  # phase 1 was skipped
    done = runner.events()[-1]
    # The command segmented the box it was given (possibly grown, never moved off its center).
    assert done["roi"]["center"] == pytest.approx(list(center), abs=0.01)
    assert result.roi is previous.roi and previous.segmentation not in scene.nodes
    assert _same_grid(result.segmentation.props["grid"], _grid(image))
    assert list(runs.iterdir()) == []


def test_cancel_kills_the_real_command_and_leaves_scene_and_temp_folder_as_they_were(env, bundles):
    logic, scene, runner, volume, _, runs = env
    nodes = list(scene.nodes)
    rec = Recorder()
    # Cancel on the first progress line: the command is then inside its own cancel handling.
    logic.segment(volume, SegmentOptions(str(bundles["found"]), device="cpu"),
                  rec.callbacks(onProgress=lambda fraction, message: logic.cancel()))
    group = runner.pid
    assert _wait(logic) is None
    assert rec.cancelled == 1 and rec.done == [] and rec.errors == []
    assert scene.nodes == nodes and scene.results == [] and not logic.isRunning()
    assert list(runs.iterdir()) == []
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)  # nothing of the process group is left


@pytest.mark.parametrize("which, expected", [
    ("corrupt", "sha256"),  # fails while loading the bundle
    # A random localizer finds nothing: the command refuses to guess (a full torch start-up: slow).
    pytest.param("silent", "no pancreas found", marks=pytest.mark.slow),
])
def test_an_error_of_the_real_command_surfaces_as_one_line(env, bundles, which, expected):
    logic, scene, _, volume, _, runs = env
    nodes = list(scene.nodes)
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(bundles[which]), device="cpu"), rec.callbacks())
    assert _wait(logic) is None
    assert len(rec.errors) == 1 and expected in rec.errors[0] and "\n" not in rec.errors[0]
    assert "Traceback" not in rec.errors[0]
    assert scene.nodes == nodes and scene.results == [] and list(runs.iterdir()) == []


def _corrected(label: np.ndarray) -> np.ndarray:
    """The proposal with two slices erased: what a reviewer's correction might look like."""
    out = label.copy()
    rows = np.flatnonzero(label.reshape(label.shape[0], -1).any(axis=1))
    out[rows[:2]] = 0
    return out


def test_export_runs_the_real_export_and_shows_its_dice_and_volume_change(env, bundles, phantom, tmp_path):
    logic, scene, runner, volume, _, runs = env
    image, label = phantom
    proposal = (sitk.GetArrayFromImage(label) == 1).astype(np.uint8)
    corrected = _corrected(proposal)
    result = SegmentationResult(volume, scene.add("CT phantom pancreas", "segmentation", array=corrected),
                                proposal=scene.add("proposal", "segmentation", array=proposal),
                                modelPath=str(bundles["silent"]))
    scene.linkResult(result)
    dataset = tmp_path / "Dataset501_Curated"
    rec = Recorder()
    options = ExportOptions(str(dataset), "case_0001", "AB", "corrected", "two slices removed")
    assert logic.exportForTraining(volume, options, callbacks=rec.callbacks())
    assert runner.argument("--model") == str(bundles["silent"])
    summary = _wait(logic)
    assert rec.errors == [] and rec.done == [summary]

    # The numbers shown are the ones the command computed, read from its real JSON keys.
    printed = json.loads(runner.lines[-1])
    assert summary.dice == pytest.approx(printed["dice"]) and summary.volumeChangeMl == pytest.approx(
        printed["volume_change_ml"])
    dice = 2 * np.logical_and(corrected, proposal).sum() / (corrected.sum() + proposal.sum())
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    assert summary.dice == pytest.approx(dice, abs=1e-3)
    change_ml = (int(corrected.sum()) - int(proposal.sum())) * voxel_ml
    assert summary.volumeChangeMl == pytest.approx(change_ml, abs=1e-3) and summary.volumeChangeMl < 0
    assert summary.editedSlices == 2 and "Dice vs proposal" in summary.text and "2 edited slice(s)" in summary.text

    # The dataset holds the case with the proposal's model in its provenance.
    for sub, name in (("imagesTr", "case_0001_0000.nii.gz"), ("labelsTr", "case_0001.nii.gz"),
                      ("proposals", "case_0001.nii.gz")):
        assert (dataset / sub / name).is_file()
    provenance = json.loads((dataset / "provenance" / "case_0001.json").read_text(encoding="utf-8"))
    assert "pancreas-random-tiny" in json.dumps(provenance)
    assert list(runs.iterdir()) == []

    # "Open case" loads it back with the same label; exporting it again keeps the first as history.
    reopened = logic.openCase(str(dataset), "case_0001")
    assert np.array_equal(reopened.segmentation.props["array"], corrected)
    assert np.array_equal(reopened.proposal.props["array"], proposal)
    rec = Recorder()
    logic.exportForTraining(reopened.volume, options, callbacks=rec.callbacks())
    again = _wait(logic)
    assert rec.errors == [] and again.data["revision"] == 2 and "history" in again.text


def test_a_refused_export_surfaces_the_commands_one_line_message(env, phantom, tmp_path):
    logic, scene, _, volume, _, runs = env
    # A label value the dataset does not declare: the command refuses it and writes nothing.
    bad = (sitk.GetArrayFromImage(phantom[1]) > 0).astype(np.uint8) * 7
    scene.linkResult(SegmentationResult(volume, scene.add("bad", "segmentation", array=bad)))
    dataset = tmp_path / "Dataset502_Curated"
    rec = Recorder()
    logic.exportForTraining(volume, ExportOptions(str(dataset), "case_0001"), callbacks=rec.callbacks())
    assert _wait(logic) is None
    assert len(rec.errors) == 1 and rec.errors[0].startswith("pancreasseg export: error:")
    assert not (dataset / "labelsTr" / "case_0001.nii.gz").exists() and list(runs.iterdir()) == []
