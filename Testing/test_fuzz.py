"""Property-based tests: readers, geometry round trips and the export path never fail other than by InputError.

The default run is short (bounded, derandomized examples: a few seconds per test, as in CI). A longer,
random run takes the number of examples from the environment, e.g.::

    PANCREASSEG_FUZZ_EXAMPLES=3000 OMP_NUM_THREADS=1 python -m pytest Testing/test_fuzz.py -q -p no:cacheprovider

(what was run and found is recorded in docs/robustness.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from PancreasSegLib.checks.ct import check_ct, check_size_before_reading
from PancreasSegLib.errors import InputError
from PancreasSegLib.io.grid import grid_mismatch
from PancreasSegLib.io.segfile import read_seg_nrrd
from PancreasSegLib.io.volumes import read_volume, write_labelmap
from PancreasSegLib.pipeline.roi import ROI, read_roi, write_roi

LONG_RUN = int(os.environ.get("PANCREASSEG_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=LONG_RUN or 40, deadline=None, derandomize=not LONG_RUN, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FUZZ_SMALL = settings(FUZZ, max_examples=LONG_RUN or 15)
#: The readers' voxel budget during fuzzing: a mutated header may promise billions of voxels.
BUDGET = 4_000_000
READ_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha", ".seg.nrrd", ".dcm")


def front_door(path: Path) -> sitk.Image | None:
    """What ``segment`` does with an input before the model sees it; None when refused with InputError."""
    try:
        check_size_before_reading(path, budget=BUDGET)
        image = read_volume(path)
        check_ct(image, path, force=True)
        return image
    except InputError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc).strip()
        return None


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    """A valid small file of each readable type, to mutate."""
    folder = tmp_path_factory.mktemp("seeds")
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.integers(-1000, 1000, (6, 20, 24)).astype(np.int16))
    image.SetSpacing((2.5, 2.5, 4.0))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    out = {}
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha"):
        sitk.WriteImage(image, str(folder / f"ct{ext}"), useCompression=ext == ".nii.gz")
        out[ext] = (folder / f"ct{ext}").read_bytes()
    label = sitk.Cast(image > 500, sitk.sitkUInt8)
    out[".seg.nrrd"] = write_labelmap(label, folder / "l.seg.nrrd").read_bytes()
    sitk.WriteImage(sitk.Cast(image[:, :, 0], sitk.sitkInt16), str(folder / "ct.dcm"))
    out[".dcm"] = (folder / "ct.dcm").read_bytes()
    return out


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with a few byte flips, deletions, insertions or a truncation; positions favour the header."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        where = int(draw(st.floats(0, 1)) ** 3 * max(len(data) - 1, 0))
        op = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate", "digit"]))
        if op == "flip" and data:
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[where] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[where: where + draw(st.integers(1, 64))]
        elif op == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=32))
        elif op == "truncate":
            del data[where:]
        elif op == "digit":  # a number in a text header (NRRD, MHA) changed to another number
            digits = [i for i, b in enumerate(data[:1024]) if 48 <= b <= 57]
            if digits:
                data[draw(st.sampled_from(digits))] = draw(st.sampled_from(b"0123456789-."))
    return bytes(data)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(ext=st.sampled_from(READ_EXTENSIONS), data=st.binary(max_size=2048))
def test_random_bytes_are_read_or_refused_with_an_input_error(scratch, ext, data):
    path = scratch / f"random{ext}"
    path.write_bytes(data)
    front_door(path)


@FUZZ
@given(ext=st.sampled_from(READ_EXTENSIONS), data=st.data())
def test_mutated_valid_files_are_read_or_refused_with_an_input_error(scratch, seeds, ext, data):
    path = scratch / f"mutated{ext}"
    path.write_bytes(data.draw(mutated(seeds[ext])))
    image = front_door(path)
    if image is not None:
        assert image.GetDimension() == 3 and image.GetNumberOfComponentsPerPixel() == 1


@FUZZ_SMALL
@given(data=st.data())
def test_mutated_seg_nrrd_files_are_read_or_refused_by_the_segmentation_reader(scratch, seeds, data):
    path = scratch / "mutated.seg.nrrd"
    path.write_bytes(data.draw(mutated(seeds[".seg.nrrd"])))
    try:
        label, _ = read_seg_nrrd(path)
    except InputError:
        return
    assert label.GetPixelID() == sitk.sitkUInt8 and label.GetDimension() == 3


# --- geometry ---------------------------------------------------------------------------------------------------------


@st.composite
def directions(draw) -> tuple[float, ...]:
    """A random rotation (unit quaternion), then axis flips and a permutation: any orthonormal matrix."""
    q = np.array(draw(st.lists(st.floats(-1, 1), min_size=4, max_size=4)))
    if np.linalg.norm(q) < 1e-3:
        q = np.array([1.0, 0, 0, 0])
    w, x, y, z = q / np.linalg.norm(q)
    rotation = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    if draw(st.booleans()):  # axis-aligned grids are the common case and must stay exact
        rotation = np.eye(3)
    flips = np.diag([draw(st.sampled_from([-1.0, 1.0])) for _ in range(3)])
    order = draw(st.permutations([0, 1, 2]))
    return tuple((rotation @ flips)[:, order].ravel().tolist())


geometry = st.fixed_dictionaries({
    "size": st.tuples(*[st.integers(2, 7)] * 3),
    "spacing": st.tuples(*[st.floats(0.2, 8.0)] * 3),
    "origin": st.tuples(*[st.floats(-1000, 1000)] * 3),
    "direction": directions(),
    "seed": st.integers(0, 2**16),
})


@FUZZ
@given(geo=geometry, ext=st.sampled_from([".nii.gz", ".nrrd", ".mha", ".seg.nrrd"]))
def test_a_label_map_keeps_its_values_and_grid_through_write_and_read(scratch, geo, ext):
    values = np.random.default_rng(geo["seed"]).integers(0, 3, geo["size"][::-1]).astype(np.uint8)
    label = sitk.GetImageFromArray(values)
    label.SetSpacing(geo["spacing"])
    label.SetOrigin(geo["origin"])
    label.SetDirection(geo["direction"])
    path = write_labelmap(label, scratch / f"label{ext}")
    back = read_volume(path)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), values)
    assert grid_mismatch(back, label) is None, grid_mismatch(back, label)
    if ext != ".nii.gz":  # NRRD and MHA keep double precision
        np.testing.assert_allclose(back.GetOrigin(), label.GetOrigin(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(back.GetDirection(), label.GetDirection(), rtol=0, atol=1e-12)
    if ext in (".nrrd", ".mha", ".seg.nrrd") and geo["direction"] in _AXIS_ALIGNED:
        assert back.GetDirection() == label.GetDirection() and back.GetSpacing() == label.GetSpacing()


_AXIS_ALIGNED = {tuple(np.eye(3)[:, list(order)].dot(np.diag(signs)).ravel().tolist())
                 for order in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0])
                 for signs in np.array(np.meshgrid(*[[-1.0, 1.0]] * 3)).T.reshape(-1, 3)}


@FUZZ
@given(center=st.tuples(*[st.floats(-2000, 2000)] * 3), size=st.tuples(*[st.floats(0.5, 800)] * 3),
       direction=directions(), margin=st.floats(0, 100), system=st.sampled_from(["LPS", "RAS"]))
def test_an_roi_keeps_its_box_through_json_in_lps_and_ras(scratch, center, size, direction, margin, system):
    axes = tuple(tuple(col) for col in np.asarray(direction).reshape(3, 3).T)
    roi = ROI(center, size, axes, margin)
    back = read_roi(write_roi(roi, scratch / "roi.json"))
    again = ROI.from_json(roi.to_json(system))
    for other in (back, again):
        np.testing.assert_allclose(other.corners(), roi.corners(), atol=2e-3)
        assert other.margin_mm == margin


json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=12)


@FUZZ
@given(data=st.one_of(json_values, st.fixed_dictionaries(
    {"center": json_values, "size": json_values}, optional={"axes": json_values, "margin_mm": json_values,
                                                             "coordinate_system": json_values})))
def test_any_json_is_an_roi_or_an_input_error(data):
    try:
        roi = ROI.from_json(data, "roi.json")
    except InputError:
        return
    assert np.all(np.isfinite(roi.corners())) and np.isfinite(roi.margin_mm) and min(roi.size) > 0


# --- export -----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A curated dataset with one case in it, and the image it was made from."""
    from curation_data import make_case

    from PancreasSegLib.curation.export import export_case

    folder = tmp_path_factory.mktemp("export")
    image, label, proposal = make_case(0)
    export_case(image, label, folder / "ds", proposal=proposal, reviewer="dr-a")
    return folder / "ds", image, label


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


tricky_ids = st.sampled_from(["../escape", "a/b", "a\\b", "", ".", "..", ".hidden", "case_0001", "x" * 129,
                              "ok-id.v2", "case_0000", "/abs", "C:\\x", "naïve", "a b", "con", "-x", "a..b"])


@FUZZ_SMALL
@given(case_id=st.one_of(tricky_ids, st.text(max_size=20)))
def test_any_case_id_is_exported_inside_the_dataset_or_refused_with_the_dataset_unchanged(exported, case_id):
    from PancreasSegLib.curation.export import export_case

    dataset, image, label = exported
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "ds"
        shutil.copytree(dataset, copy)
        before = tree(copy)
        try:
            result = export_case(image, label, copy, case_id=case_id)
        except InputError:
            assert tree(copy) == before
            assert sorted(p.name for p in Path(tmp).iterdir()) == ["ds"]
            return
        written = (copy / "labelsTr" / f"{result.case_id}.nii.gz").resolve()
        assert result.case_id == case_id and written.is_file()
        assert written.parent == (copy / "labelsTr").resolve()


@FUZZ_SMALL
@given(values=st.lists(st.one_of(st.integers(0, 2), st.integers(-3, 300)), min_size=1, max_size=4),
       dtype=st.sampled_from([np.uint8, np.int16, np.float32]), fraction=st.sampled_from([0.0, 0.5]))
def test_any_label_values_are_exported_or_refused_with_the_dataset_unchanged(exported, values, dtype, fraction):
    from PancreasSegLib.curation.export import export_case

    dataset, image, label = exported
    array = sitk.GetArrayFromImage(label).astype(np.float64)
    rng = np.random.default_rng(sum(values) % 1000)
    scattered = rng.random(array.shape) < 0.3
    array[scattered] = rng.choice(values, size=int(scattered.sum()))
    array[0, 0, 0] = values[-1] + fraction
    if dtype != np.float32:
        array = np.clip(np.floor(array), np.iinfo(dtype).min, np.iinfo(dtype).max)
    new = sitk.GetImageFromArray(array.astype(dtype))
    new.CopyInformation(label)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "ds"
        shutil.copytree(dataset, copy)
        before = tree(copy)
        try:
            result = export_case(image, new, copy, case_id="case_0001")
        except InputError:
            assert tree(copy) == before
            return
        stored = sitk.GetArrayFromImage(sitk.ReadImage(str(copy / "labelsTr" / f"{result.case_id}.nii.gz")))
        assert set(np.unique(stored).tolist()) <= {0, 1, 2}
        assert np.array_equal(stored, array.astype(np.int64))


# --- what the fuzzing found, kept as plain regression tests -----------------------------------------------------------


def test_a_header_key_that_is_not_utf8_neither_breaks_reading_nor_the_metadata_strip(tmp_path):
    from PancreasSegLib.io.images import without_metadata

    path = tmp_path / "odd.seg.nrrd"
    header = (b"NRRD0004\ntype: unsigned char\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n"
              b"Segment0_LabelValue:=1\nSegment0_Name:=Pancreas\nSegment0_ID:=S1\nSegment0_Layer:=0\n"
              b"Segmentation_ReferenceImageExtentOff\xf3et:=0 0 0\n\n")
    path.write_bytes(header + bytes([1] * 64))
    label, labels = read_seg_nrrd(path)
    assert [x.name for x in labels] == ["Pancreas"] and sitk.GetArrayViewFromImage(label).all()
    image = read_volume(path)
    clean = without_metadata(image)
    assert clean.GetMetaDataKeys() == () and np.array_equal(sitk.GetArrayViewFromImage(clean),
                                                              sitk.GetArrayViewFromImage(image))


@pytest.mark.parametrize("ndims", ["0", "5", "93", "1000", "-3", "three", ""])
def test_a_metaimage_header_that_would_crash_itk_is_refused_before_itk_opens_it(tmp_path, ndims):
    # NDims = 93 corrupts ITK's heap and 1000 segfaults it (fixed arrays of 10 in MetaIO): a native crash.
    header = (f"ObjectType = Image\nNDims = {ndims}\nBinaryData = True\nDimSize = 24 20 6\n"
              "ElementType = MET_SHORT\nElementDataFile = LOCAL\n").encode()
    for ext in (".mha", ".mhd"):
        path = tmp_path / f"bad{ext}"
        path.write_bytes(header + bytes(24 * 20 * 6 * 2))
        with pytest.raises(InputError, match="NDims"):
            check_size_before_reading(path, budget=BUDGET)
        with pytest.raises(InputError, match="NDims"):
            read_volume(path)
