"""``pancreasseg convert msd|nih`` on tiny fake datasets written in the real layouts."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from PancreasSegLib.cli import main
from PancreasSegLib.datasets.convert import convert_msd, convert_nih
from PancreasSegLib.datasets.nnunet import list_cases
from PancreasSegLib.errors import InputError

SHAPE = (8, 16, 16)  # z, y, x
SPACING = (0.8, 0.8, 2.5)
ORIGIN = (-6.0, -6.0, 100.0)


# ---------------------------------------------------------------- MSD Task07


def msd_case(seed, label_values=(1, 2)):
    rng = np.random.default_rng(seed)
    ct = sitk.GetImageFromArray(rng.integers(-1000, 400, SHAPE).astype(np.int16))
    label = np.zeros(SHAPE, np.uint8)
    label[2:6, 4:10, 5:12] = label_values[0]
    label[3:5, 5:7, 6:8] = label_values[1]
    label = sitk.GetImageFromArray(label)
    for image in (ct, label):
        image.SetSpacing(SPACING)
        image.SetOrigin(ORIGIN)
    return ct, label


@pytest.fixture
def msd(tmp_path):
    src = tmp_path / "Task07_Pancreas"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (src / sub).mkdir(parents=True)
    training = []
    for i in (1, 2):
        ct, label = msd_case(i)
        sitk.WriteImage(ct, str(src / "imagesTr" / f"pancreas_00{i}.nii.gz"))
        sitk.WriteImage(label, str(src / "labelsTr" / f"pancreas_00{i}.nii.gz"))
        (src / "imagesTr" / f"._pancreas_00{i}.nii.gz").write_bytes(b"\x00\x05\x16\x07Mac OS X resource fork")
        (src / "labelsTr" / f"._pancreas_00{i}.nii.gz").write_bytes(b"\x00\x05\x16\x07Mac OS X resource fork")
        training.append({"image": f"./imagesTr/pancreas_00{i}.nii.gz", "label": f"./labelsTr/pancreas_00{i}.nii.gz"})
    (src / "dataset.json").write_text(json.dumps({
        "name": "Pancreas", "labels": {"0": "background", "1": "pancreas", "2": "cancer"},
        "modality": {"0": "CT"}, "numTraining": 2, "training": training, "test": []}))
    return src


def test_msd_converts_to_the_nnunet_layout_and_ignores_resource_forks(msd, tmp_path):
    out = tmp_path / "Dataset007_Pancreas"
    assert main(["convert", "msd", str(msd), str(out), "--quiet"]) == 0
    cases = list_cases(out)
    assert [c.case_id for c in cases] == ["pancreas_001", "pancreas_002"]
    assert cases[0].image.read_bytes() == (msd / "imagesTr" / "pancreas_001.nii.gz").read_bytes()
    label = sitk.ReadImage(str(cases[1].label))
    truth = sitk.ReadImage(str(msd / "labelsTr" / "pancreas_002.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(label), sitk.GetArrayFromImage(truth))
    assert label.GetPixelID() == sitk.sitkUInt8 and label.GetOrigin() == truth.GetOrigin()
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["numTraining"] == 2 and meta["labels"] == {"background": 0, "pancreas": 1, "tumor": 2}
    assert not any(p.name.startswith(".") for p in (out / "imagesTr").iterdir())


def test_msd_without_dataset_json_lists_its_folders(msd, tmp_path):
    (msd / "dataset.json").unlink()
    assert convert_msd(msd, tmp_path / "out") == ["pancreas_001", "pancreas_002"]


def test_msd_label_with_an_unknown_value_is_refused_naming_the_case(msd, tmp_path, capsys):
    _, label = msd_case(2, label_values=(1, 3))
    sitk.WriteImage(label, str(msd / "labelsTr" / "pancreas_002.nii.gz"))
    assert main(["convert", "msd", str(msd), str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pancreas_002" in err and "label values 3" in err


def test_msd_label_on_another_grid_is_refused(msd, tmp_path):
    _, label = msd_case(1)
    label.SetSpacing((0.9, 0.8, 2.5))
    sitk.WriteImage(label, str(msd / "labelsTr" / "pancreas_001.nii.gz"))
    with pytest.raises(InputError, match="pancreas_001.*spacing"):
        convert_msd(msd, tmp_path / "out")


def test_msd_conversion_resumes_and_skips_converted_cases(msd, tmp_path):
    out = tmp_path / "out"
    convert_msd(msd, out)
    first = (out / "labelsTr" / "pancreas_001.nii.gz").stat().st_mtime_ns
    (out / "labelsTr" / "pancreas_002.nii.gz").unlink()  # as if interrupted before this file
    lines = []
    assert convert_msd(msd, out, log=lines.append) == ["pancreas_001", "pancreas_002"]
    assert "skipped" in lines[0] and lines[1].endswith("converted")
    assert (out / "labelsTr" / "pancreas_001.nii.gz").stat().st_mtime_ns == first


# ---------------------------------------------------------------- NIH Pancreas-CT


def nih_truth(organ=True):
    """A fake abdomen in HU: air around a fat body, a bone block at the back, and an off-centre organ."""
    ct = np.full(SHAPE, -1000, np.int16)
    z, y, x = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    ct[((y - 8) / 7.5) ** 2 + ((x - 8) / 7.5) ** 2 <= 1] = -100
    ct[:, 13:15, 7:10] = 500
    label = np.zeros(SHAPE, np.uint8)
    label[1:3, 9:12, 3:7] = 1
    if organ:
        ct[label > 0] = 45
    return ct, label


def write_dicom_series(ct_zyx, folder, uid):
    """One CT slice per file, with the tags a reader needs to assemble the series."""
    folder.mkdir(parents=True)
    image = sitk.GetImageFromArray(ct_zyx)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {"0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0018": f"{uid}.{k + 1}",
                "0020|000d": f"{uid}.0", "0020|000e": uid, "0020|0013": str(k + 1),
                "0020|0032": "\\".join(f"{p:.3f}" for p in position), "0020|0037": "1\\0\\0\\0\\1\\0",
                "0028|0030": f"{SPACING[1]}\\{SPACING[0]}", "0018|0050": str(SPACING[2]),
                # The writer stores (HU - intercept) / slope, the reader gives HU back.
                "0028|1052": "-1024", "0028|1053": "1", "0028|1054": "HU"}
        for tag, value in tags.items():
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"1-{k + 1:03d}.dcm"))
        writer.Execute(plane)


def write_flipped_label(label_zyx, path):
    """The label as the NIH files are reported to come: voxels reversed along y and z, a header of its own."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(label_zyx[::-1, ::-1, :]))
    image.SetSpacing(SPACING)
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    image.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(image, str(path))


@pytest.fixture
def nih(tmp_path):
    src = tmp_path / "download"
    labels = src / "TCIA_pancreas_labels-02-05-2017"
    labels.mkdir(parents=True)
    ct, label = nih_truth()
    for number in ("0001", "0002"):
        write_dicom_series(ct, src / "Pancreas-CT" / f"PANCREAS_{number}" / "11-24-2015-PANCREAS0001-Pancreas-1"
                           / "Pancreas-99667", uid=f"1.2.826.0.1.3680043.2.1125.{int(number)}")
        write_flipped_label(label, labels / f"label{number}.nii.gz")
    return src


def test_nih_labels_in_flipped_orientation_land_on_the_organ(nih, tmp_path):
    out = tmp_path / "Dataset082_NIH"
    assert main(["convert", "nih", str(nih), str(out), "--quiet"]) == 0
    cases = list_cases(out)
    assert [c.case_id for c in cases] == ["nih_pancreas_0001", "nih_pancreas_0002"]
    ct_truth, label_truth = nih_truth()
    image, label = sitk.ReadImage(str(cases[0].image)), sitk.ReadImage(str(cases[0].label))
    assert np.array_equal(sitk.GetArrayFromImage(image), ct_truth)
    assert np.array_equal(sitk.GetArrayFromImage(label), label_truth)
    for getter in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert np.allclose(getattr(label, getter)(), getattr(image, getter)())
    assert np.allclose(image.GetSpacing(), SPACING) and np.allclose(image.GetOrigin(), ORIGIN)
    note = json.loads((out / "dataset.json").read_text(encoding="utf-8"))["conversion"]["nih_pancreas_0001"]
    assert "flipped along y+z" in note


def test_nih_label_with_a_correct_header_is_placed_by_its_header(nih, tmp_path):
    _, label = nih_truth()
    stored = sitk.GetImageFromArray(np.ascontiguousarray(label[:, ::-1, :]))  # rows stored bottom-up ...
    stored.SetSpacing(SPACING)
    stored.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))  # ... and the header says so
    stored.SetOrigin((ORIGIN[0], ORIGIN[1] + 15 * SPACING[1], ORIGIN[2]))
    path = next(nih.rglob("label0001.nii.gz"))
    sitk.WriteImage(stored, str(path))
    convert_nih(nih, tmp_path / "out")
    converted = sitk.ReadImage(str(tmp_path / "out" / "labelsTr" / "nih_pancreas_0001.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(converted), label)
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text(encoding="utf-8"))
    assert "header" in meta["conversion"]["nih_pancreas_0001"]


def test_nih_label_of_another_size_is_refused_naming_the_case(nih, tmp_path, capsys):
    path = next(nih.rglob("label0002.nii.gz"))
    sitk.WriteImage(sitk.Image([16, 16, 5], sitk.sitkUInt8) + 1, str(path))
    assert main(["convert", "nih", str(nih), str(tmp_path / "out"), "--quiet"]) == 2
    assert "nih_pancreas_0002" in capsys.readouterr().err
    lines = []
    assert convert_nih(nih, tmp_path / "out2", skip_bad=True, log=lines.append) == ["nih_pancreas_0001"]
    assert any("SKIPPED" in line and "nih_pancreas_0002" in line for line in lines)


def test_nih_label_that_fits_no_placement_is_refused(nih, tmp_path):
    ct, label = nih_truth(organ=False)  # the labelled region is fat in the CT: no placement is plausible
    folder = nih / "Pancreas-CT" / "PANCREAS_0001"
    for dcm in folder.rglob("*.dcm"):
        os.unlink(dcm)
    for series in [p for p in folder.rglob("*") if p.is_dir()][::-1]:
        series.rmdir()
    write_dicom_series(ct, folder / "study" / "series", uid="1.2.826.0.1.3680043.2.1125.77")
    with pytest.raises(InputError, match="nih_pancreas_0001.*cannot tell how the label lies"):
        convert_nih(nih, tmp_path / "out")


def test_nih_label_with_values_other_than_one_is_refused(nih, tmp_path):
    _, label = nih_truth()
    write_flipped_label(label * 2, next(nih.rglob("label0001.nii.gz")))
    with pytest.raises(InputError, match="nih_pancreas_0001.*label values 2"):
        convert_nih(nih, tmp_path / "out")
