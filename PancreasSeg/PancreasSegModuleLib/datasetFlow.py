"""The "Export for training" and "Open case" flows: a reviewed case into the curated dataset, and back.

Export writes the CT, the (corrected) segmentation and the kept proposal as label maps in the CT's grid
to a temporary folder and runs ``export --json`` in the background; the dataset itself (layout, locking,
provenance, the proposal-vs-correction Dice) is the library's. Open case loads a case of the dataset
into the scene to review it again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PancreasSegLib.constants import REVIEW_STATUSES
from PancreasSegLib.labels import STANDARD_LABELS, LabelInfo
from PancreasSegLib.model.bundle import MODEL_JSON

from .backgroundJob import Job, JobRunner
from .commandLines import CommandLines
from .logicTypes import Callbacks, ExportOptions, ExportSummary, SceneAdapter, SegmentationResult, number

#: What every dataset action says when no dataset folder was chosen.
NO_DATASET_FOLDER = ("No dataset folder chosen: choose one under \"Export for training\" (Dataset folder) first; "
                     "nothing was written.")


def datasetFolderText(folder: str | os.PathLike) -> str:
    """The dataset folder the user chose, or "" when none was.

    The parameter node cannot hold an empty path: an unset ``pathlib.Path`` reads ``"."``, which would be
    Slicer's working folder. Both mean "no dataset folder chosen".

    >>> datasetFolderText("."), datasetFolderText("  "), datasetFolderText("/data/Dataset001")
    ('', '', '/data/Dataset001')
    """
    text = str(folder).strip()
    return "" if text in ("", ".") else text


def requireDatasetFolder(folder: str | os.PathLike) -> Path:
    """The chosen dataset folder.

    Raises:
        ValueError: :data:`NO_DATASET_FOLDER` when none was chosen ("" or ".").
    """
    text = datasetFolderText(folder)
    if not text:
        raise ValueError(NO_DATASET_FOLDER)
    return Path(text)


def checkCaseId(caseId: str) -> None:
    """Raise ValueError with the library's message when ``caseId`` is not a valid case ID."""
    from PancreasSegLib.datasets.nnunet import validate_case_id
    from PancreasSegLib.errors import InputError

    try:
        validate_case_id(caseId)
    except InputError as exc:
        raise ValueError(str(exc)) from None


def checkExportOptions(options: ExportOptions) -> None:
    """The export choices, checked before anything is written.

    Raises:
        ValueError: no dataset folder chosen ("" or "."), a file in its place, its parent missing, a bad case
            ID or status.
    """
    dataset = requireDatasetFolder(options.datasetFolder)
    if dataset.exists() and not dataset.is_dir():
        raise ValueError(f"{dataset} is a file, not a dataset folder.")
    if not dataset.parent.is_dir():
        raise ValueError(f"The folder {dataset.parent} does not exist.")
    checkCaseId(options.caseId)
    if options.status not in REVIEW_STATUSES:
        raise ValueError(f"Status must be one of {', '.join(REVIEW_STATUSES)}.")


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


class DatasetFlow:
    """Export and open case: a part of :class:`~.segmentationLogic.SegmentationLogic`, which provides the
    attributes annotated here."""

    scene: SceneAdapter
    jobs: JobRunner
    commands: CommandLines
    _dependenciesReady: Callable[[str], bool]

    def exportForTraining(self, volumeNode: Any, options: ExportOptions, segmentationNode: Any = None,
                          callbacks: Callbacks | None = None, labels: Sequence[LabelInfo] | None = None) -> bool:
        """Export the (corrected) segmentation, its proposal and the volume into a curated dataset.

        Returns False when the export was not started (required packages missing and not installed).

        Raises:
            ValueError: missing volume/segmentation, bad dataset folder, case ID or status.
        """
        if volumeNode is None:
            raise ValueError("Select the CT volume of the case to export.")
        self.jobs.refuseIfRunning()
        result = self.scene.findResult(volumeNode)
        segmentation = segmentationNode if segmentationNode is not None else (result.segmentation if result else None)
        if segmentation is None:
            raise ValueError("There is no segmentation of this volume to export: segment it or open a case.")
        checkExportOptions(options)
        labels = list(labels or STANDARD_LABELS.values())
        if not self._dependenciesReady("export"):
            return False
        with self.jobs.tempFolder("PancreasSeg-export-") as tempDir:
            image = os.path.join(tempDir, "image.nii.gz")
            label = os.path.join(tempDir, "label.nii.gz")
            # The label first: a segment deleted, renamed or emptied is refused before anything else is written.
            self.scene.exportLabelmap(segmentation, volumeNode, label, labels)
            self.scene.writeVolume(volumeNode, image)
            proposal = None
            if result is not None and result.proposal is not None:
                proposal = os.path.join(tempDir, "proposal.nii.gz")
                self.scene.exportLabelmap(result.proposal, volumeNode, proposal, labels)
            modelPath = result.modelPath if result is not None and proposal is not None else None
            if modelPath and not os.path.isfile(os.path.join(modelPath, MODEL_JSON)):
                modelPath = None  # the bundle was moved or deleted since: export without model provenance
            args = self.commands.export(image, label, proposal, options, modelPath)
            job = Job("export", tempDir, callbacks or Callbacks(), readsEvents=False,
                      finish=lambda job: parseExportSummary("".join(job.stdout)))
            self.jobs.launch(job, args)
        return True

    def openCase(self, datasetFolder: str, caseId: str,
                 labels: Sequence[LabelInfo] | None = None) -> SegmentationResult:
        """Load ``imagesTr/<case>_0000`` and ``labelsTr/<case>`` (and its proposal, hidden) to review again.

        Raises:
            ValueError: no dataset folder chosen, a bad case ID, or the case's image or label is not in the
                dataset.
        """
        from PancreasSegLib.datasets.nnunet import FILE_ENDING, image_path, label_path

        folder = requireDatasetFolder(datasetFolder)
        checkCaseId(caseId)
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
