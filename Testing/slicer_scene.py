"""A real MRML scene of Slicer's core libraries (``slicer-core``) with the module's adapter and Logic on it.

What a clinician does in the Segment Editor is done here with Slicer's own ``vtkSlicerSegmentEditorLogic``
(the logic under the Segment Editor widget and its effects): a paint stroke is a row of spheres added to
the segment, erasing removes voxels, and "keep largest island" is the Islands effect's ``vtkITKIslandMath``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import module_doubles  # noqa: F401  (puts the module folder on sys.path)
import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from PancreasSegModuleLib.processRunner import BackgroundProcess
from PancreasSegModuleLib.sceneAdapter import SlicerSceneAdapter
from PancreasSegModuleLib.segmentationLogic import SegmentationLogic
from vtk.util.numpy_support import vtk_to_numpy

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600


class RecordingProcess(BackgroundProcess):
    """The real runner, also keeping every stdout line of the last command (its jsonl events)."""

    def start(self, args, onStdout=None, **kwargs):
        self.lines = []

        def record(text):
            self.lines.append(text)
            if onStdout is not None:
                onStdout(text)

        super().start(args, onStdout=record, **kwargs)

    def done_event(self) -> dict:
        events = [json.loads(line) for line in "".join(self.lines).splitlines() if line.startswith("{")]
        assert events and events[-1]["event"] == "done", events[-1:]
        return events[-1]


def new_logic(tempRoot: Path, adapter: SlicerSceneAdapter | None = None, command=None):
    """The real Logic on a new scene (or the given adapter's), with the real runner and this checkout's command.

    Returns:
        (logic, adapter, runner).
    """
    adapter = adapter if adapter is not None else SlicerSceneAdapter(slicer.vtkMRMLScene())
    runner = RecordingProcess(terminateGraceSeconds=10.0)
    logic = SegmentationLogic(adapter, runner, pythonExecutable="", libraryRoot=str(ROOT),
                              commandPrefix=command or [sys.executable, "-m", "PancreasSegLib"],
                              confirm=lambda question: True, tempRoot=str(tempRoot))
    return logic, adapter, runner


def node_ids(scene) -> list[str]:
    """The IDs of every node of the scene, in order."""
    return [scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())]


def label_image(adapter: SlicerSceneAdapter, segmentationNode, volumeNode, path: Path, labels) -> sitk.Image:
    """The segmentation as the module exports it (on the volume's grid), read back with SimpleITK."""
    adapter.exportLabelmap(segmentationNode, volumeNode, str(path), labels)
    return sitk.ReadImage(str(path))


def segment_array(segmentationNode, segmentId: str, volumeNode) -> np.ndarray:
    """The segment on the volume's grid, (K, J, I) = (z, y, x), as 0/1 (through a temporary label map node)."""
    scene = segmentationNode.GetScene()
    labelmapNode = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "segment")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segmentId)
        assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentationNode, ids, labelmapNode, volumeNode, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        return (slicer.util.arrayFromVolume(labelmapNode) > 0).astype(np.uint8)
    finally:
        for index in range(labelmapNode.GetNumberOfDisplayNodes()):
            scene.RemoveNode(labelmapNode.GetNthDisplayNode(index))
        scene.RemoveNode(labelmapNode)


class SegmentEditor:
    """The Segment Editor's logic on one segmentation, its source volume and a selected segment."""

    def __init__(self, scene, segmentationNode, volumeNode, segmentId: str) -> None:
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(scene)
        self.parameters = scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        self.logic.SetSegmentEditorNode(self.parameters)
        self.logic.SetSegmentationNode(segmentationNode)
        self.logic.SetSourceVolumeNode(volumeNode)
        self.logic.SetCurrentSegmentID(segmentId)
        self.segmentationNode, self.segmentId = segmentationNode, segmentId
        assert self.logic.ResetModifierLabelmapToDefault()

    def _modifier(self, inside) -> slicer.vtkOrientedImageData:
        """A modifier label map on the segmentation's grid, 1 where ``inside(ras_points)`` is true."""
        geometry = self.logic.GetModifierLabelmap()
        modifier = slicer.vtkOrientedImageData()
        modifier.ShallowCopy(geometry)
        modifier.CopyDirections(geometry)
        modifier.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        ijkToRas = vtk.vtkMatrix4x4()
        modifier.GetImageToWorldMatrix(ijkToRas)
        extent = modifier.GetExtent()
        k, j, i = np.meshgrid(*(np.arange(extent[2 * a], extent[2 * a + 1] + 1) for a in (2, 1, 0)), indexing="ij")
        ijk = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
        matrix = np.array([[ijkToRas.GetElement(r, c) for c in range(4)] for r in range(4)])
        ras = (matrix @ ijk)[:3].T
        values = vtk_to_numpy(modifier.GetPointData().GetScalars())
        values[:] = inside(ras).astype(np.uint8)  # point order: i fastest, then j, then k, as meshgrid's ravel
        modifier.Modified()
        return modifier

    def paint(self, stroke_ras, radius_mm: float, erase: bool = False) -> None:
        """A sphere brush dragged through ``stroke_ras`` (points in RAS, mm): adds (or erases) voxels."""
        stroke = np.asarray(stroke_ras, dtype=float)

        def inside(ras):
            distances = np.linalg.norm(ras[:, None, :] - stroke[None, :, :], axis=2)
            return (distances <= radius_mm).any(axis=1)

        mode = self.logic.ModificationModeRemove if erase else self.logic.ModificationModeAdd
        self._apply(self._modifier(inside), mode)

    def keep_largest_island(self) -> None:
        """The Islands effect's "Keep largest island" (6-connected, as its default)."""
        assert self.logic.UpdateSelectedSegmentLabelmap()
        selected = slicer.vtkOrientedImageData()
        selected.DeepCopy(self.logic.GetSelectedSegmentLabelmap())
        islands = slicer.vtkITKIslandMath()
        islands.SetInputData(selected)
        islands.SetFullyConnected(False)
        islands.SetMinimumSize(1)
        islands.Update()
        largest = vtk.vtkImageThreshold()
        largest.SetInputConnection(islands.GetOutputPort())
        largest.ThresholdBetween(1, 1)  # the islands come numbered by size, the largest first
        largest.SetInValue(1)
        largest.SetOutValue(0)
        largest.SetOutputScalarTypeToUnsignedChar()
        largest.Update()
        modifier = slicer.vtkOrientedImageData()
        modifier.ShallowCopy(largest.GetOutput())
        modifier.CopyDirections(selected)
        self._apply(modifier, self.logic.ModificationModeSet)

    def _apply(self, modifier, mode) -> None:
        self.logic.SaveStateForUndo()
        self.logic.ModifySegmentByLabelmap(self.segmentationNode, self.segmentId, modifier, mode, True, True)
