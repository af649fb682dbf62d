"""The phase-1 region of interest: an oriented box in physical (LPS) space, and its JSON form.

JSON (``--roi-out`` writes it, ``--roi`` reads it)::

    {"coordinate_system": "LPS", "center": [x, y, z], "size": [sx, sy, sz],
     "axes": [[ix, iy, iz], [jx, jy, jz], [kx, ky, kz]], "margin_mm": 20.0}

``center`` in mm, ``size`` in mm along the three ``axes`` (unit vectors; the localizer writes the
columns of the image's direction matrix, so the box is aligned with the image's voxel grid), and
``margin_mm`` the margin already included in ``size``. 3D Slicer's markups ROI is RAS: negate x and
y of the center and of each axis (:meth:`ROI.to_json` with ``coordinate_system="RAS"`` does it).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from PancreasSegLib.errors import InputError
from PancreasSegLib.io.atomic import write_json_atomic

if TYPE_CHECKING:
    import SimpleITK as sitk

_IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
_RAS_FLIP = np.array([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class ROI:
    """An oriented box: ``center`` (LPS mm), ``size`` (mm along ``axes``), ``axes`` (three unit vectors)."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]
    axes: tuple[tuple[float, float, float], ...] = _IDENTITY
    margin_mm: float = 0.0

    def corners(self) -> np.ndarray:
        """The 8 corners in LPS mm, shape (8, 3)."""
        axes = np.asarray(self.axes, dtype=float)
        half = np.asarray(self.size, dtype=float) / 2
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
        return np.asarray(self.center, dtype=float) + (signs * half) @ axes

    def lps_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The axis-aligned (LPS) bounding box of the ROI: (lower corner, upper corner) in mm."""
        corners = self.corners()
        return corners.min(axis=0), corners.max(axis=0)

    @classmethod
    def from_lps_bounds(cls, lower, upper, axes=_IDENTITY, margin_mm: float = 0.0) -> ROI:
        """The smallest box along ``axes`` that holds the LPS-aligned box ``[lower, upper]``."""
        lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
        corners = np.array([[x, y, z] for x in (lower[0], upper[0]) for y in (lower[1], upper[1])
                            for z in (lower[2], upper[2])])
        return _bounding_roi(corners, np.asarray(axes, dtype=float), margin_mm)

    def in_axes(self, axes) -> ROI:
        """The smallest box along ``axes`` that holds this one (the same box when the axes are a permutation)."""
        return _bounding_roi(self.corners(), np.asarray(axes, dtype=float), self.margin_mm)

    def clipped_to(self, image: sitk.Image) -> ROI | None:
        """This ROI expressed along the image's axes and cut to the image's extent (``None`` if outside it)."""
        axes = image_axes(image)
        roi = self.in_axes(axes)
        extent_lo, extent_hi = image_extent_along_axes(image)
        coords = np.asarray(roi.center) @ np.asarray(axes).T  # the center along each image axis
        lo = np.maximum(coords - np.asarray(roi.size) / 2, extent_lo)
        hi = np.minimum(coords + np.asarray(roi.size) / 2, extent_hi)
        if np.any(hi <= lo):
            return None
        center = ((lo + hi) / 2) @ np.asarray(axes)
        return ROI(_tuple(center), _tuple(hi - lo), roi.axes, self.margin_mm)

    def to_json(self, coordinate_system: str = "LPS") -> dict:
        """The ROI JSON object (see the module docstring); ``"RAS"`` flips x and y for Slicer."""
        flip = _RAS_FLIP if coordinate_system == "RAS" else np.ones(3)
        return {
            "coordinate_system": coordinate_system,
            "center": [round(float(v), 4) for v in np.asarray(self.center) * flip],
            "size": [round(float(v), 4) for v in self.size],
            "axes": [[round(float(v), 8) for v in np.asarray(axis) * flip] for axis in self.axes],
            "margin_mm": float(self.margin_mm),
        }

    @classmethod
    def from_json(cls, data: dict, path: str | os.PathLike | None = None) -> ROI:
        """Parse and check an ROI JSON object (LPS or RAS).

        Raises:
            InputError: a missing or malformed field, a non-positive size, axes that are not orthonormal.
        """
        if not isinstance(data, dict):
            raise InputError("ROI JSON must be an object", path)
        system = data.get("coordinate_system", "LPS")
        if system not in ("LPS", "RAS"):
            raise InputError(f"ROI coordinate_system must be LPS or RAS, not {system!r}", path)
        try:
            center = np.asarray(data["center"], dtype=float).reshape(3)
            size = np.asarray(data["size"], dtype=float).reshape(3)
            axes = np.asarray(data.get("axes", _IDENTITY), dtype=float).reshape(3, 3)
            margin = float(data.get("margin_mm", 0.0))
        except KeyError as exc:
            raise InputError(f"ROI JSON has no {exc.args[0]!r}", path) from None
        except (TypeError, ValueError) as exc:
            raise InputError(f"ROI JSON is malformed ({exc})", path) from None
        if not np.all(np.isfinite(np.concatenate([center, size, axes.ravel()]))):
            raise InputError("ROI JSON holds a non-finite number", path)
        if np.any(size <= 0):
            raise InputError(f"ROI size must be positive, got {size.tolist()}", path)
        if not np.allclose(axes @ axes.T, np.eye(3), atol=1e-4):
            raise InputError("ROI axes must be three orthogonal unit vectors", path)
        if system == "RAS":
            center, axes = center * _RAS_FLIP, axes * _RAS_FLIP
        return cls(_tuple(center), _tuple(size), tuple(_tuple(a) for a in axes), margin)


def write_roi(roi: ROI, path: str | os.PathLike) -> Path:
    """Write the ROI JSON (LPS) atomically."""
    return write_json_atomic(path, roi.to_json())


def read_roi(path: str | os.PathLike) -> ROI:
    """Read an ROI JSON file.

    Raises:
        InputError: missing or unreadable file, or a malformed ROI.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot be read as ROI JSON ({exc})", path) from None
    return ROI.from_json(data, path)


def image_axes(image: sitk.Image) -> tuple[tuple[float, float, float], ...]:
    """The image's i, j, k axes in LPS (the columns of its direction matrix)."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return tuple(_tuple(direction[:, k]) for k in range(3))


def image_extent_along_axes(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """The image's extent (voxel edges, not centers) as coordinates along its own axes, in mm."""
    axes = np.asarray(image_axes(image))
    origin = np.asarray(image.GetOrigin()) @ axes.T
    spacing, size = np.asarray(image.GetSpacing()), np.asarray(image.GetSize())
    return origin - spacing / 2, origin + (size - 0.5) * spacing


def image_lps_bounds(image: sitk.Image, edges: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The LPS-aligned bounding box of the image's extent, in mm: of its voxel edges, or of its voxel centres.

    Resampling uses the centres' box: a sample exactly on the outer voxel edge is inside or outside
    the image depending on rounding, which would make flipped copies of a volume differ.
    """
    lo, hi = image_extent_along_axes(image)
    if not edges:
        half = np.asarray(image.GetSpacing()) / 2
        lo, hi = lo + half, hi - half
    center = ((lo + hi) / 2) @ np.asarray(image_axes(image))
    return ROI(_tuple(center), _tuple(hi - lo), image_axes(image)).lps_bounds()


def _bounding_roi(corners: np.ndarray, axes: np.ndarray, margin_mm: float) -> ROI:
    coords = corners @ axes.T  # (8, 3): each corner along each axis
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    center = ((lo + hi) / 2) @ axes
    return ROI(_tuple(center), _tuple(hi - lo), tuple(_tuple(a) for a in axes), margin_mm)


def _tuple(values) -> tuple[float, float, float]:
    out = tuple(float(v) for v in values)
    # Rounding residues of rotations (1e-17 and the like) become 0 so that the JSON stays readable.
    return tuple(0.0 if math.isclose(v, 0.0, abs_tol=1e-12) else v for v in out)  # type: ignore[return-value]
