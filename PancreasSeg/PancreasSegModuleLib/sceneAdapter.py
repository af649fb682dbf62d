"""Everything the Logic needs of the MRML scene, done with Slicer's own API (the only file that does).

Implements ``logicTypes.SceneAdapter``. The links between a volume and its result (the edited segmentation,
the hidden proposal, the ROI) are node references on the segmentation node, so they are saved with the scene.
Only APIs that Slicer's core libraries have both inside the application and outside it (``slicer-core``) are
used: files are read through the volumes logic and written with storage nodes, segmentations are made and
exported with the segmentations logic, nodes are found by class. Module logics and the few view and GUI calls
come from ``slicerApplication``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import slicer
import vtk

from PancreasSegLib.io.segfile import terminology_entry
from PancreasSegLib.labels import PANCREAS, LabelInfo
from PancreasSegLib.pipeline.roi import ROI

from .logicTypes import SegmentationResult
from .roiGeometry import rasBox, roiFromRas
from .slicerApplication import ApplicationViews, ModuleLogics, moduleLogics

# Node reference roles and attributes of our results (on the edited segmentation node).
PROPOSAL_ROLE = "PancreasSegProposal"
ROI_ROLE = "PancreasSegROI"
PROBABILITY_ROLE = "PancreasSegProbability"
RESULT_ATTRIBUTE = "PancreasSeg.Result"
MODEL_ATTRIBUTE = "PancreasSeg.ModelPath"
SOURCE_VOLUME_ROLE = "PancreasSegSourceVolume"
#: The segment tag holding the label value a coded segment was imported with.
LABEL_VALUE_TAG = "PancreasSeg.LabelValue"
# vtkSlicerVolumesLogic::AddArchetypeVolume loading options (bits).
LABEL_MAP, SINGLE_FILE, AUTO_WINDOW_LEVEL = 1, 4, 8


class SlicerSceneAdapter:
    """The scene interface of the Logic, on Slicer's scene or any other ``vtkMRMLScene``.

    Args:
        scene: the scene (``slicer.mrmlScene`` when None).
        logics: the module logics to use (by default the application's for its scene, else created on it).
        views: the view and GUI calls (by default :class:`~.slicerApplication.ApplicationViews`).
    """

    def __init__(self, scene=None, logics: ModuleLogics | None = None, views: ApplicationViews | None = None) -> None:
        self.scene, self._logics = (scene if scene is not None else slicer.mrmlScene), logics
        self.views = views if views is not None else ApplicationViews()

    @property
    def logics(self) -> ModuleLogics:
        """The module logics, looked up (or created) on first use: the module loads before other modules."""
        if self._logics is None:
            self._logics = moduleLogics(self.scene)
        return self._logics

    # -- files <-> nodes -------------------------------------------------------------------------------

    def nodeName(self, node) -> str:
        return node.GetName()

    def writeVolume(self, volumeNode, path: str, compress: bool = False) -> None:
        """Write a volume in its own grid with a storage node of its own (the node's storage is left alone)."""
        storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storageNode.SetFileName(path)
        storageNode.SetUseCompression(1 if compress else 0)
        if not storageNode.WriteData(volumeNode) or not os.path.isfile(path):
            raise RuntimeError(f"Could not write {volumeNode.GetName()} to {path}.")

    def loadVolume(self, path: str, name: str):
        """A volume file, or a folder with one DICOM series, as a scalar volume (else RuntimeError)."""
        return self._readVolume(path, name, AUTO_WINDOW_LEVEL)

    loadProbabilityMap = loadVolume

    def _readVolume(self, path: str, name: str, options: int):
        archetype = path
        if os.path.isdir(path):
            # A series folder: the archetype reader reads every file of the first file's series.
            files = sorted(entry.path for entry in os.scandir(path) if entry.is_file())
            archetype = files[0] if files else path
        else:
            options |= SINGLE_FILE  # never a numbered file series (case_0001, case_0002, ...)
        node = self.logics.volumes.AddArchetypeVolume(archetype, name, options)
        if node is None:
            raise RuntimeError(f"Could not read {path} as a volume.")
        return node

    def importSegmentation(self, path: str, volumeNode, name: str, labels: Sequence[LabelInfo],
                           hidden: bool = False):
        """Load a label map file as a segmentation of ``volumeNode`` with named, coded, colored segments.

        Raises:
            RuntimeError: the file cannot be read or imported; the scene is left as it was.
        """
        labelmapNode = self._readVolume(path, f"{name} labelmap", LABEL_MAP)
        colorNode, segmentationNode = self._colorTable(labels), None
        try:
            labelmapNode.GetDisplayNode().SetAndObserveColorNodeID(colorNode.GetID())
            segmentationNode = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
            segmentationNode.CreateDefaultDisplayNodes()
            # Reference geometry and source volume: the segmentation lives in the CT's grid and DICOM SEG
            # export knows which series it belongs to.
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
            segmentationNode.SetNodeReferenceID(segmentationNode.GetReferenceImageGeometryReferenceRole(),
                                                volumeNode.GetID())
            if not self.logics.segmentations.ImportLabelmapToSegmentationNode(labelmapNode, segmentationNode):
                raise RuntimeError(f"Could not import {path} as a segmentation.")
        except BaseException:
            self.removeNodes([segmentationNode])
            raise
        finally:
            self.removeNodes([labelmapNode, colorNode])
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
            segment.SetTag(LABEL_VALUE_TAG, str(label.value))

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

    def exportLabelmap(self, segmentationNode, volumeNode, path: str, labels: Sequence[LabelInfo]) -> None:
        """Write the segmentation as a label map in exactly ``volumeNode``'s grid, with our label values.

        Raises:
            ValueError: the Pancreas segment was deleted, renamed or emptied (nothing is written).
            RuntimeError: the export or the write failed.
        """
        segmentIds, values = self._trainingSegments(segmentationNode, labels)
        colorTables = self._colorTableIds()
        labelmapNode = self.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "PancreasSegExport")
        colorNode = self._colorTable(labels)
        try:
            # The color table maps segment names to our label values; the reference volume fixes the grid.
            if not self.logics.segmentations.ExportSegmentsToLabelmapNode(
                    segmentationNode, segmentIds, labelmapNode, volumeNode,
                    slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, colorNode):
                raise RuntimeError(f"Could not export {segmentationNode.GetName()} as a label map.")
            if PANCREAS.value in values and not self._holdsValue(labelmapNode, PANCREAS.value):
                raise ValueError(f"The '{PANCREAS.name}' segment of '{segmentationNode.GetName()}' is empty: "
                                 "nothing was exported.")
            self.writeVolume(labelmapNode, path, compress=True)
        finally:
            # The export also adds a color table of its own ("<segmentation>_ColorTable"): none is kept.
            added = [self.scene.GetNodeByID(nodeId) for nodeId in self._colorTableIds() - colorTables]
            self.removeNodes([labelmapNode, colorNode] + added)

    def _colorTableIds(self) -> set[str]:
        count = self.scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")
        return {self.scene.GetNthNodeByClass(i, "vtkMRMLColorTableNode").GetID() for i in range(count)}

    @staticmethod
    def _trainingSegments(segmentationNode, labels: Sequence[LabelInfo]):
        """The IDs of the segments named after a label (a vtkStringArray) and their label values.

        Raises:
            ValueError: a coded segment was renamed, or there is no Pancreas segment.
        """
        segmentation = segmentationNode.GetSegmentation()
        segmentIds = vtk.vtkStringArray()
        values = []
        byName = {label.name: label for label in labels}
        for index in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(index)
            label = byName.get(segment.GetName())
            tagValue = vtk.reference("")  # vtkSegment::GetTag(name, value&) -> bool
            if label is None and segment.GetTag(LABEL_VALUE_TAG, tagValue):
                original = next((lab.name for lab in labels if str(lab.value) == str(tagValue)), "a model")
                raise ValueError(f"The segment '{segment.GetName()}' of '{segmentationNode.GetName()}' was the "
                                 f"'{original}' segment: rename it back to '{original}' to export it; nothing "
                                 "was exported.")
            if label is None:
                continue  # a segment the user added (e.g. a note-taking segment) is not a training label
            segmentIds.InsertNextValue(segmentation.GetNthSegmentID(index))
            values.append(label.value)
        if PANCREAS.name in byName and PANCREAS.value not in values:
            raise ValueError(f"'{segmentationNode.GetName()}' has no '{PANCREAS.name}' segment (deleted or "
                             "renamed?): nothing was exported.")
        return segmentIds, values

    @staticmethod
    def _holdsValue(labelmapNode, value: int) -> bool:
        from vtk.util.numpy_support import vtk_to_numpy

        return bool((vtk_to_numpy(labelmapNode.GetImageData().GetPointData().GetScalars()) == value).any())

    # -- ROI -------------------------------------------------------------------------------------------

    def createRoi(self, name: str, roi: ROI, visible: bool):
        box = rasBox(roi)
        roiNode = self.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
        # Columns: the box's axes, then its center (RAS).
        rows = [[axis[row] for axis in box.axes] + [box.center[row]] for row in range(3)] + [[0.0, 0.0, 0.0, 1.0]]
        matrix = vtk.vtkMatrix4x4()
        matrix.DeepCopy([value for row in rows for value in row])
        roiNode.SetAndObserveObjectToNodeMatrix(matrix)
        roiNode.SetSize(*box.size)
        if roiNode.GetDisplayNode() is None:
            roiNode.CreateDefaultDisplayNodes()  # no markups logic observes this scene
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
        className = "vtkMRMLSegmentationNode"
        for index in range(self.scene.GetNumberOfNodesByClass(className)):
            node = self.scene.GetNthNodeByClass(index, className)
            if node.GetAttribute(RESULT_ATTRIBUTE) != "1":
                continue
            if node.GetNodeReferenceID(SOURCE_VOLUME_ROLE) != volumeNode.GetID():
                continue
            return SegmentationResult(volumeNode, node, node.GetNodeReference(PROPOSAL_ROLE),
                                      node.GetNodeReference(ROI_ROLE), node.GetNodeReference(PROBABILITY_ROLE),
                                      node.GetAttribute(MODEL_ATTRIBUTE) or None)
        return None

    def removeNodes(self, nodes) -> None:
        """Remove ``nodes`` with their display and storage nodes (a scene without the application keeps those)."""
        for node in nodes:
            if node is None or not self.scene.IsNodePresent(node):
                continue
            displayable, storable = node.IsA("vtkMRMLDisplayableNode"), node.IsA("vtkMRMLStorableNode")
            parts = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())] if displayable else []
            parts += [node.GetStorageNode()] if storable else []
            self.scene.RemoveNode(node)
            for part in parts:
                if part is not None and self.scene.IsNodePresent(part):
                    self.scene.RemoveNode(part)

    # -- views -----------------------------------------------------------------------------------------

    def showResult(self, result: SegmentationResult) -> None:
        result.segmentation.CreateClosedSurfaceRepresentation()
        self.views.showVolume(result.volume)

    def openSegmentEditor(self, segmentationNode, volumeNode) -> None:
        self.views.openSegmentEditor(segmentationNode, volumeNode)
