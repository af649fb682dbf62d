"""A second family of synthetic abdominal CTs, built independently of :mod:`.generator`, for testing only.

No model is trained on it: it measures how far a model trained on the first family generalises to
abdomens constructed another way. Every organ is an implicit surface (smooth unions of spheres,
tubes along jittered splines) in a coordinate space bent by a random smooth displacement field
(:mod:`.second_family_fields`); the body wall, skeleton and table are in :mod:`.second_family_body`,
the viscera in :mod:`.second_family_organs`, the pancreas, duodenum and vessels in
:mod:`.second_family_gland`, densities per contrast phase and the noise in :mod:`.second_family_hu`.

The anatomy is painted on an isotropic grid (1.5 mm, or the voxel size of the small preset) and
resampled onto the scan grid; the label is the pancreas' distance field, after everything painted
over it was cut away, resampled onto the same grid, so it is exactly the voxels that show pancreas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from PancreasSegLib.phantoms import second_family_body as body
from PancreasSegLib.phantoms import second_family_gland as gland_parts
from PancreasSegLib.phantoms import second_family_organs as organs
from PancreasSegLib.phantoms.second_family_fields import Canvas, displacement, make_space, warp
from PancreasSegLib.phantoms.second_family_hu import add_noise, draw_densities, render

if TYPE_CHECKING:
    import SimpleITK as sitk

PRESETS = ("default", "small")
SLICE_THICKNESSES = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)


@dataclass(frozen=True)
class Scan:
    """An axial LPS scan grid: sizes (x, y, z), spacing (mm), and the frame coordinates of voxel 0."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    start: tuple[float, float, float]
    offset: tuple[float, float, float]   # frame to physical (the table position)

    @property
    def stop(self) -> np.ndarray:
        return np.asarray(self.start) + (np.asarray(self.size) - 1) * np.asarray(self.spacing)


def make_second_family_phantom(seed: int, *, preset: str = "default") -> tuple[sitk.Image, sitk.Image]:
    """Make one CT of the second (test-only) phantom family and its pancreas label.

    Args:
        seed: the random seed; equal seeds and presets give identical images.
        preset: "default" (0.6-0.9 mm pixels on 512 x 512, 1-5 mm slices) or "small" (about 2.5 mm
            voxels, a matrix just larger than the body; well under a second, for tests).

    Returns:
        ``(image, label)``: int16 Hounsfield units and uint8 labels (0 background, 1 pancreas) on the
        same axial grid, identity (LPS) direction.

    Raises:
        ValueError: unknown preset.

    >>> image, label = make_second_family_phantom(3, preset="small")
    >>> image.GetSize() == label.GetSize()
    True
    """
    import SimpleITK as sitk

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    scan_rng, anatomy_rng, warp_rng, texture_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, 2]).spawn(5))
    coverage = scan_rng.uniform(160, 200) if preset == "small" else scan_rng.uniform(170, 250)
    z_lo = -scan_rng.uniform(0.45, 0.58) * coverage - 10.0
    frame = body.draw_frame(anatomy_rng, z_lo, z_lo + coverage)
    scan = _draw_scan(scan_rng, frame, preset, coverage)
    step = float(scan.spacing[0]) if preset == "small" else 1.5
    space = make_space(np.asarray(scan.start) - step, scan.stop + step, step)
    canvas = Canvas(space)
    _paint_anatomy(canvas, frame, anatomy_rng)
    _phase, lut, extras = draw_densities(texture_rng)
    hu = render(canvas.tissue, lut, extras, step, texture_rng)
    shift = displacement(space, warp_rng, warp_rng.uniform(3, 7))
    fade = np.clip(-canvas.skin / 25.0, 0.0, 1.0)  # bend the inside, not the skin or the table
    for component in shift:
        component *= fade
    hu = warp(hu, space, shift, -1000.0)
    pancreas = warp(canvas.pancreas, space, shift, 50.0)
    dz = scan.spacing[2]
    if dz > step:  # slice thickness: average along z
        ndimage.gaussian_filter1d(hu, np.sqrt(dz**2 - step**2) / 2.355 / step, axis=0, output=hu)
    image = _resample(hu, space, scan, -1000.0)
    gland = _resample(pancreas, space, scan, 50.0)
    del hu, canvas, pancreas, shift
    add_noise(image, scan.spacing, noise_rng)
    out = sitk.GetImageFromArray(np.clip(np.rint(image), -1024, 3071).astype(np.int16))
    label = sitk.GetImageFromArray((gland < 0).astype(np.uint8))
    for im in (out, label):
        im.SetSpacing(scan.spacing)
        im.SetOrigin(tuple(float(v) for v in np.asarray(scan.start) + scan.offset))
    return out, label


def second_family_phase(seed: int) -> str:
    """The contrast phase drawn for ``seed`` (the same draw :func:`make_second_family_phantom` makes)."""
    texture_rng = np.random.default_rng(np.random.SeedSequence([seed, 2]).spawn(5)[3])
    return draw_densities(texture_rng)[0]


def _draw_scan(rng: np.random.Generator, frame: body.Frame, preset: str, coverage: float) -> Scan:
    if preset == "small":
        px = rng.uniform(2.3, 2.7)
        spacing = (px, px, 2.5)
        nx, ny = int(np.ceil((2 * frame.a + 30) / px)), int(np.ceil((2 * frame.b + 70) / px))
    else:
        px = max(rng.uniform(0.6, 0.9), (2 * frame.a + 24) / 512)
        spacing = (px, px, float(rng.choice(SLICE_THICKNESSES)))
        nx = ny = 512
    nz = int(round(coverage / spacing[2])) + 1
    centre = (rng.normal(0, 6), frame.b * 0.12 + rng.normal(0, 6))
    start = (centre[0] - (nx - 1) / 2 * px, centre[1] - (ny - 1) / 2 * px, frame.z_lo)
    offset = (rng.normal(0, 10), rng.normal(0, 10), rng.uniform(-400, 100))
    return Scan((nx, ny, nz), tuple(float(v) for v in spacing), tuple(float(v) for v in start), offset)


def _paint_anatomy(canvas: Canvas, frame: body.Frame, rng: np.random.Generator) -> None:
    """Paint back to front in the order that lets each structure cover the ones it lies on."""
    marks = organs.draw_landmarks(frame, rng)
    body.paint_table(canvas, frame, rng)
    body.paint_wall(canvas, frame, rng)
    body.paint_muscles(canvas, frame, rng)
    organs.paint_colon(canvas, frame, marks, rng)
    organs.paint_small_bowel(canvas, frame, marks, rng)
    body.paint_lung_bases(canvas, frame, rng)
    organs.paint_liver(canvas, frame, rng)
    organs.paint_spleen(canvas, frame, marks, rng)
    organs.paint_kidneys(canvas, frame, marks, rng)
    organs.paint_stomach(canvas, frame, marks, rng)
    body.paint_spine(canvas, frame, rng)
    body.paint_ribs(canvas, frame, rng)
    gland = gland_parts.draw_gland(frame, marks, rng)
    gland_parts.paint_pancreas(canvas, gland, rng)
    gland_parts.paint_duodenum(canvas, frame, marks, gland, rng)
    gland_parts.paint_vessels(canvas, frame, marks, gland, rng)


def _resample(values: np.ndarray, space, scan: Scan, default: float) -> np.ndarray:
    """Trilinear resampling of a (z, y, x) field on ``space``'s regular grid onto the scan grid (float32)."""
    import SimpleITK as sitk

    src = sitk.GetImageFromArray(np.ascontiguousarray(values, dtype=np.float32))
    src.SetSpacing((float(space.x[1] - space.x[0]),) * 3)
    src.SetOrigin((float(space.x[0]), float(space.y[0]), float(space.z[0])))
    out = sitk.Resample(src, scan.size, sitk.Transform(), sitk.sitkLinear, scan.start, scan.spacing,
                        (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), default, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)
