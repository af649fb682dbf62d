"""The PancreasSeg Logic: inputs -> background ``segment`` -> result in the scene -> export for training.

It reaches Slicer only through two small interfaces handed to its constructor, so it runs (and is
tested) without Slicer:

- :class:`SceneAdapter`: what it needs of the MRML scene (``sceneAdapter.SlicerSceneAdapter`` in Slicer);
- :class:`ProcessRunner`: a background command with streamed output and cancel
  (``processRunner.BackgroundProcess``).

Nothing heavy runs in this process: the work is ``python -m PancreasSegLib segment|export`` in the
background. Errors a user can fix raise ``ValueError`` with a message meant for them; the widget shows it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PancreasSegLib.labels import STANDARD_LABELS, LabelInfo

from .modelBundle import ModelInfo, validateModelFolder
from .progress import JsonLinesParser, ProgressEvent, lastErrorLine
from .roiGeometry import RoiGeometry, readRoiJson, writeRoiJson

DEVICES = ("auto", "cpu", "cuda", "mps")
REVIEW_STATUSES = ("corrected", "approved", "rejected")


class SceneAdapter(Protocol):
    """What the Logic needs of the scene. Node arguments are opaque to the Logic."""

    def nodeName(self, node: Any) -> str: ...
    def writeVolume(self, volumeNode: Any, path: str) -> None: ...
    def importSegmentation(self, path: str, volumeNode: Any, name: str, labels: Sequence[LabelInfo],
                           hidden: bool = False) -> Any: ...
    def copySegmentation(self, segmentationNode: Any, name: str) -> Any: ...
    def createRoi(self, name: str, roi: RoiGeometry, visible: bool) -> Any: ...
    def readRoi(self, roiNode: Any) -> RoiGeometry: ...
    def loadProbabilityMap(self, path: str, name: str) -> Any: ...
    def findResult(self, volumeNode: Any) -> SegmentationResult | None: ...
    def linkResult(self, result: SegmentationResult) -> None: ...
    def removeNodes(self, nodes: Sequence[Any]) -> None: ...
    def showResult(self, result: SegmentationResult) -> None: ...
    def openSegmentEditor(self, segmentationNode: Any, volumeNode: Any) -> None: ...
    def exportLabelmap(self, segmentationNode: Any, volumeNode: Any, path: str,
                       labels: Sequence[LabelInfo]) -> None: ...
    def loadVolume(self, path: str, name: str) -> Any: ...


class ProcessRunner(Protocol):
    """A background command (see ``processRunner.BackgroundProcess``)."""

    def start(self, args: Sequence[str], onStdout: Callable[[str], None] | None = None,
              onStderr: Callable[[str], None] | None = None,
              onFinished: Callable[[int, str], None] | None = None,
              env: Mapping[str, str] | None = None, cwd: str | None = None) -> None: ...
    def cancel(self) -> None: ...
    def isRunning(self) -> bool: ...
    def wait(self, timeoutSeconds: float | None = None, idle: Callable[[], None] | None = None) -> int: ...


@dataclass
class SegmentationResult:
    """The nodes of one result: what the user edits, the hidden proposal, the phase-1 ROI."""

    volume: Any
    segmentation: Any
    proposal: Any = None
    roi: Any = None
    probabilities: Any = None

    def nodes(self, keepRoi: bool = False) -> list[Any]:
        """Every node of the result except the volume (and the ROI with ``keepRoi``)."""
        nodes = [self.segmentation, self.proposal, self.probabilities] + ([] if keepRoi else [self.roi])
        return [n for n in nodes if n is not None]


@dataclass(frozen=True)
class SegmentOptions:
    """The choices of the Inputs and Advanced sections."""

    modelPath: str
    device: str = "auto"
    marginMm: float = 20.0
    showRoi: bool = True
    keepProbabilities: bool = False


@dataclass(frozen=True)
class ExportOptions:
    """The choices of the Export section."""

    datasetFolder: str
    caseId: str
    reviewer: str = ""
    status: str = "corrected"
    note: str = ""


@dataclass(frozen=True)
class ExportSummary:
    """What ``pancreasseg export --json`` reported."""

    dice: float | None
    volumeChangeMl: float | None
    data: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        """One line for the UI."""
        dice = "n/a" if self.dice is None else f"{self.dice:.3f}"
        change = "n/a" if self.volumeChangeMl is None else f"{self.volumeChangeMl:+.1f} mL"
        return f"Exported. Dice vs proposal: {dice}, volume change: {change}"


@dataclass
class Callbacks:
    """How a background run reports back (all optional)."""

    onProgress: Callable[[float, str], None] | None = None
    onDone: Callable[[Any], None] | None = None
    onError: Callable[[str], None] | None = None
    onCancelled: Callable[[], None] | None = None


@dataclass
class _Job:
    kind: str
    tempDir: str
    callbacks: Callbacks
    parser: JsonLinesParser = field(default_factory=JsonLinesParser)
    stdout: list[str] = field(default_factory=list)
    done: ProgressEvent | None = None
    error: ProgressEvent | None = None
    context: dict = field(default_factory=dict)
    closed: bool = False  # ended by shutdown(): a late end report from the runner is ignored


class PancreasSegLogic:
    """Runs segmentation and export in the background and brings the results into the scene.

    Args:
        scene: the scene interface.
        runner: the background process runner.
        pythonExecutable: the interpreter that has PancreasSegLib's dependencies (``PythonSlicer`` in Slicer).
        libraryRoot: folder holding the ``PancreasSegLib`` package, put on the child's PYTHONPATH.
        confirm: ``confirm(question) -> bool``, asked before a result is replaced (the widget shows a dialog).
            Without one, replacing is refused.
        tempRoot: where temporary run folders go (system default when None).
    """

    def __init__(self, scene: SceneAdapter, runner: ProcessRunner, pythonExecutable: str,
                 libraryRoot: str | None = None, confirm: Callable[[str], bool] | None = None,
                 tempRoot: str | None = None) -> None:
        self.scene = scene
        self.runner = runner
        self.pythonExecutable = pythonExecutable
        self.libraryRoot = libraryRoot
        self.confirm = confirm
        self.tempRoot = tempRoot
        self._job: _Job | None = None
        self.lastResult: Any = None

    # -- command lines ---------------------------------------------------------------------------------

    def commandPrefix(self) -> list[str]:
        """``python -m PancreasSegLib`` with the configured interpreter."""
        return [self.pythonExecutable, "-m", "PancreasSegLib"]

    def buildSegmentCommand(self, inputPath: str, outputPath: str, roiOutPath: str, options: SegmentOptions,
                            roiInPath: str | None = None, probabilitiesPath: str | None = None) -> list[str]:
        """The ``segment`` command line for one run (see the shared CLI contract)."""
        if options.device not in DEVICES:
            raise ValueError(f"Unknown device {options.device!r}: choose one of {', '.join(DEVICES)}.")
        if not 0.0 <= float(options.marginMm) <= 200.0:
            raise ValueError(f"ROI margin must be between 0 and 200 mm, got {options.marginMm}.")
        # A user-placed ROI is already the box to segment in: no margin on top of it.
        margin = 0.0 if roiInPath else float(options.marginMm)
        args = self.commandPrefix() + [
            "segment", inputPath, "-o", outputPath,
            "--model", str(options.modelPath),
            "--device", options.device,
            "--margin-mm", f"{margin:g}",
            "--roi-out", roiOutPath,
            "--progress", "jsonl",
        ]
        if roiInPath:
            args += ["--roi", roiInPath]
        if probabilitiesPath:
            args += ["--probabilities", probabilitiesPath]
        return args

    def buildExportCommand(self, imagePath: str, labelPath: str, proposalPath: str | None,
                           options: ExportOptions) -> list[str]:
        """The ``export`` command line (prints a JSON summary with ``--json``)."""
        args = self.commandPrefix() + ["export", "--image", imagePath, "--label", labelPath]
        if proposalPath:
            args += ["--proposal", proposalPath]
        args += ["--dataset", options.datasetFolder, "--case-id", options.caseId,
                 "--reviewer", options.reviewer, "--status", options.status]
        if options.note:
            args += ["--note", options.note]
        return args + ["--json"]

    def childEnvironment(self) -> dict[str, str]:
        """The environment of the background command: unbuffered output, PancreasSegLib importable."""
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if self.libraryRoot:
            parts = [self.libraryRoot] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
        return env

    # -- state -----------------------------------------------------------------------------------------

    def isRunning(self) -> bool:
        """True while a background command of this Logic runs."""
        return self._job is not None

    def cancel(self) -> None:
        """Kill the running command and every process it started; the scene is left as it was."""
        if self._job is not None:
            self.runner.cancel()

    def shutdown(self, timeoutSeconds: float = 10.0, quiet: bool = False) -> None:
        """End a running job now: kill its process tree, wait for it, remove its temporary files.

        For the scene's StartCloseEvent and the widget's ``cleanup`` (module closed, Slicer quitting).
        Unlike :meth:`cancel` it does not leave the end to a later timer tick, which may never come once
        the scene or the application goes; the scene is left as it was.

        Args:
            timeoutSeconds: how long to wait for the runner to report the end before cleaning up anyway.
            quiet: drop the job's callbacks first (the widget that would receive them is going away).
        """
        job = self._job
        if job is None:
            return
        if quiet:
            job.callbacks = Callbacks()
        self.runner.cancel()
        try:
            self.runner.wait(timeoutSeconds=timeoutSeconds)
        except (TimeoutError, RuntimeError):
            pass
        if self._job is job:  # the runner did not report the end in time: finish it here
            self._job = None
            job.closed = True
            shutil.rmtree(job.tempDir, ignore_errors=True)
            if job.callbacks.onCancelled is not None:
                job.callbacks.onCancelled()

    def wait(self, idle: Callable[[], None] | None = None, timeoutSeconds: float | None = None) -> Any:
        """Block until the running job ends (self-test, scripting); return its result.

        Raises:
            RuntimeError: the job failed (with the command's one-line message) or was cancelled.
        """
        outcome: dict = {}
        if self._job is None:
            raise RuntimeError("Nothing is running.")
        callbacks = self._job.callbacks
        previous = (callbacks.onDone, callbacks.onError, callbacks.onCancelled)

        def chain(index, key):
            def call(*args):
                outcome[key] = args[0] if args else None
                if previous[index] is not None:
                    previous[index](*args)
            return call

        callbacks.onDone, callbacks.onError, callbacks.onCancelled = (
            chain(0, "done"), chain(1, "error"), chain(2, "cancelled"))
        self.runner.wait(timeoutSeconds=timeoutSeconds, idle=idle)
        if "error" in outcome:
            raise RuntimeError(outcome["error"])
        if "cancelled" in outcome:
            raise RuntimeError("Cancelled.")
        return outcome.get("done")

    # -- segment ---------------------------------------------------------------------------------------

    def checkModel(self, modelPath: str) -> ModelInfo:
        """Validate the model folder (raises ValueError)."""
        return validateModelFolder(modelPath)

    def segment(self, volumeNode: Any, options: SegmentOptions, callbacks: Callbacks | None = None) -> bool:
        """Start segmenting ``volumeNode`` in the background; return False if the user kept the old result.

        Raises:
            ValueError: no volume, a run in progress, a bad model folder or bad options.
        """
        return self._startSegment(volumeNode, options, callbacks or Callbacks(), roi=None)

    def rerunInsideRoi(self, volumeNode: Any, options: SegmentOptions, callbacks: Callbacks | None = None) -> bool:
        """Run phase 2 again, only inside the result's (possibly moved) ROI."""
        result = self.scene.findResult(volumeNode) if volumeNode is not None else None
        if result is None or result.roi is None:
            raise ValueError("There is no ROI to re-run inside: run 'Segment pancreas' first.")
        return self._startSegment(volumeNode, options, callbacks or Callbacks(), roi=self.scene.readRoi(result.roi))

    def _startSegment(self, volumeNode: Any, options: SegmentOptions, callbacks: Callbacks,
                      roi: RoiGeometry | None) -> bool:
        if volumeNode is None:
            raise ValueError("Select a CT volume first.")
        if self.isRunning():
            raise ValueError("A run is already in progress: wait for it or cancel it.")
        model = self.checkModel(options.modelPath)
        existing = self.scene.findResult(volumeNode)
        if existing is not None and not self._confirmReplace(existing, roi is not None):
            return False
        tempDir = tempfile.mkdtemp(prefix="PancreasSeg-", dir=self.tempRoot)
        try:
            paths = {name: os.path.join(tempDir, file) for name, file in (
                ("input", "input.nrrd"), ("output", "segmentation.nii.gz"), ("roiOut", "roi.json"),
                ("roiIn", "roi-in.json"), ("probabilities", "probabilities.nii.gz"))}
            self.scene.writeVolume(volumeNode, paths["input"])
            if roi is not None:
                writeRoiJson(roi, paths["roiIn"])
            args = self.buildSegmentCommand(
                paths["input"], paths["output"], paths["roiOut"], options,
                roiInPath=paths["roiIn"] if roi is not None else None,
                probabilitiesPath=paths["probabilities"] if options.keepProbabilities else None)
            job = _Job("segment", tempDir, callbacks, context={
                "volume": volumeNode, "options": options, "model": model, "paths": paths,
                "existing": existing, "rerun": roi is not None})
            self._launch(job, args)
        except BaseException:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise
        return True

    def _confirmReplace(self, existing: SegmentationResult, rerun: bool) -> bool:
        name = self.scene.nodeName(existing.segmentation)
        what = "Re-run inside the ROI and replace" if rerun else "Segment again and replace"
        question = f"{what} '{name}'? Corrections made to it will be lost."
        return bool(self.confirm and self.confirm(question))

    def _finishSegment(self, job: _Job) -> SegmentationResult:
        ctx = job.context
        volume, options, model, paths = ctx["volume"], ctx["options"], ctx["model"], ctx["paths"]
        outputs = job.done.data.get("outputs") or {} if job.done else {}
        output = outputs.get("segmentation") or paths["output"]
        if not os.path.isfile(output):
            raise RuntimeError(f"The command reported success but wrote no segmentation ({output}).")
        existing: SegmentationResult | None = ctx["existing"]
        keepRoi = ctx["rerun"] and existing is not None and existing.roi is not None
        baseName = f"{self.scene.nodeName(volume)} pancreas"
        # The new nodes are made first and taken back if any step fails; the old result goes only once the
        # new one is complete: a failed run leaves the scene as it was.
        result = SegmentationResult(volume, None)
        try:
            result.segmentation = self.scene.importSegmentation(output, volume, baseName, model.labels)
            result.proposal = self.scene.copySegmentation(result.segmentation, f"{baseName} proposal")
            if not keepRoi:
                roi = self._roiOfRun(job, paths["roiOut"])
                if roi is not None:
                    result.roi = self.scene.createRoi(f"{baseName} ROI", roi, options.showRoi)
            if options.keepProbabilities and os.path.isfile(paths["probabilities"]):
                result.probabilities = self.scene.loadProbabilityMap(paths["probabilities"],
                                                                     f"{baseName} probability")
        except BaseException:
            self.scene.removeNodes(result.nodes())
            raise
        if existing is not None:
            self.scene.removeNodes(existing.nodes(keepRoi=keepRoi))
        if keepRoi:
            result.roi = existing.roi  # type: ignore[union-attr]
        self.scene.linkResult(result)
        self.scene.showResult(result)
        return result

    @staticmethod
    def _roiOfRun(job: _Job, roiOutPath: str) -> RoiGeometry | None:
        from .roiGeometry import roiFromJson

        if job.done is not None and isinstance(job.done.data.get("roi"), dict):
            return roiFromJson(job.done.data["roi"]).converted("RAS")
        if os.path.isfile(roiOutPath):
            return readRoiJson(roiOutPath).converted("RAS")
        return None

    # -- export / open case ----------------------------------------------------------------------------

    def exportForTraining(self, volumeNode: Any, options: ExportOptions, segmentationNode: Any = None,
                          callbacks: Callbacks | None = None, labels: Sequence[LabelInfo] | None = None) -> None:
        """Export the (corrected) segmentation, its proposal and the volume into a curated dataset.

        Raises:
            ValueError: missing volume/segmentation, bad dataset folder, case ID or status.
        """
        from PancreasSegLib.datasets import validate_case_id
        from PancreasSegLib.errors import InputError

        if volumeNode is None:
            raise ValueError("Select the CT volume of the case to export.")
        if self.isRunning():
            raise ValueError("A run is already in progress: wait for it or cancel it.")
        result = self.scene.findResult(volumeNode)
        segmentation = segmentationNode if segmentationNode is not None else (result.segmentation if result else None)
        if segmentation is None:
            raise ValueError("There is no segmentation of this volume to export: segment it or open a case.")
        if not options.datasetFolder.strip():
            raise ValueError("Choose a dataset folder to export into.")
        dataset = Path(options.datasetFolder)
        if dataset.exists() and not dataset.is_dir():
            raise ValueError(f"{dataset} is a file, not a dataset folder.")
        if not dataset.parent.is_dir():
            raise ValueError(f"The folder {dataset.parent} does not exist.")
        try:
            validate_case_id(options.caseId)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        if options.status not in REVIEW_STATUSES:
            raise ValueError(f"Status must be one of {', '.join(REVIEW_STATUSES)}.")
        labels = list(labels or STANDARD_LABELS.values())
        tempDir = tempfile.mkdtemp(prefix="PancreasSeg-export-", dir=self.tempRoot)
        try:
            image = os.path.join(tempDir, "image.nii.gz")
            label = os.path.join(tempDir, "label.nii.gz")
            self.scene.writeVolume(volumeNode, image)
            self.scene.exportLabelmap(segmentation, volumeNode, label, labels)
            proposal = None
            if result is not None and result.proposal is not None:
                proposal = os.path.join(tempDir, "proposal.nii.gz")
                self.scene.exportLabelmap(result.proposal, volumeNode, proposal, labels)
            args = self.buildExportCommand(image, label, proposal, options)
            self._launch(_Job("export", tempDir, callbacks or Callbacks()), args)
        except BaseException:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise

    @staticmethod
    def parseExportSummary(stdout: str) -> ExportSummary:
        """Read the JSON summary ``export --json`` printed (the whole output or its last JSON line)."""
        candidates = [stdout.strip()] + [line.strip() for line in reversed(stdout.splitlines())]
        for text in candidates:
            try:
                data = json.loads(text)
            except ValueError:
                continue
            if isinstance(data, dict):
                return ExportSummary(_number(data.get("dice")), _number(data.get("volume_change_ml")), data)
        raise RuntimeError("The export command printed no JSON summary.")

    def openCase(self, datasetFolder: str, caseId: str,
                 labels: Sequence[LabelInfo] | None = None) -> SegmentationResult:
        """Load ``imagesTr/<case>_0000`` and ``labelsTr/<case>`` (and its proposal, hidden) to review again."""
        from PancreasSegLib.datasets import FILE_ENDING, image_path, label_path, validate_case_id
        from PancreasSegLib.errors import InputError

        try:
            validate_case_id(caseId)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        folder = Path(datasetFolder)
        ending = FILE_ENDING
        try:
            ending = json.loads((folder / "dataset.json").read_text(encoding="utf-8")).get("file_ending", ending)
        except (OSError, ValueError, AttributeError):
            pass
        image, label = image_path(folder, caseId, ending), label_path(folder, caseId, ending)
        for path in (image, label):
            if not path.is_file():
                raise ValueError(f"Case {caseId} is not in {folder}: {path.relative_to(folder)} is missing.")
        labels = list(labels or STANDARD_LABELS.values())
        volume = self.scene.loadVolume(str(image), caseId)
        result = SegmentationResult(volume, self.scene.importSegmentation(str(label), volume, f"{caseId} pancreas",
                                                                           labels))
        proposal = folder / "proposals" / f"{caseId}{ending}"
        if proposal.is_file():
            result.proposal = self.scene.importSegmentation(str(proposal), volume, f"{caseId} pancreas proposal",
                                                            labels, hidden=True)
        self.scene.linkResult(result)
        self.scene.showResult(result)
        return result

    def openInSegmentEditor(self, volumeNode: Any) -> None:
        """Switch to the Segment Editor with the volume's result and the volume selected."""
        result = self.scene.findResult(volumeNode) if volumeNode is not None else None
        if result is None:
            raise ValueError("There is no result to correct: run 'Segment pancreas' first.")
        self.scene.openSegmentEditor(result.segmentation, volumeNode)

    # -- running ---------------------------------------------------------------------------------------

    def _launch(self, job: _Job, args: list[str]) -> None:
        self._job = job
        try:
            self.runner.start(args, onStdout=lambda text: self._onStdout(job, text),
                              onFinished=lambda code, stderr: self._onFinished(job, code, stderr),
                              env=self.childEnvironment())
        except OSError as exc:
            self._job = None
            raise ValueError(f"Cannot start {args[0]}: {exc.strerror or exc}") from None
        except BaseException:
            self._job = None
            raise

    def _onStdout(self, job: _Job, text: str) -> None:
        job.stdout.append(text)
        if job.kind != "segment":
            return
        for event in job.parser.feed(text):
            self._onEvent(job, event)

    def _onEvent(self, job: _Job, event: ProgressEvent) -> None:
        if event.kind == "progress" and job.callbacks.onProgress is not None:
            job.callbacks.onProgress(event.overallFraction, event.message or str(event.data.get("stage", "")))
        elif event.kind == "done":
            job.done = event
        elif event.kind == "error":
            job.error = event

    def _onFinished(self, job: _Job, exitCode: int, stderr: str) -> None:
        if job.closed:  # shutdown() already ended it and removed its files
            return
        for event in job.parser.flush():
            self._onEvent(job, event)
        if self._job is job:
            self._job = None
        cb = job.callbacks
        try:
            if getattr(self.runner, "cancelled", False) or exitCode == 130:
                if cb.onCancelled is not None:
                    cb.onCancelled()
                return
            if exitCode != 0 or (job.kind == "segment" and job.error is not None):
                message = (job.error.message if job.error is not None else "") or lastErrorLine(stderr)
                self._fail(cb, message or f"The command failed (exit status {exitCode}).")
                return
            try:
                if job.kind == "segment":
                    result: Any = self._finishSegment(job)
                else:
                    result = self.parseExportSummary("".join(job.stdout))
            except (RuntimeError, ValueError, OSError) as exc:
                self._fail(cb, str(exc))
                return
            self.lastResult = result
            if cb.onDone is not None:
                cb.onDone(result)
        finally:
            shutil.rmtree(job.tempDir, ignore_errors=True)

    @staticmethod
    def _fail(callbacks: Callbacks, message: str) -> None:
        if callbacks.onError is not None:
            callbacks.onError(message)


def _number(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
