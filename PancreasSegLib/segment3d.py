"""Phase 2: the 3D segmenter on the ROI crop, and the way back to the exact input grid.

Only the ROI is resampled to the segmenter's fine spacing (a LPS-aligned grid, so the network always
sees the canonical orientation it was trained on); the whole volume never is. MONAI's sliding-window
inference with Gaussian blending produces softmax probabilities, which stay probabilities through
post-processing and are resampled (linearly) onto the part of the input grid that the crop covers;
only there are they thresholded. Everything outside the ROI is background.

ROI-border guard: when the cleaned mask touches a side of the crop where the ROI did not reach the
edge of the image, the organ is probably cut flat there; that side grows by ``border_guard_mm`` and
phase 2 runs again, up to ``border_guard_rounds`` (3) times while the mask still touches a side.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from PancreasSegLib.localize import OUTSIDE_HU, window
from PancreasSegLib.postprocess import clean_probabilities, largest_component
from PancreasSegLib.roi import ROI, image_axes, image_lps_bounds

if TYPE_CHECKING:
    import SimpleITK as sitk
    import torch

Progress = Callable[[str, float, str], None]
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
_EDGE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class CropGrid:
    """A LPS-aligned voxel grid over part of an image (x, y, z order, like SimpleITK)."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    size: tuple[int, int, int]
    #: (2, 3): whether the lower / upper side along x, y, z lies at the image's edge.
    at_edge: tuple[tuple[bool, bool, bool], tuple[bool, bool, bool]]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The grid's extent (voxel edges) in LPS mm."""
        origin, spacing = np.asarray(self.origin), np.asarray(self.spacing)
        return origin - spacing / 2, origin + (np.asarray(self.size) - 0.5) * spacing


def crop_grid(image: sitk.Image, lower, upper, spacing_xyz) -> CropGrid:
    """The fine LPS-aligned grid over the box ``[lower, upper]`` (LPS mm) cut to the image's bounding box."""
    img_lo, img_hi = image_lps_bounds(image, edges=False)
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    lo, hi = np.maximum(lower, img_lo), np.minimum(upper, img_hi)
    spacing = np.asarray(spacing_xyz, dtype=float)
    size = np.maximum(1, np.ceil((hi - lo) / spacing - 1e-6)).astype(int)
    origin = (lo + hi) / 2 - (size - 1) / 2 * spacing
    at_edge = (tuple(bool(v) for v in lower <= img_lo + _EDGE_TOLERANCE_MM),
               tuple(bool(v) for v in upper >= img_hi - _EDGE_TOLERANCE_MM))
    return CropGrid(tuple(float(v) for v in origin), tuple(float(v) for v in spacing),
                    tuple(int(v) for v in size), at_edge)


def resample_to_grid(image: sitk.Image, grid: CropGrid, interpolator: str = "linear",
                     default: float = OUTSIDE_HU) -> sitk.Image:
    """``image`` resampled on ``grid`` (float32; nearest-neighbour for label maps)."""
    import SimpleITK as sitk

    method = sitk.sitkNearestNeighbor if interpolator == "nearest" else sitk.sitkLinear
    return sitk.Resample(image, grid.size, sitk.Transform(), method, grid.origin, grid.spacing, _IDENTITY,
                         float(default), sitk.sitkFloat32)


def normalise(array: np.ndarray, stage: dict[str, Any]) -> np.ndarray:
    """The segmenter's input normalisation: HU window to [0, 1], or z-score after clipping to the window."""
    kind = stage.get("normalization", "window")
    if kind == "window":
        return window(array, stage["hu_window"])
    if kind == "zscore":
        lo, hi = stage["hu_window"]
        return ((np.clip(array, lo, hi) - float(stage["mean"])) / float(stage["std"])).astype(np.float32)
    raise ValueError(f"unknown normalization {kind!r}")


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
    import SimpleITK as sitk

    grid = crop_grid(image, lower, upper, stage["spacing_xyz_mm"])
    crop = resample_to_grid(image, grid)
    array = normalise(sitk.GetArrayViewFromImage(crop), stage)
    probabilities = predict_probabilities(net, array, stage, device, progress)
    spacing_zyx = grid.spacing[::-1]
    cleaned, keep = clean_probabilities(probabilities, spacing_zyx, post, float(stage.get("threshold", 0.5)))
    return Phase2(grid, cleaned, keep, np.asarray(lower, float), np.asarray(upper, float))


def final_roi(image: sitk.Image, result: Phase2, margin_mm: float) -> ROI | None:
    """The box phase 2 finally segmented, along the image's axes and cut to its extent."""
    return ROI.from_lps_bounds(result.lower, result.upper, image_axes(image), margin_mm).clipped_to(image)


@dataclass
class InputGridResult:
    """Phase 2's output on the part of the input grid the crop covers: ``start`` index (x, y, z) and arrays."""

    start: tuple[int, int, int]
    label: np.ndarray  # uint8 (Z, Y, X) of the sub-region
    foreground: np.ndarray  # float32 (Z, Y, X) foreground probability of the sub-region


def to_input_grid(image: sitk.Image, result: Phase2, threshold: float = 0.5,
                  largest: bool = True) -> InputGridResult | None:
    """Resample the cleaned probabilities onto the input grid (linear) and threshold there.

    Only the input voxels the crop covers are computed; ``None`` when the crop covers none.
    Multi-label models: a voxel is foreground when the foreground probabilities add up to
    ``threshold``, and takes the label of its most probable foreground channel.
    """
    import SimpleITK as sitk

    start, size = _covered_region(image, result.grid)
    if start is None:
        return None
    reference = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    reference.SetSpacing(image.GetSpacing())
    reference.SetDirection(image.GetDirection())
    reference.SetOrigin(image.TransformIndexToPhysicalPoint([int(v) for v in start]))
    channels = []
    for c in range(1, result.probabilities.shape[0]):
        fine = sitk.GetImageFromArray(result.probabilities[c])
        fine.SetOrigin(result.grid.origin)
        fine.SetSpacing(result.grid.spacing)
        resampled = sitk.Resample(fine, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        channels.append(sitk.GetArrayFromImage(resampled))
    fg = np.sum(channels, axis=0) if len(channels) > 1 else channels[0]
    mask = fg >= threshold
    if largest:
        mask = largest_component(mask)
    label = np.zeros(mask.shape, np.uint8)
    if len(channels) == 1:
        label[mask] = 1
    else:
        label[mask] = (np.argmax(np.stack(channels), axis=0) + 1)[mask].astype(np.uint8)
    return InputGridResult(tuple(int(v) for v in start), label, fg.astype(np.float32))


def _covered_region(image: sitk.Image, grid: CropGrid):
    lo, hi = grid.bounds()
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    index = np.array([image.TransformPhysicalPointToContinuousIndex([float(v) for v in c]) for c in corners])
    size = np.asarray(image.GetSize())
    start = np.clip(np.floor(index.min(axis=0)).astype(int), 0, size - 1)
    stop = np.clip(np.ceil(index.max(axis=0)).astype(int), 0, size - 1)
    if np.any(stop < start) or np.any(index.max(axis=0) < 0) or np.any(index.min(axis=0) > size - 1):
        return None, None
    return start, stop - start + 1


def paste(image: sitk.Image, sub: np.ndarray, start, pixel_type: int) -> sitk.Image:
    """A full-size image on ``image``'s grid, zero except for ``sub`` (Z, Y, X) pasted at ``start`` (x, y, z)."""
    import SimpleITK as sitk

    out = sitk.Image(image.GetSize(), pixel_type)
    out.CopyInformation(image)
    if sub is None or sub.size == 0:
        return out
    piece = sitk.GetImageFromArray(sub)
    piece = sitk.Cast(piece, pixel_type) if piece.GetPixelID() != pixel_type else piece
    return sitk.Paste(out, piece, piece.GetSize(), [0, 0, 0], [int(v) for v in start])
