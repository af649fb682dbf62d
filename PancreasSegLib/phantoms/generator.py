"""Synthetic abdominal CT phantoms with a pancreas (and sometimes tumour) label.

A phantom is one random abdomen (:mod:`PancreasSegLib.phantoms.anatomy`) imaged with one random scan
geometry (:mod:`PancreasSegLib.phantoms.geometry`). The background anatomy is painted on a coarse
grid (:mod:`PancreasSegLib.phantoms.render`) and resampled onto the scan grid, which gives partial-volume
blur for free; the pancreas, its tumour and duct, and the vessels that touch it are then evaluated
at every scan voxel near the gland, so the label is sharp and lies exactly where the gland is in the
image, whatever the orientation. Correlated noise comes last.

Everything is drawn from generators spawned from ``numpy.random.SeedSequence(seed)``: the same seed
and options give the same voxels, and the same seed with another size, spacing or orientation gives
the same abdomen (same gland, same place in physical space) sampled on another grid.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from PancreasSegLib.phantoms import mesentery as mesentery_
from PancreasSegLib.phantoms import randomize as look
from PancreasSegLib.phantoms import variety
from PancreasSegLib.phantoms.anatomy import Anatomy, sample_anatomy
from PancreasSegLib.phantoms.geometry import ScanGeometry, sample_geometry
from PancreasSegLib.phantoms.render import render_background
from PancreasSegLib.phantoms.shapes import Grid, NoiseField

if TYPE_CHECKING:
    import SimpleITK as sitk

PRESETS = ("default", "small")


def make_phantom(seed: int, *, size=None, shape=None, spacing=None, direction=None, tumor: bool | None = None,
                 preset: str = "default", noise: bool = True, randomize: bool = False,
                 vary_anatomy: bool = False, mesentery: bool = False,
                 vary_course: bool = False) -> tuple[sitk.Image, sitk.Image]:
    """Make one synthetic abdominal CT and its label map.

    Args:
        seed: the random seed; equal seeds and options give identical images.
        size: matrix size (nx, ny, nz) in SimpleITK (x, y, z) order instead of a drawn one.
        shape: the same as ``size`` (x, y, z order), for callers who think of it as a shape.
        spacing: voxel spacing (sx, sy, sz) in mm instead of a drawn one.
        direction: row-major 3x3 direction matrix (LPS) instead of a drawn orientation.
        tumor: True or False to force a tumour (label 2) on or off; None draws one in 30 % of cases.
        preset: "default" (clinical-like: 0.6-1.0 mm pixels, 0.8-3 mm slices, 80-320 slices) or "small"
            (about 2.5 mm voxels, under a second, for tests and smoke runs).
        noise: False leaves out the correlated image noise (for debugging and pictures of the anatomy).
        randomize: domain randomisation (:mod:`PancreasSegLib.phantoms.randomize`): the same abdomen with a
            drawn contrast phase, habitus, slice thickness (0.6-5 mm), kernel, noise, artefacts and
            sometimes a scan that ends inside the gland.
        vary_anatomy: anatomical variety (:mod:`PancreasSegLib.phantoms.variety`): a thinner or thicker
            gland and a smooth deformation of the whole scan (scale, shear, a displacement field).
        mesentery: mesentery and visceral fat (:mod:`PancreasSegLib.phantoms.mesentery`): thinner bowel,
            many small loops, mesenteric vessels and fat strands, and often a fat rim around the gland.
        vary_course: another course of the gland (:func:`PancreasSegLib.phantoms.variety.vary_course`): body
            and tail turned, longer or shorter, the tail tip elsewhere, its neighbours following.

    Returns:
        ``(image, label)``: int16 Hounsfield units and uint8 labels (0 background, 1 pancreas, 2 tumour)
        on exactly the same grid (size, spacing, origin, direction).

    Raises:
        ValueError: unknown preset, a size/spacing that is not three positive numbers, or a direction
            that is not a 3x3 orthonormal matrix.

    >>> image, label = make_phantom(7, preset="small")
    >>> image.GetSize() == label.GetSize()
    True
    """
    import SimpleITK as sitk

    (background_rng, gland_rng, noise_rng, look_rng, variety_rng), anatomy, shift, geometry = _draw(
        seed, size if size is not None else shape, spacing, direction, tumor, preset, randomize, vary_anatomy,
        mesentery, vary_course)
    body_lo, body_hi = anatomy.body_bounds()
    step = float(np.clip(min(geometry.spacing[:2]) * 1.5, 1.4, 3.0))
    grid = _coarse_grid(geometry, shift, body_lo, body_hi, step)
    render_background(anatomy, grid, background_rng)
    dz = geometry.spacing[2]
    if dz > step:  # slice thickness: average along the slice normal (approximated by z)
        ndimage.gaussian_filter1d(grid.hu, np.sqrt(dz**2 - step**2) / 2.355 / step, axis=0, output=grid.hu)
    coarse = sitk.GetImageFromArray(grid.hu)
    coarse.SetSpacing((step,) * 3)
    coarse.SetOrigin(tuple(float(v) for v in grid.lo + shift))
    fine = sitk.Resample(coarse, geometry.size, sitk.Transform(), sitk.sitkLinear, geometry.origin,
                         geometry.spacing, geometry.direction, -1000.0, sitk.sitkFloat32)
    del coarse, grid
    hu = sitk.GetArrayFromImage(fine)
    label = np.zeros(hu.shape, dtype=np.uint8)
    _paint_pancreas(hu, label, geometry, shift, anatomy, gland_rng)
    if vary_anatomy:
        p_lo, p_hi = anatomy.pancreas_bounds()
        hu, label = variety.deform(hu, label, geometry, (p_lo + p_hi) / 2 + shift, variety_rng)
    if randomize:
        look.add_artefacts(hu, geometry.spacing, look_rng)
    if noise:
        grain = look.draw_noise(look_rng, min(geometry.spacing[:2])) if randomize else None
        _add_noise(hu, geometry, noise_rng, grain=grain)
    np.clip(hu, -1024, 3071, out=hu)
    keep = look.partial_coverage(label, look_rng) if randomize else None
    if keep is not None:
        hu, label = hu[keep[0]:keep[1]], label[keep[0]:keep[1]]
        geometry = ScanGeometry((geometry.size[0], geometry.size[1], keep[1] - keep[0]), geometry.spacing,
                                tuple(float(v) for v in geometry.to_physical(np.array([[0, 0, keep[0]]]))[0]),
                                geometry.direction)
    return geometry.image(np.rint(hu).astype(np.int16)), geometry.image(label)


def phantom_geometry(seed: int, *, size=None, shape=None, spacing=None, direction=None,
                     preset: str = "default") -> ScanGeometry:
    """The scan geometry :func:`make_phantom` gives for these arguments, without making the image (fast)."""
    return _draw(seed, size if size is not None else shape, spacing, direction, None, preset)[3]


def _draw(seed: int, size, spacing, direction, tumor, preset: str, randomize: bool = False,
          vary_anatomy: bool = False, mesentery: bool = False, vary_course: bool = False):
    """The random draws that come before rendering: anatomy, table position, scan geometry."""
    if preset not in PRESETS:
        raise ValueError(f"unknown phantom preset {preset!r}; use one of {', '.join(PRESETS)}")
    size = _triple(size, "size", int)
    spacing = _triple(spacing, "spacing", float)
    if direction is not None:
        d = np.asarray(direction, dtype=float)
        if d.size != 9 or not np.allclose(np.abs(np.linalg.det(d.reshape(3, 3))), 1.0, atol=1e-4):
            raise ValueError(f"phantom direction must be a row-major 3x3 rotation (or reflection), got {direction!r}")
        direction = d.reshape(3, 3)
    # Separate streams: the abdomen (and its gland texture) stay the same physical object whatever
    # grid a caller asks for; only the sampling changes.
    # The randomised look, the anatomical variety, the mesentery and the gland's course have streams of
    # their own (spawn(10)[:5] equals spawn(5)): a plain phantom is unchanged.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(10)]
    rng = streams[0]
    course = partial(variety.vary_course, rng=streams[9]) if vary_course else None
    anatomy = sample_anatomy(rng, tumor=tumor, course=course)
    if vary_anatomy:
        variety.vary_gland(anatomy, streams[7])
    if mesentery:
        mesentery_.vary(anatomy, streams[8])
    if randomize:
        anatomy.hu, _ = look.randomized_hu(anatomy.hu, streams[5])
        look.randomize_habitus(anatomy.body, streams[5])
        if spacing is None and preset != "small":
            pixel = float(streams[5].uniform(0.6, 1.0))
            spacing = (pixel, pixel, look.draw_slice_spacing(streams[5]))
    shift = np.array([rng.normal(0, 10), rng.normal(0, 10), rng.uniform(-450, 100)])
    body_lo, body_hi = anatomy.body_bounds()
    p_lo, p_hi = anatomy.pancreas_bounds(margin=8)
    geometry = sample_geometry(streams[1], body_lo, body_hi, (p_lo[2], p_hi[2]), size=size, spacing=spacing,
                               direction=direction, preset=preset, shift=shift)
    return streams[2:5] + streams[6:8], anatomy, shift, geometry


def _triple(value, name: str, kind):
    if value is None:
        return None
    values = tuple(kind(v) for v in value)
    if len(values) != 3 or min(values) <= 0:
        raise ValueError(f"phantom {name} must be three positive numbers (x, y, z), got {value!r}")
    return values


def _coarse_grid(geometry: ScanGeometry, shift, body_lo, body_hi, step: float) -> Grid:
    """The patient-frame box seen by the scan (clipped to the body), padded by two coarse voxels."""
    corners = geometry.corners() - shift
    lo, hi = corners.min(axis=0) - 2 * step, corners.max(axis=0) + 2 * step
    lo[:2] = np.maximum(lo[:2], body_lo)
    hi[:2] = np.minimum(hi[:2], body_hi)
    return Grid(lo, np.maximum(hi, lo + 4 * step), step)


def _paint_pancreas(hu: np.ndarray, label: np.ndarray, geometry: ScanGeometry, shift, anatomy: Anatomy,
                    rng: np.random.Generator) -> None:
    """Evaluate gland, duct, tumour and touching vessels at every scan voxel near the pancreas."""
    lo, hi = anatomy.pancreas_bounds(margin=14)
    corner_pts = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    idx = geometry.to_index(corner_pts + shift)
    i0 = np.clip(np.floor(idx.min(axis=0)).astype(int), 0, np.asarray(geometry.size) - 1)
    i1 = np.clip(np.ceil(idx.max(axis=0)).astype(int) + 1, 1, np.asarray(geometry.size))
    if np.any(i1 <= i0):
        return
    sl = (slice(i0[2], i1[2]), slice(i0[1], i1[1]), slice(i0[0], i1[0]))
    box_hu, box_label = hu[sl], label[sl]
    # Patient-frame coordinates of the box voxels, built from one vector per index axis (cheap), and
    # only the voxels within reach of the gland kept (a 3 mm lattice answers that).
    m = geometry.matrix
    base = np.asarray(geometry.origin) - shift
    axes = [np.arange(i0[a], i1[a])[:, None] * m[:, a][None, :] for a in range(3)]
    near, near_lo, cell = _near_pancreas(anatomy, lo, hi)
    cells = []
    for c in range(3):
        p = (base[c] + axes[2][:, c][:, None, None] + axes[1][:, c][None, :, None]
             + axes[0][:, c][None, None, :] - near_lo[c]) / cell
        cells.append(np.clip(np.rint(p).astype(np.int32), 0, near.shape[2 - c] - 1))
    cand = np.flatnonzero(near[cells[2], cells[1], cells[0]])
    del cells
    kk, jj, ii = np.unravel_index(cand, box_hu.shape)
    pts = base + axes[2][kk] + axes[1][jj] + axes[0][ii]
    del kk, jj, ii

    hu_flat = box_hu.reshape(-1).copy()
    lab_flat = np.zeros(hu_flat.shape, dtype=np.uint8)
    width = 0.35 * float(np.mean(geometry.spacing)) + 0.35  # partial-volume ramp (mm)

    lobules = NoiseField(rng, lo, hi, 4.0)
    grain = NoiseField(rng, lo, hi, 1.6)
    fat_field = NoiseField(rng, lo, hi, 2.5)
    lob_amp = rng.uniform(1.0, 2.6)
    fat_threshold = rng.uniform(1.0, 2.2)
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]

    s_main, _ = anatomy.pancreas.sdf(pts, reach=8)
    s_unc, _ = anatomy.uncinate.sdf(pts, reach=8)
    s_panc = np.minimum(s_main, s_unc) + lob_amp * lobules.at(x, y, z)
    occ = _occupancy(s_panc, width)
    h = anatomy.hu
    fatty = np.clip((fat_field.at(x, y, z) - fat_threshold) / 0.6, 0, 0.85)
    panc_hu = h["pancreas"] + 7 * grain.at(x, y, z)
    panc_hu = panc_hu + fatty * (h["fat"] + 40 - panc_hu)
    v = hu_flat[cand]
    v += occ * (panc_hu - v)
    inside = s_panc < 0
    lab = inside.astype(np.uint8)

    s_duct, _ = anatomy.duct.sdf(pts, reach=3)
    occ_duct = _occupancy(s_duct, width) * occ
    v += occ_duct * (h["duct"] - v)
    if anatomy.tumor is not None:
        t = anatomy.tumor
        s_tum = np.linalg.norm(pts - t["center"], axis=1) - t["radius"] + 1.5 * fat_field.at(x, y, z)
        occ_t = _occupancy(s_tum, width) * _occupancy(s_panc - 3.0, width)
        v += occ_t * (h["tumor"] + 5 * grain.at(x, y, z) - v)
        lab[(s_tum < 0) & (s_panc < 3.0)] = 2
    for tube, key in anatomy.vessels.values():
        t_lo, t_hi = tube.bounds(2 * width + 1)
        sel = np.flatnonzero(np.all((pts >= t_lo) & (pts <= t_hi), axis=1))
        if sel.size == 0:
            continue
        s_v, _ = tube.sdf(pts[sel], reach=2)
        occ_v = _occupancy(s_v, width)
        v[sel] += occ_v * (h[key] - v[sel])
        lab[sel[s_v < 0]] = 0
    hu_flat[cand] = v
    lab_flat[cand] = lab
    box_hu[...] = hu_flat.reshape(box_hu.shape)
    box_label[...] = np.maximum(box_label, lab_flat.reshape(box_label.shape))


def _occupancy(sdf: np.ndarray, width: float) -> np.ndarray:
    """Fraction of a voxel inside a surface, from the signed distance (a linear ramp ``width`` mm wide)."""
    return np.clip(0.5 - sdf / width, 0.0, 1.0).astype(np.float32)


def _near_pancreas(anatomy: Anatomy, lo, hi, cell: float = 3.0, reach: float = 14.0):
    """A 3 mm boolean lattice over [lo, hi] marking cells within ``reach`` mm of the gland or tumour."""
    shape = np.ceil((np.asarray(hi) - np.asarray(lo)) / cell).astype(int) + 1
    zz, yy, xx = np.meshgrid(*(lo[a] + cell * np.arange(shape[a]) for a in (2, 1, 0)), indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    s = np.minimum(anatomy.pancreas.sdf(pts, reach=reach)[0], anatomy.uncinate.sdf(pts, reach=reach)[0])
    return (s < reach - cell).reshape(zz.shape), np.asarray(lo, dtype=float), cell


def _add_noise(hu: np.ndarray, geometry: ScanGeometry, rng: np.random.Generator, bank: int = 24,
               grain: tuple[float, float] | None = None) -> None:
    """Correlated quantum noise: white noise smoothed in-plane to a ~0.7 mm grain, 8-22 HU.

    A bank of independently filtered slices is drawn once; each slice gets one of them at a random
    in-plane shift and sign, which keeps slices uncorrelated at a fraction of the filtering cost.
    """
    sigma_hu = rng.uniform(8, 22)
    sigma_px = float(np.clip(0.7 / min(geometry.spacing[:2]), 0.5, 1.2))
    if grain is not None:  # a randomised kernel: (noise HU, grain in pixels)
        sigma_hu, sigma_px = grain
    n = min(bank, hu.shape[0])
    tiles = ndimage.gaussian_filter(rng.standard_normal((n,) + hu.shape[1:], dtype=np.float32),
                                    (0.0, sigma_px, sigma_px), truncate=3.0)
    # In 2D a Gaussian of width s leaves 1 / (2 sqrt(pi) s) of the white-noise standard deviation.
    tiles *= sigma_hu * 2 * np.sqrt(np.pi) * sigma_px
    picks = rng.integers(0, n, hu.shape[0])
    shifts = rng.integers(0, np.array(hu.shape[1:]), (hu.shape[0], 2))
    signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), hu.shape[0])
    for k in range(hu.shape[0]):
        tile = np.roll(tiles[picks[k]], tuple(shifts[k]), axis=(0, 1))
        hu[k] += signs[k] * tile if k >= n else tiles[k]
