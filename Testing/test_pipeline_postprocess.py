"""Post-processing: pure functions that clean the segmenter's probabilities."""

from __future__ import annotations

import numpy as np

from PancreasSegLib.pipeline.postprocess import (
    clean_probabilities,
    fill_holes,
    largest_component,
    remove_small_components,
)


def _two_blobs():
    mask = np.zeros((20, 20, 20), bool)
    mask[2:10, 2:10, 2:10] = True
    mask[14:17, 14:17, 14:17] = True
    return mask


def test_only_the_largest_component_is_kept():
    kept = largest_component(_two_blobs())
    assert kept.sum() == 8 ** 3
    assert not kept[15, 15, 15]


def test_small_components_are_removed():
    assert remove_small_components(_two_blobs(), 28).sum() == 8 ** 3
    assert remove_small_components(_two_blobs(), 27).sum() == 8 ** 3 + 27


def test_enclosed_holes_are_filled():
    mask = np.zeros((9, 9, 9), bool)
    mask[1:8, 1:8, 1:8] = True
    mask[4, 4, 4] = False
    assert fill_holes(mask).all() == mask[1:8, 1:8, 1:8].all() and fill_holes(mask)[4, 4, 4]


def test_cleaning_zeroes_removed_components_and_leaves_the_input_alone():
    fg = np.where(_two_blobs(), 0.9, 0.1).astype(np.float32)
    fg[5, 5, 5] = 0.2  # a hole
    probabilities = np.stack([1 - fg, fg])
    before = probabilities.copy()
    cleaned, keep = clean_probabilities(probabilities, (1.0, 1.0, 1.0), {"largest_component": True,
                                                                         "fill_holes": True})
    np.testing.assert_array_equal(probabilities, before)
    assert keep.sum() == 8 ** 3 and keep[5, 5, 5]
    assert cleaned[1, 15, 15, 15] == 0.0  # the removed blob
    assert cleaned[1, 5, 5, 5] == 1.0  # the filled hole
    assert cleaned[1, 1, 5, 5] == np.float32(0.1)  # next to the organ: kept for resampling the boundary
    np.testing.assert_allclose(cleaned.sum(axis=0), 1.0, atol=1e-6)
