"""Phase 1: canonical axial sampling, detections to one ROI, robustness to stray detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: F401
from conftest import DIRECTIONS  # noqa: E402
from inference_doubles import ThresholdLocalizer, blob_volume, reoriented, test_config  # noqa: E402

from PancreasSegLib.pipeline.phase1 import (  # noqa: E402
    Detections,
    best_run,
    combine_boxes,
    localize,
    roi_from_detections,
)
from PancreasSegLib.pipeline.sampling import axial_grid, coarse_positions, sample_slices  # noqa: E402


def test_the_strongest_run_of_slices_wins_and_single_gaps_are_bridged():
    hit = np.array([0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 1], bool)
    assert best_run(hit, np.ones(len(hit))) == (4, 8)
    assert best_run(hit, np.where(np.arange(len(hit)) == 1, 10.0, 0.1)) == (1, 1)
    assert best_run(np.zeros(5, bool), np.ones(5)) is None


def test_a_stray_box_far_from_the_others_is_left_out():
    pancreas = [np.array([[0.0, 0.0, 60.0, 30.0]]) + k for k in range(5)]
    stray = np.array([[0.0, 0.0, 60.0, 30.0], [150.0, 150.0, 170.0, 170.0]])
    lo, hi = combine_boxes(pancreas + [stray], max_gap_mm=15.0)
    np.testing.assert_allclose(lo, [0.0, 0.0])
    np.testing.assert_allclose(hi, [64.0, 34.0])


def test_a_gland_found_in_pieces_is_kept_whole_even_far_from_its_centre():
    # Head around x = -40, body crossing on the middle slices, tail out to x = +100 (over 100 mm from the
    # head): the pieces chain through the neighbouring slices, the stray on another organ does not.
    head = np.array([-60.0, -20.0, -10.0, 20.0])
    body = np.array([-30.0, -30.0, 50.0, 5.0])
    tail = np.array([30.0, -30.0, 100.0, 35.0])
    stray = np.array([-150.0, 60.0, -120.0, 90.0])
    slices = [np.array([head]), np.array([head, stray]), np.array([head, body]), np.array([body, tail]),
              np.array([tail]), np.zeros((0, 4)), np.array([tail])]
    scores = [np.full(len(b), 0.9) for b in slices]
    lo, hi = combine_boxes(slices, max_gap_mm=15.0, scores=scores)
    np.testing.assert_allclose(lo, [-60.0, -30.0])
    np.testing.assert_allclose(hi, [100.0, 35.0])


def test_the_chain_with_the_larger_total_score_wins():
    weak = [np.array([[0.0, 0.0, 10.0, 10.0]])] * 3
    strong = [np.array([[100.0, 100.0, 120.0, 120.0]])] * 2
    slices = [np.concatenate([w, s]) for w, s in zip(weak, strong)] + [weak[2]]
    lo, hi = combine_boxes(slices, scores=[np.array([0.55, 0.99]), np.array([0.55, 0.99]), np.array([0.55])])
    np.testing.assert_allclose(lo, [100.0, 100.0])
    lo, hi = combine_boxes(slices)  # equal weights: the longer chain
    np.testing.assert_allclose(hi, [10.0, 10.0])


def test_detections_become_a_box_with_margin_from_the_strongest_run():
    found = Detections()
    box = np.array([[10.0, 20.0, 50.0, 40.0]])
    for z in range(0, 100, 10):
        pancreas = 40 <= z <= 70
        stray = z == 0
        found.add(z, box if (pancreas or stray) else np.zeros((0, 4)), [0.9] if (pancreas or stray) else [])
    lower, upper = roi_from_detections(found, threshold=0.5, step=10.0, margin_mm=20.0)
    np.testing.assert_allclose(lower, [-10.0, 0.0, 15.0])
    np.testing.assert_allclose(upper, [70.0, 60.0, 95.0])
    assert roi_from_detections(found, threshold=0.95, step=10.0, margin_mm=20.0) is None


@pytest.mark.parametrize("order, flips", [((0, 1, 2), (True, True, False)), ((1, 0, 2), (False, True, True)),
                                          ((2, 0, 1), (False, False, False))])
def test_a_reoriented_copy_gives_the_same_axial_slices(order, flips):
    stage = test_config()["stages"]["localizer"]
    image, _ = blob_volume()
    other = reoriented(image, order, flips)
    grid = axial_grid(image, stage)
    assert axial_grid(other, stage) == grid
    z = coarse_positions(grid, 10.0)
    np.testing.assert_allclose(sample_slices(other, grid, z), sample_slices(image, grid, z), atol=1e-3)


def test_axial_slices_are_shown_in_the_radiological_view():
    stage = test_config()["stages"]["localizer"]
    image, _ = blob_volume(center_mm=(60.0, 5.0, 0.0), radii_mm=(15.0, 15.0, 15.0))  # toward the patient's left
    grid = axial_grid(image, stage)
    plane = sample_slices(image, grid, [0.0])[0]
    columns = np.flatnonzero((plane > 150).any(axis=0))
    assert columns.min() > grid.size_yx[1] // 2  # patient's left is on the image's right


@pytest.mark.parametrize("direction_name", sorted(DIRECTIONS))
def test_the_roi_holds_the_organ_plus_the_margin(direction_name):
    config = test_config()
    stage = config["stages"]["localizer"]
    stage.update(in_plane_spacing_mm=2.0, slice_size_yx=[96, 96], slice_step_mm=8.0)
    image, label = blob_volume(shape_zyx=(36, 60, 60), spacing=(1.5, 1.5, 2.5), direction=DIRECTIONS[direction_name],
                               middle_mm=(0.0, 0.0, 0.0), center_mm=(5.0, 0.0, 0.0))
    model = ThresholdLocalizer()
    roi = localize(image, model, stage, margin_mm=20.0)
    organ_lo, organ_hi = np.array([-17.0, -12.0, -14.0]), np.array([27.0, 12.0, 14.0])
    lo, hi = roi.lps_bounds()
    image_lo, image_hi = roi.clipped_to(image).lps_bounds()
    expected_lo = np.maximum(organ_lo - 20.0, image_lo)
    expected_hi = np.minimum(organ_hi + 20.0, image_hi)
    assert np.all(lo <= expected_lo + 3.0), (lo, expected_lo)
    assert np.all(hi >= expected_hi - 3.0), (hi, expected_hi)
    if direction_name != "oblique":  # an oblique image's own axes bound the box more loosely
        assert np.all(lo >= organ_lo - 20.0 - 8.0) and np.all(hi <= organ_hi + 20.0 + 8.0)
    assert roi.margin_mm == 20.0


def test_nothing_found_gives_no_roi():
    stage = test_config()["stages"]["localizer"]
    image, _ = blob_volume()
    image = image * 0 - 100.0  # no bright organ
    assert localize(image, ThresholdLocalizer(), stage) is None


def test_refinement_narrows_the_cranio_caudal_extent():
    stage = test_config()["stages"]["localizer"]
    stage.update(in_plane_spacing_mm=2.0, slice_size_yx=[96, 96], slice_step_mm=12.0, refine_slices=0)
    image, _ = blob_volume(shape_zyx=(60, 40, 40), spacing=(2.0, 2.0, 1.5), middle_mm=(0.0, 0.0, 0.0),
                           center_mm=(0.0, 0.0, 3.0), radii_mm=(15.0, 15.0, 10.0))
    coarse = localize(image, ThresholdLocalizer(), stage, margin_mm=0.0)
    stage["refine_slices"] = 3
    fine = localize(image, ThresholdLocalizer(), stage, margin_mm=0.0)
    true_lo, true_hi = 3.0 - 10.0, 3.0 + 10.0
    coarse_error = abs(coarse.lps_bounds()[0][2] - true_lo) + abs(coarse.lps_bounds()[1][2] - true_hi)
    fine_error = abs(fine.lps_bounds()[0][2] - true_lo) + abs(fine.lps_bounds()[1][2] - true_hi)
    assert fine_error < coarse_error
    assert fine_error <= 2 * 12.0 / 4
