"""The module on Slicer's own libraries: the real adapter and Logic on a real ``vtkMRMLScene`` (slicer-core).

The whole loop as a clinician runs it, with the real process runner and the real ``pancreasseg`` command of
this checkout (a tiny random bundle, a small CT with a bright blob): load a CT, "Segment pancreas", check the
coded result, its ROI and the hidden proposal, "Re-run inside ROI" after moving the ROI, correct with the
Segment Editor's logic (paint, erase, keep the largest island, undo, redo), "Export for training", verify the
dataset, open the exported case, save the scene as a bundle, clear it and load it again. The tests run in
file order on one segmented scene (one command run for the whole loop).
"""

from __future__ import annotations

import json
import tempfile
from types import SimpleNamespace

import module_doubles  # noqa: F401  (puts the module folder on sys.path)
import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk
from bundle_doubles import make_random_bundle
from inference_doubles import blob_volume, test_config
from PancreasSegModuleLib.logicTypes import ExportOptions, SegmentOptions
from PancreasSegModuleLib.slicerApplication import NO_APPLICATION
from scipy import ndimage
from slicer_scene import TIMEOUT, SegmentEditor, new_logic, segment_array

from PancreasSegLib.cli import main
from PancreasSegLib.io.segfile import terminology_entry
from PancreasSegLib.labels import PANCREAS

pytestmark = pytest.mark.slicer

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    # A random localizer scores below any sensible threshold; at 0 it always finds a box, so both phases run.
    config = test_config()
    config["stages"]["localizer"]["score_threshold"] = 0.0
    config["postprocessing"]["border_guard_mm"] = 0.0  # phase 2 stays inside the box it is given
    return make_random_bundle(tmp_path_factory.mktemp("bundle") / "random", seed=0, config=config)


@pytest.fixture(scope="module")
def loop(tmp_path_factory, bundle):
    """A CT loaded from NIfTI into a real scene and segmented through the Logic by the real command."""
    folder = tmp_path_factory.mktemp("loop")
    image, _ = blob_volume()
    path = folder / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    runs = folder / "runs"
    runs.mkdir()
    logic, adapter, runner = new_logic(runs)
    volume = adapter.loadVolume(str(path), "CT abdomen")
    assert logic.segment(volume, SegmentOptions(str(bundle), device="cpu"))
    result = logic.wait(timeoutSeconds=TIMEOUT)
    return SimpleNamespace(folder=folder, image=image, runs=runs, logic=logic, adapter=adapter, runner=runner,
                           scene=adapter.scene, volume=volume, result=result, done=runner.done_event(),
                           options=SegmentOptions(str(bundle), device="cpu"))


def ijk_to_ras(volumeNode) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def voxel_ras(volumeNode, kji: np.ndarray) -> np.ndarray:
    """RAS (mm) of voxels given as (k, j, i) rows."""
    ijk = np.column_stack([kji[:, 2], kji[:, 1], kji[:, 0], np.ones(len(kji))])
    return (ijk_to_ras(volumeNode) @ ijk.T)[:3].T


def brush(volumeNode, stroke_ras, radius_mm: float) -> np.ndarray:
    """The voxels (z, y, x) a sphere brush dragged through ``stroke_ras`` covers."""
    shape = slicer.util.arrayFromVolume(volumeNode).shape
    kji = np.argwhere(np.ones(shape, dtype=bool))
    ras = voxel_ras(volumeNode, kji)
    distances = np.linalg.norm(ras[:, None, :] - np.asarray(stroke_ras, dtype=float)[None], axis=2)
    return (distances <= radius_mm).any(axis=1).reshape(shape)


def roi_box(roiNode):
    center, size = np.zeros(3), np.zeros(3)
    roiNode.GetCenterWorld(center)
    roiNode.GetSizeWorld(size)
    axes = []
    for index in range(3):
        axis = np.zeros(3)
        roiNode.GetAxisWorld(index, axis)
        axes.append(axis)
    return center, size, np.array(axes)


def inside_box(points_ras, roiNode, tolerance_mm=1e-3) -> bool:
    center, size, axes = roi_box(roiNode)
    offsets = np.abs((points_ras - center) @ axes.T)
    return bool((offsets <= size / 2 + tolerance_mm).all())


def pancreas_id(segmentationNode) -> str:
    segmentId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(PANCREAS.name)
    assert segmentId, "no Pancreas segment"
    return segmentId


def test_a_ct_loads_as_a_scalar_volume_with_its_voxels_and_geometry(loop):
    volume, image = loop.volume, loop.image
    assert volume.IsA("vtkMRMLScalarVolumeNode") and volume.GetDisplayNode() is not None
    assert np.allclose(slicer.util.arrayFromVolume(volume), sitk.GetArrayFromImage(image))
    direction = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    assert np.allclose(ijk_to_ras(volume)[:3, :3], LPS_TO_RAS @ direction, atol=1e-6)
    assert np.allclose(ijk_to_ras(volume)[:3, 3], LPS_TO_RAS @ np.array(image.GetOrigin()), atol=1e-6)


def test_segment_pancreas_gives_a_coded_segmentation_of_the_volume_with_its_roi_and_hidden_proposal(loop):
    scene, volume, result = loop.scene, loop.volume, loop.result
    segmentation = result.segmentation
    assert segmentation.IsA("vtkMRMLSegmentationNode") and segmentation.GetName() == "CT abdomen pancreas"
    assert segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole()) is volume
    segment = segmentation.GetSegmentation().GetSegment(pancreas_id(segmentation))
    entry = vtk.reference("")
    assert segment.GetTag(segment.GetTerminologyEntryTagName(), entry) and str(entry) == terminology_entry(PANCREAS)
    assert segment.GetColor() == pytest.approx(PANCREAS.color, abs=1e-4)  # vtkSegment keeps 4 decimals
    pancreas = segment_array(segmentation, pancreas_id(segmentation), volume)
    assert pancreas.shape == slicer.util.arrayFromVolume(volume).shape and pancreas.sum() > 20

    # The proposal: a hidden copy with the same voxels.
    proposal = result.proposal
    assert proposal.GetDisplayNode().GetVisibility() == 0 and proposal.GetHideFromEditors()
    assert np.array_equal(segment_array(proposal, pancreas_id(proposal), volume), pancreas)

    # The ROI: a markups ROI at the command's box, flipped to RAS, holding every voxel of the segment.
    roi = result.roi
    assert roi.IsA("vtkMRMLMarkupsROINode") and roi.GetDisplayNode().GetVisibility() == 1
    center, size, axes = roi_box(roi)
    lps = loop.done["roi"]
    assert center == pytest.approx(LPS_TO_RAS @ np.array(lps["center"]), abs=1e-6)
    assert size == pytest.approx(lps["size"], abs=1e-6)
    assert axes == pytest.approx((LPS_TO_RAS @ np.array(lps["axes"]).T).T, abs=1e-6)
    assert inside_box(voxel_ras(volume, np.argwhere(pancreas)), roi, tolerance_mm=max(loop.image.GetSpacing()))

    # Linked by node references, and nothing else left behind (no label map, no color table of the import).
    found = loop.adapter.findResult(volume)
    assert (found.segmentation, found.proposal, found.roi) == (segmentation, proposal, roi)
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 0
    assert scene.GetFirstNodeByName("PancreasSegLabels") is None
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 2
    assert segmentation.GetSegmentation().ContainsRepresentation("Closed surface")  # shown in 3D
    assert list(loop.runs.iterdir()) == []


def test_view_calls_are_skipped_with_the_reason_logged_where_there_is_no_application(loop, caplog):
    caplog.set_level("INFO")
    loop.logic.openInSegmentEditor(loop.volume)
    loop.adapter.showResult(loop.result)
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("Opening the Segment Editor") and NO_APPLICATION in m for m in messages)
    assert any(m.startswith("Showing the result") and NO_APPLICATION in m for m in messages)


def test_rerun_inside_a_moved_roi_runs_phase_2_only_there_and_keeps_the_roi(loop):
    scene, volume, old = loop.scene, loop.volume, loop.result
    roi = old.roi
    _, _, axes = roi_box(roi)
    # The clinician makes the box smaller and drags it 6 mm along its first axis (it stays inside the CT).
    image = loop.image
    middle = LPS_TO_RAS @ np.array(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2
                                                                                  for n in image.GetSize()]))
    moved = middle + 6.0 * axes[0]
    roi.SetSize(70.0, 70.0, 70.0)
    roi.SetCenterWorld(moved)
    assert loop.logic.rerunInsideRoi(volume, loop.options)
    result = loop.logic.wait(timeoutSeconds=TIMEOUT)
    stages = {json.loads(line).get("stage") for line in "".join(loop.runner.lines).splitlines()
              if line.startswith("{")}
    assert "localize" not in stages and "segment" in stages
    done = loop.runner.done_event()
    assert np.array(done["roi"]["center"]) == pytest.approx(LPS_TO_RAS @ moved, abs=0.01)
    assert done["roi"]["size"] == pytest.approx([70.0, 70.0, 70.0], abs=0.01)
    assert result.roi is roi and roi_box(roi)[0] == pytest.approx(moved)
    assert not scene.IsNodePresent(old.segmentation) and not scene.IsNodePresent(old.proposal)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 2
    pancreas = segment_array(result.segmentation, pancreas_id(result.segmentation), volume)
    assert pancreas.sum() > 0 and inside_box(voxel_ras(volume, np.argwhere(pancreas)), roi, tolerance_mm=3.0)
    loop.result = result


def _correct(loop) -> tuple[np.ndarray, np.ndarray]:
    """Paint, erase, paint an island, keep the largest island, undo, redo; each step checked voxel for voxel.

    Returns:
        (the proposal, the corrected segment) on the CT's grid.
    """
    volume, segmentation = loop.volume, loop.result.segmentation
    segmentId = pancreas_id(segmentation)
    editor = SegmentEditor(loop.scene, segmentation, volume, segmentId)
    proposal = segment_array(segmentation, segmentId, volume)
    voxels = np.argwhere(proposal)

    edge = voxels[np.argmax(voxels[:, 2])]  # add a region at the edge with a stroke outwards
    stroke = voxel_ras(volume, np.array([edge, edge + [0, 0, 3]]))
    editor.paint(stroke, radius_mm=3.0)
    painted = segment_array(segmentation, segmentId, volume)
    assert np.array_equal(painted, proposal | brush(volume, stroke, 3.0)) and painted.sum() > proposal.sum()

    middle = voxels[np.argmin(np.linalg.norm(voxels - voxels.mean(axis=0), axis=1))]  # remove one inside
    eraser = voxel_ras(volume, middle[None])
    editor.paint(eraser, radius_mm=2.5, erase=True)
    erased = segment_array(segmentation, segmentId, volume)
    assert np.array_equal(erased, painted & ~brush(volume, eraser, 2.5)) and erased.sum() < painted.sum()

    shape = np.array(proposal.shape)
    corner = np.where(voxels.mean(axis=0) < shape / 2, shape - 4, 3)  # a stray island far from the gland
    island = voxel_ras(volume, corner[None])
    editor.paint(island, radius_mm=3.0)
    with_island = segment_array(segmentation, segmentId, volume)
    assert np.array_equal(with_island, erased | brush(volume, island, 3.0))
    editor.keep_largest_island()
    kept = segment_array(segmentation, segmentId, volume)
    components, _ = ndimage.label(with_island)
    sizes = np.bincount(components.ravel())[1:]
    assert np.array_equal(kept, (components == 1 + np.argmax(sizes)).astype(np.uint8))
    assert not (kept & brush(volume, island, 3.0)).any()

    assert editor.logic.CanUndo()
    editor.logic.Undo()
    assert np.array_equal(segment_array(segmentation, segmentId, volume), with_island)
    assert editor.logic.CanRedo()
    editor.logic.Redo()
    assert np.array_equal(segment_array(segmentation, segmentId, volume), kept)
    return proposal, kept


def test_correct_export_verify_open_the_case_and_reload_the_saved_scene(loop):
    proposal, corrected = _correct(loop)
    dataset = loop.folder / "Dataset501_Curated"
    options = ExportOptions(str(dataset), "case_0001", "dr-a", "corrected", "painted, erased, island removed")
    assert loop.logic.exportForTraining(loop.volume, options)
    summary = loop.logic.wait(timeoutSeconds=TIMEOUT)

    # The exported label is the edited segment, voxel for voxel, on the CT's grid.
    label = sitk.ReadImage(str(dataset / "labelsTr" / "case_0001.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(label), corrected)
    image = loop.image
    assert label.GetSize() == image.GetSize()
    for got, want in ((label.GetSpacing(), image.GetSpacing()), (label.GetOrigin(), image.GetOrigin()),
                      (label.GetDirection(), image.GetDirection())):
        assert np.allclose(got, want, atol=1e-4)
    stored = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset / "proposals" / "case_0001.nii.gz")))
    assert np.array_equal(stored, proposal)

    # The provenance records the change against the proposal, as the command computed it.
    provenance = json.loads((dataset / "provenance" / "case_0001.json").read_text(encoding="utf-8"))
    text = json.dumps(provenance)
    dice = 2 * int((corrected & proposal).sum()) / int(corrected.sum() + proposal.sum())
    assert summary.dice == pytest.approx(dice, abs=1e-5) and summary.dice < 1.0
    assert summary.editedSlices == int((corrected != proposal).reshape(len(proposal), -1).any(axis=1).sum()) > 0
    assert "dr-a" in text and "pancreas-random-tiny" in text
    assert main(["verify", str(dataset)]) == 0

    # Open case brings the exported case back with its label and its hidden proposal.
    reopened = loop.logic.openCase(str(dataset), "case_0001")
    assert np.allclose(slicer.util.arrayFromVolume(reopened.volume), sitk.GetArrayFromImage(image), atol=1e-3)
    assert np.array_equal(segment_array(reopened.segmentation, pancreas_id(reopened.segmentation),
                                        reopened.volume), corrected)
    assert reopened.proposal.GetDisplayNode().GetVisibility() == 0
    assert np.array_equal(segment_array(reopened.proposal, pancreas_id(reopened.proposal), reopened.volume),
                          proposal)
    _save_clear_and_load(loop, corrected)


def _save_clear_and_load(loop, corrected: np.ndarray) -> None:
    scene, adapter = loop.scene, loop.adapter
    roiCenter = roi_box(loop.result.roi)[0]
    bundle = loop.folder / "review.mrb"
    assert scene.WriteToMRB(str(bundle))
    scene.Clear(0)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    assert adapter.logics.application.OpenSlicerDataBundle(str(bundle), tempfile.mkdtemp(dir=loop.folder))
    volume = scene.GetFirstNodeByName("CT abdomen")
    found = adapter.findResult(volume)
    assert found is not None and found.segmentation.GetName() == "CT abdomen pancreas"
    assert found.proposal is not None and found.proposal.GetDisplayNode().GetVisibility() == 0
    assert found.roi is not None and roi_box(found.roi)[0] == pytest.approx(roiCenter, abs=1e-6)
    assert found.modelPath == loop.options.modelPath
    assert np.array_equal(segment_array(found.segmentation, pancreas_id(found.segmentation), volume), corrected)
    # The loaded case can be exported again straight away (the links are intact).
    assert adapter.findResult(scene.GetFirstNodeByName("case_0001")) is not None
