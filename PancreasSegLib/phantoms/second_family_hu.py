"""Densities, texture and image noise of the second phantom family.

Each case draws one contrast phase and, per tissue, one mean HU from the range published for that
phase (non-contrast, late arterial / pancreatic, portal venous). Noise is white noise band-passed
slice by slice with a difference of Gaussians (the ring-shaped spectrum of filtered back-projection),
plus, in some cases, a few streaks radiating from a point in a handful of slices.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from PancreasSegLib.phantoms.second_family_fields import TISSUE, TISSUES, smooth_noise

PHASES = ("non-contrast", "arterial", "portal venous")

#: HU ranges (low, high) per tissue: one range for all phases, or one per phase in PHASES order.
HU_RANGES: dict[str, tuple] = {
    "air": (-1000, -995), "table_shell": (150, 400), "table_core": (-950, -850), "pad": (-200, -50),
    "skin": (20, 60), "subcutaneous_fat": (-120, -95), "visceral_fat": (-112, -85),
    "muscle": ((40, 55), (50, 62), (55, 68)), "cortical_bone": (500, 1000), "marrow": (140, 260),
    "disc": (70, 100), "csf": (5, 25), "cartilage": (90, 180), "lung": (-900, -820),
    "heart": ((35, 50), (200, 350), (130, 180)), "liver": ((50, 65), (60, 80), (95, 125)),
    "gallbladder": (0, 25), "spleen": ((40, 52), (90, 140), (105, 130)),
    "kidney_cortex": ((28, 40), (150, 230), (150, 200)), "kidney_medulla": ((25, 35), (60, 100), (140, 190)),
    "sinus_fat": (-100, -70), "gut_wall": ((30, 45), (60, 95), (75, 110)), "gut_air": (-1000, -950),
    "gut_fluid": (0, 20), "gut_contrast": (180, 450), "stool": (-150, 10), "food": (15, 60),
    "artery": ((35, 50), (250, 420), (130, 200)), "portal_vein": ((35, 50), (90, 150), (150, 210)),
    "ivc": ((35, 50), (60, 110), (110, 170)), "renal_vein": ((35, 50), (120, 200), (140, 200)),
    "pancreas": ((35, 50), (100, 150), (80, 115)),
}
#: Texture standard deviation (HU) per tissue: fine grain (about 1.5 mm) and coarse mottle (about 6 mm).
TEXTURE = {"liver": (3, 4), "spleen": (3, 5), "pancreas": (7, 4), "stool": (70, 40), "food": (25, 15),
           "marrow": (35, 20), "muscle": (4, 3), "subcutaneous_fat": (5, 4), "visceral_fat": (6, 5),
           "kidney_cortex": (6, 4), "kidney_medulla": (6, 10), "gut_contrast": (25, 40), "gut_wall": (5, 4),
           "cortical_bone": (60, 60), "lung": (20, 15), "heart": (6, 5), "artery": (4, 2)}


def draw_densities(rng: np.random.Generator) -> tuple[str, np.ndarray, dict]:
    """``(phase, lut, texture)``: the phase's name, mean HU per tissue index, and per-case texture extras."""
    phase = int(rng.choice(3, p=[0.25, 0.3, 0.45]))
    lut = np.zeros(len(TISSUES), dtype=np.float32)
    for name in TISSUES:
        ranges = HU_RANGES[name]
        lo, hi = ranges[phase] if isinstance(ranges[0], tuple) else ranges
        lut[TISSUE[name]] = rng.uniform(lo, hi)
    extras = {"fatty": float(rng.uniform(0.0, 0.7)), "spleen_mottle": 25.0 if phase == 1 else 0.0}
    return PHASES[phase], lut, extras


def render(tissue: np.ndarray, lut: np.ndarray, extras: dict, step: float, rng: np.random.Generator) -> np.ndarray:
    """HU (float32, tissue's shape) from tissue classes: means, textures, fat in the gland, partial volume."""
    hu = lut[tissue]
    fine_amp = np.zeros(len(TISSUES), dtype=np.float32)
    coarse_amp = np.zeros(len(TISSUES), dtype=np.float32)
    for name, (fine, coarse) in TEXTURE.items():
        fine_amp[TISSUE[name]], coarse_amp[TISSUE[name]] = fine, coarse
    coarse_amp[TISSUE["spleen"]] += extras["spleen_mottle"]
    hu += fine_amp[tissue] * smooth_noise(rng, tissue.shape, 1.5 / step / 2)
    hu += coarse_amp[tissue] * smooth_noise(rng, tissue.shape, 6.0 / step / 2)
    gland = tissue == TISSUE["pancreas"]
    if gland.any():
        idx = np.nonzero(gland.any(axis=(1, 2)))[0]
        zs = slice(idx[0], idx[-1] + 1)
        clefts = smooth_noise(rng, tissue[zs].shape, 1.8 / step)
        weight = np.clip((clefts - (1.6 - 1.8 * extras["fatty"])) * 1.5, 0, 1) * gland[zs]
        fat = lut[TISSUE["visceral_fat"]]
        hu[zs] = hu[zs] * (1 - weight) + fat * weight
    return ndimage.gaussian_filter(hu, 0.35 / step * 1.2, mode="nearest")


def add_noise(hu: np.ndarray, spacing, rng: np.random.Generator) -> None:
    """Add band-passed noise (10-28 HU) slice by slice and, in 40 % of cases, streaks; in place, (z, y, x) order."""
    px = float(spacing[0])
    sigma_hu = rng.uniform(10, 28)
    inner, outer, weight = rng.uniform(0.5, 0.9) / px, rng.uniform(2.0, 3.5) / px, rng.uniform(0.4, 0.8)
    for start in range(0, hu.shape[0], 32):  # in slabs, to bound the memory
        part = hu[start:start + 32]
        white = rng.standard_normal(part.shape, dtype=np.float32)
        band = ndimage.gaussian_filter(white, (0, inner, inner))
        band -= weight * ndimage.gaussian_filter(white, (0, outer, outer))
        norm = float(np.sqrt(np.mean(band[:1] ** 2)))
        part += band * (sigma_hu / max(norm, 1e-6))
    if rng.random() < 0.4:
        _add_streaks(hu, spacing, rng)


def _add_streaks(hu: np.ndarray, spacing, rng: np.random.Generator) -> None:
    """A few thin bright and dark lines through one point, fading away from it, over a few slices."""
    nz, ny, nx = hu.shape
    for _ in range(int(rng.integers(1, 4))):
        k0 = int(rng.integers(0, nz))
        depth = max(1, int(rng.uniform(3, 15) / spacing[2]))
        cy, cx = rng.uniform(0.35, 0.65) * ny * spacing[1], rng.uniform(0.35, 0.65) * nx * spacing[0]
        y = (np.arange(ny) * spacing[1] - cy)[:, None]
        x = (np.arange(nx) * spacing[0] - cx)[None, :]
        pattern = np.zeros((ny, nx), dtype=np.float32)
        for angle in rng.uniform(0, np.pi, int(rng.integers(3, 9))):
            dist = np.abs(x * np.sin(angle) - y * np.cos(angle))
            pattern += rng.choice([-1, 1]) * rng.uniform(20, 70) * np.exp(-((dist / rng.uniform(0.6, 1.4)) ** 2))
        pattern *= np.exp(-np.hypot(x, y) / 160.0)
        for k in range(max(0, k0 - depth), min(nz, k0 + depth + 1)):
            hu[k] += pattern * (1.0 - abs(k - k0) / (depth + 1))
