"""Domain randomisation: the same abdomen drawn with a randomised look, so a model learns anatomy, not a scanner.

In the spirit of SynthSeg (Billot et al., 2023), which trains on images synthesised from label maps with
randomised intensities, resolution and artefacts, ``make_phantom(seed, randomize=True)`` keeps the
anatomy of ``seed`` and redraws what a real series varies in:

- **contrast phase**: non-contrast, arterial, portal venous or delayed, each organ's HU drawn from the
  ranges reported for that phase (pancreas about 35-50 HU unenhanced, 100-130 arterial, 80-110 portal
  venous; aorta up to 250-350 HU arterial), plus a small per-scan calibration offset;
- **habitus**: subcutaneous fat from thin (3 mm) to obese (70 mm);
- **resolution**: slices from 0.6 to 5 mm (with the matching partial-volume blur along z);
- **reconstruction and artefacts**: noise from 5 to 40 HU with a soft to sharp kernel, cupping from beam
  hardening, streaks through the body;
- **field of view**: now and then the scan ends inside the gland (partial coverage).

All draws come from streams of their own, so a plain phantom of the same seed is unchanged.
"""

from __future__ import annotations

import numpy as np

#: Contrast phases and how often they are drawn.
PHASES = ("non-contrast", "arterial", "portal venous", "delayed")
PHASE_WEIGHTS = (0.25, 0.2, 0.4, 0.15)
#: Per phase, (mean, spread) in HU of the tissues that enhance; the rest keep their plain values.
PHASE_HU: dict[str, dict[str, tuple[float, float]]] = {
    "non-contrast": {"pancreas": (42, 6), "liver": (58, 7), "spleen": (48, 5), "muscle": (50, 5),
                     "artery": (42, 6), "vein": (40, 6), "cortex": (35, 5), "medulla": (32, 5),
                     "gut_wall": (38, 6)},
    "arterial": {"pancreas": (112, 15), "liver": (75, 8), "spleen": (125, 20), "muscle": (58, 5),
                 "artery": (300, 45), "vein": (110, 25), "cortex": (200, 30), "medulla": (80, 15),
                 "gut_wall": (95, 15)},
    "portal venous": {"pancreas": (96, 14), "liver": (112, 12), "spleen": (120, 12), "muscle": (60, 5),
                      "artery": (170, 25), "vein": (165, 20), "cortex": (170, 20), "medulla": (150, 20),
                      "gut_wall": (85, 12)},
    "delayed": {"pancreas": (72, 10), "liver": (85, 8), "spleen": (90, 8), "muscle": (58, 5),
                "artery": (115, 15), "vein": (115, 15), "cortex": (140, 20), "medulla": (140, 20),
                "gut_wall": (70, 10)},
}
#: Slice spacings (mm) drawn for randomised phantoms, thin to thick.
SLICE_SPACINGS = (0.625, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
SLICE_WEIGHTS = (0.08, 0.1, 0.08, 0.12, 0.14, 0.14, 0.14, 0.08, 0.12)
#: How often the scan ends inside the gland.
PARTIAL_COVERAGE = 0.15


def randomized_hu(hu: dict[str, float], rng: np.random.Generator) -> tuple[dict[str, float], str]:
    """A copy of ``hu`` with a drawn contrast phase's values and a calibration offset; returns it and the phase."""
    phase = str(rng.choice(PHASES, p=PHASE_WEIGHTS))
    out = dict(hu)
    for tissue, (mean, spread) in PHASE_HU[phase].items():
        out[tissue] = float(mean + rng.normal(0, spread))
    out["tumor"] = out["pancreas"] - rng.uniform(15, 50)
    out["fat"] = float(rng.uniform(-125, -80))
    out["fluid"] = float(rng.uniform(0, 20))
    offset = rng.normal(0, 6)  # scanner calibration: water is not exactly 0 HU everywhere
    for tissue in out:
        if tissue not in ("air", "enhancement"):
            out[tissue] += offset
    out["enhancement"] = float(np.clip((out["pancreas"] - 40) / 70, 0, 1.5))
    return out, phase


def randomize_habitus(body: dict[str, float], rng: np.random.Generator) -> None:
    """Redraw the subcutaneous fat (thin to obese) in place, keeping the body lying on the table."""
    old = body["fat"]
    body["fat"] = float(rng.choice([rng.uniform(3, 12), rng.uniform(12, 40), rng.uniform(40, 70)], p=[0.3, 0.5, 0.2]))
    body["fat_max"] = body["fat"] * (1 + max(body["fat_front"], 0) + max(body["fat_side"], 0)) + 3
    body["table_y"] += 0.8 * (body["fat"] - old)


def draw_slice_spacing(rng: np.random.Generator) -> float:
    """A slice spacing from 0.6 to 5 mm."""
    return float(rng.choice(SLICE_SPACINGS, p=SLICE_WEIGHTS))


def draw_noise(rng: np.random.Generator, pixel_mm: float) -> tuple[float, float]:
    """Noise standard deviation (HU) and grain (pixels) of a soft to sharp reconstruction kernel."""
    sigma_hu = float(rng.uniform(5, 40))
    grain_mm = float(rng.uniform(0.4, 1.6))
    return sigma_hu, float(np.clip(grain_mm / pixel_mm, 0.4, 2.5))


def add_artefacts(hu: np.ndarray, spacing_xyz, rng: np.random.Generator) -> None:
    """Cupping (beam hardening) and, in some scans, streaks across the slices, in place on (z, y, x) HU."""
    nz, ny, nx = hu.shape
    yy = (np.arange(ny, dtype=np.float32) - ny / 2) * float(spacing_xyz[1])
    xx = (np.arange(nx, dtype=np.float32) - nx / 2) * float(spacing_xyz[0])
    r2 = (yy[:, None] ** 2 + xx[None, :] ** 2) / 170.0 ** 2
    cupping = float(rng.uniform(0, 25))  # HU darker at the centre than at the edge of the body
    body = hu > -500
    hu -= np.where(body, cupping * np.exp(-r2), 0).astype(np.float32)
    if rng.uniform() < 0.35:
        angles = rng.uniform(0, np.pi, int(rng.integers(2, 7)))
        amplitude = float(rng.uniform(10, 45))
        centre = rng.normal(0, 30, 2)
        for angle in angles:
            dist = np.abs((xx[None, :] - centre[0]) * np.sin(angle) - (yy[:, None] - centre[1]) * np.cos(angle))
            streak = (amplitude * rng.choice([-1.0, 1.0]) * np.exp(-(dist / 1.5) ** 2)).astype(np.float32)
            hu += np.where(body, streak, 0)


def partial_coverage(label: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
    """Slices ``[start, stop)`` to keep so that the scan ends inside the gland, or None (most scans)."""
    if rng.uniform() >= PARTIAL_COVERAGE:
        return None
    z = np.flatnonzero(label.reshape(label.shape[0], -1).any(axis=1))
    if z.size < 8:
        return None
    cut = int(z[0] + rng.uniform(0.1, 0.35) * (z[-1] - z[0]))
    if rng.uniform() < 0.5:
        return cut, label.shape[0]
    return 0, int(z[-1] - (cut - z[0])) + 1
