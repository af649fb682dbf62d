"""DICOM SEG export: SNOMED-coded segments on the source series, read back with pydicom and highdicom."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
import SimpleITK as sitk
from curation_data import PATIENT_ID, make_case, write_dicom_series

from PancreasSegLib.cli import main
from PancreasSegLib.errors import InputError
from PancreasSegLib.outputs.dicom_seg import write_dicom_seg


@pytest.fixture
def series(tmp_path):
    image, label, _ = make_case(3, shape=(6, 10, 12))
    uid = write_dicom_series(tmp_path / "dicom", image, seed=3)
    path = tmp_path / "label.nii.gz"
    sitk.WriteImage(label, str(path))
    return tmp_path / "dicom", path, label, uid


def _per_source_pixels(seg, folder: Path) -> dict[float, np.ndarray]:
    """z position of each source slice -> its label (segment numbers) as the SEG holds it."""
    import pydicom

    out = {}
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[ds.SOPInstanceUID], combine_segments=True,
            assert_missing_frames_are_empty=True)
        out[float(ds.ImagePositionPatient[2])] = pixels[0]
    return out


def test_the_seg_reads_back_with_coded_segments_and_the_same_pixels(series, tmp_path):
    folder, label_path, label, uid = series
    out = tmp_path / "seg.dcm"
    summary = write_dicom_seg(label_path, folder, out, model={"name": "pancreas-phantom", "version": "1.2.0"})
    seg = hd.seg.segread(out)
    assert seg.Modality == "SEG" and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    pancreas, tumor = seg.get_segment_description(1), seg.get_segment_description(2)
    assert (pancreas.segment_label, pancreas.segmented_property_type.value,
            pancreas.segmented_property_category.value) == ("Pancreas", "15776009", "123037004")
    assert (tumor.segmented_property_type.value, tumor.anatomic_regions[0].value) == ("108369006", "15776009")
    assert pancreas.algorithm_identification[0].AlgorithmName == "pancreas-phantom"
    assert pancreas.algorithm_identification[0].AlgorithmVersion == "1.2.0"
    array = sitk.GetArrayFromImage(label)
    expected_frames = int(np.any(array == 1, axis=(1, 2)).sum() + np.any(array == 2, axis=(1, 2)).sum())
    assert summary["frames"] == int(seg.NumberOfFrames) == expected_frames
    for z, pixels in _per_source_pixels(seg, folder).items():
        k = label.TransformPhysicalPointToIndex((label.GetOrigin()[0], label.GetOrigin()[1], z))[2]
        assert np.array_equal(pixels, array[k]), f"slice {k}"
    assert seg.PatientID == PATIENT_ID  # a SEG belongs to its patient's study, unlike the curated data


def test_a_label_on_another_grid_is_resampled_onto_the_series(series, tmp_path):
    folder, _, label, _ = series
    finer = sitk.Resample(label, [2 * s for s in label.GetSize()], sitk.Transform(), sitk.sitkNearestNeighbor,
                          label.GetOrigin(), [s / 2 for s in label.GetSpacing()], label.GetDirection(), 0,
                          sitk.sitkUInt8)
    summary = write_dicom_seg(finer, folder, tmp_path / "seg.dcm")
    assert summary["resampled"] and [s["label"] for s in summary["segments"]] == ["Pancreas", "Pancreatic tumor"]


def test_undeclared_values_and_empty_labels_are_refused_without_output(series, tmp_path):
    folder, _, label, _ = series
    array = sitk.GetArrayFromImage(label)
    array[0, 0, 0] = 9
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(label)
    with pytest.raises(InputError, match="undeclared label value"):
        write_dicom_seg(bad, folder, tmp_path / "seg.dcm")
    with pytest.raises(InputError, match="empty"):
        write_dicom_seg(label * 0, folder, tmp_path / "seg.dcm")
    assert list(tmp_path.glob("*seg*")) == []


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
def test_dciodvfy_finds_no_error_or_warning_in_the_seg(series, tmp_path):
    folder, label_path, _, _ = series
    write_dicom_seg(label_path, folder, tmp_path / "seg.dcm")
    proc = subprocess.run(["dciodvfy", str(tmp_path / "seg.dcm")], check=False, capture_output=True, text=True,
                          timeout=60)
    report = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("Error", "Warning"))]
    assert report == []


def test_cli_export_dicom_seg_writes_the_file_and_a_json_summary(series, tmp_path, capsys):
    folder, label_path, _, _ = series
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text(json.dumps({"name": "bundle-x", "version": "3"}))
    code = main(["export-dicom-seg", "--seg", str(label_path), "--dicom", str(folder), "-o",
                 str(tmp_path / "out.dcm"), "--model", str(bundle), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["segments"][0] == {"number": 1, "label": "Pancreas", "value": 1}
    assert hd.seg.segread(tmp_path / "out.dcm").get_segment_description(1).algorithm_identification[0] \
        .AlgorithmName == "bundle-x"
    assert main(["export-dicom-seg", "--seg", str(label_path), "--dicom", str(tmp_path / "none"), "-o",
                 str(tmp_path / "x.dcm")]) == 2
