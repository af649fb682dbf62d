"""How sure a result is: a quality record measured on every prediction, and flags against calibrated ranges.

Each prediction carries measures of its own confidence and of its input:

- ``detection_score``: phase 1's mean best box score over the slices of the chosen run;
- ``mean_probability``: phase 2's mean foreground probability inside the label;
- ``uncertain_fraction``: of the voxels with a foreground probability above 0.25, those below 0.75;
- ``volume_ml``: the labelled volume (an adult pancreas is roughly 40-120 mL);
- ``scan_edge_fraction``: the label's area on the first or last slice over its largest axial area
  (above zero when the scan ends inside the gland);
- ``label_hu``: median HU under the label, and ``context_hu``: median HU of the segmented box, which
  say whether the input looks like what the model was trained on (contrast phase, body composition).

``pancreasseg calibrate`` runs the model on validation cases (never the test sets) and stores, per
measure, the range the model showed on the cases it segmented well (Dice >= 0.8), widened by the
smallest fraction of its span (0.1, 0.25, 0.5, 1 or 2) that flags at most 10 % of those cases when each
is judged by the others' ranges, in the bundle's model.json under ``quality``. A result outside a
range is still written, but flagged: :func:`judge` names each measure out of range in one sentence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk

QUALITY_FORMAT = "pancreasseg-quality/1"
#: The command line writes the quality record beside the label map, as ``<output>.quality.json``.
QUALITY_SUFFIX = ".quality.json"
#: Measure -> which side of its calibrated range is suspicious ("low", "high" or "both") and its words.
MEASURES: dict[str, tuple[str, str]] = {
    "detection_score": ("low", "phase 1's detection score"),
    "mean_probability": ("low", "phase 2's mean foreground probability"),
    "uncertain_fraction": ("high", "the share of uncertain voxels"),
    "volume_ml": ("both", "the volume"),
    "scan_edge_fraction": ("high", "the part of the gland at the edge of the scan"),
    "label_hu": ("both", "the HU of the segmented gland"),
    "context_hu": ("both", "the HU around the gland"),
}
#: Dice from which a validation case counts as segmented well.
GOOD_DICE = 0.8
#: Widenings of the ranges (fractions of their span) tried in turn, and the share of good validation
#: cases that may be flagged when each is judged by the others' ranges.
WIDENINGS = (0.1, 0.25, 0.5, 1.0, 2.0)
FALSE_ALARMS = 0.1


def detection_score(scores: list[np.ndarray], threshold: float) -> float | None:
    """Mean over the slices with a box at or above ``threshold`` of their best score (None when there is none)."""
    best = [float(np.max(s)) for s in scores if len(s) and float(np.max(s)) >= threshold]
    return float(np.mean(best)) if best else None


def measure(image: sitk.Image, label_sub: np.ndarray | None, foreground_sub: np.ndarray | None, start,
            detection: float | None) -> dict[str, float | None]:
    """The quality measures of one prediction (see the module docstring); None where one does not apply.

    ``label_sub`` and ``foreground_sub`` are the label and foreground probability (Z, Y, X) of the region
    of the input grid that phase 2 covered, starting at index ``start`` (x, y, z).
    """
    import SimpleITK as sitk

    out: dict[str, float | None] = dict.fromkeys(MEASURES)
    out["detection_score"] = None if detection is None else round(detection, 4)
    if label_sub is None or not label_sub.any():
        out["volume_ml"] = 0.0
        return out
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0  # the label is all inside the sub-region
    out["volume_ml"] = round(int(np.count_nonzero(label_sub)) * voxel_ml, 3)
    inside = label_sub > 0
    fg = foreground_sub
    out["mean_probability"] = round(float(fg[inside].mean()), 4)
    likely = np.count_nonzero(fg > 0.25)
    out["uncertain_fraction"] = round(float(np.count_nonzero((fg > 0.25) & (fg < 0.75)) / max(likely, 1)), 4)
    areas = inside.reshape(inside.shape[0], -1).sum(axis=1)
    z0, z1 = int(start[2]), int(start[2]) + inside.shape[0]
    edge = max(areas[0] if z0 == 0 else 0, areas[-1] if z1 == image.GetSize()[2] else 0)
    out["scan_edge_fraction"] = round(float(edge / areas.max()), 4)
    size = [int(v) for v in inside.shape[::-1]]
    # A view is only valid while its image lives: keep the cut-out image in a name, not a temporary.
    region = sitk.RegionOfInterest(image, size, [int(v) for v in start])
    hu = sitk.GetArrayViewFromImage(region)
    out["label_hu"] = round(float(np.median(hu[inside])), 1)
    out["context_hu"] = round(float(np.median(hu)), 1)
    return out


def calibrate(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Ranges per measure from validation records ``{"dice": d, "measures": {...}}`` (see the module docstring).

    Raises:
        ValueError: fewer than three records with Dice >= 0.8.
    """
    good = [r["measures"] for r in records if r["dice"] >= GOOD_DICE]
    if len(good) < 3:
        raise ValueError(f"only {len(good)} validation case(s) with Dice >= {GOOD_DICE}; need at least 3")
    # The widening: the smallest that leaves at most FALSE_ALARMS of the good cases flagged when each is
    # judged by the ranges of the others (leave one out), so a small validation set does not flag most
    # good results of the next scans.
    for widen in WIDENINGS:
        left_out = [bool(judge(m, {"ranges": _ranges(good[:i] + good[i + 1:], widen)})) for i, m in enumerate(good)]
        if np.mean(left_out) <= FALSE_ALARMS:
            break
    return {"format": QUALITY_FORMAT, "good_dice": GOOD_DICE, "cases": len(records), "good_cases": len(good),
            "widen": widen, "leave_one_out_flagged": round(float(np.mean(left_out)), 3),
            "ranges": _ranges(good, widen)}


def _ranges(good: list[dict[str, Any]], widen: float) -> dict[str, list[float]]:
    ranges = {}
    for name in MEASURES:
        values = np.array([m[name] for m in good if m.get(name) is not None], dtype=float)
        if values.size:
            span = float(values.max() - values.min())
            ranges[name] = [round(float(values.min()) - widen * span, 4), round(float(values.max()) + widen * span, 4)]
    return ranges


def judge(measures: dict[str, float | None], calibration: dict[str, Any] | None, found: bool = True) -> list[str]:
    """One sentence per measure outside its calibrated range (empty when all are inside, or uncalibrated)."""
    if not found:
        return ["nothing was found; the pancreas may be outside the scan, or the scan unlike the training data"]
    if not calibration:
        return []
    warnings = []
    for name, (side, words) in MEASURES.items():
        value, bounds = measures.get(name), calibration.get("ranges", {}).get(name)
        if value is None or bounds is None:
            continue
        lo, hi = bounds
        if side in ("low", "both") and value < lo:
            warnings.append(f"unsure: {words} ({value:g}) is below what the model showed on validation data "
                            f"(from {lo:g})")
        elif side in ("high", "both") and value > hi:
            warnings.append(f"unsure: {words} ({value:g}) is above what the model showed on validation data "
                            f"(up to {hi:g})")
    return warnings


def quality_record(measures: dict[str, float | None], warnings: list[str], calibration: dict[str, Any] | None
                   ) -> dict[str, Any]:
    """The JSON written beside an output as ``<output>.quality.json``."""
    return {"format": QUALITY_FORMAT, "unsure": bool(warnings), "warnings": warnings, "measures": measures,
            "calibrated": bool(calibration),
            "calibration_inherited_from": (calibration or {}).get("inherited_from"),
            "ranges": (calibration or {}).get("ranges", {})}
