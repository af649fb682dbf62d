"""Sampling grids and intensity windows, shared by both phases and by training.

Phase 1 samples axial slices on a canonical LPS-aligned grid (:func:`axial_grid`, :func:`sample_slices`);
phase 2 resamples the ROI onto a fine LPS-aligned crop (:func:`crop_grid`, :func:`resample_to_grid`).
Both scale HU to the network's input range the same way (:func:`window`, :func:`normalise`), and
training builds its caches with these very functions, so the networks see at inference exactly what
they learnt on. Only the slices and the crop are resampled, never the whole volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from PancreasSegLib.pipeline.roi import image_lps_bounds

if TYPE_CHECKING:
    import SimpleITK as sitk

#: Air, for samples outside the volume.
OUTSIDE_HU = -1024.0
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
_EDGE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class AxialGrid:
    """The canonical axial sampling grid of one volume: LPS-aligned, fixed pixel size and count."""

    origin_xy: tuple[float, float]  # LPS mm of pixel (0, 0)'s centre
    spacing: float  # mm per pixel, in x and y
    size_yx: tuple[int, int]
    z_range: tuple[float, float]  # the volume's LPS z extent, mm

    def pixel_to_lps_xy(self, boxes: np.ndarray) -> np.ndarray:
        """(k, 4) boxes in pixel units (x0, y0, x1, y1; pixel i spans [i, i+1)) to LPS mm."""
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        scale = np.array([self.spacing] * 4)
        offset = np.array([self.origin_xy[0], self.origin_xy[1]] * 2) - self.spacing / 2
        return boxes * scale + offset


def axial_grid(image: sitk.Image, stage: dict[str, Any]) -> AxialGrid:
    """The canonical axial grid for ``image`` under the localizer stage configuration."""
    lo, hi = image_lps_bounds(image, edges=False)
    height, width = (int(s) for s in stage["slice_size_yx"])
    spacing = float(stage["in_plane_spacing_mm"])
    center = (lo + hi) / 2
    origin = (center[0] - (width - 1) / 2 * spacing, center[1] - (height - 1) / 2 * spacing)
    return AxialGrid((float(origin[0]), float(origin[1])), spacing, (height, width), (float(lo[2]), float(hi[2])))


def coarse_positions(grid: AxialGrid, step: float) -> np.ndarray:
    """Slice positions (mm) every ``step`` across the volume's z extent, centred in it."""
    z_lo, z_hi = grid.z_range
    count = int(np.floor((z_hi - z_lo) / step)) + 1
    start = z_lo + ((z_hi - z_lo) - (count - 1) * step) / 2
    return start + step * np.arange(count)


def sample_slices(image: sitk.Image, grid: AxialGrid, z_positions, interpolator: str = "linear",
                  default: float = OUTSIDE_HU) -> np.ndarray:
    """Resample ``image`` on the canonical axial grid at the given z positions.

    Args:
        image: any 3D image (CT, or a label map with ``interpolator="nearest"``).
        grid: from :func:`axial_grid`.
        z_positions: LPS z in mm, one per slice.
        interpolator: "linear" or "nearest".
        default: value outside the image.

    Returns:
        float32 array (n, H, W), rows posterior-ward, columns toward the patient's left.
    """
    import SimpleITK as sitk

    method = sitk.sitkNearestNeighbor if interpolator == "nearest" else sitk.sitkLinear
    height, width = grid.size_yx
    out = np.empty((len(z_positions), height, width), dtype=np.float32)
    for n, z in enumerate(z_positions):
        plane = sitk.Resample(image, (width, height, 1), sitk.Transform(), method,
                              (grid.origin_xy[0], grid.origin_xy[1], float(z)), (grid.spacing, grid.spacing, 1.0),
                              _IDENTITY, float(default), sitk.sitkFloat32)
        out[n] = sitk.GetArrayViewFromImage(plane)[0]
    return out


def window(array: np.ndarray, hu_window) -> np.ndarray:
    """Clip to the HU window and scale it to [0, 1] (float32, a new array)."""
    lo, hi = float(hu_window[0]), float(hu_window[1])
    return ((np.clip(array, lo, hi) - lo) / (hi - lo)).astype(np.float32)


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
