"""A smoothed surface mesh of one label (.stl or .vtp) in LPS, as 3D Slicer expects model files.

The surface is made in physical space (the label's spacing, direction and origin applied), so it
lies exactly over the CT in any viewer. Since Slicer 4.11 model files are in LPS and carry their
coordinate system: ``SPACE=LPS`` in the STL header, a ``SPACE`` field-data string in VTP
(``vtkMRMLModelStorageNode``); we write both markers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PancreasSegLib.errors import InputError
from PancreasSegLib.io.atomic import atomic_path, full_extension

if TYPE_CHECKING:
    import SimpleITK as sitk

#: File types :func:`write_surface` writes.
SURFACE_EXTENSIONS = (".stl", ".vtp")


def write_surface(label: sitk.Image, path: str | os.PathLike, value: int = 1, smoothing_iterations: int = 20,
                  pass_band: float = 0.01) -> dict:
    """Write the surface of the voxels equal to ``value`` atomically as .stl or .vtp (LPS, in mm).

    Discrete flying edges builds the surface on the voxel boundaries, a windowed-sinc filter smooths
    it without shrinking it (Slicer's own labelmap-to-surface defaults: 20 iterations, pass band 0.01),
    then outward normals are computed.

    Args:
        label: 3D integer label image, geometry in LPS.
        path: output file ending in .stl or .vtp; its folder must exist.
        value: the label value to mesh.
        smoothing_iterations: windowed-sinc iterations; 0 keeps the voxel staircase.
        pass_band: windowed-sinc pass band (smaller smooths more).

    Returns:
        ``{"volume_ml", "area_cm2", "n_points", "n_triangles"}`` of the written mesh.

    Raises:
        InputError: unsupported extension, missing output folder, not a 3D scalar label, or no voxel
            with ``value``.

    >>> write_surface(label, "pancreas.stl")  # doctest: +SKIP
    {'volume_ml': 71.9, 'area_cm2': 118.2, 'n_points': 40122, 'n_triangles': 80240}
    """
    path = Path(path)
    ext = full_extension(path)
    if ext not in SURFACE_EXTENSIONS:
        raise InputError(f"unsupported surface file type {ext or '(none)'}; use one of {', '.join(SURFACE_EXTENSIONS)}",
                         path)
    if label.GetDimension() != 3 or label.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("a surface needs a 3D scalar label map", path)
    mesh = label_surface(label, value, smoothing_iterations, pass_band)
    if mesh is None:
        raise InputError(f"label value {value} is empty: there is no surface to write", path)
    _write_mesh(mesh, path, ext)
    return _measure(mesh)


def label_surface(label: sitk.Image, value: int = 1, smoothing_iterations: int = 20, pass_band: float = 0.01):
    """The smoothed, outward-oriented surface (``vtkPolyData``, LPS mm) of ``label == value``; None if empty."""
    import numpy as np
    import SimpleITK as sitk
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonTransforms import vtkTransform
    from vtkmodules.vtkFiltersCore import vtkPolyDataNormals, vtkWindowedSincPolyDataFilter
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D, vtkTransformFilter

    mask = sitk.GetArrayViewFromImage(label) == value  # (z, y, x)
    if not mask.any():
        return None
    # Mesh only the bounding box plus one background voxel on every side, so the surface is closed
    # where the label touches the edge of the volume.
    nonzero = np.nonzero(mask)
    low = [int(a.min()) - 1 for a in nonzero]
    high = [int(a.max()) + 2 for a in nonzero]
    crop = np.zeros([h - lo for lo, h in zip(low, high)], np.uint8)
    src = tuple(slice(max(lo, 0), min(h, n)) for lo, h, n in zip(low, high, mask.shape))
    dst = tuple(slice(s.start - lo, s.stop - lo) for s, lo in zip(src, low))
    crop[dst] = mask[src]

    spacing = np.array(label.GetSpacing())
    image = vtkImageData()
    image.SetDimensions(crop.shape[2], crop.shape[1], crop.shape[0])
    image.SetSpacing(*spacing)  # origin 0, axes aligned: a rigid move below puts it in place
    image.GetPointData().SetScalars(numpy_to_vtk(crop.ravel(), deep=True))

    contour = vtkDiscreteFlyingEdges3D()
    contour.SetInputData(image)
    contour.SetValue(0, 1)
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    port = contour.GetOutputPort()
    if smoothing_iterations > 0:
        smoother = vtkWindowedSincPolyDataFilter()
        smoother.SetInputConnection(port)
        smoother.SetNumberOfIterations(smoothing_iterations)
        smoother.SetPassBand(pass_band)
        smoother.BoundarySmoothingOff()
        smoother.FeatureEdgeSmoothingOff()
        smoother.NonManifoldSmoothingOn()
        smoother.NormalizeCoordinatesOn()
        port = smoother.GetOutputPort()

    # index (i, j, k) -> LPS: origin + D @ (spacing * index); the crop starts at index low (x, y, z).
    direction = np.array(label.GetDirection()).reshape(3, 3)
    offset = np.array(label.GetOrigin()) + direction @ (spacing * np.array(low[::-1], float))
    matrix = np.eye(4)
    matrix[:3, :3] = direction
    matrix[:3, 3] = offset
    transform = vtkTransform()
    transform.SetMatrix(matrix.ravel().tolist())
    move = vtkTransformFilter()  # gives vtkPolyData for vtkPolyData input
    move.SetInputConnection(port)
    move.SetTransform(transform)

    # After a mirroring direction (determinant -1) the triangles wind the other way: orient them again.
    normals = vtkPolyDataNormals()
    normals.SetInputConnection(move.GetOutputPort())
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOn()
    normals.SplittingOff()
    normals.Update()
    return normals.GetOutput()


def _write_mesh(mesh, path: Path, ext: str) -> None:
    from vtkmodules.vtkCommonCore import vtkStringArray
    from vtkmodules.vtkCommonDataModel import vtkPolyData
    from vtkmodules.vtkIOGeometry import vtkSTLWriter
    from vtkmodules.vtkIOXML import vtkXMLPolyDataWriter

    from PancreasSegLib.io.guards import captured_stderr

    if ext == ".stl":
        writer = vtkSTLWriter()
        writer.SetFileTypeToBinary()
        writer.SetHeader("PancreasSeg surface. SPACE=LPS")
        writer.SetInputData(mesh)
    else:
        tagged = vtkPolyData()
        tagged.ShallowCopy(mesh)
        space = vtkStringArray()
        space.SetName("SPACE")
        space.InsertNextValue("LPS")
        tagged.GetFieldData().AddArray(space)
        writer = vtkXMLPolyDataWriter()
        writer.SetDataModeToAppended()
        writer.SetCompressorTypeToZLib()
        writer.SetInputData(tagged)
    with atomic_path(path) as tmp:
        writer.SetFileName(str(tmp))
        with captured_stderr() as chatter:
            ok = writer.Write()
        if not ok or not tmp.stat().st_size:
            raise OSError(f"{path}: VTK could not write the surface: {''.join(chatter).strip()[:200]}")


def _measure(mesh) -> dict:
    from vtkmodules.vtkFiltersCore import vtkMassProperties, vtkTriangleFilter

    triangles = vtkTriangleFilter()
    triangles.SetInputData(mesh)
    mass = vtkMassProperties()
    mass.SetInputConnection(triangles.GetOutputPort())
    mass.Update()
    return {
        "volume_ml": mass.GetVolume() / 1000.0,
        "area_cm2": mass.GetSurfaceArea() / 100.0,
        "n_points": int(mesh.GetNumberOfPoints()),
        "n_triangles": int(mesh.GetNumberOfPolys()),
    }
