"""The scan geometry of a synthetic CT: matrix size, voxel spacing, origin and direction (LPS).

Drawn like real abdominal CT series: 512 x 512 (or a tighter in-plane crop) at 0.6-1.0 mm,
0.8-3 mm slices, 80 to 320 slices, and sometimes stored in another orientation: RAS-flipped
rows and columns, reversed slice order, or a gantry tilt (an oblique direction matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Slice spacings (mm) and how often they are drawn.
SLICE_SPACINGS = (0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
SLICE_WEIGHTS = (0.1, 0.14, 0.1, 0.2, 0.2, 0.1, 0.16)


@dataclass(frozen=True)
class ScanGeometry:
    """Size (x, y, z), spacing (mm), origin (mm, LPS) and row-major 3x3 direction, as SimpleITK holds them."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @property
    def matrix(self) -> np.ndarray:
        """Direction times spacing: maps a continuous (i, j, k) index offset to a physical offset."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3) * np.asarray(self.spacing, dtype=float)

    def to_physical(self, index: np.ndarray) -> np.ndarray:
        """(m, 3) continuous (i, j, k) indices to (m, 3) LPS points in mm."""
        return np.asarray(self.origin) + np.asarray(index, dtype=float) @ self.matrix.T

    def to_index(self, points: np.ndarray) -> np.ndarray:
        """(m, 3) LPS points in mm to (m, 3) continuous (i, j, k) indices."""
        return (np.asarray(points, dtype=float) - np.asarray(self.origin)) @ np.linalg.inv(self.matrix).T

    def image(self, array: np.ndarray):
        """A SimpleITK image of ``array`` (z, y, x) on this grid."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def corners(self) -> np.ndarray:
        """The 8 corner voxel centres (8, 3) in mm."""
        n = np.asarray(self.size) - 1
        idx = np.array([[i, j, k] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])], dtype=float)
        return self.to_physical(idx)


def sample_geometry(rng: np.random.Generator, body_lo, body_hi, z_range, *, size=None, spacing=None,
                    direction=None, preset: str = "default", shift=(0.0, 0.0, 0.0)) -> ScanGeometry:
    """Draw a scan geometry that holds the body in-plane and ``z_range`` (the pancreas) along z.

    Args:
        rng: the phantom's random generator.
        body_lo, body_hi: in-plane (x, y) corners of the body in mm (patient frame).
        z_range: (z_min, z_max) in mm that every scan must cover.
        size, spacing, direction: fixed values instead of drawn ones (x, y, z order; row-major direction).
        preset: "default" (clinical-like geometry) or "small" (about 2.5 mm voxels, for fast tests).
        shift: patient frame to world translation in mm (the table position).
    """
    u = rng.uniform
    width, height = np.asarray(body_hi) - np.asarray(body_lo)
    centre_xy = (np.asarray(body_lo) + np.asarray(body_hi)) / 2 + rng.normal(0, 6, 2)
    if preset == "small":
        drawn = (u(2.2, 2.8),) * 2 + (u(2.5, 3.5),)
    else:
        drawn = (u(0.6, 1.0),) * 2 + (float(rng.choice(SLICE_SPACINGS, p=SLICE_WEIGHTS)),)
    sp = tuple(float(s) for s in (spacing if spacing is not None else drawn))
    span = z_range[1] - z_range[0]
    if size is not None:
        nx, ny, nz = (int(s) for s in size)
    else:
        if preset == "small":
            nx = int(np.ceil((width + 10) / sp[0] / 8) * 8)
            ny = int(np.ceil((height + 10) / sp[1] / 8) * 8)
            nz = int(np.clip(round((span + u(30, 90)) / sp[2]), 32, 96))
        else:
            if u() < 0.5:
                nx = ny = 512
            else:
                nx = min(512, int(np.ceil((width + u(10, 40)) / sp[0] / 16) * 16))
                ny = min(512, int(np.ceil((height + u(10, 40)) / sp[1] / 16) * 16))
            extent = span + u(50, 220)
            nz = int(np.clip(round(extent / sp[2]), min(80, int(240 / sp[2])), 320))  # thick slices: fewer
            nz = max(nz, min(360, int(np.ceil((span + 40) / sp[2]))))
    extent = nz * sp[2]
    slack = max(0.0, (extent - span) / 2 - 15)
    centre_z = (z_range[0] + z_range[1]) / 2 + u(-1, 1) * slack
    if direction is None:
        direction = _draw_direction(rng) if preset != "small" or u() < 0.5 else np.eye(3)
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    centre = np.array([centre_xy[0], centre_xy[1], centre_z]) + np.asarray(shift)
    half = d @ (np.asarray(sp) * (np.array([nx, ny, nz]) - 1) / 2)
    return ScanGeometry((nx, ny, nz), sp, tuple(float(v) for v in centre - half), tuple(float(v) for v in d.ravel()))


def _draw_direction(rng: np.random.Generator) -> np.ndarray:
    """Mostly LPS; sometimes RAS-flipped in-plane, reversed slice order, or tilted like a gantry tilt."""
    flips = np.ones(3)
    if rng.uniform() < 0.25:
        flips[:2] = -1
    if rng.uniform() < 0.2:
        flips[2] = -1
    d = np.diag(flips)
    if rng.uniform() < 0.15:
        a = np.deg2rad(rng.uniform(4, 14) * rng.choice([-1, 1]))
        tilt = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        d = tilt @ d
    return d
