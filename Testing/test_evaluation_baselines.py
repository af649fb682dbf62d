"""Threshold + largest-component baseline and the contact statistic."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from PancreasSegLib.evaluation.baselines import dice, similar_neighbour_fraction, threshold_baseline


def _image(array, direction=(-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.9, 2.0))
    image.SetOrigin((5.0, -3.0, 10.0))
    image.SetDirection(direction)
    return image


def test_threshold_baseline_keeps_only_the_largest_piece_in_the_window():
    a = np.full((10, 20, 20), -100, dtype=np.int16)
    a[2:8, 2:10, 2:10] = 40   # large piece
    a[2:4, 14:16, 14:16] = 45  # small piece, same density
    a[5:7, 14:18, 14:18] = 300  # outside the window
    out = threshold_baseline(_image(a), 20, 80)
    got = sitk.GetArrayFromImage(out)
    assert got.dtype == np.uint8 and got.sum() == 6 * 8 * 8 and got[2:8, 2:10, 2:10].all()
    assert out.GetDirection() == (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0) and out.GetSpacing() == (0.8, 0.9, 2.0)


def test_threshold_baseline_of_an_empty_window_is_empty():
    a = np.zeros((4, 5, 6), dtype=np.int16)
    assert sitk.GetArrayFromImage(threshold_baseline(_image(a), 500, 600)).sum() == 0


def test_dice_of_identical_disjoint_and_empty_masks():
    m = np.zeros((3, 3), bool)
    m[0] = True
    assert dice(m, m) == 1.0 and dice(m, ~m) == 0.0 and dice(~np.ones_like(m), ~np.ones_like(m)) == 1.0


def test_similar_neighbour_fraction_sees_contact_with_same_density_tissue():
    a = np.full((12, 12, 12), -100, dtype=np.int16)
    a[3:9, 3:9, 3:9] = 40
    label = np.zeros(a.shape, np.uint8)
    label[4:8, 4:8, 4:8] = 1
    assert similar_neighbour_fraction(_image(a), _image(label)) == 1.0
    a[3:9, 3:9, 3:9] = -100
    a[4:8, 4:8, 4:8] = 40
    assert similar_neighbour_fraction(_image(a), _image(label)) == 0.0
