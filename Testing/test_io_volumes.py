"""Volume I/O: exact geometry round trips, DICOM series, and every kind of bad input."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import DIRECTIONS, make_image

from PancreasSegLib.errors import InputError
from PancreasSegLib.io.dicom import list_dicom_series
from PancreasSegLib.io.nifti import nifti_missing_bytes, nifti_transform_disagreement
from PancreasSegLib.io.volumes import read_ct, read_volume, write_labelmap, write_volume

STUDY_UID = "1.2.826.0.1.3680043.8.498.10"
SERIES_A = "1.2.826.0.1.3680043.8.498.11"
SERIES_B = "1.2.826.0.1.3680043.8.498.12"


def _geometry_image(direction_name: str, seed: int = 0) -> sitk.Image:
    """Anisotropic spacing and an origin far from 0 with many significant digits."""
    rng = np.random.default_rng(seed)
    spacing = tuple(float(s) for s in rng.uniform([0.5, 0.6, 0.8], [1.0, 1.1, 3.0]))
    origin = tuple(float(o) for o in rng.uniform(-350, 350, 3))
    return make_image(spacing=spacing, origin=origin, direction=DIRECTIONS[direction_name], seed=seed)


def _max_error(a: sitk.Image, b: sitk.Image) -> dict[str, float]:
    return {name: float(np.max(np.abs(np.subtract(getattr(a, f"Get{name}")(), getattr(b, f"Get{name}")()))))
            for name in ("Spacing", "Origin", "Direction")}


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- geometry round trips ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".nrrd", ".mha"])
def test_nrrd_and_mha_round_trips_keep_geometry_exactly(tmp_path, direction_name, ext):
    image = _geometry_image(direction_name)
    back = read_volume(write_volume(image, tmp_path / f"ct{ext}"))
    assert back.GetSize() == image.GetSize()
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))
    errors = _max_error(back, image)
    if ext == ".mha" or direction_name != "oblique":
        assert errors == {"Spacing": 0.0, "Origin": 0.0, "Direction": 0.0}
    else:
        # NRRD stores direction x spacing; splitting it again on reading costs a few ulp, no more.
        assert errors["Origin"] == 0.0
        assert max(errors.values()) < 1e-14


@pytest.mark.parametrize("ext", [".nii.gz", ".nii"])
def test_nifti_round_trip_keeps_geometry_to_float32_precision(tmp_path, direction_name, ext):
    image = _geometry_image(direction_name)
    back = read_volume(write_volume(image, tmp_path / f"ct{ext}"))
    assert back.GetSize() == image.GetSize()
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))
    # NIfTI holds pixdim, qoffset and the quaternion in float32: relative precision 6e-8.
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), rtol=1e-6, atol=0)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), rtol=0, atol=1e-6)
    if direction_name != "oblique":
        assert _max_error(back, image)["Direction"] == 0.0


def test_a_grid_read_from_nifti_survives_writing_it_again(tmp_path, direction_name):
    first = read_volume(write_volume(_geometry_image(direction_name), tmp_path / "in.nii.gz"))
    second = read_volume(write_labelmap(sitk.Cast(first > 0, sitk.sitkUInt8), tmp_path / "out.nii.gz"))
    errors = _max_error(second, first)
    assert errors["Spacing"] == 0.0 and errors["Origin"] == 0.0
    assert errors["Direction"] < 1e-7  # oblique: ITK re-orthonormalises the float32 matrix


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha"])
def test_labelmap_round_trip_keeps_values_and_grid(tmp_path, direction_name, ext):
    image = _geometry_image(direction_name)
    label = sitk.Cast(image > 500, sitk.sitkUInt8) + sitk.Cast(image > 900, sitk.sitkUInt8)
    back = read_volume(write_labelmap(label, tmp_path / f"label{ext}"))
    assert back.GetPixelID() == sitk.sitkUInt8
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(label))
    np.testing.assert_allclose(back.GetOrigin(), label.GetOrigin(), rtol=1e-6, atol=1e-6)


def test_nifti_time_axis_of_length_one_is_dropped(tmp_path):
    volume = make_image()
    for ext in (".nii.gz", ".nrrd"):
        path = tmp_path / f"t1{ext}"
        sitk.WriteImage(sitk.JoinSeries([volume]), str(path))
        image = read_volume(path)
        assert image.GetDimension() == 3 and image.GetSize() == volume.GetSize()


def test_read_ct_gives_float32(tmp_path):
    image = read_ct(write_volume(make_image(), tmp_path / "ct.nrrd"))
    assert image.GetPixelID() == sitk.sitkFloat32


# --- DICOM ---------------------------------------------------------------------------------------------------------


def _write_dicom_series(folder: Path, hu: np.ndarray, spacing, origin, direction, uid: str, slope=1.0,
                        intercept=-1024.0, description="CT ABDOMEN") -> sitk.Image:
    """One file per slice; GDCM stores the float HU as int16 through the given rescale slope/intercept."""
    folder.mkdir(exist_ok=True)
    volume = sitk.GetImageFromArray(hu.astype(np.float32))
    volume.SetSpacing(spacing)
    volume.SetOrigin(origin)
    volume.SetDirection(direction)
    d = direction
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(hu.shape[0]):
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT", "0020|000d": STUDY_UID, "0020|000e": uid, "0008|0018": f"{uid}.{k + 1}",
            "0008|103e": description, "0020|0013": str(k + 1), "0018|0050": f"{spacing[2]:g}",
            "0020|0032": "\\".join(f"{v:.10g}" for v in position),
            "0020|0037": "\\".join(f"{v:.10g}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
            "0028|1053": f"{slope:g}", "0028|1052": f"{intercept:g}",
            "0028|0100": "16", "0028|0101": "16", "0028|0102": "15", "0028|0103": "1",
        }
        slice_ = volume[:, :, k]
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid.rsplit('.', 1)[1]}_{k:03d}.dcm"))
        writer.Execute(slice_)
    return volume


@pytest.fixture
def hu():
    return np.random.default_rng(3).integers(-1000, 1500, (5, 8, 10)).astype(np.float32)


def test_dicom_series_is_read_with_its_geometry_and_hounsfield_units(tmp_path, hu):
    written = _write_dicom_series(tmp_path / "dcm", hu, (0.7, 0.8, 2.5), (-100.5, 50.25, 300.0),
                                  DIRECTIONS["oblique"], SERIES_A)
    image = read_ct(tmp_path / "dcm")
    assert image.GetSize() == written.GetSize()
    assert np.array_equal(sitk.GetArrayViewFromImage(image), hu)
    # Positions and orientations are decimal strings in DICOM (10 digits here).
    np.testing.assert_allclose(image.GetSpacing(), written.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), written.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), written.GetDirection(), atol=1e-6)


def test_dicom_folder_with_two_series_needs_a_choice(tmp_path, hu):
    folder = tmp_path / "dcm"
    _write_dicom_series(folder, hu, (0.7, 0.8, 2.5), (0, 0, 0), DIRECTIONS["LPS"], SERIES_A)
    _write_dicom_series(folder, hu, (0.7, 0.8, 2.5), (0, 0, 0), DIRECTIONS["LPS"], SERIES_B, slope=0.5,
                        intercept=-1000.0, description="second")
    assert sorted(list_dicom_series(folder)) == [SERIES_A, SERIES_B]
    with pytest.raises(InputError) as error:
        read_volume(folder)
    message = str(error.value)
    assert str(folder) in message and SERIES_A in message and SERIES_B in message and "--series" in message
    chosen = read_ct(folder, series=SERIES_B)
    assert np.array_equal(sitk.GetArrayViewFromImage(chosen), hu)
    with pytest.raises(InputError, match="has no DICOM series 9.9.9"):
        read_volume(folder, series="9.9.9")


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path, hu):
    folder = tmp_path / "dcm"
    _write_dicom_series(folder, np.concatenate([hu, hu]), (0.7, 0.8, 2.5), (0, 0, 0), DIRECTIONS["LPS"], SERIES_A)
    os.remove(folder / "11_004.dcm")
    with pytest.raises(InputError, match="not evenly spaced"):
        read_volume(folder)


# --- bad input ------------------------------------------------------------------------------------------------------


def _assert_input_error_names(path: Path, match: str) -> None:
    with pytest.raises(InputError, match=match) as error:
        read_volume(path)
    assert error.value.path == str(path)
    assert "\n" not in str(error.value)


def test_missing_file_is_an_input_error(tmp_path):
    _assert_input_error_names(tmp_path / "nope.nii.gz", "no such file")


@pytest.mark.parametrize("ext", [".nii.gz", ".nii"])
def test_truncated_nifti_is_an_input_error_not_a_zero_filled_volume(tmp_path, ext):
    full = write_volume(make_image(shape_zyx=(20, 30, 40)), tmp_path / f"full{ext}")
    data = full.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    _assert_input_error_names(cut, "truncated")
    assert nifti_missing_bytes(full) == 0


def _patched_nifti(source: Path, target: Path, sform_shift_mm: float = 0.0, sform_code: int | None = None) -> Path:
    # A NIfTI-1 header with its sform moved along x (srow_x[3]) and/or its sform_code replaced.
    import struct

    header = bytearray(source.read_bytes())
    assert struct.unpack("<i", header[:4])[0] == 348
    (tx,) = struct.unpack("<f", header[292:296])
    header[292:296] = struct.pack("<f", tx + sform_shift_mm)
    if sform_code is not None:
        header[254:256] = struct.pack("<h", sform_code)
    target.write_bytes(bytes(header))
    return target


def _tilted(axis: int, degrees: float) -> tuple[float, ...]:
    # A rotation about one LPS axis: in NIfTI's RAS this is close to a half turn, where the qform's
    # implied quaternion component is the square root of a rounding error.
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [k for k in range(3) if k != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return tuple(m.ravel())


@pytest.mark.parametrize("direction", [*(DIRECTIONS[n] for n in sorted(DIRECTIONS)), _tilted(0, 7.3),
                                       _tilted(1, -12.0), _tilted(2, 0.01)])
def test_nifti_whose_qform_and_sform_disagree_is_refused(tmp_path, direction):
    image = make_image(spacing=(0.93, 0.93, 2.0), origin=(239.4, 197.9, -405.5), direction=direction)
    source = write_volume(image, tmp_path / "ct.nii")
    # The two written by ITK agree (up to the float32 quaternion's precision), on every orientation.
    assert nifti_transform_disagreement(source) < 0.01
    assert read_volume(source).GetSize() == image.GetSize()
    moved = _patched_nifti(source, tmp_path / "moved.nii", sform_shift_mm=5.0)
    assert nifti_transform_disagreement(moved) == pytest.approx(5.0, abs=0.01)
    _assert_input_error_names(moved, "qform and sform place the volume up to 5 mm apart")
    # With the sform switched off only the qform places the volume: nothing is ambiguous.
    only_qform = _patched_nifti(source, tmp_path / "qform.nii", sform_shift_mm=5.0, sform_code=0)
    assert nifti_transform_disagreement(only_qform) == 0.0
    assert read_volume(only_qform).GetSize() == image.GetSize()


def test_multi_member_gzip_nifti_is_complete(tmp_path):
    data = gzip.decompress(write_volume(make_image(), tmp_path / "ct.nii.gz").read_bytes())
    path = tmp_path / "bgzip.nii.gz"
    path.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    assert nifti_missing_bytes(path) == 0
    assert read_volume(path).GetSize() == make_image().GetSize()


def test_truncated_nrrd_and_mha_are_input_errors(tmp_path):
    for ext in (".nrrd", ".mha"):
        data = write_volume(make_image(shape_zyx=(20, 30, 40)), tmp_path / f"full{ext}").read_bytes()
        cut = tmp_path / f"cut{ext}"
        cut.write_bytes(data[: len(data) // 2])
        _assert_input_error_names(cut, "truncated")


def test_garbage_and_text_files_are_input_errors(tmp_path):
    garbage = tmp_path / "garbage.nrrd"
    garbage.write_bytes(np.random.default_rng(0).bytes(500))
    _assert_input_error_names(garbage, "not an image file")
    text = tmp_path / "notes.txt"
    text.write_text("patient notes\n")
    _assert_input_error_names(text, "not an image file")
    empty = tmp_path / "empty.nii.gz"
    empty.touch()
    _assert_input_error_names(empty, "empty")


def test_library_chatter_does_not_reach_stderr(tmp_path, capfd):
    data = write_volume(make_image(shape_zyx=(20, 30, 40)), tmp_path / "full.mha").read_bytes()
    (tmp_path / "cut.mha").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError):
        read_volume(tmp_path / "cut.mha")
    assert capfd.readouterr().err == ""


def test_2d_4d_and_vector_images_are_input_errors(tmp_path):
    flat = tmp_path / "slice.nii.gz"
    sitk.WriteImage(make_image()[:, :, 0], str(flat))
    _assert_input_error_names(flat, "not a 3D image")
    movie = tmp_path / "dynamic.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([make_image(), make_image(seed=1)]), str(movie))
    _assert_input_error_names(movie, "4D image")
    vector = tmp_path / "vector.nrrd"
    sitk.WriteImage(sitk.Compose([make_image()] * 3), str(vector))
    _assert_input_error_names(vector, "not a scalar image")
    rgb = tmp_path / "photo.png"
    sitk.WriteImage(sitk.Compose([sitk.Cast(make_image()[:, :, 0] > 0, sitk.sitkUInt8)] * 3), str(rgb))
    _assert_input_error_names(rgb, "not a 3D image|not a scalar image")


def test_empty_folder_is_an_input_error(tmp_path):
    _assert_input_error_names(tmp_path, "no DICOM series")


def test_series_option_on_a_file_is_an_input_error(tmp_path):
    path = write_volume(make_image(), tmp_path / "ct.nrrd")
    with pytest.raises(InputError, match="--series"):
        read_volume(path, series=SERIES_A)


def test_missing_output_folder_is_an_input_error_and_writes_nothing(tmp_path):
    with pytest.raises(InputError, match="does not exist") as error:
        write_labelmap(make_image(dtype=np.uint8), tmp_path / "missing" / "label.nii.gz")
    assert "label.nii.gz" in str(error.value)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("name", ["label.png", "label", "label.mhd", "label.nhdr"])
def test_unsupported_output_extension_is_an_input_error(tmp_path, name):
    with pytest.raises(InputError, match="unsupported"):
        write_labelmap(make_image(dtype=np.uint8), tmp_path / name)
    with pytest.raises(InputError, match="unsupported"):
        write_volume(make_image(), tmp_path / name)
    assert _files(tmp_path) == []


def test_label_values_that_uint8_cannot_hold_are_refused(tmp_path):
    label = sitk.GetImageFromArray(np.full((4, 5, 6), 300, np.int16))
    with pytest.raises(InputError, match="0..255"):
        write_labelmap(label, tmp_path / "label.nii.gz")
    fractional = sitk.GetImageFromArray(np.full((4, 5, 6), 0.5, np.float32))
    with pytest.raises(InputError, match="whole numbers"):
        write_labelmap(fractional, tmp_path / "label.nii.gz")
    assert _files(tmp_path) == []


def test_a_write_that_fails_midway_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = write_labelmap(make_image(dtype=np.uint8), tmp_path / "label.nii.gz")
    before = target.read_bytes()

    def half_write(image, name, *args, **kwargs):
        Path(name).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", half_write)
    with pytest.raises(RuntimeError, match="disk full"):
        write_labelmap(make_image(dtype=np.uint8, seed=1), target)
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(sitk, "WriteImage", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        write_volume(make_image(), tmp_path / "ct.nrrd")
    assert target.read_bytes() == before
    assert _files(tmp_path) == ["label.nii.gz"]


def test_written_files_carry_no_dicom_tags_such_as_the_patient_name(tmp_path, hu):
    folder = tmp_path / "dcm"
    _write_dicom_series(folder, hu, (0.7, 0.8, 2.5), (0, 0, 0), DIRECTIONS["LPS"], SERIES_A)
    one_file = sitk.ReadImage(str(sorted(folder.iterdir())[0]))
    one_file.SetMetaData("0010|0010", "Doe^Jane")
    volume = sitk.JoinSeries([one_file[:, :, 0]] * 3)
    volume.SetMetaData("0010|0010", "Doe^Jane")
    for ext in (".nrrd", ".mha"):
        written = write_volume(volume, tmp_path / f"ct{ext}")
        assert b"Doe^Jane" not in written.read_bytes()
        label = sitk.Cast(volume > 0, sitk.sitkUInt8)
        label.SetMetaData("0010|0010", "Doe^Jane")
        assert b"Doe^Jane" not in write_labelmap(label, tmp_path / f"label{ext}").read_bytes()
    assert volume.GetMetaData("0010|0010") == "Doe^Jane"  # the caller's image is left as it was
