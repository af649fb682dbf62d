"""The phase-1 ROI between the command's JSON (LPS) and Slicer's markups ROI (RAS).

ROI JSON (``segment --roi-out`` / ``--roi``)::

    {"coordinate_system": "LPS", "center": [x, y, z], "size": [sx, sy, sz],
     "axes": [[i axis], [j axis], [k axis]], "margin_mm": 20.0}

``axes`` are unit vectors (the columns of the image direction matrix), ``size`` is in mm along each of
them. LPS and RAS differ by the sign of x and y, for points and directions alike; the flip keeps the
axes a right-handed rotation, so the ROI box is the same box in both.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

_FLIP = (-1.0, -1.0, 1.0)

Vector = tuple[float, float, float]


@dataclass(frozen=True)
class RoiGeometry:
    """An oriented box: center (mm), size along each axis (mm), three unit axes; ``system`` is LPS or RAS."""

    center: Vector
    size: Vector
    axes: tuple[Vector, Vector, Vector]
    system: str = "RAS"
    marginMm: float = 0.0

    def converted(self, system: str) -> RoiGeometry:
        """The same box in ``system`` ("LPS" or "RAS")."""
        system = system.upper()
        if system not in ("LPS", "RAS"):
            raise ValueError(f"unknown coordinate system {system!r}: use LPS or RAS")
        if system == self.system:
            return self
        return RoiGeometry(_flip(self.center), self.size, tuple(_flip(a) for a in self.axes),  # type: ignore[arg-type]
                           system, self.marginMm)

    def toJson(self) -> dict:
        """The command's ROI JSON (always LPS)."""
        lps = self.converted("LPS")
        return {"coordinate_system": "LPS", "center": list(lps.center), "size": list(lps.size),
                "axes": [list(a) for a in lps.axes], "margin_mm": float(self.marginMm)}


def _flip(v: Sequence[float]) -> Vector:
    return (float(v[0]) * _FLIP[0], float(v[1]) * _FLIP[1], float(v[2]) * _FLIP[2])


def _vector(value, what: str) -> Vector:
    try:
        out = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        raise ValueError(f"ROI {what} must be three numbers, got {value!r}") from None
    if len(out) != 3 or not all(math.isfinite(x) for x in out):
        raise ValueError(f"ROI {what} must be three finite numbers, got {value!r}")
    return out  # type: ignore[return-value]


def roiFromJson(data: dict) -> RoiGeometry:
    """Read the command's ROI JSON; raise ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("ROI JSON must be an object")
    system = str(data.get("coordinate_system", "LPS")).upper()
    if system not in ("LPS", "RAS"):
        raise ValueError(f"ROI coordinate_system must be LPS or RAS, got {system!r}")
    axes = data.get("axes", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    if not isinstance(axes, (list, tuple)) or len(axes) != 3:
        raise ValueError("ROI axes must be three vectors")
    size = _vector(data.get("size"), "size")
    if min(size) <= 0:
        raise ValueError(f"ROI size must be positive, got {list(size)}")
    return RoiGeometry(_vector(data.get("center"), "center"), size,
                       tuple(_vector(a, "axis") for a in axes),  # type: ignore[arg-type]
                       system, float(data.get("margin_mm", 0.0)))


def readRoiJson(path: str | os.PathLike) -> RoiGeometry:
    """Read an ROI JSON file."""
    with open(path, encoding="utf-8") as f:
        return roiFromJson(json.load(f))


def writeRoiJson(roi: RoiGeometry, path: str | os.PathLike) -> None:
    """Write ``roi`` as the command's ROI JSON (LPS)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(roi.toJson(), f, indent=2)
