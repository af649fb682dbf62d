"""Comparing voxel grids (size, spacing, origin, direction) with a small tolerance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk

#: Largest difference in spacing and origin (mm) still counted as the same grid.
MM_TOLERANCE = 1e-4
#: Largest difference of a direction-matrix entry still counted as the same grid.
DIRECTION_TOLERANCE = 1e-5


def geometry(image: sitk.Image) -> dict:
    """The grid of ``image`` as plain JSON values: size (x, y, z), spacing and origin in mm, direction
    (row-major 3x3, LPS)."""
    return {
        "size": [int(v) for v in image.GetSize()],
        "spacing": [float(v) for v in image.GetSpacing()],
        "origin": [float(v) for v in image.GetOrigin()],
        "direction": [float(v) for v in image.GetDirection()],
    }


def grid_difference(a: dict, b: dict, mm_tol: float = MM_TOLERANCE, dir_tol: float = DIRECTION_TOLERANCE) -> str | None:
    """Why the grids ``a`` and ``b`` (as :func:`geometry` gives them) differ, or None when they match.

    >>> g = {"size": [2, 2, 2], "spacing": [1, 1, 1], "origin": [0, 0, 0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}
    >>> grid_difference(g, dict(g, origin=[0, 0, 0.5]))
    'origin differs by 0.5 mm (0, 0, 0 vs 0, 0, 0.5)'
    """
    if list(a["size"]) != list(b["size"]):
        return f"size differs ({_fmt(a['size'])} vs {_fmt(b['size'])})"
    for key, tol, unit in (("spacing", mm_tol, " mm"), ("origin", mm_tol, " mm"), ("direction", dir_tol, "")):
        delta = float(np.max(np.abs(np.asarray(a[key], float) - np.asarray(b[key], float))))
        if delta > tol:
            return f"{key} differs by {delta:.3g}{unit} ({_fmt(a[key])} vs {_fmt(b[key])})"
    return None


def _fmt(values) -> str:
    return ", ".join(f"{float(v):.6g}" for v in values)
