"""The module on a real MRML scene (slicer-core) with other inputs: a DICOM series, oblique, flipped and
anisotropic CTs (the segment lands where the command line's own label is), and bad input (a result file that
cannot be loaded, a Pancreas segment deleted, renamed or emptied before export)."""

from __future__ import annotations

import sys

import module_doubles  # noqa: F401  (puts the module folder on sys.path)
import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from bundle_doubles import make_random_bundle
from conftest import oblique_direction
from ct_samples import write_dicom_ct
from inference_doubles import blob_volume, dice_on_grid, reoriented, test_config
from PancreasSegModuleLib.logicTypes import ExportOptions, SegmentationResult, SegmentOptions
from PancreasSegModuleLib.sceneAdapter import SlicerSceneAdapter
from PancreasSegModuleLib.slicerApplication import ModuleLogics
from slicer_scene import TIMEOUT, label_image, new_logic, node_ids, segment_array

from PancreasSegLib.cli import main
from PancreasSegLib.labels import PANCREAS, STANDARD_LABELS
from PancreasSegLib.pipeline.roi import ROI

pytestmark = pytest.mark.slicer
LABELS = list(STANDARD_LABELS.values())

#: A command that reports success with a result file nobody can read.
BROKEN_SEGMENT = """
import json, sys
args = sys.argv[1:]
out = args[args.index("-o") + 1]
open(out, "wb").write(b"this is not an image")
print(json.dumps({"event": "done", "outputs": {"segmentation": out}}), flush=True)
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    config = test_config()
    config["stages"]["localizer"]["score_threshold"] = 0.0  # a random localizer always finds a box
    return make_random_bundle(tmp_path_factory.mktemp("bundle") / "random", seed=0, config=config)


@pytest.fixture
def env(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    logic, adapter, runner = new_logic(runs)
    return logic, adapter, runs


def test_a_dicom_series_folder_loads_as_a_scalar_volume_and_is_segmented_on_its_grid(env, bundle, tmp_path):
    logic, adapter, _ = env
    ct, _ = blob_volume(shape_zyx=(32, 48, 56))
    hu = np.round(sitk.GetArrayFromImage(ct))
    hu[:, :5] = -1000.0  # air in front of the body and a bone plate behind: a CT's range, not a picture's
    hu[:, -4:] = 700.0
    write_dicom_ct(tmp_path / "series", hu, slope=1.0, intercept=-1024.0, spacing=(1.5, 1.6, 2.5))
    volume = adapter.loadVolume(str(tmp_path / "series"), "CT series")
    assert volume.IsA("vtkMRMLScalarVolumeNode") and volume.GetImageData().GetDimensions() == (56, 48, 32)
    assert np.array_equal(slicer.util.arrayFromVolume(volume), hu)  # every slice, rescaled to HU, in order
    assert volume.GetSpacing() == pytest.approx((1.5, 1.6, 2.5))
    logic.segment(volume, SegmentOptions(str(bundle), device="cpu"))
    result = logic.wait(timeoutSeconds=TIMEOUT)
    segmentation = result.segmentation
    assert segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole()) is volume
    segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName(PANCREAS.name)
    assert segment_array(segmentation, segmentId, volume).sum() > 0


@pytest.mark.parametrize("kind", ["oblique", "flipped", "anisotropic"])
def test_the_segment_lands_where_the_command_lines_label_is(env, bundle, tmp_path, kind):
    logic, adapter, _ = env
    if kind == "oblique":
        ct, _ = blob_volume(direction=oblique_direction(25.0))
    elif kind == "flipped":
        ct = reoriented(blob_volume()[0], order=(1, 0, 2), flips=(True, False, True))
    else:
        ct, _ = blob_volume(shape_zyx=(16, 64, 72), spacing=(1.2, 1.3, 5.5))
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct, str(path))
    cli_label = tmp_path / "cli.nii.gz"
    assert main(["segment", str(path), "-o", str(cli_label), "--model", str(bundle), "--device", "cpu",
                 "--progress", "none"]) == 0

    volume = adapter.loadVolume(str(path), "CT")
    logic.segment(volume, SegmentOptions(str(bundle), device="cpu"))
    result = logic.wait(timeoutSeconds=TIMEOUT)
    in_scene = label_image(adapter, result.segmentation, volume, tmp_path / "scene.nii.gz", LABELS)
    expected = sitk.ReadImage(str(cli_label))
    assert sitk.GetArrayFromImage(expected).sum() > 0
    # On the volume node's grid (Slicer may store an improper direction with the k axis reversed: the same
    # voxels in physical space), and where the command line put the pancreas, in physical space.
    adapter.writeVolume(volume, str(tmp_path / "volume.nrrd"))
    grid = sitk.ReadImage(str(tmp_path / "volume.nrrd"))
    assert in_scene.GetSize() == grid.GetSize()
    assert np.allclose(in_scene.GetDirection(), grid.GetDirection(), atol=1e-5)
    assert np.allclose(in_scene.GetOrigin(), grid.GetOrigin(), atol=1e-3)
    assert dice_on_grid(in_scene, expected) >= 0.99 and dice_on_grid(expected, in_scene) >= 0.99


def _imported_result(adapter, tmp_path) -> SegmentationResult:
    """A CT and a previous result made from label files (no command run)."""
    ct, label = blob_volume(shape_zyx=(20, 28, 32), spacing=(2.0, 2.0, 3.0))
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(label, str(tmp_path / "label.nii.gz"))
    volume = adapter.loadVolume(str(tmp_path / "ct.nii.gz"), "CT")
    segmentation = adapter.importSegmentation(str(tmp_path / "label.nii.gz"), volume, "CT pancreas", LABELS)
    result = SegmentationResult(volume, segmentation, adapter.copySegmentation(segmentation, "CT pancreas proposal"))
    adapter.linkResult(result)
    return result


def test_a_result_file_that_cannot_be_loaded_leaves_the_scene_as_it_was(env, bundle, tmp_path):
    _, adapter, runs = env
    old = _imported_result(adapter, tmp_path)
    before = node_ids(adapter.scene)
    script = tmp_path / "broken_segment.py"
    script.write_text(BROKEN_SEGMENT, encoding="utf-8")
    broken, _, _ = new_logic(runs, adapter=adapter, command=[sys.executable, str(script)])
    broken.segment(old.volume, SegmentOptions(str(bundle), device="cpu"))
    with pytest.raises(RuntimeError, match="Could not read .*segmentation.nrrd"):
        broken.wait(timeoutSeconds=TIMEOUT)
    assert node_ids(adapter.scene) == before  # the old result kept, no stray node
    assert adapter.findResult(old.volume).segmentation is old.segmentation
    assert list(runs.iterdir()) == []

    # The same straight through the adapter: a bad volume file, a bad label map file.
    with pytest.raises(RuntimeError, match="Could not read"):
        adapter.loadVolume(str(script), "bad")
    with pytest.raises(RuntimeError, match="Could not read"):
        adapter.importSegmentation(str(script), old.volume, "bad", LABELS)
    assert node_ids(adapter.scene) == before


def _delete(segmentation, segmentId):
    segmentation.RemoveSegment(segmentId)


def _rename(segmentation, segmentId):
    segmentation.GetSegment(segmentId).SetName("Pancreas (edited)")


def _empty(segmentation, segmentId):
    segmentation.ClearSegment(segmentId)


@pytest.mark.parametrize("change, message", [
    (_delete, "has no 'Pancreas' segment"),
    (_rename, "was the 'Pancreas' segment: rename it back"),
    (_empty, "'Pancreas' segment of 'CT pancreas' is empty"),
])
def test_a_deleted_renamed_or_emptied_pancreas_segment_is_refused_and_nothing_is_written(
        env, tmp_path, change, message):
    logic, adapter, runs = env
    result = _imported_result(adapter, tmp_path)
    segmentation = result.segmentation.GetSegmentation()
    change(segmentation, segmentation.GetSegmentIdBySegmentName(PANCREAS.name))
    before = node_ids(adapter.scene)
    dataset = tmp_path / "Dataset501_Curated"
    with pytest.raises(ValueError, match=message) as raised:
        logic.exportForTraining(result.volume, ExportOptions(str(dataset), "case_0001"))
    assert "nothing was exported" in str(raised.value) and not logic.isRunning()
    assert not dataset.exists() and list(runs.iterdir()) == []
    assert node_ids(adapter.scene) == before


class RefusingSegmentations:
    """The segmentations logic answering "failed" to an import or an export (what a broken file would get)."""

    def ImportLabelmapToSegmentationNode(self, *args):
        return False

    def ExportSegmentsToLabelmapNode(self, *args):
        return False


def test_the_adapters_other_paths_on_a_real_scene(env, tmp_path):
    _, adapter, _ = env
    result = _imported_result(adapter, tmp_path)
    volume, segmentation = result.volume, result.segmentation
    assert adapter.findResult(None) is None

    # A segment the clinician added (notes) is no training label: the export holds the Pancreas alone.
    pancreas = segment_array(segmentation, segmentation.GetSegmentation().GetSegmentIdBySegmentName("Pancreas"),
                             volume)
    notes = segmentation.GetSegmentation().AddEmptySegment("my notes")
    segmentation.GetSegmentation().GetSegment(notes).SetName("my notes")
    exported = label_image(adapter, segmentation, volume, tmp_path / "label.nii.gz", LABELS)
    assert np.array_equal(sitk.GetArrayFromImage(exported), pancreas * PANCREAS.value)

    # Failed writes, imports and exports raise and leave no node behind.
    before = node_ids(adapter.scene)
    with pytest.raises(RuntimeError, match="Could not write"):
        adapter.writeVolume(volume, str(tmp_path / "label.nii.gz" / "ct.nrrd"))  # under a file
    refusing = SlicerSceneAdapter(adapter.scene, logics=ModuleLogics(adapter.logics.volumes, RefusingSegmentations(),
                                                                     adapter.logics.markups))
    with pytest.raises(RuntimeError, match="Could not import"):
        refusing.importSegmentation(str(tmp_path / "label.nii.gz"), volume, "again", LABELS)
    with pytest.raises(RuntimeError, match="Could not export"):
        refusing.exportLabelmap(segmentation, volume, str(tmp_path / "again.nii.gz"), LABELS)
    assert node_ids(adapter.scene) == before and not (tmp_path / "again.nii.gz").exists()

    # The ROI on a scene without the markups logic gets its display node all the same; it can be hidden.
    bare = SlicerSceneAdapter(slicer.vtkMRMLScene(), logics=ModuleLogics(None, None, None))
    roi = bare.createRoi("ROI", ROI.from_json({"center": [1.0, 2.0, 3.0], "size": [10.0, 20.0, 30.0]}), True)
    assert roi.GetDisplayNode() is not None and roi.GetDisplayNode().GetVisibility() == 1
    assert bare.readRoi(roi).to_json()["center"] == pytest.approx([1.0, 2.0, 3.0])
    bare.setRoiVisible(roi, False)
    assert roi.GetDisplayNode().GetVisibility() == 0
