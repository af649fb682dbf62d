"""Recall and ROI coverage by thirds of the gland, head to tail."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from PancreasSegLib.evaluation.parts import PARTS, parts_of
from PancreasSegLib.pipeline.roi import ROI


def _image(array, flip_x=False):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing((2.0, 1.0, 1.0))
    if flip_x:  # stored right-to-left: index x runs to the patient's right
        image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    return image


@pytest.mark.parametrize("flip_x", [False, True])
def test_a_prediction_that_misses_the_tail_scores_zero_on_the_left_third_only(flip_x):
    ref = np.zeros((6, 10, 30), dtype=np.uint8)
    ref[2:4, 3:6, 0:30] = 1  # a bar along x: 30 voxels of 2 mm
    pred = ref.copy()
    tail = slice(20, 30) if not flip_x else slice(0, 10)  # patient left: +x in LPS
    pred[:, :, tail] = 0
    reference, prediction = _image(ref, flip_x), _image(pred, flip_x)
    parts = parts_of(reference, prediction, None)
    assert [parts[p]["recall"] for p in PARTS] == [1.0, 1.0, 0.0]
    assert all(parts[p]["in_roi"] == 0.0 for p in PARTS)


def test_the_roi_coverage_tells_phase_1_from_phase_2():
    ref = np.zeros((6, 10, 30), dtype=np.uint8)
    ref[2:4, 3:6, :] = 1
    reference = _image(ref)
    # a ROI over x = -1..39 mm: the first two thirds (voxels 0-19, x = 0..38 mm) inside, the left third out
    roi = ROI(center=(19.0, 4.5, 2.5), size=(40.0, 20.0, 10.0))
    parts = parts_of(reference, _image(np.zeros_like(ref)), roi)
    assert [parts[p]["in_roi"] for p in PARTS] == [1.0, 1.0, 0.0]
    assert all(parts[p]["recall"] == 0.0 for p in PARTS)


def test_an_empty_reference_is_refused():
    empty = _image(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="empty"):
        parts_of(empty, empty, None)
