"""What the PancreasSeg Logic exchanges with the rest of the module: its two interfaces and its value types.

- :class:`SceneAdapter`: what the Logic needs of the MRML scene (``sceneAdapter.SlicerSceneAdapter``
  in Slicer, a test double outside it);
- :class:`ProcessRunner`: a background command with streamed output and cancel
  (``processRunner.BackgroundProcess``);
- the options the widget hands over (:class:`SegmentOptions`, :class:`ExportOptions`, :class:`FineTuneOptions`),
  what comes back (:class:`SegmentationResult`, :class:`ExportSummary`) and how a run reports
  (:class:`Callbacks`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from PancreasSegLib.labels import LabelInfo
from PancreasSegLib.pipeline.roi import ROI


class SceneAdapter(Protocol):
    """What the Logic needs of the scene. Node arguments are opaque to the Logic; ROIs are the library's
    :class:`~PancreasSegLib.pipeline.roi.ROI` (LPS), the adapter converts them for the markups ROI (RAS)."""

    def nodeName(self, node: Any) -> str: ...
    def writeVolume(self, volumeNode: Any, path: str) -> None: ...
    def importSegmentation(self, path: str, volumeNode: Any, name: str, labels: Sequence[LabelInfo],
                           hidden: bool = False) -> Any: ...
    def copySegmentation(self, segmentationNode: Any, name: str) -> Any: ...
    def createRoi(self, name: str, roi: ROI, visible: bool) -> Any: ...
    def readRoi(self, roiNode: Any) -> ROI: ...
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
    #: The model bundle folder that made the proposal (passed to ``export --model`` for the provenance).
    modelPath: str | None = None
    #: The run's "unsure" sentences (the ``done`` event's ``warnings``); empty when the result looks usual.
    warnings: list[str] = field(default_factory=list)

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
    #: Segment a volume whose intensities do not look like Hounsfield units (``segment --force``).
    force: bool = False


@dataclass(frozen=True)
class ExportOptions:
    """The choices of the Export section."""

    datasetFolder: str
    caseId: str
    reviewer: str = ""
    status: str = "corrected"
    note: str = ""


@dataclass(frozen=True)
class FineTuneOptions:
    """The choices of the fine-tune controls of the Export section."""

    datasetFolder: str
    bundleName: str
    minutes: float = 10.0
    device: str = "auto"


@dataclass(frozen=True)
class ExportSummary:
    """What ``pancreasseg export --json`` reported (keys ``dice``, ``volume_change_ml``, ``edited_slices``,
    ``case_id``, ``revision``, ``history``)."""

    dice: float | None
    volumeChangeMl: float | None
    data: dict = field(default_factory=dict)

    @property
    def editedSlices(self) -> int | None:
        """Slices where the correction differs from the proposal (None without a proposal)."""
        value = number(self.data.get("edited_slices"))
        return None if value is None else int(value)

    @property
    def text(self) -> str:
        """One line for the UI."""
        case = self.data.get("case_id")
        head = f"Exported {case}" if case else "Exported"
        revision = number(self.data.get("revision"))
        if revision is not None and revision > 1:
            head += f" (revision {int(revision)}; the earlier export is kept in the dataset's history)"
        if self.dice is None and self.volumeChangeMl is None:
            return head + ". No proposal to compare with."
        dice = "n/a" if self.dice is None else f"{self.dice:.3f}"
        change = "n/a" if self.volumeChangeMl is None else f"{self.volumeChangeMl:+.1f} mL"
        text = f"{head}. Dice vs proposal: {dice}, volume change: {change}"
        if self.editedSlices is not None:
            text += f", {self.editedSlices} edited slice(s)"
        return text


@dataclass
class Callbacks:
    """How a background run reports back (all optional)."""

    onProgress: Callable[[float, str], None] | None = None
    onDone: Callable[[Any], None] | None = None
    onError: Callable[[str], None] | None = None
    onCancelled: Callable[[], None] | None = None
    #: The command's latest stderr line (fine-tuning: what it is doing between progress events).
    onMessage: Callable[[str], None] | None = None


def number(value) -> float | None:
    """``value`` as a float, or ``None`` when it is missing or not a number."""
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
