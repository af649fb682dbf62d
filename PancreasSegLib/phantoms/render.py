"""Painting a sampled abdomen onto a coarse axis-aligned grid (everything except the pancreas).

Later structures overwrite earlier ones: body wall and fat, bowel, solid organs, vessels, bones.
Solid organs come after the bowel so that loops pack around them instead of cutting into them.
The pancreas and the vessels touching it are drawn again at full resolution by
:mod:`PancreasSegLib.phantoms.generator`, so their boundaries are sharp where the label is.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from PancreasSegLib.phantoms import mesentery
from PancreasSegLib.phantoms.anatomy import Anatomy
from PancreasSegLib.phantoms.shapes import Grid, NoiseField, ellipsoid


def render_background(anatomy: Anatomy, grid: Grid, rng: np.random.Generator) -> None:
    """Fill ``grid.hu`` with the abdomen's densities (HU), pancreas left out."""
    tex = ndimage.gaussian_filter(rng.standard_normal(grid.hu.shape).astype(np.float32), 1.0)
    tex *= 1.0 / max(float(tex[::4, ::4, ::4].std()), 1e-6)
    lo = np.array([grid.xs[0], grid.ys[0], grid.zs[0]])
    hi = np.array([grid.xs[-1], grid.ys[-1], grid.zs[-1]])
    lumpy = NoiseField(rng, lo, hi, 9.0)
    cavity = _body(anatomy, grid, tex)
    _back_muscles(anatomy, grid, tex)
    _lungs(anatomy, grid, tex, cavity)
    _gut(anatomy, grid, tex, cavity)
    _solid_organs(anatomy, grid, tex, lumpy, cavity)
    if anatomy.mesentery is not None:
        mesentery.paint(anatomy, grid, cavity)
    _vessels(anatomy, grid, rng)
    _spine(anatomy, grid, tex)
    _ribs(anatomy, grid)


def _body(anatomy: Anatomy, grid: Grid, tex: np.ndarray) -> np.ndarray:
    """Skin, subcutaneous fat, abdominal wall muscle, visceral fat and the table; returns the cavity mask."""
    b, hu = anatomy.body, anatomy.hu
    x = grid.xs[None, :]
    y = grid.ys[:, None]
    cavity = np.zeros(grid.hu.shape, dtype=bool)
    # Table: a flat slab under the patient, hollow inside.
    ty = b["table_y"]
    table = (y > ty) & (y < ty + 10) & (np.abs(x) < 230)
    table_core = (y > ty + 2.5) & (y < ty + 7.5) & (np.abs(x) < 225)
    for k, z in enumerate(grid.zs):
        scale = 1.0 + b["taper"] * z + b["wobble"] * np.sin(z / 40.0 + b["wobble_phase"])
        dx, dy = x, y - b["yc"]
        # The back always reaches the table (the patient lies on it); front and sides follow ``scale``.
        ai = b["ai"] * scale
        bi = np.where(dy > 0, ty + 3 - b["yc"] - 0.8 * b["fat"], b["bi"] * scale)
        theta = np.arctan2(dx, -dy)  # 0 in front, +-pi at the back
        e = np.where(dy > 0, b["exp_back"], b["exp"])
        rho = ((np.abs(dx) / ai) ** e + (np.abs(dy) / bi) ** e) ** (1.0 / e)
        r = np.hypot(dx, dy)
        depth = r * (1.0 / np.maximum(rho, 1e-3) - 1.0)  # mm inside the muscle outline along the ray
        front = np.cos(theta)
        fat = b["fat"] * (1 + b["fat_front"] * np.clip(front, 0, 1) + b["fat_side"] * np.sin(theta) ** 2)
        fat = fat * (1 - 0.2 * np.clip(-front, 0, 1))  # thinner over the back, where the patient lies
        muscle = b["muscle"] + (b["muscle_back"] - b["muscle"]) * np.clip(-front, 0, 1) ** 2
        sl = grid.hu[k]
        t = tex[k]
        sl[table] = hu["table"]
        sl[table_core] = -450  # foam core
        inside = (depth > -fat) & (y < ty - 0.5)
        sl[inside] = hu["fat"] + 9 * t[inside]
        skin = inside & ((depth < -fat + 2.0) | (y > ty - 2.5))
        sl[skin] = hu["skin"]
        wall = (depth > 0) & (depth < muscle) & (y < ty - 2.5)
        sl[wall] = hu["muscle"] + 5 * t[wall]
        # Linea alba: a thin fascial line in the front midline between the rectus muscles.
        sl[wall & (np.abs(dx) < 4) & (dy < 0)] = hu["fat"] * 0.6
        cav = (depth >= muscle) & (y < ty - 2.5)
        sl[cav] = hu["fat"] + 10 * t[cav]
        cavity[k] = cav
    return cavity


def _back_muscles(anatomy: Anatomy, grid: Grid, tex: np.ndarray) -> None:
    s, hu = anatomy.spine, anatomy.hu
    box = grid.box(np.array([-110, s["y"] - 40, grid.zs[0]]), np.array([110, s["y"] + 90, grid.zs[-1]]))
    if box is None:
        return
    sl, x, y, z = box
    block = grid.hu[sl]
    sy = s["y"]
    val = hu["muscle"] + 5 * tex[sl]
    for side in (-1, 1):
        erector = ((x - side * 32) / 27) ** 2 + ((y - sy - 52) / 24) ** 2 < 1
        quadratus = ((x - side * 58) / 17) ** 2 + ((y - sy - 26) / 11) ** 2 < 1
        psoas_r = np.clip(7 + 0.14 * np.maximum(0, 20 - z), 7, 26)
        psoas = ((x - side * (s["rx"] + psoas_r * 0.8)) / psoas_r) ** 2 + ((y - sy + 2) / (psoas_r * 0.85)) ** 2 < 1
        quadratus = quadratus & (z < 30)
        for m in (erector, quadratus, psoas):
            _set(block, m, val)


def _lungs(anatomy: Anatomy, grid: Grid, tex: np.ndarray, cavity: np.ndarray) -> None:
    """Posterior costophrenic recesses at the top of the scan."""
    x = grid.xs[None, None, :]
    y = grid.ys[None, :, None]
    z = grid.zs[:, None, None]
    theta = np.arctan2(np.abs(x), y - 40.0)  # 0 at the back
    z_lung = anatomy.ribs[2]["z0"] + 18 + 55 * theta / np.pi
    r = np.hypot(x, y - 40.0)
    ax, ay = anatomy.body["ai"] - 14, 62.0
    r_ell = 1.0 / np.sqrt((np.sin(theta) / ax) ** 2 + (np.cos(theta) / ay) ** 2)
    lung = cavity & (z > z_lung) & (r > r_ell - 30 - 0.8 * (z - z_lung)) & (np.abs(x) > 30)
    grid.hu[lung] = anatomy.hu["lung"] + 25 * tex[lung]


def _gut(anatomy: Anatomy, grid: Grid, tex: np.ndarray, cavity: np.ndarray) -> None:
    hu, gut = anatomy.hu, anatomy.gut
    wall = hu["gut_wall"]

    def lookup(pts):
        return grid_lookup(grid, tex, pts)

    def bowel_content(pts, idx):
        # Each loop has its own content: fluid, collapsed (soft tissue) or with gas.
        ident = anatomy.small_bowel.ident[idx]
        kind = (ident.astype(np.int64) * 7919 + int(gut["bowel_fluid"] * 1000)) % 5
        t = lookup(pts)
        out = np.where(kind < 2, hu["fluid"] + 6 * t, wall - 8 + 10 * t)
        gas = (kind == 4) & (pts[:, 1] < anatomy.small_bowel.points[idx, 1] - 3)
        return np.where(gas, -950.0, out)

    def colon_content(pts, idx):
        t = lookup(pts)
        stool = np.where(t > 1.0 - 2 * gut["colon_air"], -900 + 60 * t, 10 + 35 * t)
        gas = pts[:, 1] < anatomy.colon.points[idx, 1] - anatomy.colon.rb[idx] * (1 - 2 * gut["colon_air"])
        return np.where(gas, -980.0, stool)

    def stomach_content(pts, idx):
        t = lookup(pts)
        if gut["stomach_collapsed"]:
            return wall - 5 + 8 * t
        level = anatomy.stomach.points[idx, 1] - anatomy.stomach.rb[idx] * (1 - 2 * gut["stomach_air"])
        base = np.where(t > 0.6, 35 + 20 * t, 15 + 10 * t) if gut["stomach_food"] else hu["fluid"] + 5 * t
        return np.where(pts[:, 1] < level, -990.0, base)

    def duodenum_content(pts, idx):
        t = lookup(pts)
        if gut["duodenum_collapsed"]:
            return wall - 4 + 8 * t
        bubble = (idx < len(anatomy.duodenum.points) * 0.25) & (pts[:, 1] < anatomy.duodenum.points[idx, 1] - 4)
        return np.where(bubble, -950.0, hu["fluid"] + 6 * t)

    grid.paint_tube(anatomy.small_bowel, bowel_content, within=cavity, wall=2.5, wall_value=wall)
    grid.paint_tube(anatomy.colon, colon_content, within=cavity, wall=2.5, wall_value=wall)
    grid.paint_tube(anatomy.stomach, stomach_content, within=cavity, wall=4.5, wall_value=wall + 8)
    grid.paint_tube(anatomy.duodenum, duodenum_content, within=cavity, wall=2.5, wall_value=wall)


def grid_lookup(grid: Grid, field: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Nearest-voxel values of a grid-shaped ``field`` at (m, 3) points in mm."""
    i = np.clip(np.rint((pts - grid.lo) / grid.step).astype(int), 0, np.array(field.shape[::-1]) - 1)
    return field[i[:, 2], i[:, 1], i[:, 0]]


def _solid_organs(anatomy: Anatomy, grid: Grid, tex: np.ndarray, lumpy: NoiseField, cavity: np.ndarray) -> None:
    hu, org = anatomy.hu, anatomy.organs
    liver = org["liver"]
    branches = [NoiseField(np.random.default_rng(int(1e6 * anatomy.hu["liver"]) % 2**32), grid.lo,
                           grid.lo + 2 * grid.step * np.array(grid.hu.shape[::-1]), 7.0) for _ in range(2)]

    def paint(lo, hi, fn):
        box = grid.box(lo, hi)
        if box is None:
            return
        sl, x, y, z = box
        fn(sl, x, y, z)

    def liver_fn(sl, x, y, z):
        m = cavity[sl].copy()
        xx, yy, zz = (np.broadcast_to(a, m.shape)[m] for a in (x, y, z))
        # The right lobe narrows and leans to the side below its centre, leaving the pancreatic head
        # level to the gallbladder, duodenum and colon as in real anatomy.
        (cx, cy, cz), axes_r, rot_r = liver["right"]
        low = np.clip((cz - zz) / axes_r[2], 0, 1)
        squeeze = 1 - liver["squeeze"] * low
        xr = (xx - cx + liver["lean"] * axes_r[2] * low) / squeeze + cx
        yr = (yy - cy) / squeeze + cy
        f = np.minimum(ellipsoid(xr, yr, zz, (cx, cy, cz), axes_r, rot_r), ellipsoid(xx, yy, zz, *liver["left"]))
        near = f < 1 + 2.5 * liver["bump"]
        f[near] += liver["bump"] * lumpy.at(xx[near], yy[near], zz[near])
        inside = near & (f < 1)
        veins = np.zeros_like(inside)
        px, py, pz = xx[inside], yy[inside], zz[inside]
        # Hepatic and portal vein branches: where the zero sets of two smooth fields cross, a network of lines.
        veins[inside] = (np.abs(branches[0].at(px, py, pz)) < 0.12) & (np.abs(branches[1].at(px, py, pz)) < 0.35)
        block, t = grid.hu[sl], tex[sl]
        values = np.where(veins, hu["vein"], hu["liver"]) + 4 * t[m]
        sub = block[m]
        sub[inside] = values[inside]
        block[m] = sub

    reach = [max(a) for a in (liver["right"][1], liver["left"][1])]
    l_lo = np.minimum(np.subtract(liver["right"][0], reach[0]), np.subtract(liver["left"][0], reach[1]))
    l_hi = np.maximum(np.add(liver["right"][0], reach[0]), np.add(liver["left"][0], reach[1]))
    paint(l_lo, l_hi, liver_fn)

    gb = org["gallbladder"]
    if gb["present"]:
        c = np.array(gb["center"])
        paint(c - 45, c + 45, lambda sl, x, y, z: _shell(grid, sl, ellipsoid(x, y, z, c, gb["axes"], gb["rot"]),
                                                         hu["bile"] + 3 * tex[sl], hu["gut_wall"], 2.0 / min(
                                                             gb["axes"]), cavity[sl]))

    sp = org["spleen"]
    c = np.array(sp["center"])

    def spleen_fn(sl, x, y, z):
        f = ellipsoid(x, y, z, c, sp["axes"], sp["rot"]) + 0.05 * lumpy.at(x, y, z)
        # The hilum: a concave face towards the tail of the pancreas.
        f = f + 0.35 * np.exp(-(((x - c[0] + sp["axes"][0] * 0.9) / 10) ** 2 + ((y - c[1] + 10) / 15) ** 2))
        m = (f < 1) & cavity[sl]
        grid.hu[sl][m] = hu["spleen"] + 4 * tex[sl][m]

    paint(c - 70, c + 70, spleen_fn)

    for name in ("kidney_l", "kidney_r"):
        k = org[name]
        c = np.array(k["center"])
        paint(c - 70, c + 70, lambda sl, x, y, z, k=k, c=c: _kidney(grid, sl, x, y, z, k, c, hu, tex))


def _shell(grid: Grid, sl, f, inner, wall_value, wall_frac, mask) -> None:
    m = (f < 1) & mask
    grid.hu[sl][m] = wall_value
    core = m & (f < 1 - wall_frac)
    grid.hu[sl][core] = np.broadcast_to(inner, f.shape)[core]


def _kidney(grid: Grid, sl, x, y, z, k, c, hu, tex) -> None:
    r = k["rot"]
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    lx = r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz
    ly = r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz
    lz = r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz
    ax, ay, az = k["axes"]
    f = np.sqrt((lx / ax) ** 2 + (ly / ay) ** 2 + (lz / az) ** 2)
    medial = -k["side"] * lx / ax  # > 0 towards the hilum
    kid = f < 1
    notch = (medial > 0.75) & (np.abs(lz / az) < 0.22)
    sinus = kid & (medial > 0.1) & (np.abs(lz / az) < 0.45) & (f < 0.8)
    block = grid.hu[sl]
    t = tex[sl]
    m = kid & ~notch
    block[m] = hu["cortex"] + 5 * t[m]
    med = m & (f < 0.72) & (t > -0.3)
    block[med] = hu["medulla"] + 5 * t[med]
    block[sinus] = np.where(t[sinus] > 0.8, hu["fluid"], hu["fat"] + 15 * t[sinus])


def _vessels(anatomy: Anatomy, grid: Grid, rng: np.random.Generator) -> None:
    hu, ao, ivc = anatomy.hu, anatomy.aorta, anatomy.ivc
    z = grid.zs
    # Aorta: vertical, splitting into the iliac arteries low down; IVC beside it, flattened.
    box = grid.box(np.array([ao["x"] - 90, ao["y"] - 30, z[0]]), np.array([ao["x"] + 90, ao["y"] + 40, z[-1]]))
    if box is not None:
        sl, x, y, zz = box
        block = grid.hu[sl]
        below = np.clip(ao["bif_z"] - zz, 0, None)
        for side in (-1, 1):  # above the bifurcation both iliac branches are the aorta itself
            cx = ao["x"] + side * np.minimum(below * 0.5, 60)
            r = np.where(below > 0, ao["r"] * 0.72, ao["r"])
            d = np.hypot(x - cx, y - ao["y"] - below * 0.1)
            _set(block, d < r, hu["artery"])
            if ao["calc"]:
                rim = np.broadcast_to((d < r) & (d > r - 1.8), block.shape)
                _set(block, rim & (rng.uniform(size=block.shape) > 0.96), hu["calcium"])
    x = grid.xs[None, None, :]
    y = grid.ys[None, :, None]
    ivc_mask = np.broadcast_to(((x - ivc["x"]) / ivc["rx"]) ** 2 + ((y - ivc["y"]) / ivc["ry"]) ** 2 < 1, grid.hu.shape)
    grid.hu[ivc_mask] = hu["vein"]
    for tube, key in anatomy.vessels.values():
        grid.paint_tube(tube, hu[key])


def _spine(anatomy: Anatomy, grid: Grid, tex: np.ndarray) -> None:
    s, hu = anatomy.spine, anatomy.hu
    box = grid.box(np.array([-60, s["y"] - s["ry"] - 2, grid.zs[0]]), np.array([60, s["y"] + 80, grid.zs[-1]]))
    if box is None:
        return
    sl, x, y, z = box
    x = x - s["x"] - s["scoliosis"] * z
    block = grid.hu[sl]
    t = tex[sl]
    phase = ((z - s["phase"]) / s["period"]) % 1.0
    disc = phase < 7.0 / s["period"]
    mid = np.abs(phase - 0.55) < 0.22
    # Vertebral body: a kidney-bean ellipse with a cortical rim; discs between the bodies.
    dy = y - s["y"]
    f = np.sqrt((x / s["rx"]) ** 2 + (dy / s["ry"]) ** 2) + 0.25 * np.clip(dy / s["ry"], 0, 1) ** 2 * (np.abs(x) < 8)
    vb = f < 1
    rim = vb & (f > 1 - 2.2 / s["rx"])
    _set(block, vb & ~disc, hu["marrow"] + 25 * t)
    _set(block, rim & ~disc, hu["bone"])
    _set(block, vb & disc, hu["disc"] + 8 * t)
    # Posterior elements: canal, pedicles and lamina, spinous and transverse processes.
    cy = s["y"] + s["ry"] + 10
    rc = np.hypot(x / 1.1, y - cy)
    arch = (rc > 9) & (rc < 15) & (y > cy - 8) & ~disc
    pedicle = (np.abs(x) > 8) & (np.abs(x) < 15) & (y > s["y"]) & (y < cy) & mid
    # The spinous process slopes down towards its tip.
    spinous = (np.abs(x) < 3.5) & (y > cy + 10) & (y < cy + 42) & (np.abs(phase - 0.6 + (y - cy - 10) / 110) < 0.17)
    transverse = (np.abs(y - cy + 3) < 3) & (np.abs(x) > 12) & (np.abs(x) < 30 + 12 * (1 - np.abs(y - cy + 3) / 3)) \
        & (np.abs(phase - 0.5) < 0.08)
    _set(block, arch | pedicle | spinous | transverse, hu["bone"] * 0.8 + 40 * t)
    _set(block, rc <= 9, hu["csf"] + 4 * t)


def _set(block: np.ndarray, mask: np.ndarray, value) -> None:
    mask = np.broadcast_to(mask, block.shape)
    block[mask] = np.broadcast_to(value, block.shape)[mask]


def _ribs(anatomy: Anatomy, grid: Grid) -> None:
    """Lower ribs: oblique bony bands in the body wall, dropping towards the front, cartilage at their tips."""
    hu = anatomy.hu
    x = grid.xs[None, :]
    y = grid.ys[:, None]
    theta = np.arctan2(np.abs(x), y - 40.0)  # 0 at the back
    ax = anatomy.body["ai"] - 8
    ay = np.where(np.cos(theta) > 0, 62.0, 40.0 - (anatomy.body["yc"] - anatomy.body["bi"]) - 12)
    r_ell = 1.0 / np.sqrt((np.sin(theta) / ax) ** 2 + (np.cos(theta) / ay) ** 2)
    radial = np.hypot(x, y - 40.0) - r_ell
    jj, ii = np.nonzero(np.abs(radial) < 3.5)  # the rib shell, in-plane: only these pixels are looked at
    th, rad = theta[jj, ii], np.abs(radial[jj, ii])
    z = grid.zs[:, None]
    for rib in anatomy.ribs:
        zc = rib["z0"] - rib["drop"] * (th - 0.4)
        dz = np.abs(z - zc)
        on = (dz < rib["h"]) & (th > 0.4) & (th < rib["end"])
        if not on.any():
            continue
        value = np.where((rad > 2.0) | (dz > rib["h"] - 1.8), hu["bone"], hu["marrow"])
        value = np.where(th > rib["cartilage"], hu["cartilage"], value)
        kk, pp = np.nonzero(on)
        grid.hu[kk, jj[pp], ii[pp]] = value[kk, pp]
