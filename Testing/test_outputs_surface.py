"""Surface meshes: right volume, right place in LPS, Slicer's coordinate-system markers."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import DIRECTIONS

from PancreasSegLib.errors import InputError
from PancreasSegLib.outputs.surface import write_surface

RADIUS = 12.0
SPACING = (0.8, 0.7, 1.5)
CENTER_INDEX = (22.0, 24.0, 15.0)  # x, y, z


def _sphere(direction) -> sitk.Image:
    shape = (32, 50, 46)  # z, y, x
    z, y, x = np.indices(shape)
    offsets = [(index - c) * s for index, c, s in zip((x, y, z), CENTER_INDEX, SPACING)]
    inside = np.sqrt(sum(o ** 2 for o in offsets)) <= RADIUS
    label = sitk.GetImageFromArray(inside.astype(np.uint8) * 2)
    label.SetSpacing(SPACING)
    label.SetOrigin((-31.5, 140.25, -402.0))
    label.SetDirection(direction)
    return label


def _points(path):
    from vtkmodules.util.numpy_support import vtk_to_numpy

    if path.suffix == ".stl":
        from vtkmodules.vtkIOGeometry import vtkSTLReader as Reader
    else:
        from vtkmodules.vtkIOXML import vtkXMLPolyDataReader as Reader
    reader = Reader()
    reader.SetFileName(str(path))
    reader.Update()
    return reader, vtk_to_numpy(reader.GetOutput().GetPoints().GetData())


def test_sphere_volume_matches_its_radius_and_its_voxel_count(tmp_path):
    label = _sphere(DIRECTIONS["LPS"])
    stats = write_surface(label, tmp_path / "sphere.stl", value=2)
    true_ml = 4 / 3 * np.pi * RADIUS ** 3 / 1000
    voxel_ml = np.count_nonzero(sitk.GetArrayViewFromImage(label)) * np.prod(SPACING) / 1000
    assert stats["volume_ml"] == pytest.approx(true_ml, rel=0.05)
    assert stats["volume_ml"] == pytest.approx(voxel_ml, rel=0.03)
    assert stats["area_cm2"] == pytest.approx(4 * np.pi * RADIUS ** 2 / 100, rel=0.1)
    assert stats["n_points"] > 1000 and stats["n_triangles"] > 2000


@pytest.mark.parametrize("ext", [".stl", ".vtp"])
def test_surface_lies_on_the_sphere_in_lps_for_every_orientation(tmp_path, direction_name, ext):
    label = _sphere(DIRECTIONS[direction_name])
    path = tmp_path / f"sphere{ext}"
    stats = write_surface(label, path, value=2)
    _, points = _points(path)
    center = np.array(label.TransformContinuousIndexToPhysicalPoint(CENTER_INDEX))
    distances = np.linalg.norm(points - center, axis=1)
    assert len(points) == stats["n_points"]
    assert abs(distances.mean() - RADIUS) < 0.3  # mm; the voxel staircase is smoothed, not shrunk
    assert np.abs(points.mean(axis=0) - center).max() < 0.3


def test_files_say_they_are_in_lps(tmp_path):
    label = _sphere(DIRECTIONS["RAS"])
    write_surface(label, tmp_path / "s.stl", value=2)
    reader, _ = _points(tmp_path / "s.stl")
    assert "SPACE=LPS" in reader.GetHeader()
    write_surface(label, tmp_path / "s.vtp", value=2)
    reader, _ = _points(tmp_path / "s.vtp")
    assert reader.GetOutput().GetFieldData().GetAbstractArray("SPACE").GetValue(0) == "LPS"


def test_mirrored_grid_still_gives_outward_normals_and_positive_volume(tmp_path):
    mirrored = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # determinant -1
    stats = write_surface(_sphere(mirrored), tmp_path / "s.vtp", value=2)
    reader, points = _points(tmp_path / "s.vtp")
    from vtkmodules.util.numpy_support import vtk_to_numpy

    normals = vtk_to_numpy(reader.GetOutput().GetPointData().GetNormals())
    outward = np.einsum("ij,ij->i", normals, points - points.mean(axis=0))
    assert (outward > 0).mean() > 0.99
    assert stats["volume_ml"] == pytest.approx(4 / 3 * np.pi * RADIUS ** 3 / 1000, rel=0.05)


def test_label_touching_the_volume_edge_gives_a_closed_surface(tmp_path):
    from vtkmodules.vtkFiltersCore import vtkFeatureEdges

    label = sitk.GetImageFromArray(np.ones((6, 7, 8), np.uint8))
    stats = write_surface(label, tmp_path / "box.vtp", smoothing_iterations=0)
    assert stats["volume_ml"] == pytest.approx(6 * 7 * 8 / 1000, rel=0.05)  # marching cubes cuts the corners
    reader, _ = _points(tmp_path / "box.vtp")
    edges = vtkFeatureEdges()
    edges.SetInputData(reader.GetOutput())
    edges.BoundaryEdgesOn()
    edges.FeatureEdgesOff()
    edges.ManifoldEdgesOff()
    edges.NonManifoldEdgesOff()
    edges.Update()
    assert edges.GetOutput().GetNumberOfCells() == 0


def test_bad_requests_are_input_errors_and_write_nothing(tmp_path):
    label = _sphere(DIRECTIONS["LPS"])
    with pytest.raises(InputError, match="unsupported surface file type .obj"):
        write_surface(label, tmp_path / "s.obj", value=2)
    with pytest.raises(InputError, match="value 1 is empty"):
        write_surface(label, tmp_path / "s.stl", value=1)
    with pytest.raises(InputError, match="does not exist"):
        write_surface(label, tmp_path / "missing" / "s.stl", value=2)
    assert list(tmp_path.iterdir()) == []
