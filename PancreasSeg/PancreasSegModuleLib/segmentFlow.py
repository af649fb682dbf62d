"""The "Segment pancreas" and "Re-run inside ROI" flows: CT out, ``segment`` in the background, result in.

The CT is written to a temporary folder, ``segment`` runs on it, and at its end the label map, a hidden
copy of it (the proposal a later export compares the correction with), the phase-1 ROI and optionally the
probability map come into the scene. New nodes are made first and the old result goes only once the new
one is complete: a failed or cancelled run leaves the scene as it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from PancreasSegLib.pipeline.roi import ROI, read_roi, write_roi

from .backgroundJob import Job, JobRunner
from .commandLines import CommandLines
from .logicTypes import Callbacks, SceneAdapter, SegmentationResult, SegmentOptions
from .modelBundle import ModelInfo

#: The Advanced checkbox that adds ``--force`` (named in the error a non-HU volume gets).
FORCE_CHECKBOX_TEXT = "Segment even if not HU"


def explainSegmentError(message: str) -> str:
    """The command's message with its ``--force`` advice turned into the checkbox that sets it."""
    return message.replace("use --force", f"tick '{FORCE_CHECKBOX_TEXT}' under Advanced")


class SegmentFlow:
    """Segmenting a volume: a part of :class:`~.segmentationLogic.SegmentationLogic`, which provides the
    attributes annotated here."""

    scene: SceneAdapter
    jobs: JobRunner
    commands: CommandLines
    confirm: Callable[[str], bool] | None
    checkModel: Callable[[str], ModelInfo]
    _dependenciesReady: Callable[[str], bool]

    def segment(self, volumeNode: Any, options: SegmentOptions, callbacks: Callbacks | None = None) -> bool:
        """Start segmenting ``volumeNode`` in the background; return False if the user kept the old result
        or the required packages are missing and were not installed.

        Raises:
            ValueError: no volume, a run in progress, a bad model folder or bad options.
        """
        return self._startSegment(volumeNode, options, callbacks or Callbacks(), roi=None)

    def rerunInsideRoi(self, volumeNode: Any, options: SegmentOptions, callbacks: Callbacks | None = None) -> bool:
        """Run phase 2 again, only inside the result's (possibly moved) ROI.

        Raises:
            ValueError: no result with an ROI, an ROI that is not a box (see ``ROI.from_json``), or as
                :meth:`segment`.
        """
        result = self.scene.findResult(volumeNode) if volumeNode is not None else None
        if result is None or result.roi is None:
            raise ValueError("There is no ROI to re-run inside: run 'Segment pancreas' first.")
        return self._startSegment(volumeNode, options, callbacks or Callbacks(), roi=self.scene.readRoi(result.roi))

    def openInSegmentEditor(self, volumeNode: Any) -> None:
        """Switch to the Segment Editor with the volume's result and the volume selected."""
        result = self.scene.findResult(volumeNode) if volumeNode is not None else None
        if result is None:
            raise ValueError("There is no result to correct: run 'Segment pancreas' first.")
        self.scene.openSegmentEditor(result.segmentation, volumeNode)

    def _startSegment(self, volumeNode: Any, options: SegmentOptions, callbacks: Callbacks, roi: ROI | None) -> bool:
        if volumeNode is None:
            raise ValueError("Select a CT volume first.")
        self.jobs.refuseIfRunning()
        model = self.checkModel(options.modelPath)
        existing = self.scene.findResult(volumeNode)
        if existing is not None and not self._confirmReplace(existing, roi is not None):
            return False
        if not self._dependenciesReady("segment"):
            return False
        with self.jobs.tempFolder("PancreasSeg-") as tempDir:
            # NRRD both ways: it keeps the grid in double precision, where NIfTI's float32 header would
            # move the result's origin by a few micrometres against the volume's.
            paths = {name: os.path.join(tempDir, file) for name, file in (
                ("input", "input.nrrd"), ("output", "segmentation.nrrd"), ("roiOut", "roi.json"),
                ("roiIn", "roi-in.json"), ("probabilities", "probabilities.nrrd"))}
            self.scene.writeVolume(volumeNode, paths["input"])
            if roi is not None:
                write_roi(roi, paths["roiIn"])
            args = self.commands.segment(
                paths["input"], paths["output"], paths["roiOut"], options,
                roiInPath=paths["roiIn"] if roi is not None else None,
                probabilitiesPath=paths["probabilities"] if options.keepProbabilities else None)
            job = Job("segment", tempDir, callbacks, finish=self._finishSegment, explainError=explainSegmentError,
                      context={"volume": volumeNode, "options": options, "model": model, "paths": paths,
                               "existing": existing, "rerun": roi is not None})
            self.jobs.launch(job, args)
        return True

    def _confirmReplace(self, existing: SegmentationResult, rerun: bool) -> bool:
        name = self.scene.nodeName(existing.segmentation)
        what = "Re-run inside the ROI and replace" if rerun else "Segment again and replace"
        question = f"{what} '{name}'? Corrections made to it will be lost."
        return bool(self.confirm and self.confirm(question))

    def _finishSegment(self, job: Job) -> SegmentationResult:
        ctx = job.context
        volume, options, model, paths = ctx["volume"], ctx["options"], ctx["model"], ctx["paths"]
        output = job.outputs.get("segmentation") or paths["output"]
        if not os.path.isfile(output):
            raise RuntimeError(f"The command reported success but wrote no segmentation ({output}).")
        existing: SegmentationResult | None = ctx["existing"]
        keepRoi = ctx["rerun"] and existing is not None and existing.roi is not None
        baseName = f"{self.scene.nodeName(volume)} pancreas"
        result = SegmentationResult(volume, None, modelPath=str(options.modelPath))
        if job.done is not None:
            result.warnings = [str(w) for w in job.done.data.get("warnings") or []]
        try:
            result.segmentation = self.scene.importSegmentation(output, volume, baseName, model.labels)
            result.proposal = self.scene.copySegmentation(result.segmentation, f"{baseName} proposal")
            if not keepRoi:
                roi = roiOfRun(job, paths["roiOut"])
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


def roiOfRun(job: Job, roiOutPath: str) -> ROI | None:
    """The run's ROI: the ``done`` event's ``roi``, else the ``--roi-out`` file, else None.

    Raises:
        ValueError: the ROI is malformed (the library's ``InputError``).
    """
    if job.done is not None and isinstance(job.done.data.get("roi"), dict):
        return ROI.from_json(job.done.data["roi"])
    if os.path.isfile(roiOutPath):
        return read_roi(roiOutPath)
    return None
