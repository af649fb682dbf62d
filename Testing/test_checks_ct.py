"""Bad CT inputs and failing writes: each answered with exit 2, one line naming the file, nothing written."""

from __future__ import annotations

import errno
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from bundle_doubles import make_random_bundle
from ct_samples import abdomen, write_dicom_ct
from inference_doubles import test_config

from PancreasSegLib.checks import ct as ct_checks
from PancreasSegLib.checks.ct import check_ct, hu_problem, physical_extent
from PancreasSegLib.cli import main
from PancreasSegLib.errors import InputError
from PancreasSegLib.io.volumes import read_ct, read_volume


@pytest.fixture(scope="module")
def blind(tmp_path_factory):
    """A bundle whose localizer never finds anything: with --allow-empty a run is quick and writes an empty map."""
    config = test_config()
    config["stages"]["localizer"]["score_threshold"] = 1.01
    return make_random_bundle(tmp_path_factory.mktemp("bundle") / "blind", seed=0, config=config)


def segment(blind, source, out, *extra) -> int:
    return main(["segment", str(source), "-o", str(out), "--model", str(blind), "--progress", "none",
                 "--allow-empty", *extra])


def refused(capsys, code, source, *words) -> str:
    """Assert exit 2 with exactly one stderr line that names ``source`` and holds ``words``."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"pancreasseg segment: error: {source}: "), lines
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def only(folder: Path, *names: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def set_nifti_header(path: Path, **fields) -> None:
    """Patch NIfTI-1 header fields of an uncompressed .nii in place (offsets of the NIfTI-1 standard)."""
    offsets = {"pixdim": (76, "<4f"), "scl": (112, "<2f"), "qform_sform": (252, "<hh")}
    data = bytearray(path.read_bytes())
    for name, values in fields.items():
        offset, fmt = offsets[name]
        struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(bytes(data))


NRRD_HEADER = ("NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: {x} {y} {z}\n"
               "space directions: {directions}\nendian: little\nencoding: raw\nspace origin: (0,0,0)\n\n")


def write_nrrd(path: Path, image: sitk.Image, directions: str) -> Path:
    x, y, z = image.GetSize()
    header = NRRD_HEADER.format(x=x, y=y, z=z, directions=directions)
    path.write_bytes(header.encode() + sitk.GetArrayFromImage(image).astype("<i2").tobytes())
    return path


# --- what a good CT looks like ----------------------------------------------------------------------------------------


def test_a_small_abdominal_ct_passes_every_check_as_int16_float_and_with_padding():
    assert check_ct(abdomen()) is None
    assert check_ct(abdomen(dtype=np.float32)) is None
    padded = sitk.GetArrayFromImage(abdomen())
    padded[:, :4, :4] = -3024  # the scanner's outside-the-circle value
    assert hu_problem(sitk.GetImageFromArray(padded)) is None


def test_the_through_plane_axis_is_the_one_closest_to_the_body_axis():
    image = sitk.Image(10, 50, 60, sitk.sitkInt16)  # sagittal stack: the first index axis points left
    image.SetSpacing((5.0, 1.0, 1.0))
    image.SetDirection((0, 0, 1, 1, 0, 0, 0, 1, 0))  # i -> P, j -> S, k -> L
    in_plane, through = physical_extent(image)
    assert through == 50.0 and in_plane == 50.0


# --- NaN / inf --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext, bad", [(".nrrd", np.nan), (".mha", np.inf), (".nii.gz", np.nan)])
def test_nan_or_inf_voxels_are_refused_with_their_count(blind, tmp_path, capsys, ext, bad):
    image = abdomen(dtype=np.float32)
    array = sitk.GetArrayFromImage(image)
    array[3, 10, 10:13] = bad
    broken = sitk.GetImageFromArray(array)
    broken.CopyInformation(image)
    source = tmp_path / f"ct{ext}"
    sitk.WriteImage(broken, str(source))
    code = segment(blind, source, tmp_path / "seg.nii.gz")
    refused(capsys, code, source, "3 NaN or infinite voxel(s)")
    only(tmp_path, source.name)


# --- rescale slope / intercept ----------------------------------------------------------------------------------------


def test_nifti_scl_slope_and_intercept_are_applied_when_read(tmp_path):
    hu = sitk.GetArrayFromImage(abdomen()).astype(np.float64)
    stored = np.round((hu + 1024) / 2).astype(np.int16)  # what a scanner stores with slope 2, intercept -1024
    path = tmp_path / "ct.nii"
    raw = sitk.GetImageFromArray(stored)
    raw.CopyInformation(abdomen())
    sitk.WriteImage(raw, str(path))
    set_nifti_header(path, scl=(2.0, -1024.0))
    image = read_ct(path)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), stored * 2.0 - 1024)
    assert check_ct(image, path) is None


@pytest.mark.parametrize("slope, intercept", [(1.0, -1024.0), (0.5, -1024.0)])
def test_an_unsigned_dicom_series_with_rescale_is_read_as_hounsfield_units(tmp_path, slope, intercept):
    hu = np.clip(np.round(sitk.GetArrayFromImage(abdomen())), -1024, 3000).astype(np.float64)
    write_dicom_ct(tmp_path / "dcm", hu, slope, intercept)
    image = read_ct(tmp_path / "dcm")
    expected = np.round((hu - intercept) / slope) * slope + intercept
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(image), expected)
    assert check_ct(image, tmp_path / "dcm") is None


# --- spacing and direction --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pixdim, word", [((1.0, 0.0, 1.5, 3.0), "pixdim (0, 1.5, 3)"),
                                          ((1.0, -1.6, 1.5, 3.0), "pixdim (-1.6, 1.5, 3)")])
def test_zero_or_negative_nifti_voxel_size_is_refused_although_itk_reads_it(blind, tmp_path, capsys, pixdim, word):
    source = tmp_path / "ct.nii"
    sitk.WriteImage(abdomen(), str(source))
    set_nifti_header(source, pixdim=pixdim, qform_sform=(0, 0))
    assert min(read_volume(source).GetSpacing()) > 0  # ITK itself makes something up
    refused(capsys, segment(blind, source, tmp_path / "seg.nii.gz"), source, "voxel size", word)
    only(tmp_path, "ct.nii")


def test_zero_spacing_in_an_nrrd_header_is_refused(blind, tmp_path, capsys):
    source = write_nrrd(tmp_path / "ct.nrrd", abdomen(), "(0,0,0) (0,1.5,0) (0,0,3)")
    refused(capsys, segment(blind, source, tmp_path / "seg.nii.gz"), source, "zero or invalid voxel spacing")
    only(tmp_path, "ct.nrrd")


@pytest.mark.parametrize("directions, word", [
    ("(1.6,0,0) (1.5,0,0) (0,0,3)", "determinant 0"),  # two parallel axes: ITK refuses it
    ("(1.6,0,0) (0.8,1.3,0) (0,0,3)", "not orthonormal"),  # skewed: ITK accepts it, we do not
])
def test_a_degenerate_direction_matrix_is_refused(blind, tmp_path, capsys, directions, word):
    source = write_nrrd(tmp_path / "ct.nrrd", abdomen(), directions)
    refused(capsys, segment(blind, source, tmp_path / "seg.nii.gz"), source, "degenerate direction matrix", word)
    only(tmp_path, "ct.nrrd")


def test_a_scaled_direction_matrix_is_refused_by_the_check():
    image = abdomen()
    image.SetDirection((2, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(InputError, match="not orthonormal"):
        check_ct(image, "ct.nrrd")


# --- field of view ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, spacing, word", [((12, 40, 20), (1.5, 1.5, 3.0), "30.0 x 60.0 x 36.0 mm"),
                                                  ((6, 40, 48), (1.6, 1.5, 3.0), "76.8 x 60.0 x 18.0 mm")])
def test_a_volume_too_small_for_a_pancreas_is_refused_with_its_size(blind, tmp_path, capsys, shape, spacing, word):
    source = tmp_path / "ct.nrrd"
    sitk.WriteImage(abdomen(shape, spacing), str(source))
    refused(capsys, segment(blind, source, tmp_path / "seg.nii.gz"), source, "too small to hold a pancreas", word)
    only(tmp_path, "ct.nrrd")


# --- memory budget ----------------------------------------------------------------------------------------------------


def test_a_volume_above_the_voxel_budget_is_refused_before_its_pixels_are_read(blind, tmp_path, capsys, monkeypatch):
    source = tmp_path / "ct.nii.gz"
    sitk.WriteImage(abdomen(), str(source))

    def no_read(*args, **kwargs):
        raise AssertionError("the pixels were read")

    monkeypatch.setattr("PancreasSegLib.io.volumes.read_volume", no_read)
    monkeypatch.setenv(ct_checks.MAX_VOXELS_ENV, "10000")
    refused(capsys, segment(blind, source, tmp_path / "seg.nii.gz"), source,
            "23,040 voxels exceed the budget of 10,000", ct_checks.MAX_VOXELS_ENV)
    monkeypatch.delenv(ct_checks.MAX_VOXELS_ENV)
    refused(capsys, segment(blind, source, tmp_path / "seg.nii.gz", "--max-voxels", "20000"), source,
            "budget of 20,000")
    only(tmp_path, "ct.nii.gz")


def test_a_dicom_folder_is_counted_against_the_budget(tmp_path):
    write_dicom_ct(tmp_path / "dcm", np.clip(sitk.GetArrayFromImage(abdomen()), -1024, 3000).astype(float), 1.0,
                   -1024.0)
    assert ct_checks.check_size_before_reading(tmp_path / "dcm", budget=10**6) == 12 * 40 * 48
    with pytest.raises(InputError, match="23,040 voxels exceed"):
        ct_checks.check_size_before_reading(tmp_path / "dcm", budget=20000)


def test_a_malformed_budget_variable_is_a_usage_error(blind, tmp_path, capsys, monkeypatch):
    source = tmp_path / "ct.nrrd"
    sitk.WriteImage(abdomen(), str(source))
    monkeypatch.setenv(ct_checks.MAX_VOXELS_ENV, "lots")
    assert segment(blind, source, tmp_path / "seg.nii.gz") == 2
    assert "PANCREASSEG_MAX_VOXELS must be a positive number" in capsys.readouterr().err


# --- is this a CT? ----------------------------------------------------------------------------------------------------


def not_ct(kind: str) -> sitk.Image:
    rng = np.random.default_rng(1)
    body = sitk.GetArrayFromImage(abdomen()) > -500
    if kind == "mri":
        array = np.where(body, rng.uniform(300, 4000, body.shape), rng.uniform(0, 30, body.shape)).astype(np.uint16)
    elif kind == "uint8":
        array = np.where(body, rng.integers(60, 256, body.shape), 0).astype(np.uint8)
    elif kind == "mask":
        array = body.astype(np.int16)
    else:  # z-scored intensities, as a normalising pipeline leaves them
        array = rng.normal(0, 1, body.shape).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(abdomen())
    return image


@pytest.mark.parametrize("kind, words", [
    ("mri", ["no negative values", "MRI"]),
    ("uint8", ["8-bit range"]),
    ("mask", ["2 distinct value(s) (0, 1)", "mask or label map"]),
    ("normalised", ["not Hounsfield units"]),
])
def test_an_image_that_is_not_in_hounsfield_units_is_refused(blind, tmp_path, capsys, kind, words):
    source = tmp_path / "scan.nrrd"
    sitk.WriteImage(not_ct(kind), str(source))
    line = refused(capsys, segment(blind, source, tmp_path / "seg.nii.gz"), source, "does not look like a CT", *words)
    assert "--force" in line
    only(tmp_path, "scan.nrrd")


@pytest.mark.parametrize("kind", ["mri", "uint8", "mask", "normalised"])
def test_force_turns_the_refusal_into_a_warning_and_goes_on(blind, tmp_path, capsys, kind):
    source = tmp_path / "scan.nrrd"
    sitk.WriteImage(not_ct(kind), str(source))
    out = tmp_path / "seg.nii.gz"
    code = main(["segment", str(source), "-o", str(out), "--model", str(blind), "--progress", "jsonl",
                 "--allow-empty", "--force"])
    captured = capsys.readouterr()
    assert code == 0 and out.is_file()
    assert captured.err.startswith(f"pancreasseg segment: warning: {source}: ")
    events = [json.loads(line) for line in captured.out.splitlines()]
    assert [e["event"] for e in events].count("warning") == 1 and events[-1]["event"] == "done"


# --- the output folder and the disk -----------------------------------------------------------------------------------


@pytest.fixture
def ct_file(tmp_path):
    source = tmp_path / "in" / "ct.nrrd"
    source.parent.mkdir()
    sitk.WriteImage(abdomen(), str(source))
    return source


def test_a_read_only_output_folder_is_refused_before_any_work(blind, ct_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    if getattr(os, "geteuid", lambda: 1)() == 0:
        # Root ignores permission bits: let os.access answer for this folder as it does for any other user.
        real_access = os.access
        def access(path, mode, *args, **kwargs):
            return False if mode & os.W_OK and str(path) == str(out) else real_access(path, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
    try:
        code = segment(blind, ct_file, out / "seg.nii.gz")
    finally:
        out.chmod(0o755)
    line = capsys.readouterr().err.strip()
    expected = f"pancreasseg segment: error: {out / 'seg.nii.gz'}: output folder {out} is not writable"
    assert code == 2 and line == expected
    assert list(out.iterdir()) == []


def test_a_folder_that_refuses_the_write_is_answered_in_one_line(blind, ct_file, tmp_path, capsys, monkeypatch):
    # Simulates a read-only mount or an ACL that os.access does not see (and root, for whom chmod is no barrier).
    import tempfile

    out = tmp_path / "ro"
    out.mkdir()
    (out / "seg.nii.gz").write_bytes(b"earlier result")
    real = tempfile.mkdtemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == out:
            raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    line = refused(capsys, segment(blind, ct_file, out / "seg.nii.gz"), out / "seg.nii.gz", "read-only")
    assert "Traceback" not in line
    assert (out / "seg.nii.gz").read_bytes() == b"earlier result"
    only(out, "seg.nii.gz")


def test_a_disk_that_fills_while_writing_leaves_the_previous_results_intact(blind, ct_file, tmp_path, capsys,
                                                                            monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "seg.nii.gz").write_bytes(b"earlier result")
    (out / "prob.nii.gz").write_bytes(b"earlier probabilities")
    real = sitk.WriteImage
    calls = []

    def fills_up(image, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the label map got through; the disk fills half-way through the probabilities
            Path(path).write_bytes(b"\x1f\x8b half a file")
            raise RuntimeError(f"ITK ERROR: NiftiImageIO: could not write {path}: No space left on device")
        return real(image, path, *args, **kwargs)

    monkeypatch.setattr(sitk, "WriteImage", fills_up)
    code = segment(blind, ct_file, out / "seg.nii.gz", "--probabilities", str(out / "prob.nii.gz"))
    line = refused(capsys, code, out / "prob.nii.gz", "no space left on the device")
    assert "previous file is unchanged" in line and len(calls) == 2
    assert (out / "seg.nii.gz").read_bytes() == b"earlier result"
    assert (out / "prob.nii.gz").read_bytes() == b"earlier probabilities"
    only(out, "seg.nii.gz", "prob.nii.gz")


def test_a_full_disk_while_writing_json_leaves_no_partial_file(tmp_path, monkeypatch):
    from PancreasSegLib.io.atomic import write_json_atomic

    target = tmp_path / "roi.json"
    target.write_text('{"old": true}')
    real = Path.write_bytes

    def half(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", half)
    with pytest.raises(InputError, match="roi.json: cannot be written: no space left on the device"):
        write_json_atomic(target, {"center": [0, 0, 0]})
    monkeypatch.undo()
    assert json.loads(target.read_text(encoding="utf-8")) == {"old": True}
    only(tmp_path, "roi.json")


def test_other_write_failures_stay_internal_errors(tmp_path, monkeypatch):
    from PancreasSegLib.io.volumes import write_labelmap

    monkeypatch.setattr(sitk, "WriteImage", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        write_labelmap(sitk.Image(4, 4, 4, sitk.sitkUInt8), tmp_path / "x.nii.gz")
    assert list(tmp_path.iterdir()) == []


# --- corrupt or contradictory DICOM series ----------------------------------------------------------------------------


@pytest.mark.parametrize("damage, words", [
    ("truncated file", ["not evenly spaced"]),  # GDCM drops the unreadable file: a gap in the stack
    ("other size", ["differ in image size", "48, 20, 1"]),
    ("other orientation", ["1 slice(s) have another ImageOrientationPatient"]),
])
def test_a_damaged_or_inconsistent_dicom_series_is_refused_in_one_line(tmp_path, damage, words):
    import pydicom

    folder = tmp_path / "dcm"
    write_dicom_ct(folder, np.clip(sitk.GetArrayFromImage(abdomen()), -1024, 3000), 1.0, -1024.0,
                   spacing=abdomen().GetSpacing())
    victim = sorted(folder.iterdir())[5]
    if damage == "truncated file":
        victim.write_bytes(victim.read_bytes()[:700])
    else:
        ds = pydicom.dcmread(victim)
        if damage == "other size":
            ds.Rows, ds.PixelData = 20, ds.PixelData[: 20 * 48 * 2]
        else:
            ds.ImageOrientationPatient = [0, 1, 0, 1, 0, 0]
        ds.save_as(victim)
    with pytest.raises(InputError) as info:
        read_volume(folder)
    message = str(info.value)
    assert message.startswith(f"{folder}: ") and "\n" not in message
    for word in words:
        assert word in message
