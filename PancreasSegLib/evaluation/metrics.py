"""Segmentation metrics of one case: Dice, HD95, surface Dice (NSD) and volume error.

Distances are in millimetres: surface distances are computed on the voxel lattice scaled by the spacing,
which equals the physical distance because the direction matrix is a rotation. Prediction and reference
must share a grid (see :func:`compare_labels`, which checks it and can resample).

The surface metrics are MONAI's own (``compute_hausdorff_distance`` with ``percentile=95`` and
``compute_surface_dice``, edge voxels, Euclidean distance), so numbers match what a MONAI pipeline reports.
Empty masks, where MONAI returns NaN or warns, get the definitions below:

==========================  =====  ==========  ==================  =====================
case                        Dice   HD95 (mm)   surface Dice        relative volume error
==========================  =====  ==========  ==================  =====================
both empty                  1.0    0.0         1.0                 NaN
reference empty only        0.0    NaN         0.0                 NaN
prediction empty only       0.0    NaN         0.0                 -1.0
==========================  =====  ==========  ==================  =====================

HD95 is NaN (as in MONAI) when exactly one mask is empty: no finite distance exists. Summaries count
these cases and leave them out of the HD95 statistics (:mod:`PancreasSegLib.evaluation.run`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from PancreasSegLib.errors import InputError
from PancreasSegLib.io.grid import grid_mismatch, grids_overlap, lattice_mismatch, resample_label_to

if TYPE_CHECKING:
    import SimpleITK as sitk

#: Surface Dice tolerance in mm.
DEFAULT_TOLERANCE_MM = 2.0

#: Structures that can be evaluated, as the label values that make them. "pancreas" is the whole gland:
#: pancreas and tumour together, so a pancreas-only model is compared fairly with an MSD reference that
#: outlines the tumour separately.
STRUCTURES: dict[str, tuple[int, ...]] = {"pancreas": (1, 2), "tumor": (2,)}


@dataclass(frozen=True)
class Metrics:
    """The metrics of one structure in one case (NaN where undefined, see the module docstring)."""

    dice: float
    hd95_mm: float
    surface_dice: float
    volume_pred_ml: float
    volume_ref_ml: float
    volume_error_ml: float
    volume_error_rel: float
    pred_empty: bool
    ref_empty: bool

    def as_dict(self) -> dict:
        """The fields as a plain dict."""
        return asdict(self)


#: Names of the numeric metrics, in report order.
METRIC_NAMES = ("dice", "hd95_mm", "surface_dice", "volume_error_ml", "volume_error_rel")


def binary_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                   tolerance_mm: float = DEFAULT_TOLERANCE_MM) -> Metrics:
    """Metrics of a binary prediction against a binary reference on the same grid.

    Args:
        pred: prediction mask, any shape, nonzero = inside (for volumes: (z, y, x)).
        ref: reference mask of the same shape.
        spacing: voxel size in mm in the array's axis order (for a SimpleITK array: z, y, x).
        tolerance_mm: surface Dice tolerance.

    Returns:
        :class:`Metrics`.

    >>> m = binary_metrics(pred_zyx, ref_zyx, spacing=(2.5, 0.7, 0.7))  # doctest: +SKIP
    """
    pred = np.asarray(pred) != 0
    ref = np.asarray(ref) != 0
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    if len(spacing) != pred.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not have {pred.ndim} values")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    vol_pred, vol_ref = n_pred * voxel_ml, n_ref * voxel_ml
    rel = (vol_pred - vol_ref) / vol_ref if n_ref else math.nan
    common = dict(volume_pred_ml=vol_pred, volume_ref_ml=vol_ref, volume_error_ml=vol_pred - vol_ref,
                  volume_error_rel=rel, pred_empty=n_pred == 0, ref_empty=n_ref == 0)
    if n_pred == 0 and n_ref == 0:
        return Metrics(dice=1.0, hd95_mm=0.0, surface_dice=1.0, **common)
    if n_pred == 0 or n_ref == 0:
        return Metrics(dice=0.0, hd95_mm=math.nan, surface_dice=0.0, **common)
    dice = 2.0 * int(np.count_nonzero(pred & ref)) / (n_pred + n_ref)
    hd95, nsd = _surface_metrics(pred, ref, spacing, tolerance_mm)
    return Metrics(dice=dice, hd95_mm=hd95, surface_dice=nsd, **common)


def _surface_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                     tolerance_mm: float) -> tuple[float, float]:
    import torch
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    # Cropping to the union's bounding box (+1 voxel, clipped at the image border, which MONAI pads with
    # background itself) leaves every edge voxel and distance unchanged and saves memory on full CTs.
    box = _bounding_box(pred | ref, margin=1)
    y_pred = torch.from_numpy(np.ascontiguousarray(pred[box]))[None, None]
    y_ref = torch.from_numpy(np.ascontiguousarray(ref[box]))[None, None]
    spacing = [float(s) for s in spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd95 = compute_hausdorff_distance(y_pred, y_ref, include_background=True, percentile=95, spacing=spacing)
        nsd = compute_surface_dice(y_pred.float(), y_ref.float(), class_thresholds=[float(tolerance_mm)],
                                   include_background=True, spacing=spacing)
    return float(hd95.item()), float(nsd.item())


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(present[0]) - margin, 0), min(int(present[-1]) + margin + 1, mask.shape[axis])))
    return tuple(box)


def structure_mask(label: np.ndarray, structure: str) -> np.ndarray:
    """The boolean mask of ``structure`` (a key of :data:`STRUCTURES`) in a label array."""
    if structure not in STRUCTURES:
        raise InputError(f"unknown structure {structure!r}; choose from {', '.join(STRUCTURES)}")
    return np.isin(label, STRUCTURES[structure])


def compare_labels(pred: sitk.Image, ref: sitk.Image, structures: Sequence[str] = ("pancreas",),
                   tolerance_mm: float = DEFAULT_TOLERANCE_MM, resample: bool = False,
                   ) -> tuple[dict[str, Metrics], bool]:
    """Metrics of a predicted label map against a reference label map, per structure.

    Args:
        pred: predicted label map (0 background, 1 pancreas, 2 tumor).
        ref: reference label map.
        structures: keys of :data:`STRUCTURES`.
        tolerance_mm: surface Dice tolerance.
        resample: when the grids differ, resample the prediction onto the reference grid (nearest
            neighbour) instead of refusing. A prediction on a voxel-aligned sub-grid of the reference (same
            spacing and direction, e.g. a cropped .seg.nrrd) is always placed exactly, without this flag.

    Returns:
        ``({structure: Metrics}, resampled)``; ``resampled`` says whether the prediction was moved onto the
        reference grid.

    Raises:
        InputError: the grids differ (and ``resample`` is off and the prediction is not a sub-grid), or the
            two images do not overlap in space at all.
    """
    import SimpleITK as sitk

    resampled = False
    mismatch = grid_mismatch(pred, ref)
    if mismatch is not None:
        if not grids_overlap(pred, ref):
            raise InputError(f"the prediction and the reference do not overlap in space ({mismatch})")
        if not (resample or _is_aligned_subgrid(pred, ref)):
            raise InputError(f"the prediction's grid differs from the reference's: {mismatch}; "
                             "use --resample to resample it onto the reference grid (nearest neighbour)")
        pred = resample_label_to(pred, ref)
        resampled = True
    pred_array = sitk.GetArrayViewFromImage(pred)
    ref_array = sitk.GetArrayViewFromImage(ref)
    spacing_zyx = tuple(reversed(ref.GetSpacing()))
    results = {s: binary_metrics(structure_mask(pred_array, s), structure_mask(ref_array, s), spacing_zyx,
                                 tolerance_mm) for s in structures}
    return results, resampled


def _is_aligned_subgrid(image: sitk.Image, reference: sitk.Image) -> bool:
    """Same spacing and direction, origin on the reference lattice: resampling only crops or pads."""
    if lattice_mismatch(image, reference) is not None:
        return False
    index = np.asarray(reference.TransformPhysicalPointToContinuousIndex(image.GetOrigin()))
    return bool(np.all(np.abs(index - np.round(index)) < 1e-3))
