"""Anatomical variety: one abdomen of the generator, with another gland calibre, bent and rescaled.

The generator builds every abdomen from one template (organs as tubes and ellipsoids placed against
the gland), so a model trained on it can learn the template's shapes and distances instead of the
pancreas. ``make_phantom(seed, vary_anatomy=True)`` breaks that in two ways, each drawn from a stream
of its own (a phantom made without it is unchanged):

- **gland calibre**: the pancreas is made thinner or thicker (0.65-1.15 times its drawn radii), with a
  smooth change along its length, so it is sometimes the thin, fat-outlined gland of an older patient
  and its neighbours no longer all press on it;
- **a smooth deformation of the whole scan**: a per-axis scale (0.8-1.15, with a little shear) about
  the gland and a random displacement field (a few millimetres, smooth over about 40 mm), which bends
  organs out of their ellipsoids and moves them against each other, and makes the body fill more or
  less of the field of view.

The label is deformed with the image (nearest neighbour), so it still lies exactly on the gland.

``make_phantom(seed, vary_course=True)`` changes the gland's course itself, before anything is placed
against it (:func:`vary_course`): body and tail turned about the neck towards the front or back and up
or down, longer or shorter, the tail tip elsewhere. The splenic vein and artery, the spleen, the stomach
and the jejunal loop that hugs the gland are placed against the gland as drawn, so they follow it; the
kidneys, spine and great vessels stay where they were. This is the variety described for real glands
(a horizontal, oblique, sigmoid or L-shaped course, a tail at the splenic hilum or lower in front of the
left kidney), and the part a model trained on one course misses first: the body and tail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    import SimpleITK as sitk

    from PancreasSegLib.phantoms.anatomy import Anatomy

#: Range of the gland's calibre factor (times the drawn radii).
CALIBRE = (0.65, 1.15)
#: Range of the per-axis scale of the deformation, and the spread of its shear terms.
SCALE = (0.8, 1.15)
SHEAR = 0.04
#: Smooth displacement: standard deviation range (mm) and correlation length (mm).
DISPLACEMENT_MM = (1.5, 4.0)
SMOOTHNESS_MM = 40.0
#: Spacing (mm) of the grid the displacement field is drawn on.
FIELD_STEP_MM = 8.0
#: The gland's course: turn of body and tail about the neck in the axial plane (degrees, + to the front),
#: in the coronal plane (+ the tail up), and the factor on their distance from the neck.
COURSE_YAW_DEG = (-10.0, 20.0)
COURSE_PITCH_DEG = (-15.0, 20.0)
COURSE_REACH = (0.85, 1.3)


def vary_gland(anatomy: Anatomy, rng: np.random.Generator) -> float:
    """Rescale the gland's radii in place by a smoothly varying factor; returns the mean factor."""
    base = float(rng.uniform(*CALIBRE))
    tube = anatomy.pancreas
    n = len(tube.points)
    # Along the gland: a smooth wave of +-20 % at most, so the head, body and tail need not match.
    knots = rng.uniform(-0.2, 0.2, 5)
    along = np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(knots)), knots)
    tube.ra *= base * (1 + along)
    tube.rb *= base * (1 + along) * float(rng.uniform(0.85, 1.1))
    anatomy.uncinate.ra *= base
    anatomy.uncinate.rb *= base
    anatomy.duct.ra = np.minimum(anatomy.duct.ra, 0.45 * float(np.min(tube.rb)))
    anatomy.duct.rb = np.minimum(anatomy.duct.rb, 0.45 * float(np.min(tube.rb)))
    return base


def vary_course(ctrl: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The gland's control points (lower head, head, neck, body, tail, tail tip; mm) with another course.

    Body, tail and tip turn about the neck (about z, then about the front-back axis), their distance
    from the neck is scaled, and the tip moves by a few millimetres more; the head stays.
    """
    out = np.array(ctrl, dtype=float)
    neck = out[2]
    yaw, pitch = np.radians(rng.uniform(*COURSE_YAW_DEG)), np.radians(rng.uniform(*COURSE_PITCH_DEG))
    # + yaw brings the tail (at +x, patient left) to the front (-y); + pitch raises it (+z).
    turn_z = np.array([[np.cos(yaw), np.sin(yaw), 0], [-np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    turn_y = np.array([[np.cos(pitch), 0, -np.sin(pitch)], [0, 1, 0], [np.sin(pitch), 0, np.cos(pitch)]])
    reach = rng.uniform(*COURSE_REACH)
    out[3:] = neck + (out[3:] - neck) @ (turn_y @ turn_z).T * reach
    out[5] += rng.normal(0, [6.0, 8.0, 6.0])
    return out


def deformation(reference: sitk.Image, centre, rng: np.random.Generator) -> sitk.Transform:
    """A smooth random deformation over ``reference``'s extent: scale and shear about ``centre`` plus a field."""
    import SimpleITK as sitk

    size = np.asarray(reference.GetSize())
    corners = np.array([reference.TransformContinuousIndexToPhysicalPoint(
        [float(c) for c in np.array([i, j, k]) * (size - 1)]) for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    lo, hi = corners.min(axis=0) - 2 * FIELD_STEP_MM, corners.max(axis=0) + 2 * FIELD_STEP_MM
    shape_xyz = np.ceil((hi - lo) / FIELD_STEP_MM).astype(int) + 1
    # Physical coordinates of the field's nodes, in (z, y, x) array order.
    axes = [lo[a] + FIELD_STEP_MM * np.arange(shape_xyz[a]) for a in range(3)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    offset = np.stack([xx, yy, zz], axis=-1) - np.asarray(centre, dtype=float)

    scale = rng.uniform(*SCALE, 3)
    scale[:2] = scale[0] * rng.uniform(0.93, 1.07, 2)  # in-plane scales close to each other
    linear = np.diag(1.0 / scale) + rng.normal(0, SHEAR, (3, 3)) * (1 - np.eye(3))
    # The output point x shows the input at x + d(x): d = (A - I)(x - c) + smooth noise.
    field = offset @ (linear - np.eye(3)).T
    sigma = SMOOTHNESS_MM / FIELD_STEP_MM
    amplitude = float(rng.uniform(*DISPLACEMENT_MM))
    for c in range(3):
        noise = ndimage.gaussian_filter(rng.standard_normal(zz.shape), sigma, mode="wrap")
        field[..., c] += amplitude * noise / max(float(noise.std()), 1e-6)
    image = sitk.GetImageFromArray(field.astype(np.float64), isVector=True)
    image.SetSpacing((FIELD_STEP_MM,) * 3)
    image.SetOrigin(tuple(float(v) for v in lo))
    return sitk.DisplacementFieldTransform(image)


def deform(hu: np.ndarray, label: np.ndarray, geometry, centre, rng: np.random.Generator):
    """``(hu, label)`` (z, y, x arrays on ``geometry``) deformed by one drawn :func:`deformation`."""
    import SimpleITK as sitk

    hu_image, label_image = geometry.image(hu), geometry.image(label)
    transform = deformation(hu_image, centre, rng)
    out_hu = sitk.Resample(hu_image, hu_image, transform, sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    out_label = sitk.Resample(label_image, label_image, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out_hu), sitk.GetArrayFromImage(out_label)
