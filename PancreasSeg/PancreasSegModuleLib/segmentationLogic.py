"""The PancreasSeg Logic: inputs -> background ``segment`` -> result in the scene -> export for training.

It reaches Slicer only through two small interfaces handed to its constructor, so it runs (and is
tested) without Slicer:

- :class:`SceneAdapter`: what it needs of the MRML scene (``sceneAdapter.SlicerSceneAdapter`` in Slicer);
- :class:`ProcessRunner`: a background command with streamed output and cancel
  (``processRunner.BackgroundProcess``).

Nothing heavy runs in this process: the work is ``python -m PancreasSegLib segment|export|train`` in the
background. Errors a user can fix raise ``ValueError`` with a message meant for them; the widget shows it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PancreasSegLib.labels import STANDARD_LABELS, LabelInfo

from .fineTune import FineTuneOptions, buildTrainArguments, bundleOutputPath, checkDataset
from .logicTypes import (  # noqa: F401 (re-exported: the Logic's public types)
    Callbacks,
    ExportOptions,
    ExportSummary,
    ProcessRunner,
    SceneAdapter,
    SegmentationResult,
    SegmentOptions,
    number,
)
from .modelBundle import ModelInfo, validateModelFolder
from .progress import STAGES, TRAIN_STAGES, JsonLinesParser, ProgressEvent, lastErrorLine
from .roiGeometry import RoiGeometry, readRoiJson, writeRoiJson

DEVICES = ("auto", "cpu", "cuda", "mps")
REVIEW_STATUSES = ("corrected", "approved", "rejected")
#: The Advanced checkbox that adds ``--force`` (named in the error a non-HU volume gets).
FORCE_CHECKBOX_TEXT = "Segment even if not HU"


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
    #: Stage shares of the progress bar for this command's events.
    stages: dict = field(default_factory=lambda: STAGES)
    #: The bar never goes back (a stage may restart, e.g. when the ROI grows).
    fraction: float = 0.0
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
        commandPrefix: the command that runs PancreasSegLib, instead of ``pythonExecutable -m PancreasSegLib``
            (e.g. an installed ``pancreasseg`` console script).
        checkDependencies: ``checkDependencies(action) -> bool`` with action "segment", "export" or "train",
            called before every background command; False (packages missing and not installed) stops it.
    """

    def __init__(self, scene: SceneAdapter, runner: ProcessRunner, pythonExecutable: str,
                 libraryRoot: str | None = None, confirm: Callable[[str], bool] | None = None,
                 tempRoot: str | None = None, commandPrefix: Sequence[str] | None = None,
                 checkDependencies: Callable[[str], bool] | None = None) -> None:
        self.scene = scene
        self.runner = runner
        self.pythonExecutable = pythonExecutable
        self.libraryRoot = libraryRoot
        self.confirm = confirm
        self.tempRoot = tempRoot
        self._commandPrefix = list(commandPrefix) if commandPrefix else None
        self.checkDependencies = checkDependencies
        self._job: _Job | None = None
        self.lastResult: Any = None
        #: Bundle folders registered as model choices (fine-tuned models), newest last.
        self.registeredModels: list[str] = []

    # -- command lines ---------------------------------------------------------------------------------

    def commandPrefix(self) -> list[str]:
        """``python -m PancreasSegLib`` with the configured interpreter (or the injected prefix)."""
        if self._commandPrefix:
            return list(self._commandPrefix)
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
        if options.force:
            args.append("--force")
        return args

    def buildExportCommand(self, imagePath: str, labelPath: str, proposalPath: str | None,
                           options: ExportOptions, modelPath: str | None = None) -> list[str]:
        """The ``export`` command line (prints a JSON summary with ``--json``).

        ``modelPath``: the bundle that made the proposal; its name, version and weights' sha256 go into
        the case's provenance.
        """
        args = self.commandPrefix() + ["export", "--image", imagePath, "--label", labelPath]
        if proposalPath:
            args += ["--proposal", proposalPath]
        args += ["--dataset", options.datasetFolder, "--case-id", options.caseId,
                 "--reviewer", options.reviewer, "--status", options.status]
        if options.note:
            args += ["--note", options.note]
        if modelPath:
            args += ["--model", modelPath]
        return args + ["--json"]

    def buildFineTuneCommand(self, initBundle: str, outputBundle: str, options: FineTuneOptions) -> list[str]:
        """The ``train DATASET --init BUNDLE -o NEW`` command line of "Fine-tune on curated set"."""
        return self.commandPrefix() + buildTrainArguments(options.datasetFolder, initBundle, outputBundle, options)

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

    @property
    def runningKind(self) -> str | None:
        """"segment", "export" or "train" while that command runs, else None."""
        return self._job.kind if self._job is not None else None

    def _dependenciesReady(self, action: str) -> bool:
        return self.checkDependencies is None or bool(self.checkDependencies(action))

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
        if not self._dependenciesReady("segment"):
            return False
        tempDir = tempfile.mkdtemp(prefix="PancreasSeg-", dir=self.tempRoot)
        try:
            # NRRD both ways: it keeps the grid in double precision, where NIfTI's float32 header would
            # move the result's origin by a few micrometres against the volume's.
            paths = {name: os.path.join(tempDir, file) for name, file in (
                ("input", "input.nrrd"), ("output", "segmentation.nrrd"), ("roiOut", "roi.json"),
                ("roiIn", "roi-in.json"), ("probabilities", "probabilities.nrrd"))}
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
        result = SegmentationResult(volume, None, modelPath=str(options.modelPath))
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
                          callbacks: Callbacks | None = None, labels: Sequence[LabelInfo] | None = None) -> bool:
        """Export the (corrected) segmentation, its proposal and the volume into a curated dataset.

        Returns False when the export was not started (required packages missing and not installed).

        Raises:
            ValueError: missing volume/segmentation, bad dataset folder, case ID or status.
        """
        from PancreasSegLib.datasets.nnunet import validate_case_id
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
        if not self._dependenciesReady("export"):
            return False
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
            modelPath = result.modelPath if result is not None and proposal is not None else None
            if modelPath and not os.path.isfile(os.path.join(modelPath, "model.json")):
                modelPath = None  # the bundle was moved or deleted since: export without model provenance
            args = self.buildExportCommand(image, label, proposal, options, modelPath)
            self._launch(_Job("export", tempDir, callbacks or Callbacks()), args)
        except BaseException:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise
        return True

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
                return ExportSummary(number(data.get("dice")), number(data.get("volume_change_ml")), data)
        raise RuntimeError("The export command printed no JSON summary.")

    # -- fine-tune -------------------------------------------------------------------------------------

    def fineTune(self, initModelPath: str, options: FineTuneOptions, callbacks: Callbacks | None = None) -> bool:
        """Fine-tune ``initModelPath`` on the curated dataset in the background; on success the new bundle
        is registered as a model choice and ``onDone`` gets its :class:`ModelInfo`.

        Returns False when not started (required packages missing and not installed).

        Raises:
            ValueError: a run in progress, a bad model, dataset, name or time budget.
        """
        if self.isRunning():
            raise ValueError("A run is already in progress: wait for it or cancel it.")
        self.checkModel(initModelPath)
        dataset = checkDataset(options.datasetFolder)
        output = bundleOutputPath(str(dataset), options.bundleName)
        args = self.buildFineTuneCommand(str(initModelPath), str(output), options)
        if not self._dependenciesReady("train"):
            return False
        # train writes nothing of ours in a temporary folder (its checkpoints stay in <bundle>.work to
        # resume); the job's own temporary folder only keeps the bookkeeping uniform.
        tempDir = tempfile.mkdtemp(prefix="PancreasSeg-train-", dir=self.tempRoot)
        try:
            self._launch(_Job("train", tempDir, callbacks or Callbacks(), context={"output": str(output)},
                              stages=TRAIN_STAGES), args)
        except BaseException:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise
        return True

    def registerModel(self, bundlePath: str) -> ModelInfo:
        """Check ``bundlePath`` and add it to the model choices (no duplicates, newest last)."""
        info = self.checkModel(bundlePath)
        path = str(Path(bundlePath))
        self.registeredModels = [p for p in self.registeredModels if p != path] + [path]
        return info

    def _finishFineTune(self, job: _Job) -> ModelInfo:
        outputs = (job.done.data.get("outputs") or {}) if job.done is not None else {}
        bundle = outputs.get("bundle") or job.context["output"]
        try:
            return self.registerModel(bundle)
        except ValueError as exc:
            raise RuntimeError(f"The training reported success but the new bundle is not usable: {exc}") from None

    def openCase(self, datasetFolder: str, caseId: str,
                 labels: Sequence[LabelInfo] | None = None) -> SegmentationResult:
        """Load ``imagesTr/<case>_0000`` and ``labelsTr/<case>`` (and its proposal, hidden) to review again."""
        from PancreasSegLib.datasets.nnunet import FILE_ENDING, image_path, label_path, validate_case_id
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
                              onStderr=lambda text: self._onStderr(job, text),
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
        if job.kind == "export":
            return  # export prints one JSON summary at the end, no events
        for event in job.parser.feed(text):
            self._onEvent(job, event)

    def _onStderr(self, job: _Job, text: str) -> None:
        line = text.strip()
        if line and job.callbacks.onMessage is not None:
            job.callbacks.onMessage(line)

    def _onEvent(self, job: _Job, event: ProgressEvent) -> None:
        if event.kind == "progress" and job.callbacks.onProgress is not None:
            job.fraction = max(job.fraction, event.fractionOf(job.stages))
            job.callbacks.onProgress(job.fraction, event.message or str(event.data.get("stage", "")))
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
            if exitCode != 0 or job.error is not None:
                message = (job.error.message if job.error is not None else "") or lastErrorLine(stderr)
                if job.kind == "segment" and "--force" in message:
                    message = message.replace("use --force", f"tick '{FORCE_CHECKBOX_TEXT}' under Advanced")
                self._fail(cb, message or f"The command failed (exit status {exitCode}).")
                return
            try:
                if job.kind == "segment":
                    result: Any = self._finishSegment(job)
                elif job.kind == "train":
                    result = self._finishFineTune(job)
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
