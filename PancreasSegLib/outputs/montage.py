"""A quality-control picture: axial, coronal and sagittal slices of a CT with its label map overlaid.

The volume is first brought onto an axis-aligned LPS grid (flips and axis permutations exactly with
``DICOMOrient``, oblique directions by resampling), so every panel shows the patient the way a
radiologist expects it: axial seen from the feet (patient's right on the left of the picture, front
at the top), coronal seen from the front, sagittal with the front on the left; pixel aspect follows
the physical spacing. Slices go through the label's centroid (or the volume's centre).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from PancreasSegLib.io.atomic import atomic_path
from PancreasSegLib.labels import STANDARD_LABELS, LabelInfo

if TYPE_CHECKING:
    import SimpleITK as sitk

#: Picture size in pixels (width, height).
MONTAGE_SIZE = (1500, 560)
_DPI = 100


def to_axis_aligned(image: sitk.Image, label: sitk.Image | None = None,
                    tolerance: float = 1e-3) -> tuple[sitk.Image, sitk.Image | None]:
    """Image (and label) on a grid whose direction is the identity (LPS).

    Signed permutations of the axes are undone exactly; any other direction is resampled (linear for
    the image, nearest neighbour for the label) onto an identity-direction grid covering the volume.
    The label is always brought onto the returned image's grid, whatever grid it came on.
    """
    import SimpleITK as sitk

    d = np.asarray(image.GetDirection()).reshape(3, 3)
    if np.allclose(np.abs(d), np.round(np.abs(d)), atol=tolerance):
        oriented = sitk.DICOMOrient(image, "LPS")
    else:
        n = np.asarray(image.GetSize()) - 1
        corners = np.array([image.TransformContinuousIndexToPhysicalPoint([float(i), float(j), float(k)])
                            for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])])
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        spacing = np.asarray(sorted(image.GetSpacing()[:2]) + [image.GetSpacing()[2]])
        spacing[:2] = spacing[0]
        size = [int(np.ceil((hi[a] - lo[a]) / spacing[a])) + 1 for a in range(3)]
        oriented = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, lo.tolist(), spacing.tolist(),
                                 np.eye(3).ravel().tolist(), -1024.0, image.GetPixelID())
    if label is None:
        return oriented, None
    return oriented, sitk.Resample(label, oriented, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def write_montage(image: sitk.Image, label: sitk.Image | None, path: str | os.PathLike, title: str | None = None,
                  window: tuple[float, float] = (400.0, 40.0),
                  labels: Mapping[int, LabelInfo] | None = None) -> Path:
    """Write a PNG of three orthogonal slices with the label overlaid (atomically).

    Args:
        image: CT volume in HU, any geometry.
        label: label map (any grid in the same physical space) or None.
        path: output .png file; its folder must exist.
        title: text above the panels (default: size, spacing and orientation of ``image``).
        window: CT window (width, level) in HU.
        labels: colours and names per label value (default: pancreas and tumour).

    Returns:
        ``path``.

    >>> write_montage(image, label, "qa.png", title="case 7")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    labels = dict(labels or STANDARD_LABELS)
    oriented, olabel = to_axis_aligned(image, label)
    ct = sitk.GetArrayViewFromImage(oriented).astype(np.float32)
    lab = sitk.GetArrayViewFromImage(olabel) if olabel is not None else None
    sx, sy, sz = oriented.GetSpacing()
    centre = _centre(lab)
    if centre is None:
        centre = tuple(n // 2 for n in ct.shape)
    k, j, i = centre
    nz, ny, nx = ct.shape
    views = [  # (ct slice, label slice, extent in mm, orientation letters left/right/top/bottom, name)
        (ct[k], None if lab is None else lab[k], (0, nx * sx, ny * sy, 0), "RLAP", f"axial {k + 1}/{nz}"),
        (ct[:, j, :], None if lab is None else lab[:, j, :], (0, nx * sx, 0, nz * sz), "RLSI",
         f"coronal {j + 1}/{ny}"),
        (ct[:, :, i], None if lab is None else lab[:, :, i], (0, ny * sy, 0, nz * sz), "APSI",
         f"sagittal {i + 1}/{nx}"),
    ]
    width, level = window
    fig = plt.figure(figsize=(MONTAGE_SIZE[0] / _DPI, MONTAGE_SIZE[1] / _DPI), dpi=_DPI, facecolor="black")
    for n, (ct_slice, lab_slice, extent, letters, name) in enumerate(views):
        ax = fig.add_axes((n / 3 + 0.005, 0.02, 1 / 3 - 0.01, 0.86))
        ax.set_facecolor("black")
        origin = "upper" if n == 0 else "lower"
        ax.imshow(ct_slice, cmap="gray", vmin=level - width / 2, vmax=level + width / 2, extent=extent,
                  origin=origin, interpolation="bilinear")
        if lab_slice is not None:
            _overlay(ax, lab_slice, extent, origin, labels)
        ax.set_axis_off()
        _letters(ax, letters)
        ax.text(0.01, 0.01, name, transform=ax.transAxes, color="yellow", fontsize=9, va="bottom")
    fig.suptitle(title or _describe(image), color="white", fontsize=11, y=0.97)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=_DPI, facecolor="black", format="png")
    finally:
        plt.close(fig)
    return path


def _centre(lab: np.ndarray | None) -> tuple[int, int, int] | None:
    if lab is None or not lab.any():
        return None
    return tuple(int(round(float(c))) for c in np.argwhere(lab > 0).mean(axis=0))


def _overlay(ax, lab_slice: np.ndarray, extent, origin: str, labels: Mapping[int, LabelInfo]) -> None:
    rgba = np.zeros(lab_slice.shape + (4,), dtype=np.float32)
    present = [v for v in np.unique(lab_slice) if v != 0]
    for value in present:
        info = labels.get(int(value))
        color = info.color if info else (1.0, 0.2, 0.2)
        mask = lab_slice == value
        rgba[mask, :3] = color
        rgba[mask, 3] = 0.3
        ny, nx = lab_slice.shape
        # Contour in data coordinates of the pixel centres, so it lines up with the imshow extent.
        xs = np.linspace(extent[0], extent[1], nx, endpoint=False) + (extent[1] - extent[0]) / nx / 2
        y_lo, y_hi = sorted(extent[2:])
        ys = np.linspace(y_lo, y_hi, ny, endpoint=False) + (y_hi - y_lo) / ny / 2
        # With either origin, the extents above put row r at y = (r + 0.5) * spacing.
        ax.contour(xs, ys, mask.astype(np.float32), levels=[0.5], colors=[color], linewidths=1.2)
    ax.imshow(rgba, extent=extent, origin=origin, interpolation="nearest")


def _letters(ax, letters: str) -> None:
    style = {"transform": ax.transAxes, "color": "orange", "fontsize": 10, "fontweight": "bold"}
    ax.text(0.01, 0.5, letters[0], ha="left", va="center", **style)
    ax.text(0.99, 0.5, letters[1], ha="right", va="center", **style)
    ax.text(0.5, 0.99, letters[2], ha="center", va="top", **style)
    ax.text(0.5, 0.01, letters[3], ha="center", va="bottom", **style)


def _describe(image: sitk.Image) -> str:
    size = "x".join(str(s) for s in image.GetSize())
    spacing = " x ".join(f"{s:.2f}" for s in image.GetSpacing())
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    kind = "LPS" if np.allclose(d, np.eye(3)) else ("flipped" if np.allclose(np.abs(d), np.eye(3)) else "oblique")
    return f"{size} voxels, {spacing} mm, {kind}"
