"""The body wall, skeleton, muscles and CT table of the second phantom family.

Coordinates are the patient frame of :mod:`.second_family_fields` (x left, y posterior, z superior, mm),
centred on the body at the level of the pancreatic neck (about L1-L2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from PancreasSegLib.phantoms.second_family_fields import Canvas, ellipsoid, spline, tube


@dataclass
class Frame:
    """Body proportions drawn once per case; every organ is placed relative to them."""

    a: float            # half width of the body at z = 0
    b: float            # half depth (front to back)
    taper: float        # relative change of width per 100 mm upwards
    harmonics: np.ndarray   # (3, 2) amplitudes and phases of outline harmonics 2..4
    fat: float          # subcutaneous fat at the flanks
    fat_front: float    # extra fat in front
    muscle: float       # abdominal wall muscle thickness
    yv: float           # y of the vertebral body centre
    z_lo: float
    z_hi: float

    @property
    def ya(self) -> float:
        """y of the aorta's centre (in front of the vertebral body)."""
        return self.yv - 36.0

    def inner(self) -> tuple[float, float]:
        """Half axes of the peritoneal cavity at z = 0."""
        return self.a - self.fat - self.muscle, self.b - 0.5 * (self.fat + self.fat_front) - self.muscle


def draw_frame(rng: np.random.Generator, z_lo: float, z_hi: float) -> Frame:
    a = rng.uniform(135, 185)
    b = float(np.clip(a * rng.uniform(0.62, 0.80), 95, 140))
    fat = rng.uniform(6, 34)
    return Frame(a=a, b=b, taper=rng.uniform(-0.04, 0.03), harmonics=rng.normal(0, 1, (3, 2)) * [0.025, 1.0],
                 fat=fat, fat_front=rng.uniform(0, 1.0) * fat, muscle=rng.uniform(7, 14),
                 yv=b - rng.uniform(62, 80), z_lo=z_lo, z_hi=z_hi)


def _outline(frame: Frame, X, Y, Z):
    """Signed radial distance to the skin, and the polar angle, at each point."""
    scale = 1.0 + frame.taper * Z / 100.0
    theta = np.arctan2(Y, X)
    a, b = frame.a * scale, frame.b * scale
    radius = a * b / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)
    wobble = 1.0
    for k in range(3):
        wobble = wobble + frame.harmonics[k, 0] * np.cos((k + 2) * theta + frame.harmonics[k, 1])
    rho = np.sqrt(X**2 + Y**2)
    sdf = np.maximum(rho - radius * wobble, Y - (frame.b * scale - 6.0))  # the back rests flat on the table
    return sdf, theta


def paint_wall(canvas: Canvas, frame: Frame, rng: np.random.Generator) -> None:
    """Skin, subcutaneous fat, the muscle wall with the linea alba, visceral fat; keeps the cavity field."""
    s = canvas.space
    sdf, theta = _outline(frame, s.X, s.Y, s.Z)
    front = np.clip(-np.sin(theta), 0, None)
    fat = frame.fat * (1.0 + 0.25 * np.cos(2 * theta + rng.uniform(0, 6.3))) + frame.fat_front * front
    fat = np.where(s.Y > 0, fat * rng.uniform(0.5, 0.9), fat)
    rectus = 7.0 * np.exp(-(s.X / 55.0) ** 2) * front
    muscle = frame.muscle + rectus
    everything = (slice(None),) * 3
    canvas.skin = sdf.astype(np.float32)
    canvas.paint((everything, sdf), "skin")
    canvas.paint((everything, sdf + 2.0), "subcutaneous_fat")
    canvas.paint((everything, sdf + fat), "muscle")
    linea = np.where((np.abs(s.X) < 2.5) & (s.Y < 0), -1.0, 1.0).astype(np.float32)
    canvas.paint((everything, np.maximum(sdf + fat, linea)), "subcutaneous_fat")
    canvas.cavity = (sdf + fat + muscle).astype(np.float32)
    canvas.paint((everything, canvas.cavity), "visceral_fat")


def paint_table(canvas: Canvas, frame: Frame, rng: np.random.Generator) -> None:
    """A curved carbon-fibre table (two thin shells round a foam core) with a pad, under the back."""
    s = canvas.space
    top = frame.b * (1.0 + frame.taper * max(frame.z_lo, frame.z_hi, key=lambda z: frame.taper * z) / 100.0) - 7.0
    pad = rng.uniform(2, 10)
    sag = rng.uniform(0.0, 2.0e-4)
    half = rng.uniform(190, 240)
    everything = (slice(None),) * 3
    y0 = top + pad + sag * s.X**2
    width = np.abs(s.X) - half
    core = rng.uniform(25, 45)
    shell = rng.uniform(1.5, 3.0)
    canvas.paint((everything, np.maximum(np.maximum(top - s.Y, s.Y - y0), np.abs(s.X) - half * 0.95)), "pad")
    canvas.paint((everything, np.maximum(np.abs(s.Y - y0 - core / 2) - core / 2, width)), "table_shell")
    canvas.paint((everything, np.maximum(np.abs(s.Y - y0 - core / 2) - core / 2 + shell, width + shell)),
                 "table_core")


def paint_spine(canvas: Canvas, frame: Frame, rng: np.random.Generator) -> None:
    """Vertebral bodies (cortex, marrow) with discs, the canal, posterior arches, spinous and transverse processes."""
    s = canvas.space
    z = np.arange(frame.z_lo - 40, frame.z_hi + 40, 4.0)
    lordosis = rng.uniform(-6, 2) * ((z - 0) / 150.0) ** 2
    column = np.stack([rng.normal(0, 1.5) + 0 * z, frame.yv + lordosis, z], axis=1)
    rx, squash = rng.uniform(20, 25), rng.uniform(0.66, 0.8)
    canvas.paint(tube(s, column, np.full(len(z), rx), (1, squash, 1)), "disc")
    height, gap = rng.uniform(25, 30), rng.uniform(7, 10)
    canal_y = frame.yv + rx * squash + 10.0
    canal = column + [0, canal_y - frame.yv, 0]
    start = rng.uniform(0, height + gap)
    for zc in np.arange(frame.z_lo - 60 + start, frame.z_hi + 40, height + gap):
        slab = np.abs(s.Z - zc) - height / 2
        near = np.abs(z - zc) < height
        body = tube(s, column[near], np.full(near.sum(), rx), (1, squash, 1))
        if body is not None:
            cut = (body[0], np.maximum(body[1], slab[body[0]]))
            canvas.paint(cut, "cortical_bone")
            canvas.paint(cut, "marrow", grow=-2.0)
        yc = canal_y + rng.normal(0, 1)
        angles = np.linspace(0, np.pi, 9)
        arch = np.stack([12 * np.cos(angles), yc + 11 * np.sin(angles), np.full(9, zc + 4)], axis=1)
        processes = [arch,
                     spline([[0, yc + 10, zc + 4], [0, yc + 26, zc - 4], [0, yc + rng.uniform(30, 40), zc - 14]], 2),
                     spline([[10, yc, zc + 6], [30, yc + 2, zc + 6], [rng.uniform(38, 52), yc, zc + 4]], 2),
                     spline([[-10, yc, zc + 6], [-30, yc + 2, zc + 6], [-rng.uniform(38, 52), yc, zc + 4]], 2)]
        for path in processes:
            path = path if len(path) > 9 else spline(path, 2)
            piece = tube(s, path, np.full(len(path), 4.5), (1.0, 1.0, 1.6))
            canvas.paint(piece, "cortical_bone")
            canvas.paint(piece, "marrow", grow=-1.5)
    canvas.paint(tube(s, canal, np.full(len(z), rng.uniform(7.5, 9.5)), (1, 0.85, 1)), "csf")


def paint_muscles(canvas: Canvas, frame: Frame, rng: np.random.Generator) -> None:
    """Psoas (growing downwards), quadratus lumborum and erector spinae, both sides."""
    s = canvas.space
    z = np.linspace(frame.z_lo - 30, frame.z_hi + 30, 24)
    for side in (-1.0, 1.0):
        psoas = np.stack([side * (28 + 10 * np.clip(-z / 120, 0, 1) + rng.normal(0, 2)) + 0 * z,
                          frame.yv + 4 + 0 * z, z], axis=1)
        radii = np.clip(rng.uniform(9, 13) - z * rng.uniform(0.05, 0.1), 3, 26)
        canvas.paint(tube(s, psoas, radii), "muscle", clip_to_cavity=False)
        quadratus = np.stack([side * (frame.a * 0.36 + 0 * z), frame.yv + 26 + 0 * z, z], axis=1)
        canvas.paint(tube(s, quadratus, np.clip(rng.uniform(8, 12) - z * 0.03, 4, 16), (1.0, 0.7, 1)), "muscle")
        depth = frame.b - frame.yv
        erector = np.stack([side * (30 + 0 * z), frame.yv + 0.62 * depth + 0 * z, z], axis=1)
        rx = rng.uniform(22, 30)
        canvas.paint(tube(s, erector, np.full(len(z), rx), (1.0, 0.3 * depth / rx, 1)), "muscle")


def paint_ribs(canvas: Canvas, frame: Frame, rng: np.random.Generator) -> None:
    """The lower ribs, each sloping down towards the front, the upper ones ending in costal cartilage."""
    s = canvas.space
    a_in, b_in = frame.inner()
    spacing = rng.uniform(24, 32)
    z_floating = rng.uniform(-45, -20)
    for k in range(7):
        z0 = z_floating + k * spacing
        if z0 - 70 > frame.z_hi + 20:
            break
        reach = np.radians(25 + 22 * min(k, 3))
        for side in (-1.0, 1.0):
            ang = np.linspace(np.radians(72), -reach, 14)
            r = np.hypot(a_in * np.cos(ang), b_in * np.sin(ang)) + frame.muscle * 0.5 + 3
            drop = rng.uniform(70, 110) * (np.radians(72) - ang) / np.radians(150)
            pts = np.stack([side * r * np.cos(ang), r * np.sin(ang) + 0 * ang, z0 - drop], axis=1)
            path = spline(pts, 1.0)
            bone = tube(s, path, np.full(len(path), rng.uniform(4.0, 5.5)), (1.0, 1.0, 1.5))
            canvas.paint(bone, "cortical_bone")
            canvas.paint(bone, "marrow", grow=-1.6)
            if k >= 3:
                ang2 = np.linspace(-reach, -reach - np.radians(30), 5)
                r2 = np.hypot(a_in * np.cos(ang2), b_in * np.sin(ang2)) + frame.muscle * 0.5 + 3
                pts2 = np.stack([side * r2 * np.cos(ang2), r2 * np.sin(ang2), pts[-1, 2] + np.linspace(0, 12, 5)], 1)
                path2 = spline(pts2, 1.0)
                canvas.paint(tube(s, path2, np.full(len(path2), 5.0), (1.0, 1.0, 1.6)), "cartilage")


def paint_lung_bases(canvas: Canvas, frame: Frame, rng: np.random.Generator) -> None:
    """Lung bases above domed diaphragms (lowest at the back), and the heart between them at the top."""
    s = canvas.space
    box = s.box([-frame.a, -frame.b, frame.z_hi - 120], [frame.a, frame.b, frame.z_hi + 20])
    if box is None:
        return
    X, Y, Z = s.X[box], s.Y[box], s.Z[box]
    dome = rng.uniform(95, 135) + 28 * (np.abs(X) / frame.a) ** 2 - 30 * np.clip(Y / frame.b, 0, 1) ** 1.5
    lungs = np.maximum(dome - Z, 45 - np.abs(X) + 0.2 * Y).astype(np.float32)
    canvas.paint((box, lungs), "lung", clip_to_cavity=True)
    heart = ellipsoid(s, [10, -frame.b * 0.25, rng.uniform(190, 215)], [85, 60, 75])
    canvas.paint(heart, "heart", clip_to_cavity=True)
