"""Metrics agree with MONAI's implementations and respect the image geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import DIRECTIONS

from PancreasSegLib.errors import InputError
from PancreasSegLib.evaluation.metrics import binary_metrics, compare_labels

SPACING_ZYX = (2.5, 0.9, 0.6)


def sphere(shape, center, radius_mm, spacing):
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum((g - c * s) ** 2 for g, c, s in zip(grids, center, spacing)) <= radius_mm**2


def blob(shape, seed, level=0.3):
    from scipy.ndimage import gaussian_filter

    noise = np.random.default_rng(seed).standard_normal(shape)
    return gaussian_filter(noise, sigma=2.0) > level * gaussian_filter(noise, sigma=2.0).std()


def pairs():
    shape = (14, 30, 36)
    yield "shifted spheres", sphere(shape, (7, 15, 18), 8.0, SPACING_ZYX), sphere(shape, (8, 13, 20), 7.0, SPACING_ZYX)
    yield "touching border", sphere(shape, (1, 15, 3), 6.0, SPACING_ZYX), sphere(shape, (2, 14, 4), 6.0, SPACING_ZYX)
    for seed in range(3):
        yield f"blobs {seed}", blob(shape, seed), blob(shape, seed + 10)


def monai_reference(pred, ref, spacing):
    import torch
    from monai.metrics import DiceMetric, compute_hausdorff_distance, compute_surface_dice

    p = torch.from_numpy(pred.astype(np.float32))[None, None]
    r = torch.from_numpy(ref.astype(np.float32))[None, None]
    dice = DiceMetric(include_background=True, reduction="none")(p, r)
    hd95 = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=list(spacing))
    nsd = compute_surface_dice(p, r, class_thresholds=[2.0], include_background=True, spacing=list(spacing))
    return float(dice.item()), float(hd95.item()), float(nsd.item())


@pytest.mark.parametrize("name, pred, ref", list(pairs()), ids=[p[0] for p in pairs()])
def test_metrics_agree_with_monai_within_1e_4(name, pred, ref):
    ours = binary_metrics(pred, ref, SPACING_ZYX, tolerance_mm=2.0)
    dice, hd95, nsd = monai_reference(pred, ref, SPACING_ZYX)
    assert 0.0 < dice < 1.0
    assert ours.dice == pytest.approx(dice, abs=1e-4)
    assert ours.hd95_mm == pytest.approx(hd95, abs=1e-4)
    assert ours.surface_dice == pytest.approx(nsd, abs=1e-4)


def as_image(array_zyx, spacing_xyz, direction=DIRECTIONS["LPS"], origin=(5.0, -3.0, 12.0)):
    image = sitk.GetImageFromArray(array_zyx.astype(np.uint8))
    image.SetSpacing(spacing_xyz)
    image.SetDirection(direction)
    image.SetOrigin(origin)
    return image


def test_compare_labels_passes_the_spacing_in_array_order_and_agrees_with_monai(direction_name):
    shape = (14, 30, 36)
    ref = sphere(shape, (7, 15, 18), 8.0, SPACING_ZYX)
    pred = sphere(shape, (8, 13, 20), 7.0, SPACING_ZYX)
    spacing_xyz = tuple(reversed(SPACING_ZYX))
    direction = DIRECTIONS[direction_name]
    results, resampled = compare_labels(as_image(pred, spacing_xyz, direction), as_image(ref, spacing_xyz, direction))
    dice, hd95, nsd = monai_reference(pred, ref, SPACING_ZYX)
    assert not resampled
    assert results["pancreas"].hd95_mm == pytest.approx(hd95, abs=1e-4)
    assert results["pancreas"].surface_dice == pytest.approx(nsd, abs=1e-4)


def test_a_shift_along_x_is_measured_in_x_millimetres():
    shape = (14, 30, 36)
    ref = sphere(shape, (7, 15, 18), 8.0, SPACING_ZYX)
    pred = np.roll(ref, 2, axis=2)  # two voxels of 0.6 mm along x
    results, _ = compare_labels(as_image(pred, (0.6, 0.9, 2.5)), as_image(ref, (0.6, 0.9, 2.5)))
    assert 0.0 < results["pancreas"].hd95_mm <= 1.2 + 1e-6


def test_volume_error_is_in_millilitres_with_sign_pred_minus_ref():
    ref = np.zeros((10, 10, 10), bool)
    ref[2:6, 2:6, 2:6] = True  # 64 voxels
    pred = np.zeros_like(ref)
    pred[2:6, 2:6, 2:8] = True  # 96 voxels
    m = binary_metrics(pred, ref, (2.0, 1.0, 0.5))  # 1 mm^3 voxels
    assert m.volume_ref_ml == pytest.approx(0.064)
    assert m.volume_error_ml == pytest.approx(0.032)
    assert m.volume_error_rel == pytest.approx(0.5)


def test_empty_masks_follow_the_documented_definitions():
    empty = np.zeros((8, 8, 8), bool)
    full = empty.copy()
    full[2:5, 2:5, 2:5] = True
    both = binary_metrics(empty, empty, (1, 1, 1))
    assert (both.dice, both.hd95_mm, both.surface_dice) == (1.0, 0.0, 1.0)
    for pred, ref in ((empty, full), (full, empty)):
        one = binary_metrics(pred, ref, (1, 1, 1))
        assert one.dice == 0.0 and one.surface_dice == 0.0 and math.isnan(one.hd95_mm)
    assert binary_metrics(empty, full, (1, 1, 1)).volume_error_rel == -1.0


def test_whole_pancreas_is_the_union_of_pancreas_and_tumor_and_tumor_can_be_evaluated():
    ref = np.zeros((8, 12, 12), np.uint8)
    ref[2:6, 3:9, 3:9] = 1
    ref[3:5, 4:6, 4:6] = 2
    pred = (ref > 0).astype(np.uint8)  # a pancreas-only model that got the whole gland right
    results, _ = compare_labels(as_image(pred, (1, 1, 1)), as_image(ref, (1, 1, 1)), structures=("pancreas", "tumor"))
    assert results["pancreas"].dice == 1.0
    assert results["tumor"].dice == 0.0 and results["tumor"].pred_empty


def test_a_different_grid_is_refused_unless_resampling_is_asked_for():
    ref = np.zeros((8, 12, 12), np.uint8)
    ref[2:6, 3:9, 3:9] = 1
    ref_image = as_image(ref, (1.0, 1.0, 2.0))
    pred_image = as_image(ref, (1.0, 1.0, 2.0), origin=(5.6, -3.0, 12.0))  # 0.6 voxel: rounds to a 1-voxel shift
    with pytest.raises(InputError, match="--resample"):
        compare_labels(pred_image, ref_image)
    results, resampled = compare_labels(pred_image, ref_image, resample=True)
    assert resampled and 0.7 < results["pancreas"].dice < 1.0


def test_a_prediction_cropped_to_a_voxel_aligned_subgrid_is_placed_exactly():
    ref = np.zeros((8, 12, 12), np.uint8)
    ref[2:6, 3:9, 3:9] = 1
    ref_image = as_image(ref, (0.7, 0.8, 2.0), DIRECTIONS["oblique"])
    cropped = sitk.RegionOfInterest(ref_image, [8, 8, 5], [2, 2, 1])
    results, resampled = compare_labels(cropped, ref_image)
    assert resampled and results["pancreas"].dice == 1.0


def test_images_that_do_not_overlap_in_space_are_refused():
    ref = np.ones((4, 4, 4), np.uint8)
    with pytest.raises(InputError, match="do not overlap"):
        compare_labels(as_image(ref, (1, 1, 1), origin=(500, 0, 0)), as_image(ref, (1, 1, 1)), resample=True)
