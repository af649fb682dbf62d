"""A training dataset with a problem is refused before training, naming the first offending case."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from PancreasSegLib.checks.dataset import check_training_dataset, declared_label_values
from PancreasSegLib.datasets.nnunet import image_path, label_path, write_dataset_json
from PancreasSegLib.errors import InputError

CASES = ("case_a", "case_b", "case_c")


def volume(array, spacing=(0.8, 0.8, 2.5)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((1.0, 2.0, 3.0))
    return image


def write_case(folder, case_id, ct=None, label=None):
    if ct is None:
        ct = volume(np.random.default_rng(0).normal(40, 20, (6, 10, 12)).astype(np.float32))
    if label is None:
        array = np.zeros((6, 10, 12), np.uint8)
        array[2:4, 3:7, 3:8] = 1
        array[2, 4, 4] = 2
        label = volume(array)
    sitk.WriteImage(ct, str(image_path(folder, case_id)))
    if label is not False:
        sitk.WriteImage(label, str(label_path(folder, case_id)))


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "Dataset001_Test"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    for case in CASES:
        write_case(folder, case)
    write_dataset_json(folder, CASES)
    return folder


def test_a_good_dataset_passes_and_returns_its_cases(dataset):
    assert [c.case_id for c in check_training_dataset(dataset)] == list(CASES)


def test_a_missing_label_is_refused_naming_the_case(dataset):
    label_path(dataset, "case_b").unlink()
    with pytest.raises(InputError, match="case case_b has no label"):
        check_training_dataset(dataset)


def test_a_label_on_another_grid_is_refused_naming_the_case(dataset):
    write_case(dataset, "case_c", label=volume(np.zeros((6, 10, 12), np.uint8), spacing=(0.8, 0.8, 3.0)))
    with pytest.raises(InputError, match=r"label_?\S*case_c.*case case_c.*grid differs.*spacing"):
        check_training_dataset(dataset)


def test_an_undeclared_label_value_is_refused_naming_the_case(dataset):
    write_case(dataset, "case_a", label=volume(np.full((6, 10, 12), 3, np.uint8)))
    with pytest.raises(InputError, match="case case_a: label value\\(s\\) 3 not declared"):
        check_training_dataset(dataset)


def test_nan_in_an_image_is_refused_naming_the_case(dataset):
    array = np.zeros((6, 10, 12), np.float32)
    array[1, 2, 3] = np.nan
    write_case(dataset, "case_b", ct=volume(array))
    with pytest.raises(InputError, match="case case_b: the image holds 1 NaN"):
        check_training_dataset(dataset)


def test_an_empty_training_set_is_refused(dataset):
    for path in (dataset / "imagesTr").iterdir():
        path.unlink()
    with pytest.raises(InputError, match="has no training cases"):
        check_training_dataset(dataset)


def test_the_first_offending_case_in_id_order_is_named(dataset):
    label_path(dataset, "case_c").unlink()
    write_case(dataset, "case_b", label=volume(np.full((6, 10, 12), 7, np.uint8)))
    with pytest.raises(InputError, match="case_b"):
        check_training_dataset(dataset)


def test_declared_values_understand_nnunet_regions_and_msd_style():
    assert declared_label_values({"labels": {"background": 0, "pancreas": 1, "whole": [1, 2]}}) == {0, 1, 2}
    assert declared_label_values({"labels": {"0": "background", "1": "pancreas"}}) == {0, 1}


def test_nan_hidden_by_the_nifti_reader_is_found_in_the_file_itself(tmp_path):
    from PancreasSegLib.io.nifti import nifti_nonfinite

    array = np.zeros((6, 10, 12), np.float32)
    array[0, 0, 0] = np.nan
    array[5, 9, 11] = np.inf
    sitk.WriteImage(volume(array), str(tmp_path / "x.nii.gz"))
    assert nifti_nonfinite(tmp_path / "x.nii.gz", chunk_bytes=12) == 2
