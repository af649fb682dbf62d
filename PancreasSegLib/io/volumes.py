"""Reading CT volumes and writing label maps with their exact geometry (SimpleITK).

Arrays follow SimpleITK/Slicer order (z, y, x) = (K, J, I); geometry is spacing, origin and
direction in LPS, exactly as the file holds it. Every write is atomic (:mod:`PancreasSegLib.io.atomic`).

What a round trip keeps (write, then read back):

- ``.nrrd``, ``.seg.nrrd``: bit-exact for axis-aligned grids; for oblique ones NRRD stores
  direction x spacing, so reading splits it again with a rounding error of a few ulp (< 1e-12).
- ``.mha``: bit-exact, oblique included.
- ``.nii``, ``.nii.gz``: NIfTI stores geometry as float32, so spacing and origin come back to
  float32 precision (relative error < 1e-6) and oblique directions to about 1e-7.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PancreasSegLib.errors import InputError
from PancreasSegLib.io.atomic import atomic_path, full_extension
from PancreasSegLib.io.dicom import list_dicom_series, read_dicom_series
from PancreasSegLib.io.guards import sitk_read
from PancreasSegLib.io.images import as_3d_scalar, as_uint8_label, snap_axis_aligned, without_metadata
from PancreasSegLib.io.nifti import is_nifti, nifti_missing_bytes, nifti_transform_disagreement
from PancreasSegLib.io.segfile import write_seg_nrrd

__all__ = ["LABEL_EXTENSIONS", "VOLUME_EXTENSIONS", "WRITE_EXTENSIONS", "list_dicom_series", "read_ct", "read_volume",
           "write_labelmap", "write_volume"]

if TYPE_CHECKING:
    import SimpleITK as sitk

#: File extensions read as a single volume file (a folder is read as a DICOM series).
VOLUME_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".seg.nrrd", ".dcm")
#: File extensions an image can be written to. Header + data pairs (.mhd, .nhdr) are left out:
#: their header names the data file, which an atomic rename of the header alone would break.
WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha")
#: File extensions a label map can be written to.
LABEL_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha", ".seg.nrrd")
#: A NIfTI whose qform and sform place some voxel further apart than this many voxels (largest side) is
#: refused: which of the two a program uses would decide where the image is. Below it lies the qform's own
#: float32 precision (near a half turn its rotation is only good to about 6e-4 rad, 0.3 mm over 50 cm).
QFORM_SFORM_TOLERANCE_VOXELS = 1.0


def read_volume(path: str | os.PathLike, series: str | None = None) -> sitk.Image:
    """Read a 3D scalar volume from a file or a DICOM series folder.

    Args:
        path: a NIfTI (.nii, .nii.gz), NRRD, MHA/MHD file, or a folder holding one DICOM series.
        series: the SeriesInstanceUID to read when the folder holds several series.

    Returns:
        The image as SimpleITK read it, geometry untouched (a NIfTI time axis of length one dropped).

    Raises:
        InputError: missing path, unreadable, truncated or corrupt file, not 3D, not scalar, empty DICOM
            folder, several series without ``series``, an unknown ``series``, unevenly spaced slices.

    >>> image = read_volume("case_0000.nii.gz")  # doctest: +SKIP
    >>> image.GetSize()  # doctest: +SKIP
    (512, 512, 120)
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path)
    if path.is_dir():
        image = read_dicom_series(path, series)
    else:
        if series is not None and full_extension(path) != ".dcm":
            raise InputError("--series applies to a DICOM folder, not to a file", path)
        image = _read_file(path)
    return snap_axis_aligned(as_3d_scalar(image, path))


def read_ct(path: str | os.PathLike, series: str | None = None) -> sitk.Image:
    """Read a CT volume as float32 Hounsfield units (rescale slope/intercept already applied by the reader)."""
    import SimpleITK as sitk

    image = read_volume(path, series)
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    return image


def write_labelmap(label: sitk.Image, path: str | os.PathLike, labels: Sequence | None = None) -> Path:
    """Write a label map atomically as .nii.gz, .nii, .nrrd, .mha or a Slicer .seg.nrrd (as uint8).

    Args:
        label: 3D integer label image with values 0..255; its geometry is written unchanged.
        path: output file; the folder must exist.
        labels: segment descriptions for .seg.nrrd (default: pancreas, and tumor when value 2 occurs).

    Raises:
        InputError: unsupported extension, a label that is not 3D or has values outside 0..255, or the
            output folder does not exist or is not writable.
    """
    import SimpleITK as sitk

    path = Path(path)
    ext = full_extension(path)
    if ext not in LABEL_EXTENSIONS:
        raise InputError(f"unsupported label file type {ext or '(none)'}; use one of {', '.join(LABEL_EXTENSIONS)}",
                         path)
    if ext == ".seg.nrrd":
        return write_seg_nrrd(label, path, labels)
    label = without_metadata(as_uint8_label(label, path))
    with atomic_path(path) as tmp:
        sitk.WriteImage(label, str(tmp), useCompression=True)
    return path


def write_volume(image: sitk.Image, path: str | os.PathLike) -> Path:
    """Write any image atomically as .nii.gz, .nii, .nrrd or .mha, geometry unchanged."""
    import SimpleITK as sitk

    path = Path(path)
    ext = full_extension(path)
    if ext not in WRITE_EXTENSIONS:
        raise InputError(f"unsupported image file type {ext or '(none)'}; use one of {', '.join(WRITE_EXTENSIONS)}",
                         path)
    with atomic_path(path) as tmp:
        sitk.WriteImage(without_metadata(image), str(tmp), useCompression=True)
    return path


def _read_file(path: Path) -> sitk.Image:
    image = sitk_read(path)
    if is_nifti(path):
        missing = nifti_missing_bytes(path)
        if missing:
            raise InputError(f"truncated or corrupt NIfTI file: {missing} bytes of image data are missing", path)
        shift = nifti_transform_disagreement(path)
        if shift > QFORM_SFORM_TOLERANCE_VOXELS * max(image.GetSpacing()):
            raise InputError(f"the NIfTI qform and sform place the volume up to {shift:.3g} mm apart, so programs "
                             "read its position differently; rewrite the header with one of them", path)
    return image


