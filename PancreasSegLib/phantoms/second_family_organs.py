"""Solid organs and gut of the second phantom family: liver, gallbladder, spleen, kidneys, stomach, colon, small bowel.

Positions are relative to the :class:`~.second_family_body.Frame` (x left, y posterior, z superior, mm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from PancreasSegLib.phantoms.second_family_body import Frame
from PancreasSegLib.phantoms.second_family_fields import (
    Canvas,
    blob,
    ellipsoid,
    interpolate_along,
    rotation,
    smooth_noise,
    spline,
    tube,
)


@dataclass
class Landmarks:
    """Points shared between organs, so that neighbours meet where they do in the body."""

    sx: float                 # lateral scale of the cavity (1 = 120 mm half width)
    pylorus: np.ndarray
    spleen_hilum: np.ndarray
    kidneys: dict             # side (+1 left, -1 right) -> centre
    oral_contrast: bool


def draw_landmarks(frame: Frame, rng: np.random.Generator) -> Landmarks:
    a_in, b_in = frame.inner()
    sx = float(np.clip(a_in / 120.0, 0.8, 1.35))
    jitter = lambda s: rng.normal(0, s, 3)  # noqa: E731
    return Landmarks(
        sx=sx,
        pylorus=np.array([-0.16 * a_in, -0.55 * b_in, 14.0]) + jitter(4),
        spleen_hilum=np.array([0.66 * a_in, frame.yv - 12.0, 32.0]) + jitter(4),
        kidneys={1.0: np.array([0.48 * a_in, frame.yv + 6, rng.uniform(-25, 0)]),
                 -1.0: np.array([-0.48 * a_in, frame.yv + 8, rng.uniform(-45, -20)])},
        oral_contrast=bool(rng.random() < 0.35))


def paint_gut(canvas: Canvas, path: np.ndarray, radii: np.ndarray, content: str, rng: np.random.Generator,
              wall: float | None = None) -> None:
    """A hollow viscus along ``path``: wall, then its content (an air-fluid level lies across y, patient supine)."""
    wall = rng.uniform(1.5, 3.0) if wall is None else wall
    if content == "collapsed":
        radii = radii * rng.uniform(0.45, 0.65)
        wall = wall * 2.2
    field = tube(canvas.space, path, radii)
    if field is None:
        return
    canvas.paint(field, "gut_wall")
    box, sdf = field
    lumen = (box, sdf + wall)
    if content == "collapsed":
        canvas.paint(lumen, "gut_fluid", grow=-radii.mean() * 0.2)
    elif content == "air_fluid":
        canvas.paint(lumen, "gut_fluid")
        level = float(path[:, 1].mean()) + rng.uniform(-0.6, 0.2) * float(radii.mean())
        canvas.paint((box, np.maximum(lumen[1], canvas.space.Y[box] - level)), "gut_air")
    else:
        canvas.paint(lumen, content)
        if content in ("stool", "food"):  # gas bubbles
            bubbles = np.where(_speckle(rng, sdf.shape) > 2.2, -1.0, 1.0).astype(np.float32)
            canvas.paint((box, np.maximum(lumen[1] + 1.0, bubbles)), "gut_air")


def _speckle(rng: np.random.Generator, shape) -> np.ndarray:
    return smooth_noise(rng, shape, 1.2)


def paint_colon(canvas: Canvas, frame: Frame, marks: Landmarks, rng: np.random.Generator) -> None:
    """Ascending, transverse (sagging in front) and descending colon with haustra; stool, gas or contrast."""
    a, b = frame.inner()
    sag = rng.uniform(0, 50)
    pts = np.array([[-0.58 * a, -0.1 * b, -150], [-0.68 * a, 0.1 * b, -85], [-0.64 * a, -0.15 * b, -40],
                    [-0.30 * a, -0.68 * b, -45 - sag], [0.22 * a, -0.72 * b, -55 - sag],
                    [0.64 * a, -0.05 * b, 22], [0.72 * a, 0.18 * b, -40], [0.68 * a, 0.15 * b, -150]])
    pts += rng.normal(0, 6, pts.shape)
    path = spline(pts, 1.0)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    base = interpolate_along(path, rng.uniform(14, 24, len(pts)))
    radii = base * (1.0 + 0.14 * np.sin(2 * np.pi * arc / rng.uniform(20, 30)))
    cuts = np.sort(rng.choice(np.arange(1, len(path) - 1), 2, replace=False))
    for part in np.split(np.arange(len(path)), cuts):
        kinds = ["stool", "stool", "gut_air", "air_fluid"] + (["gut_contrast"] if marks.oral_contrast else [])
        content = rng.choice(kinds)
        paint_gut(canvas, path[part], radii[part], str(content), rng)


def paint_small_bowel(canvas: Canvas, frame: Frame, marks: Landmarks, rng: np.random.Generator) -> None:
    """Jejunal and ileal loops: random smooth walks below the gland, fluid, gas, contrast or collapsed."""
    a, b = frame.inner()
    lo = np.array([-0.5 * a, -0.8 * b, frame.z_lo - 30])
    hi = np.array([0.55 * a, min(0.25 * b, frame.yv - 25), -20.0])
    kinds = ["gut_fluid", "gut_fluid", "air_fluid", "collapsed", "collapsed"]
    kinds += ["gut_contrast"] * (4 if marks.oral_contrast else 0)
    for _ in range(int(rng.integers(6, 12))):
        p = rng.uniform(lo, hi)
        if rng.random() < 0.4:  # jejunum also sits left, under the body and tail
            p = np.array([rng.uniform(0.1, 0.5) * a, rng.uniform(-0.5, 0.0) * b, rng.uniform(-40, 5)])
        pts = [p]
        heading = rng.normal(0, 1, 3)
        for _ in range(int(rng.integers(4, 8))):
            heading = heading / np.linalg.norm(heading) + rng.normal(0, 0.8, 3)
            step = heading / np.linalg.norm(heading) * rng.uniform(18, 30)
            pts.append(np.clip(pts[-1] + step, lo - [0, 0, 0], hi + [0, 0, 25]))
        path = spline(np.array(pts), 1.0)
        if len(path) < 4:
            continue
        radii = np.full(len(path), rng.uniform(8, 14))
        paint_gut(canvas, path, radii, str(rng.choice(kinds)), rng)


def paint_liver(canvas: Canvas, frame: Frame, rng: np.random.Generator) -> None:
    """A smooth union of spheres in the right upper quadrant, its left lobe reaching over to the left."""
    a, b = frame.inner()
    centres = np.array([[-0.50 * a, -0.15 * b, 70], [-0.55 * a, 0.10 * b, 30], [-0.66 * a, -0.05 * b, -12],
                        [-0.68 * a, 0.0, -48], [-0.15 * a, -0.45 * b, 62], [0.22 * a, -0.55 * b, 78],
                        [-0.05 * a, frame.ya - 2, 58]])
    radii = np.array([0.42 * a, 0.38 * a, 0.25 * a, 0.16 * a * rng.uniform(0.3, 1.3), 0.30 * a, 0.22 * a, 18.0])
    centres += rng.normal(0, 7, centres.shape)
    radii *= rng.uniform(0.8, 1.1, len(radii)) * rng.uniform(0.82, 1.0)
    canvas.paint(blob(canvas.space, centres, radii, softness=rng.uniform(6, 12)), "liver", clip_to_cavity=True)
    if rng.random() < 0.75:
        centre = np.array([-0.42 * a, -0.52 * b, rng.uniform(-10, 15)]) + rng.normal(0, 5, 3)
        gall = ellipsoid(canvas.space, centre, rng.uniform([11, 11, 22], [18, 18, 40]), rotation(rng, 30))
        canvas.paint(gall, "gut_wall", clip_to_cavity=True)
        canvas.paint(gall, "gallbladder", grow=-1.5, clip_to_cavity=True)


def paint_spleen(canvas: Canvas, frame: Frame, marks: Landmarks, rng: np.random.Generator) -> None:
    """A crescent of spheres against the left posterolateral wall, its hilum towards the tail."""
    a, b = frame.inner()
    size = rng.uniform(0.75, 1.25)
    centres = np.array([[0.72 * a, frame.yv - 4, 58], [0.60 * a, frame.yv + 22, 80], [0.70 * a, frame.yv - 26, 42]])
    centres += rng.normal(0, 5, centres.shape)
    radii = np.array([27.0, 23.0, 19.0]) * size
    canvas.paint(blob(canvas.space, centres, radii, softness=5.0), "spleen", clip_to_cavity=True)


def paint_kidneys(canvas: Canvas, frame: Frame, marks: Landmarks, rng: np.random.Generator) -> None:
    """Both kidneys: tilted ellipsoids (upper pole medial and back) with cortex, medulla and sinus fat."""
    for side, centre in marks.kidneys.items():
        radii = rng.uniform([24, 19, 48], [30, 24, 60])
        tilt = rotation(rng, 8) @ _turn(side * np.radians(rng.uniform(8, 20)), np.radians(rng.uniform(10, 25)))
        kidney = ellipsoid(canvas.space, centre, radii, tilt)
        canvas.paint(kidney, "kidney_cortex")
        canvas.paint(kidney, "kidney_medulla", grow=-rng.uniform(5, 8))
        sinus = centre + [-side * radii[0] * 0.55, -radii[1] * 0.35, 0]
        canvas.paint(ellipsoid(canvas.space, sinus, radii * [0.45, 0.4, 0.5], tilt), "sinus_fat")


def _turn(about_y: float, about_x: float) -> np.ndarray:
    cy, sy, cx, sx = np.cos(about_y), np.sin(about_y), np.cos(about_x), np.sin(about_x)
    return np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])


def paint_stomach(canvas: Canvas, frame: Frame, marks: Landmarks, rng: np.random.Generator) -> None:
    """The J-shaped stomach from the fundus under the left dome to the pylorus right of the midline."""
    a, b = frame.inner()
    pts = np.array([[0.42 * a, frame.yv - 30, 108], [0.48 * a, -0.2 * b, 76], [0.40 * a, -0.45 * b, 46],
                    [0.08 * a, -0.62 * b, 22], marks.pylorus])
    pts[:-1] += rng.normal(0, 5, (4, 3))
    path = spline(pts, 1.0)
    distension = rng.uniform(0.6, 1.15)
    radii = interpolate_along(path, np.array([36, 34, 30, 22, 11]) * distension)
    kinds = ["air_fluid", "air_fluid", "food", "collapsed"] + (["gut_contrast"] if marks.oral_contrast else [])
    content = rng.choice(kinds)
    paint_gut(canvas, path, radii, str(content), rng, wall=rng.uniform(3, 6))
