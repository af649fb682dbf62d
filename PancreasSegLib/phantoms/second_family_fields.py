"""Implicit-surface building blocks of the second phantom family (see :mod:`.second_family`).

Every structure is a signed distance field (negative inside, in mm) on a regular grid; once painted,
the abdomen is bent by a smooth random displacement field (:func:`displacement`, :func:`warp`), so no
organ stays a clean geometric solid. Tubes follow Catmull-Rom splines through jittered control points (distances
from a k-d tree of dense spline samples); blobs are smooth unions of spheres around control points.
This module deliberately shares nothing with the first family's shape code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree


@dataclass
class Space:
    """An axis-aligned grid in the patient frame (x left, y posterior, z superior; mm).

    ``x``, ``y``, ``z`` are its 1-D axes; ``X``, ``Y``, ``Z`` the coordinates of every voxel, read-only
    broadcast views of shape (nz, ny, nx) that take no memory until indexed and used.
    """

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.z), len(self.y), len(self.x))

    @property
    def step(self) -> float:
        return float(self.x[1] - self.x[0])

    @property
    def X(self) -> np.ndarray:
        return np.broadcast_to(self.x.astype(np.float32)[None, None, :], self.shape)

    @property
    def Y(self) -> np.ndarray:
        return np.broadcast_to(self.y.astype(np.float32)[None, :, None], self.shape)

    @property
    def Z(self) -> np.ndarray:
        return np.broadcast_to(self.z.astype(np.float32)[:, None, None], self.shape)

    def box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Index slices (z, y, x) of the voxels inside [lo, hi] (x, y, z mm); None if none."""
        out = []
        for axis, a, b in zip((self.z, self.y, self.x), (lo[2], lo[1], lo[0]), (hi[2], hi[1], hi[0])):
            i0, i1 = np.searchsorted(axis, [a, b])
            if i1 <= i0:
                return None
            out.append(slice(int(i0), int(i1)))
        return tuple(out)


def make_space(lo, hi, step: float) -> Space:
    """A grid over the box [lo, hi] (x, y, z mm) with ``step`` mm voxels."""
    return Space(*[np.arange(lo[i], hi[i] + 1e-6, step, dtype=np.float64) for i in range(3)])


def displacement(space: Space, rng: np.random.Generator, amplitude: float, scale: float = 28.0) -> list[np.ndarray]:
    """A smooth random displacement (dx, dy, dz), each float32 of the grid's shape, in mm.

    White noise on a 4 mm lattice (so the field does not depend on the grid's step), low-passed with a
    periodic Gaussian of ``scale`` mm, scaled to ``amplitude`` mm standard deviation and interpolated.
    """
    axes = (space.x, space.y, space.z)
    lattice = [np.arange(a[0] - 8.0, a[-1] + 12.0, 4.0) for a in axes]
    shape = (len(lattice[2]), len(lattice[1]), len(lattice[0]))
    weights = [_linear_weights(lattice[i], axes[i]) for i in range(3)]
    out = []
    for _ in range(3):
        field = ndimage.gaussian_filter(rng.standard_normal(shape), scale / 4.0, mode="wrap")
        field *= amplitude / max(float(field.std()), 1e-9)
        field = np.tensordot(field, weights[0], axes=([2], [1]))            # (Lz, Ly, nx)
        field = np.tensordot(field, weights[1], axes=([1], [1]))            # (Lz, nx, ny)
        field = np.tensordot(weights[2], field, axes=([1], [0]))            # (nz, nx, ny)
        out.append(np.ascontiguousarray(field.transpose(0, 2, 1), dtype=np.float32))
    return out


def warp(values: np.ndarray, space: Space, shift: list[np.ndarray], fill: float) -> np.ndarray:
    """``values`` (on ``space``) sampled at each voxel's position plus ``shift`` (mm): trilinear, float32."""
    out = np.empty(values.shape, dtype=np.float32)
    step = space.step
    iz, iy, ix = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in values.shape], indexing="ij", sparse=True)
    for k in range(0, values.shape[0], 24):  # slabs bound the memory of the coordinate arrays
        part = slice(k, k + 24)
        coords = [iz[part] + shift[2][part] / step, iy + shift[1][part] / step, ix + shift[0][part] / step]
        out[part] = ndimage.map_coordinates(values, coords, order=1, mode="constant", cval=fill)
    return out


def _linear_weights(knots: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Matrix (len(at), len(knots)) of linear interpolation weights from ``knots`` to the points ``at``."""
    pos = np.clip((at - knots[0]) / (knots[1] - knots[0]), 0, len(knots) - 1.000001)
    i = pos.astype(int)
    w = np.zeros((len(at), len(knots)))
    rows = np.arange(len(at))
    w[rows, i] = 1.0 - (pos - i)
    w[rows, i + 1] = pos - i
    return w


def smooth_noise(rng: np.random.Generator, shape, sigma_vox: float) -> np.ndarray:
    """Gaussian-filtered white noise of unit standard deviation, float32 of ``shape``."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox, mode="reflect")
    return field / max(float(field.std()), 1e-6)


def spline(points, samples_per_mm: float = 1.0) -> np.ndarray:
    """Dense points (N, 3) along the centripetal-free (uniform) Catmull-Rom spline through ``points`` (M, 3)."""
    p = np.asarray(points, dtype=np.float64)
    p = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        n = max(int(np.linalg.norm(p2 - p1) * samples_per_mm * 2), 2)
        t = np.linspace(0.0, 1.0, n, endpoint=False)[:, None]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
    out.append(p[-2][None])
    return np.vstack(out)


def interpolate_along(path: np.ndarray, values) -> np.ndarray:
    """Values given at equally spaced stations along ``path`` (N, 3), interpolated by arc length to each point."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    stations = np.linspace(0.0, arc[-1], len(values))
    return np.interp(arc, stations, np.asarray(values, dtype=np.float64))


def tube(space: Space, path: np.ndarray, radii: np.ndarray, squash=(1.0, 1.0, 1.0)):
    """Signed distance to a tube of varying radius around ``path``, inside its bounding box.

    Args:
        space: the grid.
        path: dense centre-line points (N, 3), x, y, z in mm.
        radii: radius at each path point (N,).
        squash: per-axis scale of the cross-section (e.g. (1, 0.7, 1) flattens it front to back).

    Returns:
        ``(box, sdf)``: index slices into the grid and the field (float32) there, or None when the tube
        misses the grid. Distances are approximate (nearest centre-line point minus its radius).
    """
    squash = np.asarray(squash, dtype=np.float64)
    reach = float(radii.max()) + 4.0
    box = space.box(path.min(axis=0) - reach, path.max(axis=0) + reach)
    if box is None:
        return None
    out = np.full(space.X[box].shape, reach, dtype=np.float32)
    starts = [b.start for b in box]
    piece = max(int(2.0 * reach), 8)  # short pieces have small boxes: thin long tubes stay cheap
    for i in range(0, len(path), piece):
        part, part_r = path[max(i - 2, 0):i + piece + 2], radii[max(i - 2, 0):i + piece + 2]
        sub = space.box(part.min(axis=0) - reach, part.max(axis=0) + reach)
        if sub is None:
            continue
        pts = np.stack([space.X[sub], space.Y[sub], space.Z[sub]], axis=-1).reshape(-1, 3)
        centre = part.mean(axis=0)
        ball = float(np.linalg.norm(part - centre, axis=1).max()) + reach
        near = np.nonzero(np.einsum("ij,ij->i", pts - centre, pts - centre) < ball * ball)[0]
        dist, idx = cKDTree(part / squash).query(pts[near] / squash, distance_upper_bound=reach / squash.min())
        far = ~np.isfinite(dist)
        idx[far] = 0
        sdf = np.full(len(pts), reach, dtype=np.float32)
        sdf[near] = np.where(far, reach, dist - part_r[idx])
        local = tuple(slice(b.start - s0, b.stop - s0) for b, s0 in zip(sub, starts))
        np.minimum(out[local], sdf.reshape(out[local].shape), out=out[local])
    return box, out


def blob(space: Space, centres, radii, softness: float = 6.0):
    """Smooth union of spheres (log-sum-exp of their signed distances), inside its bounding box.

    Returns ``(box, sdf)`` as :func:`tube` does, or None when the blob misses the grid.
    """
    centres = np.asarray(centres, dtype=np.float64)
    radii = np.asarray(radii, dtype=np.float64)
    lo = (centres - radii[:, None]).min(axis=0) - 4.0
    hi = (centres + radii[:, None]).max(axis=0) + 4.0
    box = space.box(lo, hi)
    if box is None:
        return None
    X, Y, Z = space.X[box], space.Y[box], space.Z[box]
    acc = np.zeros(X.shape, dtype=np.float32)
    for c, r in zip(centres, radii):
        d = np.sqrt((X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2) - r
        acc += np.exp(-np.clip(d, -60.0, 60.0) / softness)
    return box, (-softness * np.log(np.maximum(acc, 1e-30))).astype(np.float32)


def ellipsoid(space: Space, centre, radii, axes=None):
    """Approximate signed distance to an ellipsoid (semi-axes ``radii`` along the columns of ``axes``)."""
    centre = np.asarray(centre, dtype=np.float64)
    radii = np.asarray(radii, dtype=np.float64)
    rot = np.eye(3) if axes is None else np.asarray(axes, dtype=np.float64)
    reach = float(radii.max()) + 4.0
    box = space.box(centre - reach, centre + reach)
    if box is None:
        return None
    d = [space.X[box] - centre[0], space.Y[box] - centre[1], space.Z[box] - centre[2]]
    q = [(d[0] * rot[0, k] + d[1] * rot[1, k] + d[2] * rot[2, k]) / radii[k] for k in range(3)]
    norm = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
    return box, ((norm - 1.0) * float(radii.min())).astype(np.float32)


def rotation(rng: np.random.Generator, degrees: float) -> np.ndarray:
    """A random rotation matrix of up to about ``degrees`` around random axes."""
    angles = np.radians(rng.uniform(-degrees, degrees, 3))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


#: The tissues of the second family, painted by name; their HU come from :mod:`.second_family_hu`.
TISSUES = ("air", "table_shell", "table_core", "pad", "skin", "subcutaneous_fat", "muscle", "visceral_fat",
           "cortical_bone", "marrow", "disc", "csf", "cartilage", "lung", "heart", "liver", "gallbladder",
           "spleen", "kidney_cortex", "kidney_medulla", "sinus_fat", "gut_wall", "gut_air", "gut_fluid",
           "gut_contrast", "stool", "food", "artery", "portal_vein", "ivc", "renal_vein", "pancreas")
TISSUE = {name: i for i, name in enumerate(TISSUES)}


class Canvas:
    """Tissue classes painted onto a :class:`Space`, later strokes covering earlier ones.

    After the pancreas is painted, everything painted over it is cut out of ``pancreas`` (a signed
    distance field on the whole grid), so the label stays exactly the voxels that show pancreas.
    """

    def __init__(self, space: Space):
        self.space = space
        self.tissue = np.zeros(space.shape, dtype=np.uint8)
        self.pancreas: np.ndarray | None = None
        self.cavity: np.ndarray | None = None
        self.skin: np.ndarray | None = None

    def paint(self, field, tissue: str, grow: float = 0.0, clip_to_cavity: bool = False) -> None:
        """Paint ``tissue`` where the field ``(box, sdf)`` is below ``grow`` mm (``field`` None: nothing)."""
        if field is None:
            return
        box, sdf = field
        sdf = sdf - grow
        if clip_to_cavity and self.cavity is not None:
            sdf = np.maximum(sdf, self.cavity[box])
        elif self.skin is not None and tissue not in ("skin", "pad", "table_shell", "table_core"):
            sdf = np.maximum(sdf, self.skin[box] + 2.0)  # nothing pokes out through the skin
        self.tissue[box][sdf < 0] = TISSUE[tissue]
        if self.pancreas is not None and tissue != "pancreas":
            np.maximum(self.pancreas[box], -sdf, out=self.pancreas[box])

    def start_pancreas(self, field) -> None:
        """Paint the gland and keep its distance field for the label."""
        box, sdf = field
        self.pancreas = np.full(self.space.shape, 50.0, dtype=np.float32)
        self.pancreas[box] = sdf
        self.paint(field, "pancreas")
