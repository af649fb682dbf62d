"""Comparing image grids (size, spacing, origin, direction) and moving a label map onto another grid.

Two label maps can only be compared voxel by voxel when they share a grid. Files written by different
tools differ by float rounding (NIfTI stores float32), so grids are compared with a tolerance relative
to the voxel size rather than exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk

#: Largest accepted origin/spacing difference, as a fraction of the voxel spacing.
SPACING_TOLERANCE = 1e-3
#: Largest accepted difference of any direction-matrix element.
DIRECTION_TOLERANCE = 1e-4


def grid_mismatch(image: sitk.Image, reference: sitk.Image, spacing_tolerance: float = SPACING_TOLERANCE,
                  direction_tolerance: float = DIRECTION_TOLERANCE) -> str | None:
    """Describe how the grid of ``image`` differs from that of ``reference``; ``None`` when they match.

    Args:
        image: the image to check.
        reference: the image whose grid is expected.
        spacing_tolerance: accepted spacing and origin difference as a fraction of the reference spacing.
        direction_tolerance: accepted difference of each direction-matrix element.

    Returns:
        A short phrase such as ``"size (16, 16, 8) != (16, 16, 9)"`` or ``None``.

    >>> grid_mismatch(label, image) is None  # doctest: +SKIP
    True
    """
    if image.GetDimension() != reference.GetDimension():
        return f"dimension {image.GetDimension()} != {reference.GetDimension()}"
    if image.GetSize() != reference.GetSize():
        return f"size {image.GetSize()} != {reference.GetSize()}"
    lattice = lattice_mismatch(image, reference, spacing_tolerance, direction_tolerance)
    if lattice is not None:
        return lattice
    tolerance = spacing_tolerance * np.asarray(reference.GetSpacing())
    # Origins are compared along the reference axes so the tolerance scales with each axis' spacing.
    offset = np.asarray(image.GetOrigin()) - np.asarray(reference.GetOrigin())
    axes = np.asarray(reference.GetDirection()).reshape(3, 3)
    if np.any(np.abs(axes.T @ offset) > tolerance):
        return f"origin {_fmt(image.GetOrigin())} != {_fmt(reference.GetOrigin())} mm"
    return None


def lattice_mismatch(image: sitk.Image, reference: sitk.Image, spacing_tolerance: float = SPACING_TOLERANCE,
                     direction_tolerance: float = DIRECTION_TOLERANCE) -> str | None:
    """Like :func:`grid_mismatch` but only spacing and direction are compared (not size nor origin)."""
    ref_spacing = np.asarray(reference.GetSpacing())
    if np.any(np.abs(np.asarray(image.GetSpacing()) - ref_spacing) > spacing_tolerance * ref_spacing):
        return f"spacing {_fmt(image.GetSpacing())} != {_fmt(reference.GetSpacing())} mm"
    if np.abs(np.asarray(image.GetDirection()) - np.asarray(reference.GetDirection())).max() > direction_tolerance:
        return f"direction {_fmt(image.GetDirection())} != {_fmt(reference.GetDirection())}"
    return None


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper LPS corners (mm) of the axis-aligned box around the image's voxel centres."""
    size = np.asarray(image.GetSize())
    corners = np.array([[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)],
                       dtype=float)
    points = np.array([image.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners])
    return points.min(axis=0), points.max(axis=0)


def grids_overlap(image: sitk.Image, reference: sitk.Image) -> bool:
    """Whether the physical extents of the two images intersect (half a voxel of slack)."""
    lo_a, hi_a = physical_bounds(image)
    lo_b, hi_b = physical_bounds(reference)
    slack = 0.5 * max(max(image.GetSpacing()), max(reference.GetSpacing()))
    return bool(np.all(lo_a <= hi_b + slack) and np.all(lo_b <= hi_a + slack))


def resample_label_to(label: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Nearest-neighbour resampling of ``label`` onto the grid of ``reference`` (outside: 0).

    The physical position of every voxel is kept; only the sampling changes. A label on a sub-grid of the
    reference (e.g. a Slicer .seg.nrrd cropped to its extent) comes back unchanged, only padded.
    """
    import SimpleITK as sitk

    return sitk.Resample(label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, label.GetPixelID())


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
