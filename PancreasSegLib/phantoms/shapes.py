"""Geometric building blocks of the synthetic CT phantoms: curves, tubes, noise fields, a coarse grid.

Everything here works in millimetres in the patient frame (LPS: x to the patient's left, y to the
back, z to the head) and is vectorised with numpy; nothing loops over voxels. Tubes answer
"how far inside am I" through a k-d tree of densely sampled centre-line points, which keeps the
cost proportional to the voxels near the tube, not to the tube's length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.interpolate import make_interp_spline
from scipy.spatial import cKDTree


def sample_curve(control: np.ndarray, step: float = 0.7, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """A smooth curve through ``control`` points, resampled every ``step`` mm along its length.

    Args:
        control: (k, 3) points the curve passes through, k >= 2.
        step: distance between output samples in mm.
        *values: per-control-point quantities (k,) (e.g. radii), interpolated along the curve.

    Returns:
        ``(points (n, 3), *values (n,))``.
    """
    control = np.asarray(control, dtype=float)
    chord = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(control, axis=0), axis=1))]
    keep = np.r_[True, np.diff(chord) > 1e-6]
    control, chord = control[keep], chord[keep]
    spline = make_interp_spline(chord, control, k=min(3, len(control) - 1))
    dense_t = np.linspace(0.0, chord[-1], max(8, int(chord[-1] / step) * 4))
    dense = spline(dense_t)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))]
    s = np.arange(0.0, arc[-1] + 1e-9, step)
    t = np.interp(s, arc, dense_t)
    points = spline(t)
    out = [np.interp(t, chord, np.asarray(v, dtype=float)[keep]) for v in values]
    return (points, *out)


@dataclass
class Tube:
    """A tube around a sampled centre line, with an elliptic cross-section.

    ``ra`` is the semi-axis along ``n1`` (roughly head-feet), ``rb`` along ``n2`` (roughly front-back).
    Several tubes put into one ``Tube`` (see :func:`merge_tubes`) meet along flat faces where they
    press on each other, like bowel loops do.
    """

    points: np.ndarray
    ra: np.ndarray
    rb: np.ndarray
    ident: np.ndarray | None = None
    tree: cKDTree = field(init=False, repr=False)
    t: np.ndarray = field(init=False, repr=False)
    n1: np.ndarray = field(init=False, repr=False)
    n2: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=float)
        n = len(self.points)
        self.ra = np.broadcast_to(np.asarray(self.ra, dtype=float), (n,)).copy()
        self.rb = np.broadcast_to(np.asarray(self.rb, dtype=float), (n,)).copy()
        if self.ident is None:
            self.ident = np.zeros(n, dtype=np.int32)
        self.t, self.n1, self.n2 = _frames(self.points, self.ident)
        self.tree = cKDTree(self.points)

    @classmethod
    def through(cls, control, radius_a, radius_b=None, step: float = 0.7) -> Tube:
        """A tube through control points with per-point radii (scalars are broadcast)."""
        control = np.asarray(control, dtype=float)
        ra = np.broadcast_to(np.asarray(radius_a, dtype=float), (len(control),))
        rb = ra if radius_b is None else np.broadcast_to(np.asarray(radius_b, dtype=float), (len(control),))
        points, a, b = sample_curve(control, step, ra, rb)
        return cls(points, a, b)

    def bounds(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned (lo, hi) corners in mm enclosing the tube plus ``margin``."""
        r = np.maximum(self.ra, self.rb)[:, None]
        return (self.points - r).min(axis=0) - margin, (self.points + r).max(axis=0) + margin

    def sdf(self, pts: np.ndarray, reach: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
        """Approximate signed distance in mm (negative inside) of (m, 3) points, and the nearest sample.

        Points farther than ``reach`` mm outside the tube get +inf (the k-d tree stops early for them).
        """
        upper = float(np.max(np.maximum(self.ra, self.rb))) + reach
        d, idx = self.tree.query(pts, distance_upper_bound=upper, workers=-1)
        out = np.full(len(pts), np.inf, dtype=np.float32)
        ok = np.isfinite(d)
        i = idx[ok]
        v = pts[ok] - self.points[i]
        a, b = self.ra[i], self.rb[i]
        c = np.minimum(a, b)
        u0 = np.einsum("ij,ij->i", v, self.t[i]) / c
        u1 = np.einsum("ij,ij->i", v, self.n1[i]) / a
        u2 = np.einsum("ij,ij->i", v, self.n2[i]) / b
        out[ok] = (np.sqrt(u0 * u0 + u1 * u1 + u2 * u2) - 1.0) * c
        idx = np.where(ok, idx, -1)
        return out, idx


def merge_tubes(tubes: list[Tube]) -> Tube:
    """One tube set whose members meet along flat faces (each point belongs to its nearest centre line)."""
    ident = np.concatenate([np.full(len(t.points), k, dtype=np.int32) for k, t in enumerate(tubes)])
    return Tube(np.concatenate([t.points for t in tubes]), np.concatenate([t.ra for t in tubes]),
                np.concatenate([t.rb for t in tubes]), ident)


def _frames(points: np.ndarray, ident: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Tangent per member curve (np.gradient must not run across the joins of merged tubes).
    t = np.zeros_like(points)
    for k in np.unique(ident):
        sel = np.flatnonzero(ident == k)
        if len(sel) > 1:
            t[sel] = np.gradient(points[sel], axis=0)
        else:
            t[sel] = (0.0, 0.0, 1.0)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
    # n2 points to the back where it can (flattened pancreas, splenic vein behind it), else to the head.
    ref = np.where((np.abs(t[:, 1]) < 0.8)[:, None], (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    n2 = ref - np.einsum("ij,ij->i", ref, t)[:, None] * t
    n2 /= np.maximum(np.linalg.norm(n2, axis=1, keepdims=True), 1e-9)
    n1 = np.cross(t, n2)
    return t, n1, n2


class NoiseField:
    """Smooth random scalar field with unit standard deviation, defined in mm over a box.

    Built from white noise on a lattice of ``cell`` mm, smoothed, and read back with trilinear
    interpolation at any points, so the same field serves the coarse grid and the final voxels.
    """

    def __init__(self, rng: np.random.Generator, lo, hi, cell: float) -> None:
        self.lo = np.asarray(lo, dtype=float) - 2 * cell
        self.cell = float(cell)
        shape = np.ceil((np.asarray(hi, dtype=float) + 2 * cell - self.lo) / cell).astype(int) + 1
        values = ndimage.gaussian_filter(rng.standard_normal(tuple(shape[::-1])).astype(np.float32), 1.0)
        self.values = values / max(float(values.std()), 1e-6)

    def at(self, x, y, z) -> np.ndarray:
        """Field values at broadcastable coordinate arrays (mm); the result has their broadcast shape."""
        x, y, z = np.broadcast_arrays(x, y, z)
        coords = np.stack([(z - self.lo[2]) / self.cell, (y - self.lo[1]) / self.cell,
                           (x - self.lo[0]) / self.cell]).reshape(3, -1)
        return ndimage.map_coordinates(self.values, coords, order=1, mode="nearest").reshape(x.shape)


class Grid:
    """An axis-aligned grid in the patient frame holding one float32 HU array in (z, y, x) order."""

    def __init__(self, lo, hi, step: float, fill: float = -1000.0) -> None:
        self.step = float(step)
        self.lo = np.asarray(lo, dtype=float)
        n = np.ceil((np.asarray(hi, dtype=float) - self.lo) / step).astype(int) + 1
        self.xs, self.ys, self.zs = (self.lo[i] + step * np.arange(n[i]) for i in range(3))
        self.hu = np.full((n[2], n[1], n[0]), fill, dtype=np.float32)

    def box(self, lo, hi) -> tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray, np.ndarray] | None:
        """Slices of the sub-box [lo, hi] (mm) and broadcastable coordinates X (1,1,nx), Y (1,ny,1), Z (nz,1,1).

        None when the box misses the grid.
        """
        sl = []
        for axis, coords in zip(range(3), (self.xs, self.ys, self.zs)):
            i0 = int(np.searchsorted(coords, lo[axis], side="left"))
            i1 = int(np.searchsorted(coords, hi[axis], side="right"))
            if i1 <= i0:
                return None
            sl.append(slice(i0, i1))
        sx, sy, sz = sl
        return ((sz, sy, sx), self.xs[sx][None, None, :], self.ys[sy][None, :, None], self.zs[sz][:, None, None])

    def paint_tube(self, tube: Tube, value, wall: float = 0.0, wall_value=None, margin: float = 0.0,
                   within: np.ndarray | None = None) -> None:
        """Paint a tube (``value`` inside, ``wall_value`` in its outer ``wall`` mm); values may be callables.

        A callable value receives (points (m,3), nearest-sample index (m,)) and returns (m,) HU.
        ``within`` (a boolean array of the grid's shape) limits painting to where it is True.
        """
        box = self.box(*tube.bounds(margin + 1.0))
        if box is None:
            return
        sl, x, y, z = box
        near = near_lattice(tube, (x, y, z), reach=margin + 1.0)
        if within is not None:
            near &= within[sl]
        block = self.hu[sl]
        cand = np.flatnonzero(near)
        kk, jj, ii = np.unravel_index(cand, block.shape)
        pts = np.stack([x.ravel()[ii], y.ravel()[jj], z.ravel()[kk]], axis=1)
        d, idx = tube.sdf(pts, reach=margin + 1.0)
        d = d - margin
        sub = block.reshape(-1)[cand]
        inside = d < 0
        if wall > 0 and wall_value is not None:
            w = inside & (d > -wall)
            sub[w] = _resolve(wall_value, pts[w], idx[w])
            inside &= d <= -wall
        sub[inside] = _resolve(value, pts[inside], idx[inside])
        block[kk, jj, ii] = sub


def near_lattice(tube: Tube, axes: tuple[np.ndarray, np.ndarray, np.ndarray], reach: float = 0.0,
                 cell: float = 4.0) -> np.ndarray:
    """Boolean (z, y, x) mask over the grid given by 1-D coordinate ``axes`` (x, y, z): maybe within ``reach`` mm.

    The tube is only queried on a ``cell`` mm lattice; a voxel is kept when its nearest lattice point is
    closer to the tube than half a lattice diagonal plus ``reach``, so no voxel inside is ever missed.
    """
    coords = [np.ravel(a) for a in axes]
    lo = np.array([c[0] for c in coords])
    shape = [int(np.ceil((c[-1] - c[0]) / cell)) + 1 for c in coords]
    lattice = np.meshgrid(*(lo[a] + cell * np.arange(shape[a]) for a in (2, 1, 0)), indexing="ij")
    pts = np.stack([lattice[2].ravel(), lattice[1].ravel(), lattice[0].ravel()], axis=1)
    d, _ = tube.sdf(pts, reach=reach + cell)
    keep = (d < reach + 0.87 * cell + 0.5).reshape(lattice[0].shape)
    ix, iy, iz = (np.clip(np.rint((coords[a] - lo[a]) / cell).astype(int), 0, shape[a] - 1) for a in range(3))
    return keep[iz[:, None, None], iy[None, :, None], ix[None, None, :]]


def _resolve(value, pts: np.ndarray, idx: np.ndarray):
    return value(pts, idx) if callable(value) else value


def ellipsoid(x, y, z, center, axes, rotation: np.ndarray | None = None) -> np.ndarray:
    """Normalised ellipsoid radius (< 1 inside) at broadcastable coordinates; ``rotation`` maps body to patient axes."""
    dx, dy, dz = x - center[0], y - center[1], z - center[2]
    if rotation is not None:
        r = rotation
        dx, dy, dz = (r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz, r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
                      r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz)
    return np.sqrt((dx / axes[0]) ** 2 + (dy / axes[1]) ** 2 + (dz / axes[2]) ** 2)


def rotation(rx: float = 0.0, ry: float = 0.0, rz: float = 0.0) -> np.ndarray:
    """Rotation matrix from angles in degrees about x, then y, then z."""
    a, b, c = np.deg2rad([rx, ry, rz])
    mx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    my = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    mz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return mz @ my @ mx
