"""Two-phase prediction: exact input geometry, orientation invariance, ROI-border guard, empty results."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: F401
from bundle_doubles import make_random_bundle  # noqa: E402
from conftest import DIRECTIONS  # noqa: E402
from inference_doubles import (  # noqa: E402
    blob_volume,
    dice_on_grid,
    double_bundle,
    reoriented,
    same_grid,
)

from PancreasSegLib.errors import InputError, NoPancreasFound  # noqa: E402
from PancreasSegLib.pipeline.predictor import Predictor  # noqa: E402
from PancreasSegLib.pipeline.roi import ROI  # noqa: E402

GRIDS = {  # (shape z, y, x), spacing x, y, z
    "isotropic": ((40, 48, 56), (1.5, 1.5, 1.5)),
    "anisotropic": ((16, 60, 64), (0.9, 1.1, 5.0)),
}


@pytest.fixture(scope="module")
def predictor():
    return Predictor(double_bundle(), device="cpu")


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_the_label_map_has_exactly_the_input_grid_and_finds_the_organ(predictor, direction_name, grid):
    shape, spacing = GRIDS[grid]
    image, truth = blob_volume(shape, spacing, direction=DIRECTIONS[direction_name])
    prediction = predictor.predict_image(image)
    assert same_grid(prediction.label, image)
    assert prediction.label.GetPixelID() == sitk.sitkUInt8
    assert prediction.found and prediction.localizer_roi is not None
    assert dice_on_grid(truth, prediction.label) >= 0.9


def test_an_int16_input_gives_the_same_result_as_float(predictor):
    image, _ = blob_volume()
    as_int = sitk.Cast(sitk.Round(image), sitk.sitkInt16)
    a = predictor.predict_image(image).label
    b = predictor.predict_image(as_int).label
    assert dice_on_grid(a, b) >= 0.99 and same_grid(b, as_int)


ORIENTATIONS = {
    "flipped left-right": ((0, 1, 2), (True, False, False)),
    "RAS-like": ((0, 1, 2), (True, True, False)),
    "axes permuted": ((2, 0, 1), (False, False, False)),
    "permuted and flipped": ((1, 2, 0), (False, True, True)),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_a_reoriented_copy_of_the_volume_gives_the_same_physical_mask(predictor, orientation):
    image, truth = blob_volume((30, 40, 48), (1.7, 1.3, 2.2))
    other = reoriented(image, *ORIENTATIONS[orientation])
    a = predictor.predict_image(image).label
    b = predictor.predict_image(other).label
    assert same_grid(b, other)
    assert dice_on_grid(truth, a) >= 0.9  # the masks are the organ, not something trivial
    assert dice_on_grid(a, b) >= 0.98


@pytest.fixture(scope="module")
def random_predictor(tmp_path_factory):
    from inference_doubles import test_config

    # Without clean-up and guard the raw thresholded output is compared voxel by voxel: a stricter check.
    config = test_config()
    config["postprocessing"].update(border_guard_mm=0.0, largest_component=False, fill_holes=False)
    return Predictor.from_bundle(make_random_bundle(tmp_path_factory.mktemp("b") / "m", seed=0, config=config),
                                 device="cpu")


@pytest.mark.parametrize("orientation", ["RAS-like", "permuted and flipped"])
def test_a_fixed_seed_network_gives_the_same_physical_mask_for_a_reoriented_copy(random_predictor, orientation):
    image, _ = blob_volume((30, 40, 48), (1.7, 1.3, 2.2))
    other = reoriented(image, *ORIENTATIONS[orientation])
    roi = ROI((10.0, 5.0, 0.0), (60.0, 40.0, 40.0), margin_mm=0.0)
    a = random_predictor.predict_image(image, roi=roi).label
    b = random_predictor.predict_image(other, roi=roi).label
    fraction = sitk.GetArrayViewFromImage(a).mean()
    assert 0.01 < fraction < 0.5  # a non-trivial mask, so that agreement means something
    assert dice_on_grid(a, b) >= 0.98


def test_a_given_roi_skips_the_localizer(predictor):
    image, truth = blob_volume()
    calls = predictor.bundle.localizer.calls
    prediction = predictor.predict_image(image, roi=ROI((10.0, 5.0, 0.0), (90.0, 60.0, 70.0), margin_mm=20.0))
    assert predictor.bundle.localizer.calls == calls
    assert prediction.localizer_roi is None and prediction.roi.margin_mm == 20.0
    assert dice_on_grid(truth, prediction.label) >= 0.9


def test_a_roi_that_cuts_the_organ_is_grown_and_the_organ_segmented_whole(predictor):
    image, truth = blob_volume()
    tight = ROI((10.0, 5.0, 0.0), (24.0, 40.0, 40.0))  # cuts the organ (44 mm long in x) on both sides
    prediction = predictor.predict_image(image, roi=tight)
    assert prediction.grown
    lo, hi = prediction.roi.lps_bounds()
    assert lo[0] < 10.0 - 22.0 and hi[0] > 10.0 + 22.0
    assert dice_on_grid(truth, prediction.label) >= 0.9


def test_the_guard_does_not_grow_a_roi_at_the_image_edge(predictor):
    image, _ = blob_volume((40, 56, 64), (1.5, 1.6, 2.5), center_mm=(40.0, 5.0, 0.0))  # organ cut by the image edge
    prediction = predictor.predict_image(image, roi=ROI((40.0, 5.0, 0.0), (100.0, 60.0, 60.0)))
    assert not prediction.grown


def test_the_probability_map_is_on_the_input_grid_and_agrees_with_the_labels(predictor):
    image, _ = blob_volume(direction=DIRECTIONS["oblique"])
    prediction = predictor.predict_image(image)
    prob = prediction.probability_image()
    assert same_grid(prob, image) and prob.GetPixelID() == sitk.sitkFloat32
    p, label = sitk.GetArrayViewFromImage(prob), sitk.GetArrayViewFromImage(prediction.label)
    assert np.all(p[label > 0] >= 0.5)
    assert 0.0 <= p.min() and p.max() <= 1.0


def test_no_pancreas_raises_unless_empty_results_are_allowed(predictor):
    image, _ = blob_volume()
    empty = sitk.Image(image) * 0.0 - 50.0
    with pytest.raises(NoPancreasFound, match="no pancreas found"):
        predictor.predict_image(empty)
    prediction = predictor.predict_image(empty, allow_empty=True)
    assert not prediction.found and prediction.roi is None
    assert same_grid(prediction.label, empty)
    assert not sitk.GetArrayViewFromImage(prediction.label).any()


def test_a_roi_outside_the_image_is_refused(predictor):
    image, _ = blob_volume()
    with pytest.raises(InputError, match="ROI lies outside the image"):
        predictor.predict_image(image, roi=ROI((900.0, 0.0, 0.0), (10.0, 10.0, 10.0)))


def test_single_stage_mode_segments_the_whole_volume_without_the_localizer(predictor):
    image, truth = blob_volume()
    calls = predictor.bundle.localizer.calls
    prediction = predictor.predict_image(image, phase2_only=True)
    assert predictor.bundle.localizer.calls == calls
    assert dice_on_grid(truth, prediction.label) >= 0.9


def test_running_out_of_gpu_memory_falls_back_to_the_cpu(monkeypatch, capsys):
    predictor = Predictor(double_bundle(), device="cpu")
    predictor.device = "cuda"  # pretend; the first attempt fails as a GPU out of memory would
    original = Predictor._predict
    attempts = []

    def flaky(self, *args):
        attempts.append(self.device)
        if self.device == "cuda":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, *args)

    monkeypatch.setattr(Predictor, "_predict", flaky)
    monkeypatch.setattr(Predictor, "_release_gpu_memory", lambda self: None)
    image, _ = blob_volume()
    assert predictor.predict_image(image).found
    assert attempts == ["cuda", "cpu"] and predictor.device == "cpu"
    assert "ran out of memory" in capsys.readouterr().err


def test_auto_device_is_cpu_without_an_accelerator():

    from PancreasSegLib.model.device import resolve_device

    if torch.cuda.is_available():
        assert resolve_device("auto") == "cuda"
    else:
        assert resolve_device("auto") in ("cpu", "mps")
        with pytest.raises(InputError, match="no CUDA device"):
            resolve_device("cuda")


def test_a_roi_far_short_of_the_organ_grows_over_several_rounds(predictor):
    image, truth = blob_volume()
    # Ends 6 mm short of the organ's 22 mm half-length on each side in x: one 20 mm round is not enough
    # on the side the crop was cut furthest from; the guard keeps growing while the mask touches.
    far = ROI((-5.0, 5.0, 0.0), (10.0, 40.0, 40.0))
    prediction = predictor.predict_image(image, roi=far)
    assert prediction.grown
    lo, hi = prediction.roi.lps_bounds()
    assert lo[0] < 10.0 - 22.0 and hi[0] > 10.0 + 22.0
    assert dice_on_grid(truth, prediction.label) >= 0.9
