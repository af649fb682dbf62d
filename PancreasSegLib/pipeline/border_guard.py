"""The ROI-border guard: phase 2 and its clean-up, run again with a larger box while the gland touches a side.

When the cleaned mask touches a side of the crop where the ROI did not reach the edge of the image,
the organ is probably cut flat there; that side grows by ``border_guard_mm`` and phase 2 runs again,
up to ``border_guard_rounds`` (3) times while the mask still touches a side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from PancreasSegLib.pipeline.phase2 import segment_crop
from PancreasSegLib.pipeline.postprocess import clean_probabilities
from PancreasSegLib.pipeline.roi import ROI, image_axes
from PancreasSegLib.pipeline.sampling import CropGrid
from PancreasSegLib.progress import Progress

if TYPE_CHECKING:
    import SimpleITK as sitk
    import torch


@dataclass
class Phase2:
    """Phase 2's result on its fine grid: cleaned probabilities (C, Z, Y, X) and the kept mask (Z, Y, X)."""

    grid: CropGrid
    probabilities: np.ndarray
    keep: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    grown: bool = False

    def touched_sides(self) -> np.ndarray:
        """(2, 3) bool: sides (lower/upper along x, y, z) where the mask touches the crop but not the image edge."""
        keep = self.keep
        touched = np.array([[keep[:, :, 0].any(), keep[:, 0, :].any(), keep[0].any()],
                            [keep[:, :, -1].any(), keep[:, -1, :].any(), keep[-1].any()]])
        return touched & ~np.asarray(self.grid.at_edge)


def run_phase2(image: sitk.Image, net: torch.nn.Module, stage: dict[str, Any], post: dict[str, Any], lower, upper,
               device: str = "cpu", progress: Progress | None = None, guard: bool = True) -> Phase2:
    """Segment the LPS box ``[lower, upper]`` of ``image``; with ``guard``, grow touched sides and redo.

    A gland cut by the ROI is grown ``border_guard_mm`` per round on the touched sides only, for at
    most ``border_guard_rounds`` rounds (a tail missed by phase 1 can reach several centimetres out).
    """
    result = _phase2_once(image, net, stage, post, lower, upper, device, progress)
    grow_mm = float(post.get("border_guard_mm", 20.0))
    rounds = int(post.get("border_guard_rounds", 3)) if guard and grow_mm > 0 else 0
    for _ in range(rounds):
        touched = result.touched_sides()
        if not touched.any():
            break
        lower = np.asarray(result.lower, float) - grow_mm * touched[0]
        upper = np.asarray(result.upper, float) + grow_mm * touched[1]
        if progress:
            progress("segment", 0.0, "the pancreas touches the ROI border: growing the ROI and segmenting again")
        result = _phase2_once(image, net, stage, post, lower, upper, device, progress)
        result.grown = True
    return result


def _phase2_once(image, net, stage, post, lower, upper, device, progress) -> Phase2:
    grid, probabilities = segment_crop(image, net, stage, lower, upper, device, progress)
    spacing_zyx = grid.spacing[::-1]
    cleaned, keep = clean_probabilities(probabilities, spacing_zyx, post, float(stage.get("threshold", 0.5)))
    return Phase2(grid, cleaned, keep, np.asarray(lower, float), np.asarray(upper, float))


def final_roi(image: sitk.Image, result: Phase2, margin_mm: float) -> ROI | None:
    """The box phase 2 finally segmented, along the image's axes and cut to its extent."""
    return ROI.from_lps_bounds(result.lower, result.upper, image_axes(image), margin_mm).clipped_to(image)
