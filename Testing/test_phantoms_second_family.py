"""The second phantom family: determinism, label, densities, anatomy, independence from the first family, CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from PancreasSegLib.phantoms.second_family import make_second_family_phantom

ROOT = Path(__file__).resolve().parents[1]
PHANTOMS = ROOT / "PancreasSegLib" / "phantoms"
FIRST_FAMILY = {"anatomy", "render", "shapes", "geometry", "generator"}


@pytest.fixture(scope="module")
def case():
    return make_second_family_phantom(5, preset="small")


def _array(image):
    return sitk.GetArrayFromImage(image)


def _centroid(label, mask):
    """Physical (x, y, z) LPS centroid of ``mask`` (a (z, y, x) array on ``label``'s grid)."""
    idx = np.argwhere(mask).mean(axis=0)[::-1]
    return np.array(label.TransformContinuousIndexToPhysicalPoint(idx.tolist()))


def test_the_same_seed_gives_the_same_voxels_and_another_seed_does_not():
    a, la = make_second_family_phantom(17, preset="small")
    b, lb = make_second_family_phantom(17, preset="small")
    c, _ = make_second_family_phantom(18, preset="small")
    assert np.array_equal(_array(a), _array(b)) and np.array_equal(_array(la), _array(lb))
    assert a.GetOrigin() == b.GetOrigin()
    assert a.GetSize() != c.GetSize() or not np.array_equal(_array(a), _array(c))


def test_image_and_label_share_one_axial_lps_grid(case):
    image, label = case
    assert image.GetPixelID() == sitk.sitkInt16 and label.GetPixelID() == sitk.sitkUInt8
    assert image.GetSize() == label.GetSize()
    assert np.allclose(image.GetSpacing(), label.GetSpacing()) and np.allclose(image.GetOrigin(), label.GetOrigin())
    assert image.GetDirection() == label.GetDirection() == (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    assert all(2.2 < s < 2.8 for s in image.GetSpacing())
    assert max(image.GetSize()) < 200


def test_label_is_one_plausible_gland_of_value_one(case):
    image, label = case
    values = _array(label)
    assert set(np.unique(values)) == {0, 1}
    millilitres = values.sum() * np.prod(image.GetSpacing()) / 1000.0
    assert 15 < millilitres < 200


def test_pancreas_is_soft_tissue_far_above_fat_and_below_bone(case):
    image, label = case
    hu, gland = _array(image).astype(float), _array(label) > 0
    inner = sitk.GetArrayFromImage(sitk.BinaryErode(label, [1, 1, 1])) > 0
    median = np.median(hu[inner if inner.sum() > 20 else gland])
    fat = np.median(hu[(hu > -200) & (hu < -40)])
    assert -130 < fat < -60
    assert median - fat > 80
    assert 0 < median < 250


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gland_lies_in_front_of_the_spine_with_the_head_right_of_the_tail(seed):
    image, label = make_second_family_phantom(seed, preset="small")
    gland = _array(label) > 0
    hu = _array(image)
    centre = _centroid(label, gland)
    xs = np.argwhere(gland)[:, 2]
    right_end = gland & (np.arange(gland.shape[2]) <= np.percentile(xs, 15))[None, None, :]
    left_end = gland & (np.arange(gland.shape[2]) >= np.percentile(xs, 85))[None, None, :]
    head, tail = _centroid(label, right_end), _centroid(label, left_end)
    assert tail[0] - head[0] > 60  # LPS: x grows to the patient's left
    # The gland lies in front of the spine: the widest bright (bone) row near the body's midline in its slice.
    k = int(round(label.TransformPhysicalPointToContinuousIndex(centre.tolist())[2]))
    columns = np.nonzero((hu[k] > -400).any(axis=0))[0]
    middle = 0.5 * (columns[0] + columns[-1])
    band = np.abs(np.arange(gland.shape[2]) - middle) * label.GetSpacing()[0] < 30
    spine_row = int(np.argmax(((hu[k] > 150) & band[None, :]).sum(axis=1)))
    spine_y = label.GetOrigin()[1] + spine_row * label.GetSpacing()[1]
    assert centre[1] < spine_y - 25  # LPS: y grows to the back


def test_second_family_imports_nothing_of_the_first():
    files = sorted(PHANTOMS.glob("second_family*.py"))
    assert len(files) >= 2
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                names = [module] + ([f"{module}.{alias.name}" for alias in node.names]
                                    if module.endswith("phantoms") or node.level else [])
            for name in names:
                parts = name.split(".")
                hit = any(a == "phantoms" and b in FIRST_FAMILY for a, b in zip(parts, parts[1:]))
                assert not hit and not (name.split(".")[-1] in FIRST_FAMILY and node_is_relative(node)), \
                    f"{path.name} imports {name}"


def node_is_relative(node) -> bool:
    return isinstance(node, ast.ImportFrom) and bool(node.level)


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="preset"):
        make_second_family_phantom(0, preset="huge")


def test_phantom_command_makes_a_valid_second_family_dataset(tmp_path, capsys):
    from PancreasSegLib.checks.dataset import check_training_dataset
    from PancreasSegLib.cli import main
    from PancreasSegLib.datasets.nnunet import read_dataset_json

    out = tmp_path / "Dataset902_PancreasPhantomSecond"
    assert main(["phantom", str(out), "--family", "second", "--cases", "2", "--seed", "7", "--size", "small"]) == 0
    cases = check_training_dataset(out)
    assert [c.case_id for c in cases] == ["second_00007", "second_00008"]
    meta = read_dataset_json(out)
    assert meta["phantom_family"] == "second" and "second family" in meta["description"]
    assert "never trained on" in meta["description"]
    image, label = make_second_family_phantom(7, preset="small")
    assert np.array_equal(_array(sitk.ReadImage(str(cases[0].label))), _array(label))
    # Mixing the families in one dataset is refused.
    assert main(["phantom", str(out), "--cases", "1", "--seed", "9", "--size", "small"]) == 2
    assert "second family" in capsys.readouterr().err
