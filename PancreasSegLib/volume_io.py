"""Reading CT volumes and writing label maps with their exact geometry (SimpleITK).

Arrays follow SimpleITK/Slicer order (z, y, x) = (K, J, I); geometry is spacing, origin and
direction in LPS, exactly as the file holds it. Every write is atomic (:mod:`PancreasSegLib.atomic`).

What a round trip keeps (write, then read back):

- ``.nrrd``, ``.seg.nrrd``: bit-exact for axis-aligned grids; for oblique ones NRRD stores
  direction x spacing, so reading splits it again with a rounding error of a few ulp (< 1e-12).
- ``.mha``: bit-exact, oblique included.
- ``.nii``, ``.nii.gz``: NIfTI stores geometry as float32, so spacing and origin come back to
  float32 precision (relative error < 1e-6) and oblique directions to about 1e-7.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PancreasSegLib.atomic import atomic_path, full_extension
from PancreasSegLib.dicom_series import list_dicom_series  # noqa: F401  (part of this module's interface)
from PancreasSegLib.errors import InputError

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
        from PancreasSegLib.dicom_series import read_dicom_series

        image = read_dicom_series(path, series)
    else:
        if series is not None and full_extension(path) != ".dcm":
            raise InputError("--series applies to a DICOM folder, not to a file", path)
        image = _read_file(path)
    return _snap_axis_aligned(_as_3d_scalar(image, path))


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
        from PancreasSegLib.segfile import write_seg_nrrd

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


def without_metadata(image: sitk.Image) -> sitk.Image:
    """A copy of ``image`` with an empty metadata dictionary (pixels and geometry shared until changed).

    NRRD and MetaImage writers store every metadata entry in the file: an image read from a DICOM file
    would carry the patient's name and ID into our outputs, and a stale ``.seg.nrrd`` header would
    describe segments that no longer exist.
    """
    import SimpleITK as sitk

    if not image.GetMetaDataKeys():
        return image
    copy = sitk.Image(image)
    copy.MakeUnique()  # a plain copy shares the metadata dictionary with the original
    try:
        for key in copy.GetMetaDataKeys():
            copy.EraseMetaData(key)
    except TypeError:
        # A key that is not UTF-8 (a corrupt header) cannot be handed back to SimpleITK: rebuild the image
        # from its pixels and geometry instead, which carries no metadata at all.
        copy = sitk.GetImageFromArray(sitk.GetArrayFromImage(image),
                                      isVector=image.GetNumberOfComponentsPerPixel() > 1)
        copy.CopyInformation(image)
    return copy


def as_uint8_label(label: sitk.Image, path: str | os.PathLike | None = None) -> sitk.Image:
    """``label`` cast to uint8 after checking it is a 3D scalar image with integer values 0..255.

    Raises:
        InputError: not 3D, not scalar, or values that uint8 cannot hold (they would wrap silently).
    """
    import SimpleITK as sitk

    if label.GetDimension() != 3 or label.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"a label map must be a 3D scalar image, got {label.GetDimension()}D with "
                         f"{label.GetNumberOfComponentsPerPixel()} components", path)
    if label.GetPixelID() == sitk.sitkUInt8:
        return label
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(label)
    low, high = stats.GetMinimum(), stats.GetMaximum()
    if low < 0 or high > 255:
        raise InputError(f"label values must lie in 0..255, found {low:g}..{high:g}", path)
    if label.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        import numpy as np

        values = sitk.GetArrayViewFromImage(label)
        if np.any(values != np.round(values)):
            raise InputError("label values must be whole numbers", path)
    return sitk.Cast(label, sitk.sitkUInt8)


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Capture what C++ code (ITK, GDCM, MetaIO) prints on file descriptor 2 inside the block.

    Yields a list that holds the captured text once the block ends. The command line promises one
    line on stderr for bad input; the libraries' own chatter would break that promise. File descriptor
    2 is process-wide: keep the block short (one library call), as another thread's output is caught too.
    """
    captured: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no stderr descriptor (embedded interpreter): nothing to capture
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


#: Largest number of dimensions a MetaImage header may declare before ITK sees it (see check_header_safe).
_METAIMAGE_MAX_NDIMS = 4
_NDIMS = re.compile(rb"^[ \t]*NDims[ \t]*[=:][ \t]*(\S*)", re.IGNORECASE | re.MULTILINE)


def check_header_safe(path: str | os.PathLike) -> None:
    """Refuse headers known to crash the native readers, before any of them opens the file.

    ITK's MetaImage reader (MetaIO) keeps per-dimension values in fixed arrays of 10: a ``.mha``/``.mhd``
    header with ``NDims = 93`` corrupts the heap (abort) and ``NDims = 1000`` segfaults, which no
    ``try`` can catch. Found by fuzzing; the header is read here and anything but 1..4 dimensions refused.

    Raises:
        InputError: a MetaImage header with a missing-, malformed- or out-of-range ``NDims``.
    """
    path = Path(path)
    if full_extension(path) not in (".mha", ".mhd") or not path.is_file():
        return
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    head = head.split(b"ElementDataFile", 1)[0]  # the header ends with this key; binary data follows
    values = _NDIMS.findall(head)
    if not values:
        raise InputError("not a MetaImage file: its header has no NDims", path)
    for value in values:
        if not value.isdigit() or not 1 <= int(value) <= _METAIMAGE_MAX_NDIMS:
            shown = value[:20].decode("ascii", "replace")
            raise InputError(f"MetaImage header declares NDims {shown!r}; a volume has 1 to "
                             f"{_METAIMAGE_MAX_NDIMS} dimensions", path)


def sitk_read(path: Path, what: str = "an image") -> sitk.Image:
    """``sitk.ReadImage`` behind the project's guards: empty file, unsafe header, ITK's messages as one line.

    Raises:
        InputError: "cannot be read as <what>: <reason>", naming the file.
    """
    import SimpleITK as sitk

    if path.stat().st_size == 0:
        raise InputError("is empty (0 bytes)", path)
    check_header_safe(path)
    error = None
    with captured_stderr() as chatter:
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            error = exc
    if error is not None:
        raise InputError(f"cannot be read as {what}: {sitk_reason(error, ''.join(chatter))}", path) from None
    return image


def _read_file(path: Path) -> sitk.Image:
    image = sitk_read(path)
    if full_extension(path) in (".nii", ".nii.gz"):
        from PancreasSegLib.nifti_check import nifti_missing_bytes, nifti_transform_disagreement

        missing = nifti_missing_bytes(path)
        if missing:
            raise InputError(f"truncated or corrupt NIfTI file: {missing} bytes of image data are missing", path)
        shift = nifti_transform_disagreement(path)
        if shift > QFORM_SFORM_TOLERANCE_VOXELS * max(image.GetSpacing()):
            raise InputError(f"the NIfTI qform and sform place the volume up to {shift:.3g} mm apart, so programs "
                             "read its position differently; rewrite the header with one of them", path)
    return image


def _as_3d_scalar(image: sitk.Image, path: Path) -> sitk.Image:
    import SimpleITK as sitk

    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:  # NRRD/MHA files may carry a time axis of length one
        size = list(image.GetSize())
        size[3] = 0
        image = sitk.Extract(image, size, [0, 0, 0, 0])
        dim = 3
    if dim == 4:
        raise InputError(f"a 4D image ({image.GetSize()[3]} volumes): give a single 3D volume", path)
    if dim != 3:
        raise InputError(f"not a 3D image (it has {dim} dimensions)", path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"not a scalar image ({image.GetNumberOfComponentsPerPixel()} components per voxel, "
                         "e.g. RGB or vector)", path)
    if min(image.GetSize()) < 2:
        raise InputError(f"not a 3D volume (size {image.GetSize()})", path)
    return image


def _snap_axis_aligned(image: sitk.Image) -> sitk.Image:
    # NRRD stores direction x spacing; ITK splits it with a reciprocal multiply, so a file that says
    # "(0.83,0,0)" comes back with a direction of 0.9999999999999999. An axis-aligned grid is one of the
    # two cases the whole pipeline must keep bit-exact, so put such directions back on the axes.
    import numpy as np

    direction = np.array(image.GetDirection())
    snapped = np.round(direction)
    if np.any(direction != snapped) and np.all(np.abs(direction - snapped) < 1e-12) \
            and np.all(np.abs(snapped).reshape(3, 3).sum(axis=0) == 1):
        image.SetDirection(tuple(snapped.tolist()))
    return image


_REASONS = (
    (re.compile(r"Unable to determine ImageIO reader"), "not an image file of a known format"),
    (re.compile(r"expected (\d+) bytes but received (\d+)"), "truncated or corrupt: expected {0} bytes, got {1}"),
    (re.compile(r"data not read completely"), "truncated or corrupt: the image data is incomplete"),
    (re.compile(r"Zero-valued spacing|Refusing to change spacing"),
     "zero or invalid voxel spacing in the header"),
    (re.compile(r"does not fully contain the requested region.*?Size: \[([^\]]*)\].*?Size: \[([^\]]*)\]", re.DOTALL),
     "the files differ in image size ({1} in one, {0} expected): not one consistent series"),
    (re.compile(r"Bad direction, determinant is 0"),
     "degenerate direction matrix in the header (determinant 0: two image axes are parallel or one is zero)"),
)


def sitk_reason(exc: BaseException, chatter: str = "") -> str:
    """A short, readable reason from a SimpleITK exception and what the library printed meanwhile."""
    text = f"{exc}\n{chatter}"
    for pattern, reason in _REASONS:
        match = pattern.search(text)
        if match:
            return reason.format(*match.groups())
    # SimpleITK's messages span several lines with C++ file names; keep the most telling line.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Exception" not in line and not line.startswith("sitk::") and ".cxx" not in line:
            return line.removeprefix("Description: ")[:200]
    return (lines[-1] if lines else "unknown error")[:200]
