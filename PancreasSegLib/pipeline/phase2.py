"""Phase 2: the 3D segmenter on the ROI crop.

Only the ROI is resampled to the segmenter's fine spacing (a LPS-aligned grid, so the network always
sees the canonical orientation it was trained on); the whole volume never is. MONAI's sliding-window
inference with Gaussian blending produces softmax probabilities on that crop; post-processing
(:mod:`PancreasSegLib.pipeline.postprocess`) cleans them and takes them back to the input grid.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from PancreasSegLib.pipeline.sampling import CropGrid, crop_grid, normalise, resample_to_grid
from PancreasSegLib.progress import Progress

if TYPE_CHECKING:
    import SimpleITK as sitk
    import torch


def window_size(shape_zyx, stage: dict[str, Any]) -> list[int]:
    """The sliding window for an input of ``shape_zyx``: the configured patch, shrunk for small crops.

    A crop smaller than the patch gets a window just large enough (a multiple of ``size_divisor``),
    so no time is spent on padding.
    """
    div = int(stage.get("size_divisor", 16))
    return [min(int(p), int(math.ceil(s / div) * div)) for p, s in zip(stage["patch_size_zyx"], shape_zyx)]


def predict_probabilities(net: torch.nn.Module, array_zyx: np.ndarray, stage: dict[str, Any], device: str = "cpu",
                          progress: Progress | None = None) -> np.ndarray:
    """Sliding-window softmax probabilities of a normalised volume.

    Args:
        net: the segmenter (eval mode, on ``device``).
        array_zyx: normalised input (Z, Y, X), float32.
        stage: the segmenter stage of model.json (patch size, overlap, batch size).
        device: torch device; CUDA runs under float16 autocast.
        progress: called as ``progress("segment", fraction, message)`` after each window batch.

    Returns:
        float32 (C, Z, Y, X) probabilities, channel 0 background.
    """
    import torch
    from monai.inferers import sliding_window_inference

    roi = window_size(array_zyx.shape, stage)
    overlap = float(stage.get("overlap", 0.25))
    batch = int(stage.get("sw_batch_size", 1))
    total = _window_count(array_zyx.shape, roi, overlap)
    done = [0]

    def predictor(patch: torch.Tensor) -> torch.Tensor:
        out = torch.softmax(net(patch).float(), dim=1)
        done[0] += patch.shape[0]
        if progress:
            progress("segment", min(1.0, done[0] / total), f"window {min(done[0], total)} of {total}")
        return out

    cuda = str(device).startswith("cuda")
    amp = torch.autocast("cuda", dtype=torch.float16) if cuda else contextlib.nullcontext()
    x = torch.from_numpy(np.ascontiguousarray(array_zyx, dtype=np.float32))[None, None].to(device)
    with torch.inference_mode(), amp:
        out = sliding_window_inference(x, roi, batch, predictor, overlap=overlap, mode="gaussian",
                                       padding_mode="replicate")
    return out[0].float().cpu().numpy()


def _window_count(shape, roi, overlap: float) -> int:
    count = 1
    for s, r in zip(shape, roi):
        step = max(1, int(r * (1 - overlap)))
        count *= 1 if s <= r else int(math.ceil((s - r) / step)) + 1
    return count


def segment_crop(image: sitk.Image, net: torch.nn.Module, stage: dict[str, Any], lower, upper, device: str = "cpu",
                 progress: Progress | None = None) -> tuple[CropGrid, np.ndarray]:
    """Phase 2 on the LPS box ``[lower, upper]`` of ``image``: its fine grid and the (C, Z, Y, X) probabilities."""
    import SimpleITK as sitk

    grid = crop_grid(image, lower, upper, stage["spacing_xyz_mm"])
    crop = resample_to_grid(image, grid)
    array = normalise(sitk.GetArrayViewFromImage(crop), stage)
    return grid, predict_probabilities(net, array, stage, device, progress)
