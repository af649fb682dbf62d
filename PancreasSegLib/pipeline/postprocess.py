"""Post-processing of the segmenter's output: small pure functions on numpy arrays (z, y, x).

None of them modifies its input. :func:`clean_probabilities` chains them the way the pipeline uses
them: smooth the probabilities lightly, threshold, keep the largest connected component, fill its
holes, and return probabilities in which everything outside the kept component is zero, so that the
probabilities (not the labels) can be resampled onto the input grid and thresholded there
(:func:`to_input_grid`: only the input voxels the crop covers are computed; :func:`paste` puts them
into a full-size image on the input grid, background everywhere else).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk

    from PancreasSegLib.pipeline.sampling import CropGrid


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (all False when the mask is empty)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, bool))
    if count <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def remove_small_components(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """The mask without its 26-connected components smaller than ``min_voxels``."""
    from scipy import ndimage

    if min_voxels <= 1:
        return mask.astype(bool, copy=True)
    labels, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, bool))
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with its enclosed cavities filled (in 3D)."""
    from scipy import ndimage

    return ndimage.binary_fill_holes(mask)


def smooth(values: np.ndarray, sigma_mm: float, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Gaussian smoothing with ``sigma_mm`` (converted to voxels per axis); a copy when sigma is 0."""
    from scipy import ndimage

    if sigma_mm <= 0:
        return values.astype(np.float32, copy=True)
    sigma = [sigma_mm / float(s) for s in spacing_zyx]
    return ndimage.gaussian_filter(values.astype(np.float32), sigma=sigma, mode="nearest")


def clean_probabilities(probabilities: np.ndarray, spacing_zyx: Sequence[float], options: dict[str, Any],
                        threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Apply the post-processing to class probabilities and return them with the kept foreground.

    Args:
        probabilities: (C, Z, Y, X) softmax output, channel 0 background.
        spacing_zyx: voxel size in mm.
        options: model.json's ``postprocessing`` (``smoothing_sigma_mm``, ``largest_component``,
            ``fill_holes``, ``min_component_ml``).
        threshold: foreground (1 - background) probability that makes a voxel foreground.

    Returns:
        ``(cleaned, keep)``: cleaned probabilities (C, Z, Y, X) whose foreground channels are zero
        outside the kept region's one-voxel neighbourhood and one inside filled holes, background
        = 1 - foreground; ``keep`` the boolean foreground mask (Z, Y, X) after clean-up.
    """
    from scipy import ndimage

    fg = np.stack([smooth(p, float(options.get("smoothing_sigma_mm", 0.0)), spacing_zyx)
                   for p in probabilities[1:]])
    mask = fg.sum(axis=0) >= threshold
    min_ml = float(options.get("min_component_ml", 0.0))
    if min_ml > 0:
        mask = remove_small_components(mask, int(np.ceil(min_ml * 1000.0 / float(np.prod(spacing_zyx)))))
    if options.get("largest_component", True):
        mask = largest_component(mask)
    keep = fill_holes(mask) if options.get("fill_holes", True) else mask
    holes = keep & ~mask
    # Voxels next to the kept region keep their probabilities so that resampling reproduces its boundary;
    # anything farther away belonged to a removed component (or to nothing) and is zeroed.
    near = ndimage.binary_dilation(keep, structure=np.ones((3, 3, 3), bool))
    fg *= near[None]
    if holes.any():
        top = np.argmax(fg, axis=0)
        for c in range(fg.shape[0]):
            fg[c][holes] = np.where(top[holes] == c, 1.0, 0.0)
    cleaned = np.concatenate([1.0 - fg.sum(axis=0, keepdims=True), fg]).astype(np.float32)
    return cleaned, keep


@dataclass
class InputGridResult:
    """Phase 2's output on the part of the input grid the crop covers: ``start`` index (x, y, z) and arrays."""

    start: tuple[int, int, int]
    label: np.ndarray  # uint8 (Z, Y, X) of the sub-region
    foreground: np.ndarray  # float32 (Z, Y, X) foreground probability of the sub-region


def to_input_grid(image: sitk.Image, grid: CropGrid, probabilities: np.ndarray, threshold: float = 0.5,
                  largest: bool = True) -> InputGridResult | None:
    """Resample cleaned probabilities on the crop ``grid`` onto the input grid (linear) and threshold there.

    Only the input voxels the crop covers are computed; ``None`` when the crop covers none.
    Multi-label models: a voxel is foreground when the foreground probabilities add up to
    ``threshold``, and takes the label of its most probable foreground channel.
    """
    import SimpleITK as sitk

    start, size = _covered_region(image, grid)
    if start is None:
        return None
    reference = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    reference.SetSpacing(image.GetSpacing())
    reference.SetDirection(image.GetDirection())
    reference.SetOrigin(image.TransformIndexToPhysicalPoint([int(v) for v in start]))
    channels = []
    for c in range(1, probabilities.shape[0]):
        fine = sitk.GetImageFromArray(probabilities[c])
        fine.SetOrigin(grid.origin)
        fine.SetSpacing(grid.spacing)
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
