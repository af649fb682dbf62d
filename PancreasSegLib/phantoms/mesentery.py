"""Mesentery and visceral fat: what the real abdomen has between its organs and the phantoms lacked.

Beside the real CT the generator's abdomen is packed: thick bowel loops press on each other and on the
gland, and the fat between them is empty. ``make_phantom(seed, mesentery=True)`` (``pancreasseg phantom
--mesentery``) fills that space as a real abdomen does, from a random stream of its own (a phantom made
without it is unchanged):

- **more visceral fat**: small bowel and colon at 0.55-1.0 times their drawn calibre, so fat opens
  between the loops and between the loops and the gland;
- **many small loops**: 6-16 extra collapsed or fluid-filled loops of 4-8 mm radius, drawn only into
  fat, so they lie between the organs without cutting into them;
- **mesenteric vessels**: 20-50 branching arteries and veins of 0.8-2.5 mm radius fanning out from the
  SMA and SMV into the mesentery, and a few small tortuous vessels in the fat beside the gland
  (pancreaticoduodenal and gastroepiploic branches);
- **fat strands**: thin fibrous septa and fat texture (sheets where a smooth random field is near zero,
  broken into short lines by a second one, 40-130 HU above the fat, and a mottle of 5-20 HU);
- **a fat rim around the gland** in most cases: 0-4 mm of fat between the pancreas and the bowel
  pressing on it, varying along its surface, so the gland is often outlined by fat rather than by
  its neighbours.

The vessels that touch the gland are still drawn at full resolution by the generator; everything here
is painted on the coarse grid, before the gland.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from PancreasSegLib.phantoms.shapes import NoiseField, Tube

if TYPE_CHECKING:
    from PancreasSegLib.phantoms.anatomy import Anatomy
    from PancreasSegLib.phantoms.shapes import Grid

#: Range of the calibre factor of the small bowel and colon.
BOWEL_CALIBRE = (0.55, 1.0)
#: Range of the number of extra small loops, and of their radius (mm).
EXTRA_LOOPS = (6, 16)
LOOP_RADIUS_MM = (4.0, 8.0)
#: Range of the number of mesenteric vessel branches, and of their radius at the root (mm).
BRANCHES = (20, 50)
BRANCH_RADIUS_MM = (0.8, 2.5)
#: Largest fat rim (mm) carved between the gland and what presses on it.
RIM_MM = 4.0
#: Tissue counted as fat on the coarse grid (HU).
FAT_HU = (-250.0, -40.0)


def vary(anatomy: Anatomy, rng: np.random.Generator) -> dict:
    """Draw the mesentery of one abdomen: thinner bowel, extra loops and vessel branches (in place).

    Stores its drawing in ``anatomy.mesentery`` for :func:`paint` and returns it.
    """
    u = rng.uniform
    factor = float(u(*BOWEL_CALIBRE))
    for tube in (anatomy.small_bowel, anatomy.colon):
        tube.ra *= factor
        tube.rb *= factor
    ai, bi, yc = anatomy.body["ai"], anatomy.body["bi"], anatomy.body["yc"]
    p_lo, p_hi = anatomy.pancreas_bounds()
    loops = []
    for _ in range(int(rng.integers(EXTRA_LOOPS[0], EXTRA_LOOPS[1] + 1))):
        start = np.array([u(-0.7, 0.7) * ai, yc - u(0.1, 0.8) * bi, u(p_lo[2] - 150, p_hi[2])])
        loops.append((_walk(rng, start, steps=int(rng.integers(8, 20)), step=6.0), float(u(*LOOP_RADIUS_MM)),
                      int(rng.integers(0, 3))))
    # Mesenteric branches: from the SMA and SMV below the neck, out to the front, left and below.
    roots = []
    for name in ("sma", "smv"):
        tube = anatomy.vessels[name][0]
        below = np.flatnonzero(tube.points[:, 2] < p_hi[2] - 10)
        if below.size:
            roots.append((tube, below, "artery" if name == "sma" else "vein"))
    branches = []
    for _ in range(int(rng.integers(BRANCHES[0], BRANCHES[1] + 1)) if roots else 0):
        tube, below, key = roots[int(rng.integers(len(roots)))]
        i = int(rng.choice(below))
        heading = np.array([u(-1, 1), u(-1.2, -0.1), u(-1, 0.2)])
        r0 = float(u(*BRANCH_RADIUS_MM))
        path = _walk(rng, tube.points[i], steps=int(rng.integers(6, 16)), step=7.0, heading=heading, turn=0.3)
        branches.append((path, r0, key))
        if len(path) > 4 and rng.uniform() < 0.6:  # a daughter branch from the middle
            j = int(rng.integers(2, len(path) - 1))
            branches.append((_walk(rng, path[j], steps=int(rng.integers(4, 9)), step=6.0,
                                   heading=heading + rng.normal(0, 0.8, 3), turn=0.35), 0.7 * r0, key))
    # Small vessels in the fat beside the gland: short tortuous arcs along its surface.
    g = anatomy.pancreas
    for _ in range(int(rng.integers(2, 7))):
        i = int(rng.integers(len(g.points)))
        side = rng.normal(0, 1, 2)
        side /= np.linalg.norm(side)
        offset = (g.ra[i] + u(2.0, 5.0)) * (side[0] * g.n1[i] + side[1] * g.n2[i])
        path = _walk(rng, g.points[i] + offset, steps=int(rng.integers(4, 9)), step=5.0, heading=g.t[i], turn=0.4)
        branches.append((path, float(u(0.8, 1.6)), "artery" if rng.uniform() < 0.5 else "vein"))
    anatomy.mesentery = {
        "bowel_calibre": factor, "loops": loops, "branches": branches,
        "strand_cell_mm": float(u(5.0, 11.0)), "strand_width": float(u(0.08, 0.18)),
        "strand_hu": float(u(40.0, 130.0)), "fat_texture_hu": float(u(5.0, 20.0)),
        "rim_mm": float(u(0.0, RIM_MM)) if rng.uniform() < 0.8 else 0.0,
        "seed": int(rng.integers(2**32)),
    }
    return anatomy.mesentery


def paint(anatomy: Anatomy, grid: Grid, cavity: np.ndarray) -> None:
    """Paint the drawn mesentery into ``grid.hu`` (after the organs, before the main vessels and bones)."""
    m = anatomy.mesentery
    rng = np.random.default_rng(m["seed"])
    hu = anatomy.hu
    if m["rim_mm"] > 0:
        _fat_rim(anatomy, grid, cavity, m["rim_mm"], rng)
    fat = cavity & (grid.hu > FAT_HU[0]) & (grid.hu < FAT_HU[1])
    lo = np.array([grid.xs[0], grid.ys[0], grid.zs[0]])
    hi = np.array([grid.xs[-1], grid.ys[-1], grid.zs[-1]])
    _strands(grid, fat, lo, hi, m, rng, hu["fat"])
    for path, radius, kind in m["loops"]:
        value = (hu["fluid"], hu["gut_wall"] - 6, hu["gut_wall"] + 4)[kind]
        grid.paint_tube(Tube.through(path, radius, step=1.0), value, within=fat, wall=1.5,
                        wall_value=hu["gut_wall"])
        fat &= grid.hu < FAT_HU[1]
    for path, radius, key in m["branches"]:
        taper = np.linspace(radius, max(0.5, 0.45 * radius), len(path))
        grid.paint_tube(Tube.through(path, taper, step=0.7), hu[key], within=fat)


def _walk(rng: np.random.Generator, start, steps: int, step: float, heading=None, turn: float = 0.5) -> np.ndarray:
    """A smooth random walk of ``steps`` segments of ``step`` mm from ``start``."""
    d = rng.normal(0, 1, 3) if heading is None else np.asarray(heading, dtype=float)
    d = d / max(float(np.linalg.norm(d)), 1e-9)
    p = np.asarray(start, dtype=float)
    points = [p.copy()]
    for _ in range(steps):
        d = d + rng.normal(0, turn, 3)
        d /= max(float(np.linalg.norm(d)), 1e-9)
        p = p + step * d
        points.append(p.copy())
    return np.array(points)


def _strands(grid: Grid, fat: np.ndarray, lo, hi, m: dict, rng: np.random.Generator, fat_hu: float) -> None:
    """Fibrous septa (lines where two smooth fields are both near zero) and a mottled fat texture."""
    kk, jj, ii = np.nonzero(fat)
    if kk.size == 0:
        return
    x, y, z = grid.xs[ii], grid.ys[jj], grid.zs[kk]
    a = NoiseField(rng, lo, hi, m["strand_cell_mm"]).at(x, y, z)
    b = NoiseField(rng, lo, hi, m["strand_cell_mm"] * 1.7).at(x, y, z)
    mottle = NoiseField(rng, lo, hi, 4.0).at(x, y, z)
    w = m["strand_width"]
    # Septa: thin sheets where one field is near zero, broken up by the other (a lace of short lines).
    line = np.exp(-(a / w) ** 2) * np.clip(b + 0.3, 0, 1)
    values = fat_hu + m["fat_texture_hu"] * mottle + m["strand_hu"] * line
    grid.hu[kk, jj, ii] = values


def _fat_rim(anatomy: Anatomy, grid: Grid, cavity: np.ndarray, rim: float, rng: np.random.Generator) -> None:
    """Fat in a band of up to ``rim`` mm around the gland (thinner where a smooth field says so)."""
    lo, hi = anatomy.pancreas_bounds(margin=rim + 2)
    box = grid.box(lo, hi)
    if box is None:
        return
    sl, x, y, z = box
    shape = grid.hu[sl].shape
    pts = np.stack([np.broadcast_to(c, shape).ravel() for c in (x, y, z)], axis=1)
    s = np.minimum(anatomy.pancreas.sdf(pts, reach=rim + 1)[0], anatomy.uncinate.sdf(pts, reach=rim + 1)[0])
    width = rim * np.clip(0.6 + 0.6 * NoiseField(rng, lo, hi, 12.0).at(pts[:, 0], pts[:, 1], pts[:, 2]), 0, 1)
    band = ((s > -1.0) & (s < width)).reshape(shape) & cavity[sl]
    block = grid.hu[sl]
    # Soft tissue only (bowel, organ edges, vessels; the generator draws the vessels at the gland again
    # at full resolution); bone and opacified content are left.
    soft = band & (block > -40) & (block < 400)
    block[soft] = anatomy.hu["fat"] + 8 * rng.standard_normal(int(soft.sum())).astype(np.float32)
