"""Every DICOM oddity of the corpus through segment, export and export-dicom-seg: the right result or one line.

"The right result" is checked against the same volume written as NIfTI: the same voxels (within a lossy
codec's error), the same grid, and ``segment`` gives the same label map for both. A refusal is exit 2
with one line naming the input and the problem, and nothing written.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from bundle_doubles import make_random_bundle
from dicom_oddities import CASES, Oddity, gantry_tilt
from dicom_writer import PATIENT, ct_volume, write_series
from inference_doubles import test_config

from PancreasSegLib.cli import main
from PancreasSegLib.errors import InputError
from PancreasSegLib.io.grid import geometry, geometry_difference
from PancreasSegLib.io.volumes import read_volume


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_random_bundle(tmp_path_factory.mktemp("bundle") / "random", config=test_config())


@pytest.fixture(scope="module", params=list(CASES), ids=lambda name: name.replace(" ", "-"))
def case(request, tmp_path_factory) -> tuple[Oddity, Path, Path]:
    """The case, its reference volume as NIfTI, and a label on its grid (a box in the middle) as NIfTI."""
    root = tmp_path_factory.mktemp("oddity")
    oddity = CASES[request.param](root / "dicom")
    grid = oddity.reference if oddity.reference is not None else ct_volume()
    sitk.WriteImage(grid, str(root / "reference.nii.gz"))
    label = np.zeros(sitk.GetArrayViewFromImage(grid).shape, np.uint8)
    label[3:7, 10:22, 8:20] = 1
    label_image = sitk.GetImageFromArray(label)
    label_image.CopyInformation(grid)
    sitk.WriteImage(label_image, str(root / "label.nii.gz"))
    return oddity, root / "reference.nii.gz", root / "label.nii.gz"


def _run(command: str, oddity: Oddity, args: list[str], capsys) -> tuple[int, str]:
    series = ["--series", oddity.series] if oddity.series else []
    code = main([command, *args, *series])
    return code, capsys.readouterr().err


def _refused(code: int, err: str, command: str, oddity: Oddity) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"pancreasseg {command}: error: {oddity.path}"), err
    assert oddity.refusal(command) in lines[0]
    assert "Traceback" not in err


def test_the_series_reads_as_its_nifti_twin_or_is_refused(case):
    oddity, reference, _ = case
    if oddity.refusal("segment") is not None:
        return  # the refusals are asserted through the commands below
    image = read_volume(oddity.path, oddity.series)
    twin = sitk.ReadImage(str(reference))
    assert geometry_difference(geometry(image), geometry(twin)) is None
    difference = np.abs(sitk.GetArrayFromImage(image).astype(float) - sitk.GetArrayFromImage(twin))
    assert difference.max() <= oddity.tolerance


def test_segment_gives_the_labels_of_the_nifti_twin_or_refuses_in_one_line(case, bundle, tmp_path, capsys):
    oddity, reference, _ = case
    out = tmp_path / "out"
    out.mkdir()
    options = ["--model", str(bundle), "--allow-empty", "--device", "cpu", "--progress", "none"]
    code, err = _run("segment", oddity, [str(oddity.path), "-o", str(out / "seg.nii.gz"), *options], capsys)
    if oddity.refusal("segment") is not None:
        _refused(code, err, "segment", oddity)
        assert list(out.iterdir()) == []
        return
    assert code == 0, err
    label = sitk.ReadImage(str(out / "seg.nii.gz"))
    twin = sitk.ReadImage(str(reference))
    assert geometry_difference(geometry(label), geometry(twin)) is None
    if oddity.tolerance == 0:  # the same voxels: the same answer from the same model
        assert main(["segment", str(reference), "-o", str(out / "twin.nii.gz"), *options]) == 0
        assert np.array_equal(sitk.GetArrayFromImage(label), sitk.GetArrayFromImage(sitk.ReadImage(
            str(out / "twin.nii.gz"))))


def _written(folder: Path) -> list[tuple[Path, bytes]]:
    out = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            out.append((path, gzip.decompress(data) if path.name.endswith(".gz") else data))
    return out


def test_export_writes_the_volume_and_no_patient_data_or_refuses(case, tmp_path, capsys):
    oddity, reference, label = case
    dataset = tmp_path / "Dataset501_Curated"
    code, err = _run("export", oddity, ["--image", str(oddity.path), "--label", str(label), "--dataset",
                                        str(dataset), "--case-id", "case_0001"], capsys)
    if oddity.refusal("export") is not None:
        _refused(code, err, "export", oddity)
        assert not dataset.exists()
        return
    assert code == 0, err
    image = sitk.ReadImage(str(dataset / "imagesTr" / "case_0001_0000.nii.gz"))
    twin = sitk.ReadImage(str(reference))
    assert geometry_difference(geometry(image), geometry(twin)) is None
    assert np.abs(sitk.GetArrayFromImage(image).astype(float) - sitk.GetArrayFromImage(twin)).max() \
        <= oddity.tolerance
    files = _written(dataset)
    assert len(files) >= 4
    for value in PATIENT.values():
        for encoding in ("utf-8", "latin-1"):
            needles = {value.encode(encoding), *(part.encode(encoding) for part in value.split("^"))}
            for path, data in files:
                assert not any(n in data for n in needles), f"{value!r} in {path.relative_to(dataset)}"


def test_export_dicom_seg_references_the_sources_and_validates_or_refuses(case, tmp_path, capsys):
    oddity, _, label = case
    out = tmp_path / "seg.dcm"
    code, err = _run("export-dicom-seg", oddity, ["--seg", str(label), "--dicom", str(oddity.path), "-o",
                                                  str(out)], capsys)
    if oddity.refusal("export-dicom-seg") is not None:
        _refused(code, err, "export-dicom-seg", oddity)
        assert list(tmp_path.iterdir()) == []
        return
    assert code == 0, err
    seg = hd.seg.segread(out)
    dataset = pydicom.dcmread(out)
    assert dataset.Modality == "SEG"
    assert not any(element.tag.is_private for element in dataset.iterall())  # nothing private is copied
    sources = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in oddity.sources}
    referenced = [item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    assert sorted(referenced) == sorted(sources)
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(label)))
    for uid, path in sources.items():
        z = float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2])
        k = round((z - oddity.reference.GetOrigin()[2]) / oddity.reference.GetSpacing()[2])
        pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=[uid], combine_segments=True,
                                                   assert_missing_frames_are_empty=True)
        assert np.array_equal(pixels[0], array[k])
    if shutil.which("dciodvfy") is not None:
        proc = subprocess.run(["dciodvfy", str(out)], check=False, capture_output=True, text=True, timeout=60)
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
        assert errors == []


def test_positions_that_jitter_sideways_by_rounding_are_not_a_tilt(tmp_path):
    image = ct_volume()

    def edit(ds, k):
        ds.ImagePositionPatient[0] = f"{-24.0 + (0.05 if k % 2 else -0.05):.6f}"
    write_series(tmp_path / "dicom", image, edit=edit)
    assert read_volume(tmp_path / "dicom").GetSize() == image.GetSize()


def test_a_small_tilt_is_refused_once_it_moves_slices_off_their_place(tmp_path):
    oddity = gantry_tilt(2)(tmp_path / "dicom")  # 0.09 mm sideways per 2.5 mm slice, 0.8 mm over the stack
    with pytest.raises(InputError, match=oddity.refusal("segment")):
        read_volume(oddity.path)
