"""Phase 1: find the pancreas on axial slices with Mask R-CNN and turn the detections into one 3D ROI.

The volume is sampled on a canonical axial grid, whatever its orientation: LPS-aligned (columns run
to the patient's left, rows to posterior, the radiological view), ``slice_size_yx`` pixels of
``in_plane_spacing_mm`` centred on the volume, one slice every ``slice_step_mm``. Only those slices
are resampled, never the whole volume. After a coarse pass, a few slices between the last hit and
the first miss at each end of the detected run refine the cranio-caudal extent.

Stray detections are dropped twice: along z only the strongest run of consecutive hit slices is kept
(gaps of one sampled slice are tolerated), and in-plane only the chain of boxes that touch or nearly
touch from slice to slice (the gland, found whole or in pieces) with the largest total score is
kept. The union of those boxes plus ``margin_mm`` on every side is the ROI.

The sampling itself (:mod:`PancreasSegLib.pipeline.sampling`) is shared with training, so the network
sees at inference exactly what it learnt on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from PancreasSegLib.pipeline.roi import ROI, image_axes
from PancreasSegLib.pipeline.sampling import axial_grid, coarse_positions, sample_slices, window
from PancreasSegLib.progress import Progress

if TYPE_CHECKING:
    import SimpleITK as sitk
    import torch

#: Largest in-plane gap (mm) between two boxes of the gland's chain (the stage's ``max_box_gap_mm``).
MAX_BOX_GAP_MM = 15.0


@dataclass
class Detections:
    """What the localizer saw: per sampled slice its z (mm), boxes (LPS mm, x0 y0 x1 y1) and scores."""

    z: list[float] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)

    def add(self, z: float, boxes: np.ndarray, scores: np.ndarray) -> None:
        self.z.append(float(z))
        self.boxes.append(np.asarray(boxes, dtype=float).reshape(-1, 4))
        self.scores.append(np.asarray(scores, dtype=float).reshape(-1))

    def sorted(self) -> Detections:
        order = np.argsort(self.z, kind="stable")
        return Detections([self.z[i] for i in order], [self.boxes[i] for i in order], [self.scores[i] for i in order])


@contextlib.contextmanager
def _boxes_only(model: torch.nn.Module) -> Iterator[None]:
    # The ROI needs boxes only: skipping the mask branch saves pasting 28x28 masks into every slice.
    # The slices already have the network's input size, so torchvision's resize (an interpolation
    # even at scale 1) is skipped too.
    heads = model.roi_heads
    saved = heads.mask_roi_pool, heads.mask_head, heads.mask_predictor
    heads.mask_roi_pool = heads.mask_head = heads.mask_predictor = None
    transform = getattr(model, "transform", None)
    if transform is not None:
        transform.resize = _no_resize
    try:
        yield
    finally:
        heads.mask_roi_pool, heads.mask_head, heads.mask_predictor = saved
        if transform is not None:
            del transform.resize


def _no_resize(image, target=None):
    return image, target


def detect(model: torch.nn.Module, slices01: np.ndarray, device: str = "cpu",
           batch_size: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run the localizer on windowed slices (n, H, W) in [0, 1]; per slice (boxes in pixels (k, 4), scores (k,))."""
    import torch

    results = []
    amp = torch.autocast("cuda", dtype=torch.float16) if str(device).startswith("cuda") else contextlib.nullcontext()
    with torch.inference_mode(), _boxes_only(model), amp:
        for start in range(0, len(slices01), batch_size):
            batch = torch.from_numpy(slices01[start:start + batch_size]).to(device)
            for out in model(list(batch[:, None])):
                keep = out["labels"] == 1
                results.append((out["boxes"][keep].float().cpu().numpy(), out["scores"][keep].float().cpu().numpy()))
    return results


def best_run(hit: np.ndarray, weight: np.ndarray, max_gap: int = 1) -> tuple[int, int] | None:
    """The run of hit slices (gaps of up to ``max_gap`` misses bridged) with the largest total weight.

    >>> best_run(np.array([1, 0, 1, 1, 0, 0, 0, 1], bool), np.ones(8))
    (0, 3)
    """
    runs: list[tuple[int, int]] = []
    for i in np.flatnonzero(hit):
        if runs and i - runs[-1][1] <= max_gap + 1:
            runs[-1] = (runs[-1][0], int(i))
        else:
            runs.append((int(i), int(i)))
    if not runs:
        return None
    return max(runs, key=lambda r: float(np.sum(weight[r[0]:r[1] + 1] * hit[r[0]:r[1] + 1])))


def combine_boxes(boxes: list[np.ndarray], max_gap_mm: float = MAX_BOX_GAP_MM, scores: list[np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Union of the chain of per-slice boxes (LPS mm) the pancreas forms, without stray boxes.

    The gland is long (15-20 cm from head to tail), curved and often found in pieces, so no fixed
    distance from a centre tells gland from stray. Boxes are linked instead: two boxes on the same
    or on neighbouring slices whose rectangles lie within ``max_gap_mm`` of each other belong
    together (one missed slice between them is bridged, as along z). The group with the largest
    total score is the pancreas; a box on another organ, apart from the chain, is left out.

    Args:
        boxes: per slice (in z order, neighbours adjacent) the (k, 4) boxes x0 y0 x1 y1 above the threshold.
        max_gap_mm: largest in-plane distance between two linked boxes.
        scores: per slice the boxes' scores (default 1 for every box).

    Returns:
        (lower xy, upper xy) in mm.
    """
    from scipy.sparse.csgraph import connected_components

    flat = [(i, b) for i, slice_boxes in enumerate(boxes) for b in np.asarray(slice_boxes, float).reshape(-1, 4)]
    if not flat:
        raise ValueError("no boxes to combine")
    weight = (np.concatenate([np.asarray(s, float).reshape(-1) for s in scores]) if scores is not None
              else np.ones(len(flat)))
    slice_of = np.array([i for i, _ in flat])
    rects = np.array([b for _, b in flat])
    # In-plane gap between every two rectangles (0 when they overlap), and whether their slices are neighbours.
    gap_x = np.maximum(0.0, np.maximum(rects[:, None, 0] - rects[None, :, 2], rects[None, :, 0] - rects[:, None, 2]))
    gap_y = np.maximum(0.0, np.maximum(rects[:, None, 1] - rects[None, :, 3], rects[None, :, 1] - rects[:, None, 3]))
    linked = (np.hypot(gap_x, gap_y) <= max_gap_mm) & (np.abs(slice_of[:, None] - slice_of[None, :]) <= 2)
    _, group = connected_components(linked, directed=False)
    best = int(np.argmax(np.bincount(group, weights=weight)))
    kept = rects[group == best]
    return kept[:, :2].min(axis=0), kept[:, 2:].max(axis=0)


def roi_from_detections(found: Detections, threshold: float, step: float, margin_mm: float,
                        max_gap_mm: float = MAX_BOX_GAP_MM) -> tuple[np.ndarray, np.ndarray] | None:
    """The LPS box (lower, upper) the detections support, margin included; ``None`` when nothing passed.

    Slices are assumed sorted by z; ``step`` is the sampling distance around each hit slice that the
    z extent is widened by (half a step on each side).
    """
    found = found.sorted()
    scores = [s[s >= threshold] for s in found.scores]
    hit = np.array([len(s) > 0 for s in scores])
    weight = np.array([s.max() if len(s) else 0.0 for s in scores])
    run = best_run(hit, weight)
    if run is None:
        return None
    a, b = run
    boxes, box_scores = _hit_boxes(found, range(a, b + 1), threshold)
    lo_xy, hi_xy = combine_boxes(boxes, max_gap_mm, box_scores)
    z_lo, z_hi = found.z[a] - step / 2, found.z[b] + step / 2
    lower = np.array([lo_xy[0], lo_xy[1], z_lo]) - margin_mm
    upper = np.array([hi_xy[0], hi_xy[1], z_hi]) + margin_mm
    return lower, upper


def localize(image: sitk.Image, model: torch.nn.Module, stage: dict[str, Any], device: str = "cpu",
             margin_mm: float | None = None, progress: Progress | None = None) -> ROI | None:
    """Phase 1: the pancreas ROI in ``image``, or ``None`` when the localizer finds nothing.

    Args:
        image: the CT (HU), any orientation and spacing.
        model: the Mask R-CNN localizer (eval mode, on ``device``).
        stage: the localizer stage of model.json.
        device: torch device of ``model``.
        margin_mm: margin around the detections (default: the stage's ``margin_mm``, 20 mm).
        progress: called as ``progress("localize", fraction, message)``.

    Returns:
        The ROI along the image's axes, margin included, cut to the image's extent.
    """
    box = find_box(image, model, stage, device, margin_mm, progress)
    if box is None:
        return None
    margin = float(stage.get("margin_mm", 20.0) if margin_mm is None else margin_mm)
    return ROI.from_lps_bounds(box[0], box[1], image_axes(image), margin).clipped_to(image)


def find_box(image: sitk.Image, model: torch.nn.Module, stage: dict[str, Any], device: str = "cpu",
             margin_mm: float | None = None, progress: Progress | None = None,
             seen: Detections | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Phase 1 as an LPS-aligned box (lower, upper corner in mm, margin included), or ``None``.

    The arguments are those of :func:`localize`; ``seen``, when given, receives every slice's boxes
    and scores (for the quality record). For an oblique image the LPS box is tighter than the ROI
    along the image's axes, so phase 2 crops this box.
    """
    margin = float(stage.get("margin_mm", 20.0) if margin_mm is None else margin_mm)
    threshold = float(stage["score_threshold"])
    step = float(stage["slice_step_mm"])
    refine = int(stage.get("refine_slices", 3))
    grid = axial_grid(image, stage)
    z = coarse_positions(grid, step)
    report = progress or (lambda *a: None)
    found = Detections() if seen is None else seen
    batch = int(stage.get("batch_size", 16))
    for start in range(0, len(z), batch):
        chunk = z[start:start + batch]
        report("localize", start / (len(z) + 2 * refine), f"slices {start + 1}-{start + len(chunk)} of {len(z)}")
        slices = window(sample_slices(image, grid, chunk), stage["hu_window"])
        for zz, (boxes, scores) in zip(chunk, detect(model, slices, device, batch)):
            found.add(zz, grid.pixel_to_lps_xy(boxes), scores)
    max_gap = float(stage.get("max_box_gap_mm", MAX_BOX_GAP_MM))
    coarse = roi_from_detections(found, threshold, step, 0.0, max_gap)
    if coarse is None:
        report("localize", 1.0, "no pancreas found")
        return None
    fine_step = step / (refine + 1)
    if refine > 0:
        # Probe between the run's end slices and their missed neighbours for a tighter z extent.
        z_first, z_last = coarse[0][2] + step / 2, coarse[1][2] - step / 2
        probes = [z_first - k * fine_step for k in range(1, refine + 1)] + \
                 [z_last + k * fine_step for k in range(1, refine + 1)]
        probes = [p for p in probes if grid.z_range[0] <= p <= grid.z_range[1]]
        report("localize", len(z) / (len(z) + 2 * refine), "refining the cranio-caudal extent")
        if probes:
            slices = window(sample_slices(image, grid, probes), stage["hu_window"])
            for zz, (boxes, scores) in zip(probes, detect(model, slices, device, batch)):
                found.add(zz, grid.pixel_to_lps_xy(boxes), scores)
    box = _refined_box(found, threshold, step, coarse, max_gap)
    report("localize", 1.0, "pancreas found")
    return box[0] - margin, box[1] + margin


def _refined_box(found: Detections, threshold: float, step: float, coarse, max_gap: float):
    # z extent: walk outward from the coarse run through the probes while they still hit.
    found = found.sorted()
    z = np.array(found.z)
    hit = np.array([np.any(s >= threshold) for s in found.scores])
    z_first, z_last = coarse[0][2] + step / 2, coarse[1][2] - step / 2
    inside = (z >= z_first - 1e-6) & (z <= z_last + 1e-6)
    lo_i = int(np.flatnonzero(inside)[0])
    hi_i = int(np.flatnonzero(inside)[-1])
    while lo_i > 0 and hit[lo_i - 1] and z_first - z[lo_i - 1] < step - 1e-6:
        lo_i -= 1
    while hi_i < len(z) - 1 and hit[hi_i + 1] and z[hi_i + 1] - z_last < step - 1e-6:
        hi_i += 1
    # The organ ends somewhere between the outermost hit and the next slice seen (a miss): take half way.
    below = min(step, z[lo_i] - z[lo_i - 1]) if lo_i > 0 else step
    above = min(step, z[hi_i + 1] - z[hi_i]) if hi_i < len(z) - 1 else step
    boxes, box_scores = _hit_boxes(found, range(lo_i, hi_i + 1), threshold)
    lo_xy, hi_xy = combine_boxes(boxes, max_gap, box_scores)
    return (np.array([lo_xy[0], lo_xy[1], z[lo_i] - below / 2]),
            np.array([hi_xy[0], hi_xy[1], z[hi_i] + above / 2]))


def _hit_boxes(found: Detections, indices, threshold: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    # Per slice of ``indices`` the boxes that pass the threshold and their scores (a missed slice gives none).
    boxes, scores = [], []
    for i in indices:
        keep = found.scores[i] >= threshold
        boxes.append(found.boxes[i][keep])
        scores.append(found.scores[i][keep])
    return boxes, scores
