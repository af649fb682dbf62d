"""Slicer .seg.nrrd files: what slicerio (written by Slicer's maintainers) reads back, and our own reader."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from conftest import DIRECTIONS, make_image

from PancreasSegLib.errors import InputError
from PancreasSegLib.io.segfile import parse_terminology_entry, read_seg_nrrd, terminology_entry, write_seg_nrrd
from PancreasSegLib.io.volumes import write_labelmap
from PancreasSegLib.labels import PANCREAS, TUMOR, Code

PANCREAS_ENTRY = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
                  "~SCT^15776009^Pancreas~^^~Anatomic codes - DICOM master list~^^~^^")


def _label(direction_name: str = "LPS", with_tumor: bool = True) -> sitk.Image:
    """Pancreas (1) with a tumor (2) inside it, on an anisotropic grid far from the origin."""
    grid = make_image(shape_zyx=(10, 16, 18), spacing=(0.73, 0.81, 2.7), origin=(-187.3, 42.125, -601.5),
                      direction=DIRECTIONS[direction_name])
    array = np.zeros((10, 16, 18), np.uint8)
    array[2:8, 4:12, 3:15] = 1
    if with_tumor:
        array[4:6, 6:9, 6:9] = 2
    label = sitk.GetImageFromArray(array)
    label.CopyInformation(grid)
    return label


def _segments_by_name(path: Path) -> dict:
    return {s["name"]: s for s in slicerio.read_segmentation(str(path))["segments"]}


def test_slicerio_reads_names_colors_values_and_terminology(tmp_path):
    path = write_seg_nrrd(_label(), tmp_path / "case.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path))
    assert segmentation["masterRepresentation"] == "Binary labelmap"
    assert segmentation["referenceImageExtentOffset"] == [0, 0, 0]
    segments = {s["name"]: s for s in segmentation["segments"]}
    assert set(segments) == {"Pancreas", "Pancreatic tumor"}

    pancreas, tumor = segments["Pancreas"], segments["Pancreatic tumor"]
    assert pancreas["labelValue"] == 1 and tumor["labelValue"] == 2
    assert pancreas["layer"] == 0 and tumor["layer"] == 0
    assert np.round(np.array(pancreas["color"]) * 255).tolist() == [249, 180, 111]
    assert np.round(np.array(tumor["color"]) * 255).tolist() == [144, 238, 144]
    assert pancreas["terminology"]["category"] == ["SCT", "123037004", "Anatomical Structure"]
    assert pancreas["terminology"]["type"] == ["SCT", "15776009", "Pancreas"]
    assert pancreas["terminology"]["contextName"] == "Segmentation category and type - 3D Slicer General Anatomy list"
    assert tumor["terminology"]["category"] == ["SCT", "49755003", "Morphologically Altered Structure"]
    assert tumor["terminology"]["type"] == ["SCT", "108369006", "Neoplasm"]
    assert tumor["terminology"]["anatomicRegion"] == ["SCT", "15776009", "Pancreas"]
    assert tumor["terminology"]["contextName"] == "Segmentation category and type - DICOM master list"

    # slicerio's own extraction by terminology finds the pancreas voxels.
    pancreas_only = slicerio.extract_segments(
        segmentation, [({"category": ["SCT", "123037004", "Anatomical Structure"],
                         "type": ["SCT", "15776009", "Pancreas"]}, 1)])
    expected = (sitk.GetArrayFromImage(_label()) == 1).transpose(2, 1, 0)  # slicerio arrays are (i, j, k)
    assert np.array_equal(pancreas_only["voxels"] == 1, expected)


def test_terminology_entry_is_slicers_seven_part_string():
    assert terminology_entry(PANCREAS) == PANCREAS_ENTRY
    parsed = parse_terminology_entry(terminology_entry(TUMOR))
    assert parsed["type"] == TUMOR.type and parsed["anatomic_region"] == TUMOR.anatomic_region
    assert parsed["context"] == TUMOR.context and parsed["type_modifier"] is None
    with pytest.raises(ValueError, match="7 parts"):
        parse_terminology_entry("SCT^1^x~SCT^2^y")


def test_slicerio_sees_the_exact_grid(tmp_path, direction_name):
    label = _label(direction_name)
    path = write_seg_nrrd(label, tmp_path / "case.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path))
    direction = np.array(label.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(segmentation["ijkToLPS"][:3, :3], direction * label.GetSpacing(), rtol=0, atol=1e-14)
    assert segmentation["ijkToLPS"][:3, 3].tolist() == list(label.GetOrigin())
    assert segmentation["voxels"].shape == label.GetSize()


def test_read_back_keeps_values_and_geometry(tmp_path, direction_name):
    label = _label(direction_name)
    back, infos = read_seg_nrrd(write_labelmap(label, tmp_path / "case.seg.nrrd"))
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(label))
    assert back.GetSize() == label.GetSize() and back.GetOrigin() == label.GetOrigin()
    if direction_name == "oblique":  # NRRD's direction x spacing split: a few ulp
        np.testing.assert_allclose(back.GetSpacing(), label.GetSpacing(), rtol=1e-15)
        np.testing.assert_allclose(back.GetDirection(), label.GetDirection(), atol=1e-15)
    else:
        assert back.GetSpacing() == label.GetSpacing() and back.GetDirection() == label.GetDirection()
    assert [(i.value, i.name, i.type, i.category, i.anatomic_region, i.color, i.context) for i in infos] == \
        [(i.value, i.name, i.type, i.category, i.anatomic_region, i.color, i.context) for i in (PANCREAS, TUMOR)]
    assert infos[0].extra["segment_id"] == "Segment_1"


def test_default_segments_are_pancreas_and_tumor_only_when_present(tmp_path):
    path = write_seg_nrrd(_label(with_tumor=False), tmp_path / "case.seg.nrrd")
    assert set(_segments_by_name(path)) == {"Pancreas"}


def test_every_given_label_is_written_even_when_empty(tmp_path):
    empty = sitk.Image(_label()) * 0
    path = write_seg_nrrd(empty, tmp_path / "case.seg.nrrd", labels=[TUMOR, PANCREAS])
    segments = _segments_by_name(path)
    assert [segments[n]["labelValue"] for n in ("Pancreas", "Pancreatic tumor")] == [1, 2]
    # Whole-grid extent for empty segments too: Slicer sizes a shared layer from its first segment.
    assert segments["Pancreas"]["extent"] == [0, 17, 0, 15, 0, 9]


def test_custom_label_with_a_type_modifier_round_trips(tmp_path):
    kidney = replace(PANCREAS, value=3, name="Left kidney", type=Code("64033007", "SCT", "Kidney"),
                     type_modifier=Code("7771000", "SCT", "Left"), color=(0.5, 0.25, 1.0))
    label = sitk.Cast(_label(with_tumor=False) * 3, sitk.sitkUInt8)
    back, infos = read_seg_nrrd(write_seg_nrrd(label, tmp_path / "case.seg.nrrd", labels=[kidney]))
    assert infos[0].type_modifier == kidney.type_modifier and infos[0].color == (0.5, 0.25, 1.0)
    assert _segments_by_name(tmp_path / "case.seg.nrrd")["Left kidney"]["terminology"]["typeModifier"] == \
        ["SCT", "7771000", "Left"]


def test_writing_does_not_touch_the_callers_image(tmp_path):
    label = _label()
    label.SetMetaData("Segment0_Name", "stale")
    write_seg_nrrd(label, tmp_path / "case.seg.nrrd")
    assert label.GetMetaDataKeys() == ("Segment0_Name",)


def test_bad_segment_descriptions_are_input_errors(tmp_path):
    label = _label()
    with pytest.raises(InputError, match=r"values \[2\] that no segment describes"):
        write_seg_nrrd(label, tmp_path / "case.seg.nrrd", labels=[PANCREAS])
    with pytest.raises(InputError, match="share a label value"):
        write_seg_nrrd(label, tmp_path / "case.seg.nrrd", labels=[PANCREAS, TUMOR, replace(TUMOR, name="x")])
    with pytest.raises(InputError, match="must end in .seg.nrrd"):
        write_seg_nrrd(label, tmp_path / "case.nrrd")
    with pytest.raises(InputError, match="does not exist"):
        write_seg_nrrd(label, tmp_path / "missing" / "case.seg.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_reading_a_plain_nrrd_or_garbage_as_segmentation_is_an_input_error(tmp_path):
    plain = write_labelmap(_label(), tmp_path / "plain.nrrd")
    with pytest.raises(InputError, match="not a Slicer segmentation"):
        read_seg_nrrd(plain)
    garbage = tmp_path / "garbage.seg.nrrd"
    garbage.write_bytes(b"NRRD0004\nnonsense\n")
    with pytest.raises(InputError, match="garbage.seg.nrrd"):
        read_seg_nrrd(garbage)
    with pytest.raises(InputError, match="no such file"):
        read_seg_nrrd(tmp_path / "missing.seg.nrrd")


def test_overlapping_layers_merge_with_the_later_segment_winning(tmp_path):
    base = _label(with_tumor=False)
    pancreas = sitk.GetArrayFromImage(base)
    tumor = np.zeros_like(pancreas)
    tumor[4:6, 6:9, 6:9] = 1  # overlaps the pancreas: Slicer puts it in a second layer, also with value 1
    layers = sitk.Compose([sitk.GetImageFromArray(pancreas), sitk.GetImageFromArray(tumor)])
    layers.CopyInformation(base)
    path = write_seg_nrrd(base, tmp_path / "one.seg.nrrd", labels=[PANCREAS, TUMOR])
    one_layer = sitk.ReadImage(str(path))
    for key in one_layer.GetMetaDataKeys():
        layers.SetMetaData(key, one_layer.GetMetaData(key))
    layers.SetMetaData("Segment1_Layer", "1")
    layers.SetMetaData("Segment1_LabelValue", "1")
    sitk.WriteImage(layers, str(tmp_path / "two.seg.nrrd"), True)

    merged, infos = read_seg_nrrd(tmp_path / "two.seg.nrrd")
    array = sitk.GetArrayViewFromImage(merged)
    assert [(i.name, i.value, i.extra["file_label_value"]) for i in infos] == \
        [("Pancreas", 1, 1), ("Pancreatic tumor", 2, 1)]
    assert np.array_equal(array == 2, tumor == 1)
    assert np.array_equal(array == 1, (pancreas == 1) & (tumor == 0))


def test_reference_grid_puts_a_cropped_segmentation_back_in_place(tmp_path, direction_name):
    reference = _label(direction_name)
    cropped = reference[2:16, 3:14, 1:9]  # what Slicer writes with "crop to minimum extent"
    write_seg_nrrd(cropped, tmp_path / "crop.seg.nrrd")
    on_grid, _ = read_seg_nrrd(tmp_path / "crop.seg.nrrd", reference=reference)
    assert on_grid.GetSize() == reference.GetSize() and on_grid.GetOrigin() == reference.GetOrigin()
    assert on_grid.GetDirection() == reference.GetDirection()
    assert np.array_equal(sitk.GetArrayViewFromImage(on_grid), sitk.GetArrayViewFromImage(reference))
    same, _ = read_seg_nrrd(write_seg_nrrd(reference, tmp_path / "full.seg.nrrd"), reference=reference)
    assert same.GetSpacing() == reference.GetSpacing() and same.GetDirection() == reference.GetDirection()


def test_a_file_that_slicer_itself_wrote_is_read(tmp_path):
    sample = Path(slicerio.__file__).parent / "data" / "Segmentation.seg.nrrd"
    if not sample.is_file():
        pytest.skip("slicerio's sample segmentation is not installed")
    label, infos = read_seg_nrrd(sample)
    expected = slicerio.read_segmentation(str(sample))
    assert [i.name for i in infos] == [s["name"] for s in expected["segments"]]
    assert infos[0].type == Code("113197003", "SCT", "Rib")
    assert infos[0].extra["tags"] == {"Segmentation.Status": "inprogress"}
    values = np.unique(sitk.GetArrayViewFromImage(label))
    assert set(values) <= {0} | {i.value for i in infos}


def test_a_slicer_file_with_overlapping_segments_is_merged():
    sample = Path(slicerio.__file__).parent / "data" / "SegmentationOverlapping.seg.nrrd"
    if not sample.is_file():
        pytest.skip("slicerio's sample segmentation is not installed")
    label, infos = read_seg_nrrd(sample)
    sphere = infos[-1]
    assert (sphere.name, sphere.extra["layer"], sphere.extra["file_label_value"]) == ("overlapping sphere", 1, 1)
    assert sphere.value not in {i.value for i in infos[:-1]}
    voxels = slicerio.read_segmentation(str(sample))["voxels"]  # (layer, i, j, k)
    in_sphere = (voxels[1] == 1).transpose(2, 1, 0)
    assert np.array_equal(sitk.GetArrayViewFromImage(label) == sphere.value, in_sphere)
