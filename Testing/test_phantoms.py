"""Synthetic abdominal CT phantoms: determinism, labels, geometry, anatomy that makes the task hard."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from PancreasSegLib.evaluation.baselines import similar_neighbour_fraction
from PancreasSegLib.phantoms.generator import make_phantom, phantom_geometry

RAS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def small_case():
    return make_phantom(3, preset="small")


def _array(image):
    return sitk.GetArrayFromImage(image)


def test_the_same_seed_gives_the_same_voxels_and_geometry():
    (a, la), (b, lb) = make_phantom(11, preset="small"), make_phantom(11, preset="small")
    assert np.array_equal(_array(a), _array(b)) and np.array_equal(_array(la), _array(lb))
    assert (a.GetSize(), a.GetSpacing(), a.GetOrigin(), a.GetDirection()) == \
        (b.GetSize(), b.GetSpacing(), b.GetOrigin(), b.GetDirection())


def test_different_seeds_give_different_phantoms():
    a, _ = make_phantom(1, preset="small")
    b, _ = make_phantom(2, preset="small")
    assert a.GetSize() != b.GetSize() or not np.array_equal(_array(a), _array(b))


def test_image_is_int16_hu_and_label_uint8_on_the_same_grid(small_case):
    image, label = small_case
    assert image.GetPixelID() == sitk.sitkInt16 and label.GetPixelID() == sitk.sitkUInt8
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(image, get)() == getattr(label, get)()
    hu = _array(image)
    assert hu.min() >= -1024 and hu.max() > 300  # air outside, bone inside


def test_label_holds_only_background_pancreas_and_tumor():
    _, with_tumor = make_phantom(5, preset="small", tumor=True)
    _, without = make_phantom(5, preset="small", tumor=False)
    assert set(np.unique(_array(with_tumor))) == {0, 1, 2}
    assert set(np.unique(_array(without))) == {0, 1}


def test_forcing_the_tumor_leaves_the_rest_of_the_abdomen_unchanged():
    assert phantom_geometry(8, preset="small") == phantom_geometry(8, preset="small")
    _, a = make_phantom(8, preset="small", tumor=True)
    _, b = make_phantom(8, preset="small", tumor=False)
    assert a.GetSize() == b.GetSize()
    assert np.array_equal(_array(a) > 0, _array(b) > 0) or abs(int((_array(a) > 0).sum()) -
                                                               int((_array(b) > 0).sum())) < 0.2 * (_array(b) > 0).sum()


def test_drawn_geometry_covers_clinical_ranges_and_other_orientations():
    geoms = [phantom_geometry(seed) for seed in range(60)]
    inplane = [g.spacing[0] for g in geoms]
    slices = [g.spacing[2] for g in geoms]
    counts = [g.size[2] for g in geoms]
    assert 0.6 <= min(inplane) and max(inplane) <= 1.0 and max(inplane) - min(inplane) > 0.25
    assert 0.8 <= min(slices) and max(slices) <= 3.0 and len(set(slices)) >= 4
    assert min(counts) >= 80 and max(counts) >= 250
    assert all(g.size[0] <= 512 and g.size[1] <= 512 for g in geoms)
    directions = [np.reshape(g.direction, (3, 3)) for g in geoms]
    assert any(np.allclose(d, np.diag([-1, -1, 1])) for d in directions)
    assert any(d[2, 2] < 0 for d in directions)
    assert any(not np.allclose(np.abs(d), np.round(np.abs(d))) for d in directions)  # a gantry tilt
    assert sum(np.allclose(d, np.eye(3)) for d in directions) > len(directions) / 3


def test_size_spacing_and_direction_can_be_chosen():
    image, label = make_phantom(4, size=(96, 80, 40), spacing=(3.0, 3.0, 4.0), direction=RAS)
    assert image.GetSize() == (96, 80, 40) and image.GetSpacing() == (3.0, 3.0, 4.0)
    assert image.GetDirection() == RAS and label.GetDirection() == RAS
    assert _array(label).any()


def test_bad_options_raise_value_error():
    with pytest.raises(ValueError, match="preset"):
        make_phantom(0, preset="huge")
    with pytest.raises(ValueError, match="spacing"):
        make_phantom(0, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="direction"):
        make_phantom(0, direction=(2.0, 0, 0, 0, 1, 0, 0, 0, 1))


@pytest.mark.parametrize("seed", [20, 21, 22])
def test_pancreas_volume_is_that_of_an_adult_gland(seed):
    image, label = make_phantom(seed, preset="small")
    ml = (_array(label) > 0).sum() * np.prod(image.GetSpacing()) / 1000.0
    assert 35.0 <= ml <= 130.0


def test_pancreas_touches_tissue_of_similar_density():
    # A fifth to a half of the gland's surface touches tissue within 30 HU of it (duodenum, jejunum,
    # stomach wall, unopacified vessels); the rest is fat, as in real scans.
    fractions = []
    for seed in range(30, 38):
        clean, label = make_phantom(seed, preset="small", noise=False)
        fractions.append(similar_neighbour_fraction(clean, label, tolerance=30.0))
    assert min(fractions) > 0.1 and np.mean(fractions) > 0.2


def test_noise_is_spatially_correlated_and_of_clinical_size():
    noisy, _ = make_phantom(6, preset="small")
    clean, _ = make_phantom(6, preset="small", noise=False)
    n = _array(noisy).astype(np.float32) - _array(clean).astype(np.float32)
    body = (_array(clean) > -500)[:, :, :-1]
    a, b = n[:, :, :-1][body], n[:, :, 1:][body]
    assert 5.0 < a.std() < 30.0
    assert np.corrcoef(a, b)[0, 1] > 0.05


@pytest.mark.parametrize("direction", [None, RAS, (1.0, 0, 0, 0, 1.0, 0, 0, 0, -1.0),
                                       (1.0, 0, 0, 0, 0.9848, -0.1736, 0, 0.1736, 0.9848)])
def test_label_lies_in_soft_tissue_of_the_body_in_physical_space(direction):
    image, label = make_phantom(9, preset="small", direction=direction, noise=False)
    idx = np.argwhere(_array(label) > 0).mean(axis=0)[::-1]  # (x, y, z) continuous index
    point = image.TransformContinuousIndexToPhysicalPoint(idx.tolist())
    value = image[image.TransformPhysicalPointToIndex(point)]
    assert -150 < value < 250
    # The same abdomen stored in another orientation puts the gland at the same physical place.
    ref_image, ref_label = make_phantom(9, preset="small", direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), noise=False)
    ref_idx = np.argwhere(_array(ref_label) > 0).mean(axis=0)[::-1]
    ref_point = ref_image.TransformContinuousIndexToPhysicalPoint(ref_idx.tolist())
    assert np.linalg.norm(np.subtract(point, ref_point)) < 3.0


def test_phantom_command_writes_an_nnunet_dataset(tmp_path, capsys):
    from PancreasSegLib.cli import main
    from PancreasSegLib.datasets.nnunet import list_cases, read_dataset_json

    out = tmp_path / "Dataset900_Phantom"
    assert main(["phantom", str(out), "--cases", "2", "--seed", "40", "--size", "small"]) == 0
    cases = list_cases(out)
    assert [c.case_id for c in cases] == ["phantom_00040", "phantom_00041"]
    meta = read_dataset_json(out)
    assert meta["numTraining"] == 2 and meta["labels"] == {"background": 0, "pancreas": 1, "tumor": 2}
    image, label = sitk.ReadImage(str(cases[0].image)), sitk.ReadImage(str(cases[0].label))
    assert image.GetSize() == label.GetSize() and np.allclose(image.GetOrigin(), label.GetOrigin())
    assert set(np.unique(_array(label))) <= {0, 1, 2}
    assert not list(out.rglob(".*tmp*"))
    # A second run adds cases to the same dataset.
    assert main(["phantom", str(out), "--cases", "1", "--seed", "42", "--size", "small", "--no-tumor"]) == 0
    assert read_dataset_json(out)["numTraining"] == 3


def test_phantom_command_refuses_a_folder_that_is_not_a_dataset(tmp_path, capsys):
    from PancreasSegLib.cli import main

    (tmp_path / "notes.txt").write_text("mine")
    assert main(["phantom", str(tmp_path), "--cases", "1", "--size", "small"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and str(tmp_path) in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert main(["phantom", str(tmp_path / "missing" / "ds"), "--cases", "1"]) == 2
    assert main(["phantom", str(tmp_path / "ds"), "--cases", "0"]) == 2
