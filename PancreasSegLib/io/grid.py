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

#: Largest accepted origin/spacing difference, as a fraction of the voxel spacing. It absorbs the float32
#: rounding of NIfTI headers and of grids recorded in JSON, and is far below anything that moves a voxel.
SPACING_TOLERANCE = 1e-3
#: Largest accepted difference of any direction-matrix element.
DIRECTION_TOLERANCE = 1e-4


def geometry(image: sitk.Image) -> dict:
    """The grid of ``image`` as plain JSON values: size (x, y, z), spacing and origin in mm, direction
    (row-major 3x3, LPS). Provenance files record grids in this form."""
    return {
        "size": [int(v) for v in image.GetSize()],
        "spacing": [float(v) for v in image.GetSpacing()],
        "origin": [float(v) for v in image.GetOrigin()],
        "direction": [float(v) for v in image.GetDirection()],
    }


def geometry_difference(grid: dict, reference: dict, spacing_tolerance: float = SPACING_TOLERANCE,
                        direction_tolerance: float = DIRECTION_TOLERANCE, size_and_origin: bool = True) -> str | None:
    """Why ``grid`` differs from ``reference`` (both as :func:`geometry` gives them); ``None`` when they match.

    Spacing and origin are compared relative to the reference's voxel size, the origin along the
    reference's own axes, so the same tolerance holds for 0.5 mm and 5 mm voxels.

    Args:
        grid: the grid to check.
        reference: the grid expected.
        spacing_tolerance: accepted spacing and origin difference as a fraction of the reference spacing.
        direction_tolerance: accepted difference of each direction-matrix element.
        size_and_origin: ``False`` compares only the lattice (spacing and direction).

    Returns:
        A short phrase such as ``"size differs (16, 16, 8 vs 16, 16, 9)"``, or ``None``.

    >>> g = {"size": [2, 2, 2], "spacing": [1, 1, 1], "origin": [0, 0, 0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}
    >>> geometry_difference(g, dict(g, origin=[0, 0, 0.5]))
    'origin differs by 0.5 mm (0, 0, 0 vs 0, 0, 0.5)'
    """
    size, ref_size = list(grid["size"]), list(reference["size"])
    if len(size) != len(ref_size):
        return f"dimension differs ({len(size)} vs {len(ref_size)})"
    if size_and_origin and size != ref_size:
        return f"size differs ({_fmt(size)} vs {_fmt(ref_size)})"
    ref_spacing = np.asarray(reference["spacing"], dtype=float)
    tolerance = spacing_tolerance * ref_spacing
    spacing_delta = np.abs(np.asarray(grid["spacing"], dtype=float) - ref_spacing)
    if np.any(spacing_delta > tolerance):
        return f"spacing differs by {spacing_delta.max():.3g} mm ({_fmt(grid['spacing'])} vs {_fmt(ref_spacing)})"
    direction_delta = np.abs(np.asarray(grid["direction"], float) - np.asarray(reference["direction"], float)).max()
    if direction_delta > direction_tolerance:
        return (f"direction differs by {direction_delta:.3g} ({_fmt(grid['direction'])} vs "
                f"{_fmt(reference['direction'])})")
    if size_and_origin:
        offset = np.asarray(grid["origin"], dtype=float) - np.asarray(reference["origin"], dtype=float)
        axes = np.asarray(reference["direction"], dtype=float).reshape(len(size), len(size))
        if np.any(np.abs(axes.T @ offset) > tolerance):
            return (f"origin differs by {np.linalg.norm(offset):.3g} mm ({_fmt(grid['origin'])} vs "
                    f"{_fmt(reference['origin'])})")
    return None


def grid_mismatch(image: sitk.Image, reference: sitk.Image, spacing_tolerance: float = SPACING_TOLERANCE,
                  direction_tolerance: float = DIRECTION_TOLERANCE) -> str | None:
    """How the grid of ``image`` differs from that of ``reference`` (:func:`geometry_difference`); ``None`` if not."""
    return geometry_difference(geometry(image), geometry(reference), spacing_tolerance, direction_tolerance)


def lattice_mismatch(image: sitk.Image, reference: sitk.Image, spacing_tolerance: float = SPACING_TOLERANCE,
                     direction_tolerance: float = DIRECTION_TOLERANCE) -> str | None:
    """Like :func:`grid_mismatch` but only spacing and direction are compared (not size nor origin)."""
    return geometry_difference(geometry(image), geometry(reference), spacing_tolerance, direction_tolerance,
                               size_and_origin=False)


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
    return ", ".join(f"{float(v):.6g}" for v in values)
