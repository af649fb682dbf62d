"""One reader's session: the open case and its lock, "Segment pancreas", the correction's volume, the export.

The work is the Slicer module's: its ``SegmentationLogic`` runs ``segment`` on the warm worker (which goes
through ``Predictor.predict_file``) and brings the result in as the coded, coloured Pancreas segment with
its hidden proposal and the phase-1 ROI, and its export writes the case with ``pancreasseg export`` (the
library's provenance, Dice against the proposal, edited slices, history). Here it runs on trame-slicer's
scene, and the module's two view calls are answered by trame-slicer's views and Segment Editor.

Everything runs on the server's event loop: the background command's output is polled by loop timers,
so its callbacks, the scene and the views are only ever touched from one thread.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PancreasSegLib.curation.lock import DatasetLock
from PancreasSegLib.labels import PANCREAS

from .worklist import Case, Worklist

ROOT = Path(__file__).resolve().parents[1]
#: Slicer's "Abdomen" window/level preset (HU).
ABDOMEN_WINDOW, ABDOMEN_LEVEL = 350.0, 40.0


def module_library():
    """The Slicer module's library (``PancreasSeg/PancreasSegModuleLib`` of this checkout), imported.

    Raises:
        ImportError: the module's folder is not next to this package (an install without the checkout).
    """
    folder = ROOT / "PancreasSeg"
    if str(folder) not in sys.path and (folder / "PancreasSegModuleLib").is_dir():
        sys.path.insert(0, str(folder))
    import PancreasSegModuleLib

    return PancreasSegModuleLib


@dataclass
class Report:
    """How the session tells the page what happened (each is called on the event loop)."""

    progress: Callable[[float, str], None]
    done: Callable[[str, str], None]  # (what, message): what is "segment" or "export"
    failed: Callable[[str], None]
    changed: Callable[[], None] = field(default=lambda: None)


class ReviewViews:
    """The module adapter's view calls on trame-slicer: slice and 3D views, the Segment Editor."""

    def __init__(self, slicer_app) -> None:
        self.app = slicer_app

    def showVolume(self, volumeNode) -> None:
        display = volumeNode.GetDisplayNode()
        if display is None:
            volumeNode.CreateDefaultDisplayNodes()
            display = volumeNode.GetDisplayNode()
        display.AutoWindowLevelOff()
        display.SetWindowLevel(ABDOMEN_WINDOW, ABDOMEN_LEVEL)
        self.app.display_manager.show_volume(volumeNode, do_reset_views=True)

    def openSegmentEditor(self, segmentationNode, volumeNode) -> None:
        editor = self.app.segmentation_editor
        editor.set_active_segmentation(segmentationNode, volumeNode)
        segmentation = segmentationNode.GetSegmentation()
        pancreas = segmentation.GetSegmentIdBySegmentName(PANCREAS.name)
        if pancreas:
            editor.set_active_segment_id(pancreas)


def _recording_runner():
    """The module's warm-worker runner, also keeping the last command's stdout (its ``done`` event)."""
    from PancreasSegModuleLib.workerRunner import WorkerRunner

    class RecordingRunner(WorkerRunner):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self.lines: list[str] = []

        def start(self, args, onStdout=None, **kwargs):
            self.lines = []

            def record(text: str) -> None:
                self.lines.append(text)
                if onStdout is not None:
                    onStdout(text)

            super().start(args, onStdout=record, **kwargs)

        def done_event(self) -> dict:
            for line in reversed("".join(self.lines).splitlines()):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("event") == "done":
                    return event
            return {}

    def schedule(milliseconds: int, function) -> None:
        asyncio.get_running_loop().call_later(milliseconds / 1000.0, function)

    return RecordingRunner(schedule=schedule)


class ReviewSession:
    """The reading room's state on the server: one open case at a time.

    Args:
        slicer_app: trame-slicer's ``SlicerApp`` (scene, logics, views, Segment Editor).
        worklist: the cases and the dataset they are exported into.
        reviewer: who reviews (kept in the provenance and shown on the case lock).
        model: the model bundle folder; device: ``--device`` of the runs.
    """

    def __init__(self, slicer_app, worklist: Worklist, reviewer: str, model: str, device: str = "auto") -> None:
        module_library()
        from PancreasSegModuleLib.sceneAdapter import SlicerSceneAdapter
        from PancreasSegModuleLib.segmentationLogic import SegmentationLogic
        from PancreasSegModuleLib.slicerApplication import ModuleLogics

        self.app, self.worklist, self.reviewer = slicer_app, worklist, reviewer
        self.model, self.device = model, device
        logics = ModuleLogics(slicer_app.volumes_logic, slicer_app.segmentations_logic, None)
        self.scene = SlicerSceneAdapter(slicer_app.scene, logics=logics, views=ReviewViews(slicer_app))
        self.runner = _recording_runner()
        self.logic = SegmentationLogic(self.scene, self.runner, pythonExecutable=sys.executable,
                                       libraryRoot=str(ROOT), confirm=lambda question: True)
        self.case: Case | None = None
        self.volume = None
        self.unsure_note = ""
        self._lock: DatasetLock | None = None

    # -- cases and their locks ---------------------------------------------------------------------------

    def locked_by(self, case: Case) -> str | None:
        """Who else has ``case`` open (reviewer and machine), or None."""
        if self.case is case and self._lock is not None:
            return None
        return self.worklist.locked_by(case)

    def open_case(self, key: str) -> Case:
        """Close the open case and open the one with ``key`` (its CT, and its label when it was curated).

        Raises:
            ValueError: a run in progress, or the case is open elsewhere.
        """
        case = self.worklist.case(key)
        self.logic.jobs.refuseIfRunning()
        if case is self.case and self._lock is not None:
            return case  # already open here: a second lock of our own would be refused
        lock = self.worklist.lock(case, self.reviewer)
        self.close_case()
        self._lock, self.case = lock, case
        case_id = self.worklist.reserve_id(case)
        # A clean scene for every case: the Segment Editor's effects rely on it.
        self.app.scene.Clear()
        if case.in_dataset:
            result = self.logic.openCase(str(self.worklist.cases_root), case_id)
            self.volume = result.volume
            self.scene.openSegmentEditor(result.segmentation, result.volume)
        else:
            self.volume = self.scene.loadVolume(str(case.image), case_id)
            self.scene.views.showVolume(self.volume)
        self.unsure_note = ""
        return case

    def close_case(self) -> None:
        """Stop a run of the open case and release its lock (what was exported stays exported)."""
        if self.logic.isRunning():
            self.logic.cancel()
        if self._lock is not None:
            self._lock.release()
        self._lock, self.case, self.volume = None, None, None

    # -- segment, correct, export ------------------------------------------------------------------------

    def segment(self, report: Report) -> None:
        """Run the model on the open case in the background (raises ValueError when it cannot start)."""
        from PancreasSegModuleLib.logicTypes import Callbacks, SegmentOptions

        if self.volume is None:
            raise ValueError("Open a case first.")
        case = self.case

        def done(result) -> None:
            self.scene.openSegmentEditor(result.segmentation, result.volume)
            self.worklist.proposed.add(case.key)
            event = self.runner.done_event()
            warnings = [str(w) for w in event.get("warnings") or []]
            self.unsure_note = ("Unsure: " + "; ".join(warnings)) if event.get("unsure") and warnings else (
                "Unsure: check this result with care." if event.get("unsure") else "")
            report.done("segment", f"Pancreas segmented: {self.volume_ml():.1f} mL.")

        callbacks = Callbacks(onProgress=report.progress, onDone=done, onError=report.failed,
                              onCancelled=lambda: report.failed("Cancelled: the case is as it was."))
        self.logic.segment(self.volume, SegmentOptions(modelPath=self.model, device=self.device), callbacks)

    def cancel(self) -> None:
        """Stop the running command (the scene stays as it was)."""
        self.logic.cancel()

    def export(self, status: str, report: Report, note: str = "") -> None:
        """Export the open case's segmentation for training, as the module and ``pancreasseg export`` do."""
        from PancreasSegModuleLib.logicTypes import Callbacks, ExportOptions

        if self.volume is None or self.case is None:
            raise ValueError("Open a case first.")
        options = ExportOptions(datasetFolder=str(self.worklist.dataset), caseId=self.worklist.reserve_id(self.case),
                                reviewer=self.reviewer, status=status, note=note)
        callbacks = Callbacks(onDone=lambda summary: report.done("export", summary.text), onError=report.failed,
                              onCancelled=lambda: report.failed("Export cancelled: nothing was written."))
        self.logic.exportForTraining(self.volume, options, self.segmentation_node(), callbacks)

    def segmentation_node(self):
        """The segmentation being corrected (the Segment Editor's), or None."""
        return self.app.segmentation_editor.active_segmentation_node

    def volume_ml(self) -> float:
        """Volume of the Pancreas segment being corrected, in mL (0 without one)."""
        import slicer
        from vtk.util.numpy_support import vtk_to_numpy

        node = self.segmentation_node()
        segment_id = node.GetSegmentation().GetSegmentIdBySegmentName(PANCREAS.name) if node else ""
        if not segment_id:
            return 0.0
        image = slicer.vtkOrientedImageData()
        node.GetBinaryLabelmapRepresentation(segment_id, image)
        scalars = image.GetPointData().GetScalars()
        if scalars is None:
            return 0.0
        voxels = int((vtk_to_numpy(scalars) > 0).sum())
        sx, sy, sz = image.GetSpacing()
        return voxels * sx * sy * sz / 1000.0

    def shutdown(self) -> None:
        """End the worker and release the lock (the server is stopping)."""
        self.close_case()
        self.logic.shutdown(timeoutSeconds=5.0, quiet=True)
