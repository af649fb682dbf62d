"""The reading room as a trame application on trame-slicer: Slicer's scene, views and Segment Editor in a page.

Built from trame-slicer's parts: ``SlicerApp`` (scene, module logics, views, Segment Editor), its remote
views (rendered here, sent as images), its layout manager (axial, coronal, sagittal and 3D) and its Segment
Editor logic and panel (effects, their options, undo and redo). The review itself is
:class:`~.session.ReviewSession`; :mod:`.access` guards every request.

>>> app = ReviewApp("cts/", "Dataset501_Curated", reviewer="dr-a")  # doctest: +SKIP
>>> app.serve("127.0.0.1", 8080)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys

from PancreasSegLib.constants import BUNDLED_MODELS_DIR, REVIEW_STATUSES, default_model

from .access import AccessGuard, is_loopback, new_token
from .session import Report, ReviewSession
from .ui import STATUS_COLORS, Handlers, build_page, chosen_model, model_choices, model_note
from .worklist import Worklist

TITLE = "PancreasSeg reading room"
#: A large axial view to correct on, with the 3D, coronal and sagittal views beside it.
LAYOUT = "Axial Primary"


class ReviewApp:
    """One reading room: a worklist of CASES exported into DATASET by one reviewer.

    Args:
        cases: the CASES folder (CTs, DICOM series folders, or a dataset to review again).
        dataset: the curated dataset folder (created when missing).
        reviewer: the reviewer's name, kept in the provenance.
        model: the model bundle (default: ``$PANCREASSEG_MODEL`` or the bundled one).
        device: ``--device`` of the runs.
        host: the address the server will listen on (a token is required beyond loopback).
    """

    def __init__(self, cases: str | os.PathLike, dataset: str | os.PathLike, reviewer: str,
                 model: str | os.PathLike | None = None, device: str = "auto", host: str = "127.0.0.1") -> None:
        from trame.app import get_server
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.app.logic import SegmentEditorLogic
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories

        self.server = get_server(TITLE, client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        self.state = self.server.state
        self.token = new_token()
        self.host = host
        self.guard = AccessGuard(self.token, require_token=not is_loopback(host), describe_holder=self._holder)
        self.slicer = SlicerApp()
        register_rca_factories(self.slicer.view_manager, self.server)
        self.layout_manager = LayoutManager(self.slicer.scene, self.slicer.view_manager, self.server)
        self.layout_manager.register_layout_dict(LayoutManager.default_grid_configuration())
        self.layout_manager.set_layout(LAYOUT)
        self.editor_logic = SegmentEditorLogic(self.server, self.slicer)
        self.worklist = Worklist(cases, dataset)
        self.session = ReviewSession(self.slicer, self.worklist, reviewer, str(model or default_model()), device)
        self._init_state(reviewer)
        self.state.update({"r_models": model_choices(self.session.model, BUNDLED_MODELS_DIR, default_model()),
                           "r_model_path": self.session.model, "r_model": model_note(self.session.model)})
        self.state.change("r_model_path")(self._model_changed)
        self._build()

    def _init_state(self, reviewer: str) -> None:
        self.state.update({
            "trame__title": TITLE, "r_reviewer": reviewer, "r_dataset": self.worklist.dataset.name,
            "r_current": None, "r_title": "", "r_running": "", "r_progress": 0, "r_progress_text": "",
            "r_message": "", "r_error": "", "r_unsure": "", "r_volume_ml": "0.0", "r_roi": "", "r_has_result": False,
            "r_effect": "", "r_can_undo": False, "r_can_redo": False, "r_status": "corrected",
            "r_statuses": list(REVIEW_STATUSES), "r_cases": [],
        })
        self._refresh_worklist()

    def _build(self) -> None:
        from trame_slicer.app.ui import SegmentEditorUI

        handlers = Handlers(self.open_case, self.segment_or_cancel, self.set_effect, self.undo, self.redo, self.export)
        editor_ui = []
        build_page(self.server, self.layout_manager, handlers, TITLE, lambda: editor_ui.append(SegmentEditorUI()))
        self.editor_logic.set_ui(editor_ui[0])
        editor = self.slicer.segmentation_editor
        editor.segmentation_modified.connect(self._segmentation_changed)
        editor.active_effect_name_changed.connect(self._effect_changed)
        for signal in editor.undo_stack.signals():
            signal.connect(self._undo_changed)
        self.server.controller.on_server_bind.add(self._bind)
        self.server.controller.on_server_ready.add(self._ready)

    # -- serving -----------------------------------------------------------------------------------------

    def url(self, port: int) -> str:
        """The address to open (with the token when one is needed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}/" + (f"?token={self.token}" if self.guard.require_token else "")

    def serve(self, host: str, port: int) -> None:
        """Serve until interrupted; then stop a run, end the worker and release the case lock."""
        self.host, self._port = host, port
        argv, sys.argv = sys.argv, sys.argv[:1]  # trame reads its own options from the command line
        try:
            self.server.start(host=host, port=port, open_browser=False, show_connection_info=False)
        finally:
            sys.argv = argv
            self.session.shutdown()

    def _bind(self, web_server) -> None:
        web_server.app.middlewares.append(self.guard.middleware())

    def _ready(self, **_) -> None:
        print(f"{TITLE} for {self.state.r_reviewer}: {self.url(self._port)}", flush=True)
        if self.guard.require_token:
            print(f"access token (needed on every connection): {self.token}", flush=True)

    def _holder(self) -> str:
        return f"{self.state.r_reviewer}, {self.state.r_title}" if self.state.r_title else self.state.r_reviewer

    # -- what the page asks --------------------------------------------------------------------------------

    def open_case(self, key: str) -> None:
        """Open a worklist case (a locked or unknown one is refused with a message)."""
        if key == self.state.r_current and self.session.case is not None:
            return  # already open: keep its result, ROI and status as they are
        self._clear_messages()
        try:
            case = self.session.open_case(key)
        except (ValueError, KeyError) as exc:
            self.state.r_error = str(exc)
            self._refresh_worklist()
            return
        has_result = self.session.segmentation_node() is not None
        self.state.update({"r_current": case.key, "r_title": f"{case.title} ({case.case_id})",
                           "r_has_result": has_result, "r_status": "corrected", "r_roi": ""})
        self._segmentation_changed()
        self._refresh_worklist()

    def segment_or_cancel(self) -> None:
        """ "Segment pancreas", or Cancel while it runs."""
        if self.state.r_running == "segment":
            self.session.cancel()
            return
        self._clear_messages()
        try:
            self.session.model = chosen_model(self.state.r_model_path, self.state.r_models)
            self.session.segment(self._report())
        except ValueError as exc:
            self.state.r_error = str(exc)
            return
        self.state.update({"r_running": "segment", "r_progress": 0, "r_progress_text": "starting the model"})

    def export(self) -> None:
        """ "Export for training" of the open case; the next case opens when it is done."""
        self._clear_messages()
        try:
            self.session.export(self.state.r_status, self._report())
        except ValueError as exc:
            self.state.r_error = str(exc)
            return
        self.state.update({"r_running": "export", "r_progress": 50, "r_progress_text": "exporting"})

    def _model_changed(self, r_model_path=None, **_) -> None:
        """The model drop-down: the header names the chosen model; the next run uses it."""
        try:
            self.state.r_model = model_note(chosen_model(r_model_path, self.state.r_models))
        except ValueError as exc:
            self.state.update({"r_error": str(exc), "r_model_path": self.session.model})

    def set_effect(self, effect_name: str) -> None:
        """Activate one of Slicer's Segment Editor effects on the Pancreas segment."""
        import trame_slicer.segmentation as effects

        self.slicer.segmentation_editor.set_active_effect_type(getattr(effects, effect_name))

    def undo(self) -> None:
        self.slicer.segmentation_editor.undo_stack.undo()

    def redo(self) -> None:
        self.slicer.segmentation_editor.undo_stack.redo()

    # -- what the session and the editor report ------------------------------------------------------------

    def _report(self) -> Report:
        def progress(fraction: float, message: str) -> None:
            with self.state:
                self.state.update({"r_progress": round(100 * fraction), "r_progress_text": message})

        def done(what: str, message: str) -> None:
            with self.state:
                self.state.update({"r_running": "", "r_message": message, "r_unsure": self.session.unsure_note})
                if what == "segment":
                    self._show_result()
                else:
                    self._next_case(message)

        def failed(message: str) -> None:
            with self.state:
                self.state.update({"r_running": "", "r_error": message})

        return Report(progress, done, failed)

    def _show_result(self) -> None:
        result = self.session.scene.findResult(self.session.volume)
        roi = None
        if result is not None and result.roi is not None:
            roi = self.session.scene.readRoi(result.roi)
            display = result.roi.GetDisplayNode()
            # The box in 3D only: in the slice views its handles would catch the strokes of the effects.
            display.SetVisibility2D(False)
            display.SetPropertiesLabelVisibility(False)
        self.state.update({"r_has_result": True, "r_status": "approved",
                           "r_roi": _roi_text(roi) if roi is not None else ""})
        self._segmentation_changed()
        self._refresh_worklist()

    def _next_case(self, message: str) -> None:
        current = self.session.case
        self._refresh_worklist()
        following = self.worklist.next_case(current, skip={c["key"] for c in self.state.r_cases if c["locked"]})
        if following is None:
            self.state.r_message = message + " No case left to review."
            return
        self.open_case(following.key)
        self.state.r_message = message

    def _segmentation_changed(self, *_) -> None:
        with self.state:
            self.state.r_volume_ml = f"{self.session.volume_ml():.1f}"
            if self.state.r_status == "approved" and self.session.logic.runningKind is None and self._edited():
                self.state.r_status = "corrected"

    def _edited(self) -> bool:
        return self.slicer.segmentation_editor.undo_stack.can_undo()

    def _effect_changed(self, *_) -> None:
        with self.state:
            effect = self.slicer.segmentation_editor.active_effect
            self.state.r_effect = type(effect).__name__ if effect is not None else ""

    def _undo_changed(self, *_) -> None:
        stack = self.slicer.segmentation_editor.undo_stack
        with self.state:
            self.state.update({"r_can_undo": stack.can_undo(), "r_can_redo": stack.can_redo()})
        self._segmentation_changed()

    def _refresh_worklist(self) -> None:
        rows = []
        self.worklist.refresh()
        for case in self.worklist.cases:
            status = self.worklist.status(case)
            rows.append({"key": case.key, "title": case.title, "status": status,
                         "color": STATUS_COLORS.get(status, "grey"), "locked": self.session.locked_by(case) or ""})
        self.state.r_cases = rows

    def _clear_messages(self) -> None:
        self.state.update({"r_message": "", "r_error": ""})


def _roi_text(roi) -> str:
    """The phase-1 ROI's size, for the panel.

    >>> from PancreasSegLib.pipeline.roi import ROI
    >>> _roi_text(ROI(center=(0.0, 0.0, 0.0), size=(120.0, 80.5, 60.0)))
    '120 x 80 x 60 mm (shown in the views)'
    """
    return " x ".join(f"{s:.0f}" for s in roi.size) + " mm (shown in the views)"
