"""Domain randomisation of the phantoms: the same abdomen, a drawn look; plain phantoms unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from PancreasSegLib.phantoms import randomize
from PancreasSegLib.phantoms.generator import make_phantom


def _arrays(image, label):
    return sitk.GetArrayFromImage(image).astype(float), sitk.GetArrayFromImage(label)


def _centroid_mm(label) -> np.ndarray:
    index = np.argwhere(sitk.GetArrayViewFromImage(label) > 0).mean(axis=0)[::-1]
    return np.array(label.TransformContinuousIndexToPhysicalPoint([float(v) for v in index]))


def test_randomised_phantoms_are_reproducible_and_differ_from_the_plain_one():
    a = _arrays(*make_phantom(5, preset="small", randomize=True))
    b = _arrays(*make_phantom(5, preset="small", randomize=True))
    plain = _arrays(*make_phantom(5, preset="small"))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape != plain[0].shape or not np.array_equal(a[0], plain[0])


def test_the_abdomen_stays_the_same_only_its_look_changes():
    for seed in (1, 2, 3):
        plain_image, plain_label = make_phantom(seed, preset="small")
        image, label = make_phantom(seed, preset="small", randomize=True)
        keep = np.count_nonzero(sitk.GetArrayViewFromImage(label)) / np.count_nonzero(
            sitk.GetArrayViewFromImage(plain_label))
        if keep > 0.9:  # not a scan cut through the gland: the gland sits where it was
            assert np.linalg.norm(_centroid_mm(label) - _centroid_mm(plain_label)) < 5.0


def test_contrast_phases_spread_the_glands_hu_well_beyond_the_plain_phantoms():
    def gland_hu(randomized: bool) -> list[float]:
        values = []
        for seed in range(12):
            hu, lab = _arrays(*make_phantom(seed, preset="small", randomize=randomized, noise=False))
            values.append(float(np.median(hu[lab == 1])))
        return values

    plain, drawn = gland_hu(False), gland_hu(True)
    assert np.ptp(drawn) > 1.5 * np.ptp(plain)
    assert min(drawn) < 60 and max(drawn) > 95  # unenhanced and enhanced glands both occur


@pytest.mark.parametrize("phase", randomize.PHASES)
def test_each_phase_orders_the_tissues_as_real_scans_do(phase):
    rng = np.random.default_rng(0)
    for _ in range(20):
        hu, drawn = randomize.randomized_hu({"air": -1000.0, "enhancement": 0.0}, rng)
        if drawn != phase:
            continue
        assert hu["fat"] < -60 and hu["air"] == -1000.0 and hu["tumor"] < hu["pancreas"]
        if phase == "arterial":
            assert hu["artery"] > hu["vein"] and hu["artery"] > 150
        if phase == "non-contrast":
            assert hu["artery"] < 80 and hu["pancreas"] < 70


def test_partial_coverage_ends_the_scan_inside_the_gland():
    label = np.zeros((60, 4, 4), np.uint8)
    label[20:50] = 1
    cuts = [randomize.partial_coverage(label, np.random.default_rng(s)) for s in range(200)]
    drawn = [c for c in cuts if c is not None]
    assert 0.05 < len(drawn) / len(cuts) < 0.3
    for start, stop in drawn:
        kept = label[start:stop]
        assert kept[0].any() or kept[-1].any()  # the first or last slice goes through the gland
        assert 0 < kept.sum() < label.sum()


def test_thick_slices_are_drawn_and_blur_along_z():
    spacings = {randomize.draw_slice_spacing(np.random.default_rng(s)) for s in range(200)}
    assert min(spacings) < 0.7 and max(spacings) == 5.0
    thin = _arrays(*make_phantom(4, spacing=(2.5, 2.5, 1.0), preset="small", noise=False))[0]
    thick = _arrays(*make_phantom(4, spacing=(2.5, 2.5, 5.0), preset="small", noise=False))[0]
    assert np.abs(np.diff(thick, axis=0)).mean() / 5.0 < np.abs(np.diff(thin, axis=0)).mean() / 1.0


def test_the_phantom_command_makes_randomised_cases_and_says_so(tmp_path):
    import json

    from PancreasSegLib.cli import main
    from PancreasSegLib.io.volumes import read_volume

    out = tmp_path / "Dataset990_Randomized"
    assert main(["phantom", str(out), "--cases", "1", "--seed", "5", "--size", "small", "--randomize"]) == 0
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["randomized"] is True and "randomize=True" in meta["reference"]
    expected, _ = make_phantom(5, preset="small", randomize=True)
    written = read_volume(out / "imagesTr" / "phantom_00005_0000.nii.gz")
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(expected))
    assert main(["phantom", str(tmp_path / "Dataset991_No"), "--family", "second", "--randomize"]) == 2
