"""The pancreas of the second phantom family with the duodenal C-loop and the vessels around it.

The gland is a flattened, tapered tube along a spline from the uncinate process (behind the SMV),
through the head inside the C-loop and the neck in front of the portal confluence, across the SMA and
aorta, to the tail at the splenic hilum; its outline is lobulated by smooth noise. The splenic vein
runs half embedded along its back; vessels and duodenum painted afterwards are cut out of the label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from PancreasSegLib.phantoms.second_family_body import Frame
from PancreasSegLib.phantoms.second_family_fields import Canvas, interpolate_along, smooth_noise, spline, tube
from PancreasSegLib.phantoms.second_family_organs import Landmarks, paint_gut


@dataclass
class Gland:
    path: np.ndarray      # dense centre line, head (uncinate) first
    radii: np.ndarray
    squash: float         # front-to-back flattening of the cross-section
    xa: float             # x of the aorta


def draw_gland(frame: Frame, marks: Landmarks, rng: np.random.Generator) -> Gland:
    ya, sx = frame.ya, marks.sx
    xa = rng.uniform(6, 16)
    rise = rng.uniform(-4, 22)
    tail = marks.spleen_hilum
    pts = np.array([[xa - 18, ya - 14, -36], [-30 * sx, ya - 16, -32], [-38 * sx, ya - 24, -18],
                    [-26 * sx, ya - 34, -6], [xa - 20, ya - 42, -2], [xa + 10, ya - 42, 3],
                    [48 * sx, ya - 28, 8 + rise / 2], [tail[0] - 22, tail[1] - 14, tail[2] - 12 + rise / 2],
                    [tail[0] - 8, tail[1] - 4, tail[2] - 8 + rise / 2]])
    pts[:, 2] += rng.uniform(-10, 10)
    pts += rng.normal(0, 3.0, pts.shape)
    path = spline(pts, 1.5)
    size = rng.uniform(0.8, 1.25)
    radii = interpolate_along(path, np.array([6, 12, 15, 12, 8.5, 10, 10, 9, 6]) * size * rng.uniform(0.9, 1.1, 9))
    return Gland(path=path, radii=radii, squash=float(rng.uniform(0.6, 0.8)), xa=float(xa))


def paint_pancreas(canvas: Canvas, gland: Gland, rng: np.random.Generator) -> None:
    """The gland with a lobulated outline (its texture and fat come with the HU, from the label's field)."""
    field = tube(canvas.space, gland.path, gland.radii, (1.0, gland.squash, 1.0))
    box, sdf = field
    step = canvas.space.step
    sdf = sdf + rng.uniform(0.8, 2.4) * smooth_noise(rng, sdf.shape, 2.2 / step)
    sdf = np.maximum(sdf, canvas.cavity[box])
    canvas.start_pancreas((box, sdf))


def paint_duodenum(canvas: Canvas, frame: Frame, marks: Landmarks, gland: Gland, rng: np.random.Generator) -> None:
    """The C-loop: bulb from the pylorus, descending part beside the head, the third part between SMA and aorta."""
    ya, sx, xa = frame.ya, marks.sx, gland.xa
    pts = np.array([marks.pylorus, [-46 * sx, ya - 40, 8], [-60 * sx, ya - 24, -6], [-62 * sx, ya - 18, -34],
                    [-48 * sx, ya - 16, -52], [-16, ya - 20, -58], [xa + 14, ya - 20, -52],
                    [xa + 24, ya - 26, -32], [xa + 32, ya - 30, -18]])
    pts[1:] += rng.normal(0, 2.5, (len(pts) - 1, 3))
    pts[2:5, 2] += rng.uniform(-6, 6)
    path = spline(pts, 1.0)
    radii = interpolate_along(path, np.array([10, 13, 12, 12, 10, 7, 8, 9, 9]) * rng.uniform(0.8, 1.15))
    content = str(rng.choice(["collapsed", "collapsed", "gut_fluid", "air_fluid", "gut_air"]
                             + (["gut_contrast"] * 2 if marks.oral_contrast else [])))
    paint_gut(canvas, path, radii, content, rng)


def paint_vessels(canvas: Canvas, frame: Frame, marks: Landmarks, gland: Gland, rng: np.random.Generator) -> None:
    """Aorta, IVC, SMA (in its fat collar), SMV, portal vein, splenic vein and artery, renal veins."""
    s, ya, xa = canvas.space, frame.ya, gland.xa
    z = np.linspace(frame.z_lo - 40, frame.z_hi + 40, 30)
    r_ao = rng.uniform(9, 13)
    canvas.paint(tube(s, np.stack([xa + 2 * np.sin(z / 90), ya + 0 * z, z], 1), np.full(30, r_ao)), "artery")
    ivc_x = -22 * marks.sx + rng.normal(0, 2)
    ivc = spline([[ivc_x, ya + 2, frame.z_lo - 40], [ivc_x, ya + 2, 0], [ivc_x - 6, ya - 6, 50],
                  [ivc_x - 8, ya - 4, frame.z_hi + 40]], 0.5)
    canvas.paint(tube(s, ivc, np.full(len(ivc), rng.uniform(10, 14)), (1, rng.uniform(0.5, 0.8), 1)), "ivc")
    sma = spline([[xa - 1, ya - r_ao + 2, 18], [xa - 4, ya - 22, 6], [xa - 6, ya - 26, -20], [xa - 6, ya - 32, -60],
                  [xa - 3, ya - 36, frame.z_lo - 40]], 1.0)
    r_sma = np.full(len(sma), rng.uniform(3.2, 4.5))
    canvas.paint(tube(s, sma, r_sma), "visceral_fat", grow=rng.uniform(2, 5))
    canvas.paint(tube(s, sma, r_sma), "artery")
    confluence = np.array([xa - 22, ya - 27, -4.0])
    smv = spline([[xa - 20, ya - 36, frame.z_lo - 40], [xa - 20, ya - 33, -60], [xa - 20, ya - 29, -22],
                  confluence], 1.0)
    r_v = rng.uniform(5, 7)
    canvas.paint(tube(s, smv, np.full(len(smv), r_v)), "portal_vein")
    portal = spline([confluence, [-30 * marks.sx, ya - 32, 20], [-52 * marks.sx, ya - 26, 44]], 1.0)
    canvas.paint(tube(s, portal, np.full(len(portal), r_v + 1.5)), "portal_vein")
    body = gland.path[len(gland.path) // 2:]
    r_sv = rng.uniform(3.5, 5.0)
    offset = gland.radii[len(gland.path) // 2:] * gland.squash + r_sv * rng.uniform(0.0, 0.6)
    behind = body + np.stack([0 * offset, offset, -0.3 * offset], 1)
    splenic = spline(np.vstack([confluence, behind[::12], marks.spleen_hilum]), 1.0)
    canvas.paint(tube(s, splenic, np.full(len(splenic), r_sv)), "portal_vein")
    _paint_arteries(canvas, frame, marks, gland, r_ao, rng)
    _paint_renal_veins(canvas, frame, marks, gland, r_ao, ivc_x, rng)


def _paint_arteries(canvas: Canvas, frame: Frame, marks: Landmarks, gland: Gland, r_ao: float,
                    rng: np.random.Generator) -> None:
    ya, xa = frame.ya, gland.xa
    celiac = np.array([xa - 2, ya - r_ao - 10, rng.uniform(26, 36)])
    top = gland.path[len(gland.path) // 3:] + [0, 0, 0]
    top[:, 2] += gland.radii[len(gland.path) // 3:] + rng.uniform(2, 6)
    wiggle = rng.uniform(3, 7) * np.sin(np.linspace(0, rng.uniform(10, 18), len(top)))
    top[:, 1] += wiggle
    splenic = spline(np.vstack([[xa, ya - r_ao + 2, celiac[2] - 2], celiac, top[::10], marks.spleen_hilum]), 1.0)
    r = rng.uniform(2.2, 3.2)
    canvas.paint(tube(canvas.space, splenic, np.full(len(splenic), r)), "artery")
    hepatic = spline([celiac, [-20, ya - 36, celiac[2] + 2], [-45 * marks.sx, ya - 30, celiac[2] + 8]], 1.0)
    canvas.paint(tube(canvas.space, hepatic, np.full(len(hepatic), r)), "artery")


def _paint_renal_veins(canvas: Canvas, frame: Frame, marks: Landmarks, gland: Gland, r_ao: float, ivc_x: float,
                       rng: np.random.Generator) -> None:
    ya, xa = frame.ya, gland.xa
    left = marks.kidneys[1.0]
    z = left[2] + rng.uniform(-4, 8)
    path = spline([[left[0] - 22, left[1] - 6, z], [xa + r_ao + 8, ya - 12, z + 2], [xa, ya - r_ao - 4.5, z + 4],
                   [ivc_x, ya, z + 2]], 1.0)
    canvas.paint(tube(canvas.space, path, np.full(len(path), rng.uniform(3.5, 4.5))), "renal_vein")
    right = marks.kidneys[-1.0]
    path = spline([[right[0] + 20, right[1] - 6, right[2] + 4], [ivc_x, ya + 2, right[2] + 8]], 1.0)
    canvas.paint(tube(canvas.space, path, np.full(len(path), rng.uniform(3.5, 4.5))), "renal_vein")
