"""A segment the module codes in the scene carries the terminology entry our ``.seg.nrrd`` files carry.

The module codes segments in ``sceneAdapter.SlicerSceneAdapter`` (Slicer-only: it imports ``slicer`` and
``vtk`` at the top). Coding a segment uses neither, so the adapter is imported here with empty stand-ins
for the two and run on segment doubles that record what Slicer would store.
"""

from __future__ import annotations

import importlib
import sys
import types

import module_doubles  # noqa: F401  (puts the module folder on sys.path)
import numpy as np
import pytest
import SimpleITK as sitk

from PancreasSegLib.io.segfile import parse_terminology_entry, read_seg_nrrd, terminology_entry, write_seg_nrrd
from PancreasSegLib.labels import DICOM_MASTER_CONTEXT, PANCREAS, SLICER_ANATOMY_CONTEXT, TUMOR

#: ``vtkSegment::GetTerminologyEntryTagName()`` in Slicer.
TAG = "TerminologyEntry"


class FakeSegment:
    """What the adapter uses of a ``vtkSegment``."""

    def __init__(self, name: str) -> None:
        self.name, self.color, self.tags = name, None, {}

    def GetName(self) -> str:
        return self.name

    def SetName(self, name: str) -> None:
        self.name = name

    def SetColor(self, *rgb: float) -> None:
        self.color = rgb

    def SetTag(self, key: str, value: str) -> None:
        self.tags[key] = value

    @staticmethod
    def GetTerminologyEntryTagName() -> str:
        return TAG


class FakeSegmentationNode:
    """What the adapter uses of a ``vtkMRMLSegmentationNode`` and its ``vtkSegmentation``."""

    def __init__(self, names) -> None:
        self.segments = [FakeSegment(name) for name in names]

    def GetSegmentation(self):
        return self

    def GetNumberOfSegments(self) -> int:
        return len(self.segments)

    def GetNthSegment(self, index: int) -> FakeSegment:
        return self.segments[index]


@pytest.fixture
def sceneAdapter(monkeypatch):
    monkeypatch.setitem(sys.modules, "slicer", types.ModuleType("slicer"))
    monkeypatch.setitem(sys.modules, "vtk", types.ModuleType("vtk"))
    monkeypatch.delitem(sys.modules, "PancreasSegModuleLib.sceneAdapter", raising=False)
    yield importlib.import_module("PancreasSegModuleLib.sceneAdapter")
    sys.modules.pop("PancreasSegModuleLib.sceneAdapter", None)  # it holds the stand-ins: never reuse it


def coded_in_scene(sceneAdapter, labels, names=("Pancreas", "Pancreatic tumor")) -> dict[str, FakeSegment]:
    """The segments of a freshly imported segmentation after the adapter coded them, by name."""
    node = FakeSegmentationNode(names)
    sceneAdapter.SlicerSceneAdapter._codeSegments(node, labels)
    return {segment.name: segment for segment in node.segments}


def header_entries(path) -> dict[str, str]:
    """Segment name -> ``TerminologyEntry`` tag, as Slicer reads them from the file's header fields."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    entries, index = {}, 0
    while reader.HasMetaDataKey(f"Segment{index}_ID"):
        tags = dict(item.split(":", 1) for item in reader.GetMetaData(f"Segment{index}_Tags").split("|") if item)
        entries[reader.GetMetaData(f"Segment{index}_Name")] = tags[TAG]
        index += 1
    return entries


def test_the_entry_set_on_a_segment_in_the_scene_is_the_one_in_our_seg_nrrd(sceneAdapter, tmp_path):
    labels = [PANCREAS, TUMOR]
    in_scene = {name: segment.tags[TAG] for name, segment in coded_in_scene(sceneAdapter, labels).items()}

    array = np.zeros((4, 6, 8), np.uint8)
    array[1:3, 1:5, 1:7] = PANCREAS.value
    array[2, 2, 3] = TUMOR.value
    path = write_seg_nrrd(sitk.GetImageFromArray(array), tmp_path / "case.seg.nrrd", labels)
    in_file = header_entries(path)
    assert set(in_file) == {"Pancreas", "Pancreatic tumor"}
    assert in_scene == in_file
    # ... and the segments the library reads back from that file code the very same entries.
    _, infos = read_seg_nrrd(path)
    assert {info.name: terminology_entry(info) for info in infos} == in_scene


def test_pancreas_comes_from_slicers_general_anatomy_list_and_the_tumor_from_the_dicom_master_list(sceneAdapter):
    coded = coded_in_scene(sceneAdapter, [PANCREAS, TUMOR])
    pancreas = parse_terminology_entry(coded["Pancreas"].tags[TAG])
    tumor = parse_terminology_entry(coded["Pancreatic tumor"].tags[TAG])
    assert pancreas["context"] == SLICER_ANATOMY_CONTEXT and pancreas["type"] == PANCREAS.type
    assert pancreas["category"] == PANCREAS.category and pancreas["anatomic_region"] is None
    assert tumor["context"] == DICOM_MASTER_CONTEXT and tumor["type"] == TUMOR.type
    assert tumor["anatomic_region"] == PANCREAS.type  # a neoplasm of the pancreas


def test_coded_segments_get_our_color_and_label_value_and_other_segments_are_left_alone(sceneAdapter):
    coded = coded_in_scene(sceneAdapter, [PANCREAS], names=("Pancreas", "my notes"))
    assert coded["Pancreas"].color == PANCREAS.color
    assert coded["Pancreas"].tags["PancreasSeg.LabelValue"] == str(PANCREAS.value)
    assert coded["my notes"].tags == {} and coded["my notes"].color is None
