"""Everything the Logic needs of the MRML scene, done with Slicer's own API (the only file that does).

Implements ``logicTypes.SceneAdapter``. The links between a volume and its result (the edited
segmentation, the hidden proposal, the ROI) are node references on the segmentation node, so they are
saved with the scene and found again after it is reloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import slicer
import vtk

from PancreasSegLib.io.segfile import terminology_entry
from PancreasSegLib.labels import LabelInfo
from PancreasSegLib.pipeline.roi import ROI

from .logicTypes import SegmentationResult
from .roiGeometry import rasBox, roiFromRas

# Node reference roles and attributes of our results (on the edited segmentation node).
PROPOSAL_ROLE = "PancreasSegProposal"
ROI_ROLE = "PancreasSegROI"
PROBABILITY_ROLE = "PancreasSegProbability"
RESULT_ATTRIBUTE = "PancreasSeg.Result"
MODEL_ATTRIBUTE = "PancreasSeg.ModelPath"
SOURCE_VOLUME_ROLE = "PancreasSegSourceVolume"


class SlicerSceneAdapter:
    """The scene interface of the Logic for a running Slicer."""

    def __init__(self, scene=None) -> None:
        self.scene = scene or slicer.mrmlScene

    # -- files <-> nodes -------------------------------------------------------------------------------

    def nodeName(self, node) -> str:
        return node.GetName()

    def writeVolume(self, volumeNode, path: str) -> None:
        # A temporary storage node writes the file without changing the volume's own storage node.
        slicer.util.exportNode(volumeNode, path, {"useCompression": 0})
        if not os.path.isfile(path):
            raise RuntimeError(f"Could not write {volumeNode.GetName()} to {path}.")

    def loadVolume(self, path: str, name: str):
        return slicer.util.loadVolume(path, {"name": name})

    def importSegmentation(self, path: str, volumeNode, name: str, labels: Sequence[LabelInfo],
                           hidden: bool = False):
        """Load a label map file as a segmentation of ``volumeNode`` with named, coded, colored segments."""
        colorNode = self._colorTable(labels)
        labelmapNode = slicer.util.loadLabelVolume(path, {"name": f"{name} labelmap", "show": False})
        try:
            labelmapNode.GetDisplayNode().SetAndObserveColorNodeID(colorNode.GetID())
            segmentationNode = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
            segmentationNode.CreateDefaultDisplayNodes()
            # Reference geometry and source volume: the segmentation lives in the CT's grid and DICOM SEG
            # export knows which series it belongs to.
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
            segmentationNode.SetNodeReferenceID(segmentationNode.GetReferenceImageGeometryReferenceRole(),
                                                volumeNode.GetID())
            if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmapNode,
                                                                                         segmentationNode):
                self.scene.RemoveNode(segmentationNode)
                raise RuntimeError(f"Could not import {path} as a segmentation.")
        finally:
            self.scene.RemoveNode(labelmapNode)
            self.scene.RemoveNode(colorNode)
        self._codeSegments(segmentationNode, labels)
        segmentationNode.GetDisplayNode().SetVisibility(not hidden)
        return segmentationNode

    def _colorTable(self, labels: Sequence[LabelInfo]):
        colorNode = self.scene.AddNewNodeByClass("vtkMRMLColorTableNode", "PancreasSegLabels")
        colorNode.SetTypeToUser()
        colorNode.SetNumberOfColors(max(label.value for label in labels) + 1)
        colorNode.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
        for label in labels:
            colorNode.SetColor(label.value, label.name, *label.color, 1.0)
        return colorNode

    @staticmethod
    def _codeSegments(segmentationNode, labels: Sequence[LabelInfo]) -> None:
        segmentation = segmentationNode.GetSegmentation()
        byName = {label.name: label for label in labels}
        for index in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(index)
            label = byName.get(segment.GetName())
            if label is None:
                continue
            segment.SetName(label.name)
            segment.SetColor(*label.color)
            # The same entry as our .seg.nrrd files carry (Testing/test_module_terminology.py pins it).
            segment.SetTag(segment.GetTerminologyEntryTagName(), terminology_entry(label))
            segment.SetTag("PancreasSeg.LabelValue", str(label.value))

    def copySegmentation(self, segmentationNode, name: str):
        """A hidden copy of ``segmentationNode``: the proposal a later export compares the correction with."""
        copy = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        copy.CreateDefaultDisplayNodes()
        copy.GetSegmentation().DeepCopy(segmentationNode.GetSegmentation())
        volume = segmentationNode.GetNodeReference(segmentationNode.GetReferenceImageGeometryReferenceRole())
        if volume is not None:
            copy.SetReferenceImageGeometryParameterFromVolumeNode(volume)
            copy.SetNodeReferenceID(copy.GetReferenceImageGeometryReferenceRole(), volume.GetID())
        copy.GetDisplayNode().SetVisibility(False)
        copy.SetHideFromEditors(True)
        return copy

    def loadProbabilityMap(self, path: str, name: str):
        return slicer.util.loadVolume(path, {"name": name, "show": False})

    def exportLabelmap(self, segmentationNode, volumeNode, path: str, labels: Sequence[LabelInfo]) -> None:
        """Write the segmentation as a label map in exactly ``volumeNode``'s grid, with our label values."""
        segmentation = segmentationNode.GetSegmentation()
        segmentIds = vtk.vtkStringArray()
        values = []
        byName = {label.name: label for label in labels}
        for index in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(index)
            value = segment.GetTag("PancreasSeg.LabelValue") or ""
            label = byName.get(segment.GetName())
            if not value and label is None:
                continue  # a segment the user added (e.g. a note-taking segment) is not a training label
            segmentIds.InsertNextValue(segmentation.GetNthSegmentID(index))
            values.append(int(value) if value else label.value)
        labelmapNode = self.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "PancreasSegExport")
        try:
            colorNode = self._colorTable(labels)
            # The color table maps segment names to our label values; the reference volume fixes the grid.
            ok = slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
                segmentationNode, segmentIds, labelmapNode, volumeNode,
                slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, colorNode)
            self.scene.RemoveNode(colorNode)
            if not ok:
                raise RuntimeError(f"Could not export {segmentationNode.GetName()} as a label map.")
            slicer.util.exportNode(labelmapNode, path)
            if not os.path.isfile(path):
                raise RuntimeError(f"Could not write {path}.")
        finally:
            self.scene.RemoveNode(labelmapNode)

    # -- ROI -------------------------------------------------------------------------------------------

    def createRoi(self, name: str, roi: ROI, visible: bool):
        box = rasBox(roi)
        roiNode = self.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
        matrix = vtk.vtkMatrix4x4()
        for column, axis in enumerate(box.axes):
            for row in range(3):
                matrix.SetElement(row, column, axis[row])
        for row in range(3):
            matrix.SetElement(row, 3, box.center[row])
        roiNode.SetAndObserveObjectToNodeMatrix(matrix)
        roiNode.SetSize(*box.size)
        roiNode.GetDisplayNode().SetVisibility(visible)
        return roiNode

    def readRoi(self, roiNode) -> ROI:
        """The ROI node's box (checked by the library: positive size, orthonormal axes; else ValueError)."""
        center, size = [0.0] * 3, [0.0] * 3
        axes = [[0.0] * 3 for _ in range(3)]
        roiNode.GetCenterWorld(center)
        roiNode.GetSizeWorld(size)
        for index in range(3):
            roiNode.GetAxisWorld(index, axes[index])
        return roiFromRas(center, size, axes)

    def setRoiVisible(self, roiNode, visible: bool) -> None:
        if roiNode is not None and roiNode.GetDisplayNode() is not None:
            roiNode.GetDisplayNode().SetVisibility(visible)

    # -- result registry -------------------------------------------------------------------------------

    def linkResult(self, result: SegmentationResult) -> None:
        node = result.segmentation
        node.SetAttribute(RESULT_ATTRIBUTE, "1")
        if result.modelPath:
            node.SetAttribute(MODEL_ATTRIBUTE, str(result.modelPath))
        node.SetNodeReferenceID(SOURCE_VOLUME_ROLE, result.volume.GetID())
        for role, other in ((PROPOSAL_ROLE, result.proposal), (ROI_ROLE, result.roi),
                            (PROBABILITY_ROLE, result.probabilities)):
            node.SetNodeReferenceID(role, other.GetID() if other is not None else None)

    def findResult(self, volumeNode) -> SegmentationResult | None:
        if volumeNode is None:
            return None
        for node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode"):
            if node.GetAttribute(RESULT_ATTRIBUTE) != "1":
                continue
            if node.GetNodeReferenceID(SOURCE_VOLUME_ROLE) != volumeNode.GetID():
                continue
            return SegmentationResult(volumeNode, node, node.GetNodeReference(PROPOSAL_ROLE),
                                      node.GetNodeReference(ROI_ROLE), node.GetNodeReference(PROBABILITY_ROLE),
                                      node.GetAttribute(MODEL_ATTRIBUTE) or None)
        return None

    def removeNodes(self, nodes) -> None:
        for node in nodes:
            if node is not None and self.scene.IsNodePresent(node):
                self.scene.RemoveNode(node)

    # -- views -----------------------------------------------------------------------------------------

    def showResult(self, result: SegmentationResult) -> None:
        slicer.util.setSliceViewerLayers(background=result.volume, fit=True)
        result.segmentation.CreateClosedSurfaceRepresentation()
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None and layoutManager.threeDWidget(0) is not None:
            layoutManager.threeDWidget(0).threeDView().resetFocalPoint()

    def openSegmentEditor(self, segmentationNode, volumeNode) -> None:
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(segmentationNode)
        # Slicer 5.2 renamed "master" volume to "source" volume; 5.0/5.1 only have the old name.
        setSource = getattr(editor, "setSourceVolumeNode", None) or editor.setMasterVolumeNode
        setSource(volumeNode)
