"""Where the organs of a synthetic abdomen are: one random draw of positions, sizes and densities.

All coordinates are millimetres in the patient frame (LPS): x to the patient's left, y to the back,
z to the head, with the body's centre line at x = 0 and the pancreatic neck near z = 0. The pancreas
is drawn first; the organs that touch it in real scans (duodenum around the head, stomach in front
of the body, splenic vein behind it, SMV/SMA at the neck, IVC behind the head, spleen at the tail)
are then placed against it, so contact with tissue of similar density is built in, not left to chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from PancreasSegLib.phantoms.shapes import Tube, merge_tubes, rotation


@dataclass
class Anatomy:
    """One sampled abdomen (see the module docstring for the frame)."""

    hu: dict[str, float]
    body: dict[str, float]
    spine: dict[str, float]
    pancreas: Tube
    uncinate: Tube
    duct: Tube
    tumor: dict | None
    #: Vessels rendered again at full resolution around the pancreas: name -> (tube, HU key).
    vessels: dict[str, tuple[Tube, str]]
    aorta: dict[str, float]
    ivc: dict[str, float]
    organs: dict[str, dict] = field(default_factory=dict)
    stomach: Tube | None = None
    duodenum: Tube | None = None
    colon: Tube | None = None
    small_bowel: Tube | None = None
    gut: dict[str, float] = field(default_factory=dict)
    ribs: list[dict] = field(default_factory=list)
    #: The drawn mesentery (:mod:`PancreasSegLib.phantoms.mesentery`), or None.
    mesentery: dict | None = None

    def pancreas_bounds(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) corners in mm of the pancreas (head, uncinate process, tail) plus ``margin``."""
        lo1, hi1 = self.pancreas.bounds(margin)
        lo2, hi2 = self.uncinate.bounds(margin)
        return np.minimum(lo1, lo2), np.maximum(hi1, hi2)

    def body_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) in-plane corners (x, y) in mm of the skin outline, including the table."""
        b = self.body
        grow = 1.0 + b["wobble"] + 0.2 * abs(b["taper"]) * 100  # the outline's largest scale over the scan
        return (np.array([-(b["ai"] * grow + b["fat_max"] + 8), b["yc"] - b["bi"] * grow - b["fat_max"] - 8]),
                np.array([b["ai"] * grow + b["fat_max"] + 8, b["table_y"] + 14]))


def sample_hu(rng: np.random.Generator) -> dict[str, float]:
    """Tissue densities of one scan; ``enhancement`` 0 is unenhanced, 1 a strong portal venous phase.

    Mostly weakly enhanced, so the pancreas sits near 40-60 HU like its neighbours (bowel wall,
    collapsed duodenum, unopacified vessels, muscle), which is what makes the task hard.
    """
    e = float(rng.beta(1.2, 3.5))
    n = rng.normal
    pancreas = 40 + 45 * e + n(0, 5)
    return {
        "enhancement": e,
        "air": -1000.0, "lung": -850 + n(0, 20), "fat": -100 + n(0, 8), "skin": 20 + n(0, 8),
        "muscle": 48 + 10 * e + n(0, 4), "liver": 56 + 55 * e + n(0, 6), "spleen": 46 + 70 * e + n(0, 5),
        "pancreas": pancreas, "tumor": pancreas - rng.uniform(15, 40), "duct": 12 + n(0, 4),
        "cortex": 35 + 150 * e + n(0, 5), "medulla": 30 + 60 * e + n(0, 5),
        "artery": 42 + 230 * e + n(0, 6), "vein": 42 + 140 * e + n(0, 6),
        "gut_wall": 42 + 45 * e + n(0, 5), "fluid": 10 + n(0, 5), "bile": 6 + n(0, 4),
        "bone": 650 + n(0, 90), "marrow": 190 + n(0, 40), "disc": 80 + n(0, 8), "csf": 12 + n(0, 4),
        "cartilage": 120 + n(0, 15), "table": 250 + n(0, 30), "calcium": 800.0,
    }


def sample_anatomy(rng: np.random.Generator, tumor: bool | None = None, tumor_probability: float = 0.3,
                   course=None) -> Anatomy:
    """Draw one abdomen. ``tumor`` forces a tumour on or off; None draws it with ``tumor_probability``.

    ``course``, when given, maps the gland's control points to another course before anything is placed
    against them (``functools.partial(variety.vary_course, rng=...)``).
    """
    u, n = rng.uniform, rng.normal
    hu, body, spine, aorta, ivc = _sample_frame(rng)

    # --- pancreas: head (low, right), neck (in front of the SMV), body (over the aorta), tail (to the spleen)
    s = u(0.9, 1.28)
    shift = np.array([n(0, 6), n(0, 4), n(0, 8)])
    tail_rise = u(-8, 22)
    ra = np.array([10, 15, 7.5, 10, 10.5, 8]) * s * rng.uniform(0.9, 1.1, 6)   # head-feet semi-axis
    rb = np.array([10, 14, 7, 8, 9, 7]) * s * rng.uniform(0.9, 1.1, 6)          # front-back semi-axis
    ivc_front = ivc["y"] - ivc["ry"]
    ctrl = np.array([
        [-40, ivc_front - rb[0] + u(0.5, 3), -44],   # lower head, resting on the IVC
        [-37, ivc_front - rb[1] + u(0.5, 3), -22],   # head
        [-12, aorta["y"] - 42, -4],              # neck
        [22, aorta["y"] - 38, 5 + 0.3 * tail_rise],   # body
        [58, aorta["y"] - 18 + n(0, 6), 12 + 0.7 * tail_rise],  # tail
        [82 + n(0, 5), aorta["y"] + 10 + n(0, 8), 16 + tail_rise],  # tail tip at the splenic hilum
    ], dtype=float) + shift * [1, 0, 1] + np.vstack([rng.normal(0, 2.5, (2, 3)) * [1, 0, 1],
                                                      rng.normal(0, 2.5, (4, 3))])
    ctrl = course(ctrl) if course is not None else ctrl
    pancreas = Tube.through(ctrl, ra, rb, step=0.6)
    head, neck = ctrl[1], ctrl[2]

    smv_x = neck[0] - u(1, 5)
    smv_r = u(5, 7.5)
    smv_y = neck[1] + rb[2] + smv_r - 1.5
    uncinate = Tube.through([[head[0] + 3, head[1] + 6, head[2] - 8], [smv_x + 2, smv_y + smv_r + 5, head[2] - 12]],
                            [9 * s, 6 * s], [8 * s, 5.5 * s], step=0.6)

    # --- vessels around the pancreas
    confluence = np.array([smv_x, smv_y, neck[2] + 2])
    smv = Tube.through([[smv_x - 4, smv_y - 8, -120], [smv_x - 1, smv_y - 2, -60], confluence], smv_r)
    hilum = np.array([-48 + n(0, 5), -15 + n(0, 5), 55 + n(0, 6)])
    pv = Tube.through([confluence, confluence + [-8, 0, 18], hilum], [smv_r + 1, smv_r + 1.5, smv_r + 1])
    # Splenic vein: along the back of body and tail, half embedded in the gland.
    k = np.arange(len(pancreas.points))
    along = k[k > np.argmin(np.linalg.norm(pancreas.points - neck, axis=1))][::12]
    sv_r = u(3.5, 5.5)
    offs = pancreas.rb[along, None] * pancreas.n2[along] * 0.95 + pancreas.ra[along, None] * pancreas.n1[along] * 0.15
    sv_pts = np.vstack([confluence, pancreas.points[along] + offs])
    splenic_vein = Tube.through(sv_pts, sv_r)
    # Splenic artery: tortuous, along the upper border.
    wig = np.sin(np.linspace(0, u(4, 9) * np.pi, len(along)))[:, None] * 4 * pancreas.n2[along]
    sa_pts = pancreas.points[along] + pancreas.ra[along, None] * pancreas.n1[along] * 1.05 + wig
    sma_origin = np.array([aorta["x"], aorta["y"] - aorta["r"] + 2, neck[2] + u(8, 18)])
    sma_r = u(3, 4.5)
    sma_x = smv_x + smv_r + sma_r + u(4, 8)
    sma = Tube.through([sma_origin, [sma_x + 2, sma_origin[1] - 12, neck[2] - 2],
                        [sma_x, smv_y - 4, -40], [sma_x - 4, smv_y - 14, -120]], sma_r)
    sma_collar = Tube.through(sma.points[::10], sma.ra[::10] + u(2.5, 4.5))
    celiac = Tube.through([[aorta["x"], aorta["y"] - aorta["r"] + 2, sma_origin[2] + 14],
                           [aorta["x"] - 2, aorta["y"] - 25, sma_origin[2] + 18],
                           sa_pts[0]], u(3, 4.5))
    splenic_artery = Tube.through(np.vstack([celiac.points[-1], sa_pts[1:]]), u(2, 3.2))
    kidney_l = np.array([66 + n(0, 4), spine["y"] + 8 + n(0, 4), -38 + n(0, 8)])
    kidney_r = np.array([-66 + n(0, 4), spine["y"] + 10 + n(0, 4), -52 + n(0, 8)])
    lrv_z = neck[2] - u(10, 22)
    lrv = Tube.through([[kidney_l[0] - 18, kidney_l[1] - 10, kidney_l[2] + 8],
                        [aorta["x"] + aorta["r"] + 3, aorta["y"] - aorta["r"] - 2, lrv_z],
                        [aorta["x"], aorta["y"] - aorta["r"] - 4, lrv_z], [ivc["x"], ivc["y"], lrv_z - 3]],
                       u(4, 5.5))
    vessels = {"smv": (smv, "vein"), "pv": (pv, "vein"), "splenic_vein": (splenic_vein, "vein"),
               "sma_collar": (sma_collar, "fat"), "sma": (sma, "artery"), "celiac": (celiac, "artery"),
               "splenic_artery": (splenic_artery, "artery"), "lrv": (lrv, "vein")}

    tumor_info, duct = _sample_tumor_and_duct(rng, pancreas, tumor, tumor_probability)

    anatomy = Anatomy(hu=hu, body=body, spine=spine, pancreas=pancreas, uncinate=uncinate, duct=duct,
                      tumor=tumor_info, vessels=vessels, aorta=aorta, ivc=ivc)
    _place_organs(rng, anatomy, kidney_l, kidney_r, hilum)
    _place_gut(rng, anatomy, ctrl, ra, rb, sma_x, sma)
    _place_ribs(rng, anatomy)
    return anatomy


def _sample_frame(rng: np.random.Generator) -> tuple[dict, dict, dict, dict, dict]:
    """The tissue densities, the body outline, the spine and the great vessels in front of it."""
    u, n = rng.uniform, rng.normal
    hu = sample_hu(rng)

    # Body: a superellipse inside the subcutaneous fat; fat and muscle thickness vary around it.
    ai, bi = u(128, 158), u(100, 116)
    body = {"ai": ai, "bi": bi, "yc": 22 + n(0, 3), "exp": u(2.1, 2.6), "exp_back": u(2.8, 3.6),
            "fat": u(8, 40), "fat_front": u(0.0, 0.8), "fat_side": u(-0.3, 0.6), "muscle": u(9, 15),
            "muscle_back": u(18, 26), "wobble": u(0.0, 0.04), "wobble_phase": u(0, 2 * np.pi),
            "taper": u(-0.0012, 0.0008)}
    body["fat_max"] = body["fat"] * (1 + max(body["fat_front"], 0) + max(body["fat_side"], 0)) + 3
    # The patient lies on the table: the back is flattened against it.
    body["table_y"] = body["yc"] + bi + body["fat"] * 0.8 - u(2, 8)

    spine = {"y": 52 + n(0, 2), "x": n(0, 1.5), "rx": u(20, 25), "ry": u(15, 19), "period": u(30, 36),
             "phase": u(0, 36), "scoliosis": n(0, 0.03)}
    spine_front = spine["y"] - spine["ry"]
    aorta = {"x": 12 + n(0, 3), "r": u(9, 13), "bif_z": u(-150, -110), "calc": float(rng.uniform() < 0.4)}
    aorta["y"] = spine_front - aorta["r"] - u(0.5, 3)
    ivc = {"x": -22 + n(0, 2.5), "rx": u(10, 15), "ry": u(6, 10)}
    ivc["y"] = spine_front - ivc["ry"] - u(1, 5)
    return hu, body, spine, aorta, ivc


def _sample_tumor_and_duct(rng: np.random.Generator, pancreas: Tube, tumor: bool | None,
                           tumor_probability: float) -> tuple[dict | None, Tube]:
    """The tumour (label 2), when there is one, and the main duct (dilated upstream of a head tumour)."""
    u = rng.uniform
    # --- tumour (label 2) and the main duct (dilated upstream of a head tumour)
    # The tumour has its own generator, so forcing it on or off leaves the rest of the abdomen unchanged.
    draw, trng = rng.uniform(), np.random.default_rng(int(rng.integers(2**63)))
    has_tumor = draw < tumor_probability if tumor is None else bool(tumor)
    tumor_info = None
    duct_r = u(0.8, 1.4)
    if has_tumor:
        tu = trng.uniform
        i = int(len(pancreas.points) * (tu(0.05, 0.3) if tu() < 0.6 else tu(0.35, 0.9)))
        r = min(tu(6, 17), 0.95 * max(pancreas.ra[i], pancreas.rb[i]) + 4)
        offset = trng.normal(0, 0.35, 3) * min(pancreas.ra[i], pancreas.rb[i])
        tumor_info = {"center": pancreas.points[i] + offset, "radius": r, "index": i}
        if i < len(pancreas.points) * 0.35:  # a head tumour blocks the duct: it dilates upstream
            duct_r = tu(2, 3.5)
    duct = Tube.through(pancreas.points[len(pancreas.points) // 8:: 15] + pancreas.n2[len(pancreas.points) // 8:: 15]
                        * 1.5, duct_r)
    return tumor_info, duct


def _place_organs(rng, anatomy: Anatomy, kidney_l, kidney_r, hilum) -> None:
    u, n = rng.uniform, rng.normal
    tail_tip = anatomy.pancreas.points[-1]
    anatomy.organs = {
        "liver": {"right": ([-62 + n(0, 5), -5 + n(0, 5), 78 + n(0, 8)], [u(68, 82), u(78, 92), u(100, 125)],
                            rotation(n(0, 5), n(0, 5), u(-15, 5))),
                  "left": ([5 + n(0, 8), -55 + n(0, 5), 100 + n(0, 8)], [u(60, 80), u(30, 42), u(45, 60)],
                           rotation(0, u(-20, 0), n(0, 6))),
                  "bump": u(0.03, 0.07), "lean": u(0.15, 0.4), "squeeze": u(0.2, 0.45)},
        "spleen": {"center": [tail_tip[0] + u(12, 22), tail_tip[1] + u(12, 25), tail_tip[2] + u(25, 45)],
                   "axes": [u(25, 35), u(40, 55), u(45, 60)], "rot": rotation(n(0, 8), n(0, 8), u(-40, -20))},
        "kidney_l": {"center": kidney_l, "axes": [u(22, 28), u(20, 25), u(48, 60)],
                     "rot": rotation(n(0, 5), u(8, 18), u(25, 45)), "side": 1.0},
        "kidney_r": {"center": kidney_r, "axes": [u(22, 28), u(20, 25), u(48, 60)],
                     "rot": rotation(n(0, 5), -u(8, 18), -u(25, 45)), "side": -1.0},
        "gallbladder": {"present": float(rng.uniform() < 0.75), "center": [hilum[0] + u(-10, 5), u(-62, -45),
                        hilum[2] - u(35, 50)], "axes": [u(12, 20), u(12, 20), u(25, 40)],
                        "rot": rotation(u(-30, 0), 0, n(0, 10))},
    }


def _place_gut(rng, anatomy: Anatomy, ctrl, ra, rb, sma_x, sma: Tube) -> None:
    u = rng.uniform
    head, neck, body = ctrl[1], ctrl[2], ctrl[3]
    lower = ctrl[0]
    ao = anatomy.aorta
    r_d = u(8.5, 13)
    lateral = head[0] - ra[1] - r_d + u(1.5, 4)
    below = lower[2] - ra[0] - r_d + u(1.5, 4)
    duo = np.array([
        [neck[0] - 5, neck[1] - 38, neck[2] + 12],        # pylorus side of the bulb
        [head[0] - 8, head[1] - 28, head[2] + 24],         # bulb
        [lateral - 2, head[1] - 6, head[2] + 10],           # superior flexure
        [lateral, head[1] + 2, head[2] - 10],                # descending part, beside the head
        [lateral + 3, lower[1] + 4, lower[2] - 10],
        [lower[0] + 2, lower[1] + 6, below],                  # inferior flexure
        [ao["x"] - 6, ao["y"] - ao["r"] - r_d - 2, below - 6],  # horizontal part, between aorta and SMA
        [ao["x"] + 22, ao["y"] - ao["r"] - r_d - 2, below + 4],
        [ao["x"] + 28, ao["y"] - 30, body[2] - 22],            # ascending part to the duodenojejunal flexure
    ])
    anatomy.duodenum = Tube.through(duo, r_d)
    # Stomach: fundus high at the left, body in front of the pancreatic body, antrum to the pylorus.
    rs = u(22, 38)
    stomach_ctrl = np.array([
        [58 + rng.normal(0, 5), 10, 125],
        [62, -25, 85],
        [body[0] + 12, body[1] - rb[3] - rs + u(2, 7), body[2] + rs * u(0.0, 0.35)],
        [neck[0] + 10, neck[1] - rb[2] - 0.8 * rs + u(1, 5), neck[2] + 4],
        duo[0] + [4, -4, 0],
    ])
    anatomy.stomach = Tube.through(stomach_ctrl, [rs * 1.15, rs, rs * 0.95, rs * 0.7, r_d + 1])
    anatomy.gut = {"duodenum_collapsed": float(rng.uniform() < 0.4), "stomach_collapsed": float(rng.uniform() < 0.2),
                   "stomach_air": u(0.15, 0.75), "stomach_food": float(rng.uniform() < 0.4),
                   "colon_air": u(0.1, 0.7), "bowel_fluid": u(0.2, 0.8)}
    # Colon: ascending, hepatic flexure, sagging transverse, splenic flexure, descending.
    rc = u(16, 26)
    sag = u(-80, -20)
    colon = np.array([[-95, 15, -180], [-92, 8, -80], [-80, -30, -30], [-40, -80, sag], [20, -85, sag + 5],
                      [75, -45, 40 + u(-10, 20)], [92, 5, 20], [95, 25, -60], [90, 30, -180]], dtype=float)
    colon[:, :2] *= np.array([anatomy.body["ai"] / 145, anatomy.body["bi"] / 108])
    colon += rng.normal(0, 4, colon.shape)
    anatomy.colon = Tube.through(colon, rc * rng.uniform(0.8, 1.1, len(colon)))
    # Small bowel: random walks in the lower and left abdomen; the first starts at the DJ flexure.
    loops = []
    start = duo[-1]
    # Jejunum packs the left upper quadrant under the body and tail; ileum fills the lower abdomen.
    upper = (np.array([body[0] + 15, body[1] - 5, body[2] - 35]), np.array([45.0, 40.0, 28.0]))
    for k in range(int(rng.integers(8, 13))):
        region = upper if k < 3 else None
        loops.append(_bowel_walk(rng, start, anatomy, u(9, 13), region))
        start = (upper[0] + rng.uniform(-1, 1, 3) * upper[1] * 0.5) if k < 2 else \
            np.array([u(-70, 75), u(-80, -10), u(-170, -40)])
    # One jejunal loop runs along the lower border of the body and tail, touching it.
    g = anatomy.pancreas
    sel = np.arange(int(0.45 * len(g.points)), int(0.95 * len(g.points)), 10)
    r_j = u(8, 11)
    hug = g.points[sel] - g.n1[sel] * (g.ra[sel, None] + r_j - u(1.5, 3.5)) - g.n2[sel] * u(-4, 4)
    ends = [hug[0] + [-10, -15, -25], hug[-1] + [15, -10, -25]]
    loops.append(Tube.through(np.vstack([ends[0], hug, ends[1]]), r_j, step=1.0))
    anatomy.small_bowel = merge_tubes(loops)


def _bowel_walk(rng, start, anatomy: Anatomy, radius: float, region=None) -> Tube:
    """A loop of small bowel: a smooth random walk kept inside ``region`` (centre, half size; default lower abdomen)."""
    ai, bi, yc = anatomy.body["ai"], anatomy.body["bi"], anatomy.body["yc"]
    center, half = region or (np.array([5.0, yc - 0.45 * bi, -95.0]), np.array([0.6 * ai, 0.45 * bi, 80.0]))
    p = np.asarray(start, dtype=float)
    d = rng.normal(0, 1, 3)
    d /= np.linalg.norm(d)
    pts = [p.copy()]
    for _ in range(int(rng.integers(20, 45))):
        pull = (center - p) / half
        pull *= max(0.0, np.linalg.norm(pull) - 0.7) * 1.5
        d = d + rng.normal(0, 0.45, 3) + pull
        d /= np.linalg.norm(d)
        p = p + 7.0 * d
        pts.append(p.copy())
    pts = np.array(pts)[::2]
    return Tube.through(pts, radius * rng.uniform(0.85, 1.1, len(pts)), step=1.0)


def _place_ribs(rng, anatomy: Anatomy) -> None:
    u = rng.uniform
    z0 = u(60, 100)
    step = u(24, 32)
    ends = [2.75, 2.45, 2.1, 1.55, 1.05]
    anatomy.ribs = [{"z0": z0 - k * step, "end": ends[k] + u(-0.15, 0.15), "drop": u(45, 70), "h": u(4.5, 6.5),
                     "cartilage": ends[k] - 0.5} for k in range(5)]
