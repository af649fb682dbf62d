"""Which part of a gland a segmentation misses: recall and ROI coverage by thirds, head to tail.

The reference gland is cut into three parts of equal voxel count along the patient's right-left axis
(LPS x): the right third is roughly the head, the middle the neck and body, the left the tail.
"""

from __future__ import annotations

import numpy as np

PARTS = ("right (head)", "middle (body)", "left (tail)")


def parts_of(reference, prediction, roi) -> dict:
    """Recall and ROI coverage of the three parts of ``reference``.

    Args:
        reference: the reference label (SimpleITK image; any non-zero voxel is gland).
        prediction: the predicted label (any grid; resampled onto the reference's, nearest neighbour).
        roi: phase 1's :class:`~PancreasSegLib.pipeline.roi.ROI`, or None (nothing counts as inside).

    Returns:
        ``{part: {"recall": share of its voxels predicted, "in_roi": share inside the ROI}}``.

    Raises:
        ValueError: an empty reference.
    """
    import SimpleITK as sitk

    ref = sitk.GetArrayFromImage(reference) > 0
    index = np.argwhere(ref)[:, ::-1].astype(float)  # (x, y, z) voxel indices
    if index.size == 0:
        raise ValueError("the reference label is empty")
    m = np.asarray(reference.GetDirection()).reshape(3, 3) * np.asarray(reference.GetSpacing())
    points = np.asarray(reference.GetOrigin()) + index @ m.T  # LPS mm
    on_grid = sitk.Resample(prediction, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    found = (sitk.GetArrayFromImage(on_grid) > 0)[ref]  # same order as np.argwhere
    if roi is not None:
        local = (points - np.asarray(roi.center)) @ np.asarray(roi.axes).T
        in_roi = np.all(np.abs(local) <= np.asarray(roi.size) / 2, axis=1)
    else:
        in_roi = np.zeros(len(points), dtype=bool)
    cuts = np.quantile(points[:, 0], [1 / 3, 2 / 3])
    which = np.searchsorted(cuts, points[:, 0])
    return {name: {"recall": round(float(found[which == k].mean()), 3),
                   "in_roi": round(float(in_roi[which == k].mean()), 3)} for k, name in enumerate(PARTS)}
