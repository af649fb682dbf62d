"""The reading room's page: worklist on the left, Slicer's four views in the middle, the review on the right.

The right panel reads in the order of the work, with the words of the Slicer module: the model (the
bundled models and the one the room was started with), "Segment pancreas" (Cancel while it runs, with
its progress bar), the result (volume in mL, the unsure note), the correction
tools (Slicer's Paint, Erase, Scissors, Islands and Smoothing effects, Undo and Redo, and trame-slicer's
Segment Editor panel for the effects' options), then the status and "Export for training". Elements the
browser test uses carry ids.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: (button text, trame-slicer effect class name) of the correction tools, in the Slicer module's order.
EFFECTS = (("Paint", "SegmentationEffectPaint"), ("Erase", "SegmentationEffectErase"),
           ("Scissors", "SegmentationEffectScissors"), ("Islands", "SegmentationEffectIslands"),
           ("Smoothing", "SegmentationEffectSmoothing"), ("No tool", "SegmentationEffectNoTool"))
STATUS_COLORS = {"new": "grey", "proposed": "blue", "corrected": "green", "approved": "teal", "rejected": "red"}


def model_note(model: str | os.PathLike) -> str:
    """What the page's header says of the model, from its bundle's ``model.json`` (name and description).

    >>> model_note("no/such/bundle")
    'model bundle'
    """
    from PancreasSegLib.errors import InputError, read_json

    try:
        config = read_json(Path(model) / "model.json")
    except InputError:
        config = {}
    config = config if isinstance(config, dict) else {}
    name = str(config.get("name") or Path(model).name)
    described = str(config.get("description") or "").lower()
    if "synthetic" in described and "phantom" in described:
        return f"model {name}, trained on synthetic phantoms only"
    return f"model {name}"


def model_choices(current: str | os.PathLike, bundled_dir: str | os.PathLike,
                  default: str | os.PathLike | None = None) -> list[dict]:
    """The model drop-down's entries (``title``, ``value``): the bundled models, newest first, then ``current``.

    ``current`` (the model the room was started with) gets an entry of its own when it is not one of the
    bundled ones; ``default`` (the model used when none is named) is marked as such.

    >>> model_choices("/m/mine", "no/such/folder")
    [{'title': 'mine (from a folder)', 'value': '/m/mine'}]
    """
    folder = Path(bundled_dir)
    bundles = sorted((p for p in folder.iterdir() if (p / "model.json").is_file()), key=lambda p: p.name,
                     reverse=True) if folder.is_dir() else []
    same = _same_path
    choices = [{"title": f"{p.name} (bundled{', default' if default and same(p, default) else ''})",
                "value": str(p)} for p in bundles]
    if not any(same(c["value"], current) for c in choices):
        choices.append({"title": f"{Path(current).name} (from a folder)", "value": str(current)})
    return choices


def chosen_model(value: str | None, choices: list[dict]) -> str:
    """The offered model folder ``value`` names; a value the page did not offer is refused.

    >>> chosen_model("/m/b", [{"title": "b", "value": "/m/b"}])
    '/m/b'
    """
    for choice in choices:
        if value is not None and _same_path(choice["value"], value):
            return choice["value"]
    raise ValueError(f"{value!r} is not one of the models offered; choose one from the list")


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


@dataclass
class Handlers:
    """What the page's controls call on the server."""

    open_case: Callable[[str], None]
    segment_or_cancel: Callable[[], None]
    set_effect: Callable[[str], None]
    undo: Callable[[], None]
    redo: Callable[[], None]
    export: Callable[[], None]


def build_page(server, layout_manager, handlers: Handlers, title: str, editor_panel: Callable[[], None]):
    """Build the page on ``server``; ``editor_panel()`` fills the "Effect options" panel. Returns the layout."""
    from trame.ui.vuetify3 import VAppLayout
    from trame.widgets import html
    from trame.widgets import vuetify3 as v

    with VAppLayout(server, template_name="main", full_height=True) as layout:
        layout.root.theme = "dark"
        with v.VAppBar(density="compact"):
            v.VToolbarTitle(title)
            html.Span("{{ r_reviewer }} · {{ r_dataset }} · {{ r_model }} · research use only",
                      classes="text-caption mr-4", id="notice")
        with v.VNavigationDrawer(permanent=True, location="left", width=260):
            _worklist(v, html, handlers)
        with v.VNavigationDrawer(permanent=True, location="right", width=340):
            _review_panel(v, html, handlers, editor_panel)
        with v.VMain(), html.Div(style="height: calc(100vh - 48px); display: flex;", id="views"):
            layout_manager.initialize_layout_grid(layout)
    return layout


def _worklist(v, html, handlers: Handlers) -> None:
    html.Div("Worklist", classes="text-subtitle-1 pa-3")
    with v.VList(density="compact", id="worklist"), v.VListItem(
            v_for="row in r_cases", key="row.key", id=("`case-${row.key}`",), active=("row.key === r_current",),
            disabled=("!!row.locked || !!r_running",), click=(handlers.open_case, "[row.key]")):
        v.VListItemTitle("{{ row.title }}")
        with v.VListItemSubtitle():
            v.VChip("{{ row.status }}", size="x-small", color=("row.color",), classes="case-status")
            html.Span(" locked by {{ row.locked }}", v_if="row.locked", classes="text-warning")


def _review_panel(v, html, handlers: Handlers, editor_panel: Callable[[], None]) -> None:
    with html.Div(classes="pa-3", id="review"):
        html.Div("{{ r_title || 'Open a case from the worklist' }}", classes="text-subtitle-1 mb-2", id="case-title")
        v.VSelect(label="Model", items=("r_models",), item_title="title", item_value="value",
                  v_model=("r_model_path",), density="compact", hide_details=True, classes="mb-2",
                  disabled=("!!r_running",), id="model")
        v.VBtn("{{ r_running === 'segment' ? 'Cancel' : 'Segment pancreas' }}", id="segment", block=True,
               color=("r_running === 'segment' ? 'warning' : 'primary'",),
               disabled=("!r_current || r_running === 'export'",), click=handlers.segment_or_cancel)
        v.VProgressLinear(v_if="r_running", model_value=("r_progress",), height=6, classes="my-2", id="progress")
        html.Div("{{ r_progress_text }}", v_if="r_running", classes="text-caption")
        html.Div("{{ r_message }}", v_if="r_message", classes="text-caption my-2 text-success", id="message")
        html.Div("{{ r_error }}", v_if="r_error", classes="text-caption my-2 text-error", id="error")
        html.Div("{{ r_unsure }}", v_if="r_unsure", classes="text-caption my-2 text-warning", id="unsure")
        html.Div("Pancreas: {{ r_volume_ml }} mL", v_if="r_has_result", classes="my-2", id="volume")
        html.Div("ROI: {{ r_roi }}", v_if="r_roi", classes="text-caption mb-2", id="roi")
        with html.Div(classes="d-flex flex-wrap ga-1 my-2", id="effects"):
            for text, effect in EFFECTS:
                v.VBtn(text, id=f"effect-{text.lower().replace(' ', '-')}", size="small",
                       variant=(f"r_effect === '{effect}' ? 'flat' : 'tonal'",),
                       disabled=("!r_has_result || !!r_running",), click=(handlers.set_effect, f"['{effect}']"))
        with html.Div(classes="d-flex ga-1 my-2"):
            v.VBtn("Undo", id="undo", size="small", prepend_icon="mdi-undo", disabled=("!r_can_undo",),
                   click=handlers.undo)
            v.VBtn("Redo", id="redo", size="small", prepend_icon="mdi-redo", disabled=("!r_can_redo",),
                   click=handlers.redo)
        v.VSelect(label="Status", items=("r_statuses",), v_model=("r_status",), density="compact", classes="mt-3",
                  hide_details=True, id="status")
        v.VBtn("Export for training", id="export", block=True, classes="mt-3", color="success",
               disabled=("!r_has_result || !!r_running",), click=handlers.export)
        with v.VExpansionPanels(classes="mt-4"), v.VExpansionPanel(title="Effect options"), v.VExpansionPanelText():
            editor_panel()
