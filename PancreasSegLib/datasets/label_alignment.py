"""Putting a label map whose header disagrees with its image onto the image grid.

Some public datasets ship label files whose geometry does not match their CT: NIH Pancreas-CT's label
NIfTIs are commonly reported as flipped (front-back and/or head-feet) relative to the DICOM series, or
carry a header that places them elsewhere. When the label has the image's size, the voxel data are most
likely right up to a reversal of some axes, so every candidate placement (the label's own header, and
the label's voxels laid onto the image grid with each combination of axis flips) is scored by how much
of the labelled region falls on soft tissue in the CT. The header wins when it is plausible; otherwise a
clear winner is taken; otherwise the case is refused. Nothing is guessed silently: the choice and the
scores come back as a note.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from PancreasSegLib.errors import InputError
from PancreasSegLib.io.grid import grid_mismatch, grids_overlap, resample_label_to

if TYPE_CHECKING:
    import SimpleITK as sitk

#: CT values (HU) counted as soft tissue: pancreas is ~30-60 HU plain, up to ~150 HU with contrast.
SOFT_TISSUE_HU = (-20.0, 200.0)
#: Least soft-tissue fraction of a plausible placement.
MIN_SCORE = 0.5
#: How much better than every other placement the chosen one must be, when the header is not plausible.
MIN_MARGIN = 0.1


def soft_tissue_fraction(label_zyx: np.ndarray, ct_zyx: np.ndarray, hu_range=SOFT_TISSUE_HU) -> float:
    """Fraction of the labelled voxels whose CT value lies in ``hu_range`` (NaN for an empty label)."""
    inside = label_zyx > 0
    n = int(inside.sum())
    if n == 0:
        return float("nan")
    values = ct_zyx[inside]
    return float(np.count_nonzero((values >= hu_range[0]) & (values <= hu_range[1])) / n)


def align_label_to_image(label: sitk.Image, image: sitk.Image) -> tuple[sitk.Image, str]:
    """The label on exactly the image's grid, and a note on how it was placed.

    Args:
        label: label map as read from its file (any header).
        image: the CT in Hounsfield units whose grid the label must take.

    Returns:
        ``(label on the image grid, note)``; the note names the placement and its soft-tissue score.

    Raises:
        InputError: the label is empty, its size differs from the image's and its header does not place it
            on the image, or no placement is clearly right.

    >>> fixed, note = align_label_to_image(sitk.ReadImage("label0001.nii.gz"), ct)  # doctest: +SKIP
    """
    import SimpleITK as sitk

    ct = sitk.GetArrayViewFromImage(image)
    voxels = sitk.GetArrayFromImage(label)
    if not voxels.any():
        raise InputError("the label is empty")
    header_matches = grid_mismatch(label, image) is None
    candidates: list[tuple[str, np.ndarray]] = []
    if header_matches:
        candidates.append(("header (same grid as the image)", voxels))
    elif grids_overlap(label, image):
        placed = sitk.GetArrayFromImage(resample_label_to(label, image))
        if placed.any():
            candidates.append(("header (resampled onto the image grid)", placed))
    if label.GetSize() == image.GetSize():
        for flips in itertools.product((False, True), repeat=3):  # x, y, z
            axes = [name for name, flip in zip("xyz", flips) if flip]
            name = "voxel order, flipped along " + "+".join(axes) if axes else "voxel order as stored"
            array = voxels[::-1 if flips[2] else 1, ::-1 if flips[1] else 1, ::-1 if flips[0] else 1]
            if not any(np.array_equal(array, other) for _, other in candidates):
                candidates.append((name, array))
    if not candidates:
        raise InputError(f"the label (size {label.GetSize()}) neither has the image's size {image.GetSize()} nor a "
                         f"header that places it on the image ({grid_mismatch(label, image)})")
    scores = [soft_tissue_fraction(array, ct) for _, array in candidates]
    order = np.argsort(scores)[::-1]
    best = int(order[0])
    second = scores[int(order[1])] if len(order) > 1 else 0.0
    summary = ", ".join(f"{candidates[i][0]}: {scores[i]:.2f}" for i in order[:3])
    header_first = candidates[0][0].startswith("header")
    if header_first and scores[0] >= MIN_SCORE and scores[0] >= scores[best] - MIN_MARGIN:
        chosen = 0
    elif scores[best] >= MIN_SCORE and scores[best] - second >= MIN_MARGIN:
        chosen = best
    else:
        raise InputError("cannot tell how the label lies on the image: no placement puts it clearly on soft tissue "
                         f"(fraction of label voxels at {SOFT_TISSUE_HU[0]:g}..{SOFT_TISSUE_HU[1]:g} HU: {summary})")
    out = sitk.GetImageFromArray(np.ascontiguousarray(candidates[chosen][1]).astype(np.uint8))
    out.CopyInformation(image)
    return out, f"label placed by {candidates[chosen][0]}; soft-tissue fraction per placement: {summary}"
