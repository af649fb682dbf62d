"""The phase-1 ROI between the library's :class:`~PancreasSegLib.pipeline.roi.ROI` (LPS) and Slicer's markups
ROI (RAS).

The Logic only handles the library's ``ROI``: it reads the command's ROI JSON with ``ROI.from_json`` /
``read_roi`` and writes the box to re-run in with ``write_roi``, so the one parser (which also checks that the
axes are orthonormal) is the library's. This file is the small adapter a markups ROI needs: its center,
size and axes in RAS, and back. LPS and RAS differ by the sign of x and y, for points and directions alike
(``ROI.to_json(coordinate_system="RAS")`` does the flip); the box is the same box in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PancreasSegLib.pipeline.roi import ROI

Vector = tuple[float, float, float]


@dataclass(frozen=True)
class RasBox:
    """An oriented box as a markups ROI holds it: center (mm), size along each axis (mm), three unit axes, RAS."""

    center: Vector
    size: Vector
    axes: tuple[Vector, Vector, Vector]


def rasBox(roi: ROI) -> RasBox:
    """``roi`` in RAS, for a markups ROI node."""
    data = roi.to_json(coordinate_system="RAS")
    return RasBox(_vector(data["center"]), _vector(data["size"]),
                  tuple(_vector(axis) for axis in data["axes"]))  # type: ignore[arg-type]


def roiFromRas(center: Sequence[float], size: Sequence[float], axes: Sequence[Sequence[float]]) -> ROI:
    """The library's ROI of a markups ROI's RAS center, size and axes.

    Raises:
        ValueError: a non-positive size, a non-finite number or axes that are not orthonormal (the library's
            ``InputError``, a ValueError).
    """
    return ROI.from_json({"coordinate_system": "RAS", "center": list(center), "size": list(size),
                          "axes": [list(axis) for axis in axes]})


def _vector(values: Sequence[float]) -> Vector:
    return float(values[0]), float(values[1]), float(values[2])
