"""Non-learned reference methods and image statistics that tell how hard a segmentation task is.

:func:`threshold_baseline` is the floor any model must clear: keep the voxels in an HU window and
the largest connected piece of them. On real abdominal CT it fails because the pancreas touches
tissue of the same density (duodenum, bowel, unopacified vessels); :func:`similar_neighbour_fraction`
measures how much of that contact a volume has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk


def threshold_baseline(image: sitk.Image, lo: float, hi: float, sigma_mm: float = 0.0) -> sitk.Image:
    """Label (0/1, uint8) of the largest 26-connected component of ``lo <= HU <= hi``.

    Args:
        image: CT in HU, any geometry; the result has exactly its grid.
        lo, hi: the HU window.
        sigma_mm: optional Gaussian smoothing before thresholding (0: plain threshold).

    Returns:
        A uint8 label image, 1 on the kept component (all 0 when nothing is in the window).

    >>> label = threshold_baseline(image, 20, 80)  # doctest: +SKIP
    """
    import SimpleITK as sitk

    work = sitk.Cast(image, sitk.sitkFloat32)
    if sigma_mm > 0:
        work = sitk.SmoothingRecursiveGaussian(work, sigma_mm)
    mask = sitk.BinaryThreshold(work, float(lo), float(hi), 1, 0)
    components = sitk.ConnectedComponent(mask, True)
    largest = sitk.RelabelComponent(components, sortByObjectSize=True)
    out = sitk.Cast(sitk.BinaryThreshold(largest, 1, 1, 1, 0), sitk.sitkUInt8)
    out.CopyInformation(image)
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean arrays (1.0 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def similar_neighbour_fraction(image: sitk.Image, label: sitk.Image, tolerance: float = 30.0,
                               reference: float | None = None) -> float:
    """Fraction of the pancreas surface that touches non-pancreas tissue of similar density.

    A surface voxel is a background voxel 6-adjacent to the label (labels 1 and 2 count as pancreas);
    it is "similar" when its HU lies within ``tolerance`` of ``reference`` (default: the median HU of
    the pancreas). Run it on a noise-free image to measure anatomy rather than noise.
    """
    import SimpleITK as sitk
    from scipy import ndimage

    hu = sitk.GetArrayViewFromImage(image).astype(np.float32)
    gland = sitk.GetArrayViewFromImage(label) > 0
    if not gland.any():
        return 0.0
    shell = ndimage.binary_dilation(gland, ndimage.generate_binary_structure(3, 1)) & ~gland
    ref = float(np.median(hu[gland])) if reference is None else float(reference)
    return float(np.mean(np.abs(hu[shell] - ref) <= tolerance))
