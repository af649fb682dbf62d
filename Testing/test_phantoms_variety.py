"""Anatomical variety of the phantoms: another gland calibre and course, a smooth deformation, label kept on the gland."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import SimpleITK as sitk

from PancreasSegLib.phantoms import variety
from PancreasSegLib.phantoms.anatomy import sample_anatomy
from PancreasSegLib.phantoms.generator import make_phantom


def _volume_ml(label) -> float:
    return float(np.count_nonzero(sitk.GetArrayViewFromImage(label))) * float(np.prod(label.GetSpacing())) / 1000


def _centroid_mm(label) -> np.ndarray:
    index = np.argwhere(sitk.GetArrayViewFromImage(label) > 0).mean(axis=0)[::-1]
    return np.array(label.TransformContinuousIndexToPhysicalPoint([float(v) for v in index]))


def test_varied_phantoms_are_reproducible_and_leave_the_others_alone():
    a = make_phantom(6, preset="small", vary_anatomy=True)
    b = make_phantom(6, preset="small", vary_anatomy=True)
    plain = make_phantom(6, preset="small")
    same = make_phantom(6, preset="small", vary_anatomy=False)
    for x, y in zip(a, b):
        assert np.array_equal(sitk.GetArrayFromImage(x), sitk.GetArrayFromImage(y))
    for x, y in zip(plain, same):
        assert np.array_equal(sitk.GetArrayFromImage(x), sitk.GetArrayFromImage(y))
    assert not np.array_equal(sitk.GetArrayFromImage(a[1]), sitk.GetArrayFromImage(plain[1]))


def test_the_gland_calibre_spreads_from_thin_to_thick():
    ratios = []
    for seed in range(8):
        plain = make_phantom(seed, preset="small", tumor=False, noise=False)[1]
        varied = make_phantom(seed, preset="small", tumor=False, noise=False, vary_anatomy=True)[1]
        ratios.append(_volume_ml(varied) / _volume_ml(plain))
        # scaled about the gland: it stays near where it was
        assert np.linalg.norm(_centroid_mm(varied) - _centroid_mm(plain)) < 25.0
    assert min(ratios) < 0.75 and max(ratios) > 0.95


def test_the_label_still_lies_on_the_gland_after_the_deformation():
    for seed in (2, 9):
        image, label = make_phantom(seed, preset="small", tumor=False, noise=False, vary_anatomy=True)
        hu, lab = sitk.GetArrayFromImage(image).astype(float), sitk.GetArrayFromImage(label)
        inner = sitk.GetArrayFromImage(sitk.BinaryErode(label == 1, [1, 1, 1])) > 0
        ring = (sitk.GetArrayFromImage(sitk.BinaryDilate(label == 1, [2, 2, 2])) > 0) & (lab == 0)
        assert inner.sum() > 20
        # the gland's core is uniform tissue; the ring just outside it is not the same (fat, vessels, gut)
        assert np.std(hu[inner]) < 30
        assert abs(np.median(hu[inner]) - np.median(hu[ring])) > 15 or np.std(hu[ring]) > 60


def test_the_deformation_never_folds_space():
    reference = sitk.Image([60, 50, 40], sitk.sitkInt16)
    reference.SetSpacing((4.0, 4.0, 5.0))
    reference.SetOrigin((-120.0, -100.0, -100.0))
    for seed in range(20):
        transform = variety.deformation(reference, (0.0, 0.0, 0.0), np.random.default_rng(seed))
        field = sitk.GetArrayFromImage(transform.GetDisplacementField())  # (z, y, x, 3) in mm
        grads = np.stack([np.stack(np.gradient(field[..., c], variety.FIELD_STEP_MM), axis=-1)[..., ::-1]
                          for c in range(3)], axis=-2)  # d(displacement c) / d(x, y, z)
        jacobian = np.linalg.det(np.eye(3) + grads)
        assert jacobian.min() > 0.3 and jacobian.max() < 2.5


def test_vary_gland_keeps_the_duct_inside_the_thinner_gland():
    anatomy = sample_anatomy(np.random.default_rng(3))
    before = anatomy.pancreas.rb.copy()
    factor = variety.vary_gland(anatomy, np.random.default_rng(4))
    assert variety.CALIBRE[0] <= factor <= variety.CALIBRE[1]
    assert not np.allclose(anatomy.pancreas.rb, before)
    assert np.max(anatomy.duct.rb) < np.min(anatomy.pancreas.rb)


def test_the_phantom_command_makes_varied_cases_and_says_so(tmp_path):
    from PancreasSegLib.cli import main
    from PancreasSegLib.io.volumes import read_volume

    out = tmp_path / "Dataset992_Varied"
    assert main(["phantom", str(out), "--cases", "1", "--seed", "8", "--size", "small", "--randomize",
                 "--vary-anatomy"]) == 0
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["anatomy_varied"] is True and meta["randomized"] is True
    assert "vary_anatomy=True" in meta["reference"] and "anatomical variety" in meta["description"]
    expected, _ = make_phantom(8, preset="small", randomize=True, vary_anatomy=True)
    written = read_volume(out / "imagesTr" / "phantom_00008_0000.nii.gz")
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(expected))


@pytest.mark.parametrize("flag", ["--vary-anatomy", "--randomize", "--vary-course"])
def test_the_second_family_refuses_the_main_familys_options(tmp_path, flag, capsys):
    from PancreasSegLib.cli import main

    assert main(["phantom", str(tmp_path / "Dataset993_No"), "--family", "second", flag]) == 2
    assert flag in capsys.readouterr().err


def test_the_gland_course_varies_and_its_neighbours_follow_it():
    tips, moved = [], []
    for seed in range(12):
        template = sample_anatomy(np.random.default_rng(seed))
        turned = sample_anatomy(np.random.default_rng(seed),
                                course=partial(variety.vary_course, rng=np.random.default_rng(100 + seed)))
        # the head stays, the tail tip goes elsewhere, and the spleen stays at the tail tip
        assert np.allclose(template.pancreas.points[0], turned.pancreas.points[0])
        tips.append(turned.pancreas.points[-1])
        moved.append(np.linalg.norm(turned.pancreas.points[-1] - template.pancreas.points[-1]))
        offset = np.asarray(turned.organs["spleen"]["center"]) - turned.pancreas.points[-1]
        assert 10 < offset[0] < 24 and 10 < offset[1] < 27
        assert np.allclose(template.organs["kidney_l"]["center"], turned.organs["kidney_l"]["center"])
    tips = np.array(tips)
    assert max(moved) > 15.0
    assert np.ptp(tips[:, 1]) > 20.0 and np.ptp(tips[:, 2]) > 20.0  # to the front and back, up and down


def test_a_varied_course_leaves_the_other_phantoms_alone():
    plain = [sitk.GetArrayFromImage(x) for x in make_phantom(4, preset="small", vary_anatomy=True)]
    off = [sitk.GetArrayFromImage(x) for x in make_phantom(4, preset="small", vary_anatomy=True, vary_course=False)]
    turned = [sitk.GetArrayFromImage(x) for x in make_phantom(4, preset="small", vary_course=True)]
    again = [sitk.GetArrayFromImage(x) for x in make_phantom(4, preset="small", vary_course=True)]
    assert all(np.array_equal(a, b) for a, b in zip(plain, off))
    assert all(np.array_equal(a, b) for a, b in zip(turned, again))
    assert not np.array_equal(turned[1], sitk.GetArrayFromImage(make_phantom(4, preset="small")[1]))
