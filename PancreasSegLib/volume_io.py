"""Reading CT volumes and writing label maps with their exact geometry (SimpleITK).

Arrays follow SimpleITK/Slicer order (z, y, x) = (K, J, I); geometry is spacing, origin and
direction in LPS, exactly as the file holds it. Every write is atomic (:mod:`PancreasSegLib.atomic`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PancreasSegLib.atomic import atomic_path, full_extension
from PancreasSegLib.errors import InputError

if TYPE_CHECKING:
    import SimpleITK as sitk

#: File extensions read as a single volume file (a folder is read as a DICOM series).
VOLUME_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".seg.nrrd", ".dcm")
#: File extensions a label map can be written to.
LABEL_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd")


def read_volume(path: str | os.PathLike, series: str | None = None) -> sitk.Image:
    """Read a 3D scalar volume from a file or a DICOM series folder.

    Args:
        path: a NIfTI (.nii, .nii.gz), NRRD, MHA/MHD file, or a folder holding one DICOM series.
        series: the SeriesInstanceUID to read when the folder holds several series.

    Returns:
        The image as SimpleITK read it, geometry untouched.

    Raises:
        InputError: missing path, unreadable or corrupt file, not 3D, not scalar, empty DICOM folder,
            several series without ``series``, or an unknown ``series``.

    >>> image = read_volume("case_0000.nii.gz")  # doctest: +SKIP
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path)
    if path.is_dir():
        image = _read_dicom_series(path, series)
    else:
        if series is not None and full_extension(path) != ".dcm":
            raise InputError("--series applies to a DICOM folder, not to a file", path)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise InputError(f"cannot be read as an image ({_sitk_reason(exc)})", path) from None
    return _as_3d_scalar(image, path)


def read_ct(path: str | os.PathLike, series: str | None = None) -> sitk.Image:
    """Read a CT volume as float32 Hounsfield units (rescale slope/intercept already applied by the reader)."""
    import SimpleITK as sitk

    image = read_volume(path, series)
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    return image


def list_dicom_series(folder: str | os.PathLike) -> list[str]:
    """The SeriesInstanceUIDs of the DICOM series found in ``folder`` (not recursive)."""
    import SimpleITK as sitk

    return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def _read_dicom_series(folder: Path, series: str | None) -> sitk.Image:
    import SimpleITK as sitk

    uids = list_dicom_series(folder)
    if not uids:
        raise InputError("no DICOM series found in this folder", folder)
    if series is None:
        if len(uids) > 1:
            raise InputError(f"holds {len(uids)} DICOM series, choose one with --series UID: {', '.join(uids)}",
                             folder)
        series = uids[0]
    elif series not in uids:
        raise InputError(f"has no DICOM series {series}; it holds: {', '.join(uids)}", folder)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"DICOM series {series} cannot be read ({_sitk_reason(exc)})", folder) from None


def _as_3d_scalar(image: sitk.Image, path: Path) -> sitk.Image:
    import SimpleITK as sitk

    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:  # NIfTI files often carry a time axis of length one
        size = list(image.GetSize())
        size[3] = 0
        image = sitk.Extract(image, size, [0, 0, 0, 0])
        dim = 3
    if dim != 3:
        raise InputError(f"not a 3D image (it has {dim} dimensions)", path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"not a scalar image ({image.GetNumberOfComponentsPerPixel()} components per voxel)", path)
    if min(image.GetSize()) < 2:
        raise InputError(f"not a 3D volume (size {image.GetSize()})", path)
    return image


def write_labelmap(label: sitk.Image, path: str | os.PathLike, labels: Sequence | None = None) -> Path:
    """Write a label map atomically as .nii.gz, .nii, .nrrd or a Slicer .seg.nrrd.

    Args:
        label: integer label image; its geometry is written unchanged.
        path: output file; the folder must exist.
        labels: segment descriptions for .seg.nrrd (default: the project's standard labels).

    Raises:
        InputError: unsupported extension, or the output folder does not exist or is not writable.
    """
    import SimpleITK as sitk

    path = Path(path)
    ext = full_extension(path)
    if ext not in LABEL_EXTENSIONS:
        raise InputError(f"unsupported label file type {ext or '(none)'}; use one of {', '.join(LABEL_EXTENSIONS)}",
                         path)
    if ext == ".seg.nrrd":
        from PancreasSegLib.segfile import write_seg_nrrd

        return write_seg_nrrd(label, path, labels)
    label = sitk.Cast(label, sitk.sitkUInt8)
    with atomic_path(path) as tmp:
        sitk.WriteImage(label, str(tmp), useCompression=True)
    return path


def write_volume(image: sitk.Image, path: str | os.PathLike) -> Path:
    """Write any image atomically (format from the extension), geometry unchanged."""
    import SimpleITK as sitk

    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return Path(path)


def _sitk_reason(exc: RuntimeError) -> str:
    # SimpleITK's messages span several lines with C++ file names; keep the most telling line.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Exception" not in line and not line.startswith("sitk::") and ".cxx" not in line:
            return line.removeprefix("Description: ")[:200]
    return (lines[-1] if lines else "unknown error")[:200]
