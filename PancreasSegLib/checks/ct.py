"""Checks that a volume is a usable abdominal CT before any work is spent on it.

Each check answers with :class:`InputError` naming the file and the problem (exit 2 on the command
line); nothing is written. They sit in one place so that ``segment``, the training data checks and
the export ask the same questions:

- :func:`check_size_before_reading`: the voxel count, from the header alone, against a budget;
- :func:`check_geometry`: spacing finite and > 0, direction matrix orthonormal, origin finite
  (ITK refuses a zero spacing and a singular matrix itself, but accepts a skewed one, and its NIfTI
  reader silently replaces a zero ``pixdim`` with 1 mm);
- :func:`count_nonfinite` / :func:`check_finite`: NaN or infinite voxels;
- :func:`check_extent`: a field of view too small to hold a pancreas;
- :func:`hu_problem` / :func:`check_looks_like_ct`: intensities that are not Hounsfield units
  (an MRI, an 8-bit picture, a mask), refused unless the caller forces it.

Rescale slope and intercept are applied by the readers (ITK's NIfTI ``scl_slope``/``scl_inter``, GDCM's
``RescaleSlope``/``RescaleIntercept``), so every check here sees HU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from PancreasSegLib.errors import InputError
from PancreasSegLib.io.atomic import full_extension
from PancreasSegLib.io.nifti import nifti_nonfinite, nifti_pixdim

if TYPE_CHECKING:
    import SimpleITK as sitk

#: Environment variable that sets the largest volume (in voxels) ``segment`` accepts.
MAX_VOXELS_ENV = "PANCREASSEG_MAX_VOXELS"
#: Default voxel budget: 1024 x 1024 x 1000 (1.05e9). Only the ROI crop and single slices are resampled, so
#: memory scales with the input array: measured peak RSS = about 1.2 GiB + 3-4 bytes per int16 input voxel
#: (input + label map; 2 more for float32 input), about 5.5 GB at the budget (docs/robustness.md).
DEFAULT_MAX_VOXELS = 1024 * 1024 * 1000
#: Smallest field of view that can hold a pancreas: in the axial plane and along the body axis.
MIN_IN_PLANE_MM = 40.0
MIN_THROUGH_PLANE_MM = 20.0
#: Largest deviation of the direction matrix from an orthonormal one (D^T D = I) that is accepted.
ORTHONORMAL_TOLERANCE = 1e-3
#: Voxels sampled for the intensity statistics (a regular sub-grid, so the answer is deterministic).
_SAMPLE_VOXELS = 1 << 21


def max_voxels(value: int | None = None) -> int:
    """The voxel budget: ``value`` if given, else ``$PANCREASSEG_MAX_VOXELS``, else :data:`DEFAULT_MAX_VOXELS`.

    Raises:
        InputError: the environment variable is not a positive whole number.
    """
    if value is not None:
        if value <= 0:
            raise InputError(f"--max-voxels must be positive, not {value}")
        return int(value)
    text = os.environ.get(MAX_VOXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_VOXELS
    try:
        budget = int(float(text))
    except ValueError:
        budget = 0
    if budget <= 0:
        raise InputError(f"${MAX_VOXELS_ENV} must be a positive number of voxels, not {text!r}")
    return budget


def check_size_before_reading(path: str | os.PathLike, series: str | None = None, budget: int | None = None) -> int:
    """Refuse a volume above the voxel budget from its header alone, before its pixels are loaded.

    Args:
        path: a volume file or a DICOM series folder.
        series: the SeriesInstanceUID to count in a DICOM folder.
        budget: voxel budget (default :func:`max_voxels`).

    Returns:
        The voxel count found (0 when the header could not be read: the reader then reports the problem).

    Raises:
        InputError: more voxels than the budget, with both numbers and how to raise the budget.
    """
    import SimpleITK as sitk

    from PancreasSegLib.io.guards import captured_stderr, check_header_safe

    path = Path(path)
    budget = max_voxels(budget)
    voxels = 0
    with captured_stderr():
        try:
            if path.is_dir():
                voxels = _dicom_voxels(path, series, budget)
            elif path.is_file() and path.stat().st_size > 0:
                check_header_safe(path)
                reader = sitk.ImageFileReader()
                reader.SetFileName(str(path))
                reader.ReadImageInformation()
                voxels = math.prod(reader.GetSize()) * reader.GetNumberOfComponents()
        except (RuntimeError, OSError):
            return 0
    if voxels > budget:
        raise InputError(f"too large: {voxels:,} voxels exceed the budget of {budget:,} "
                         f"(set ${MAX_VOXELS_ENV} or --max-voxels to allow more)", path)
    return voxels


def _dicom_voxels(folder: Path, series: str | None, budget: int) -> int:
    import SimpleITK as sitk

    from PancreasSegLib.io.dicom_scan import choose_series

    try:
        chosen = choose_series(folder, series)
    except InputError:
        return 0  # the series reader reports the problem (several series, none, duplicate UIDs)
    reader = sitk.ImageFileReader()
    reader.SetFileName(chosen.files[0])
    reader.ReadImageInformation()  # the first slice's size (one multi-frame file: all its frames)
    return math.prod(reader.GetSize()) * reader.GetNumberOfComponents() * len(chosen.files)


def check_geometry(image: sitk.Image, path: str | os.PathLike | None = None) -> None:
    """Refuse a spacing that is not finite and > 0, a non-finite origin, or a non-orthonormal direction.

    A skewed or scaled direction matrix would put every voxel, and so the segmentation, in the wrong
    place in Slicer, which assumes orthonormal axes. NIfTI headers are also read directly, since ITK's
    reader turns a zero ``pixdim`` into 1 mm without a word.

    Raises:
        InputError: naming the problem and the values.
    """
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"zero, negative or invalid voxel spacing {_fmt(spacing)} mm", path)
    if not np.all(np.isfinite(image.GetOrigin())):
        raise InputError(f"invalid origin {_fmt(image.GetOrigin())}", path)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(direction)):
        raise InputError("invalid direction matrix (not finite)", path)
    error = float(np.max(np.abs(direction.T @ direction - np.eye(3))))
    if error > ORTHONORMAL_TOLERANCE:
        det = float(np.linalg.det(direction))
        raise InputError(f"degenerate direction matrix (axes not orthonormal: D^T D deviates from I by {error:.3g}, "
                         f"determinant {det:.3g})", path)
    if path is not None and full_extension(path) in (".nii", ".nii.gz"):
        pixdim = nifti_pixdim(path)
        if pixdim is not None and (not all(math.isfinite(v) for v in pixdim) or any(v <= 0 for v in pixdim)):
            raise InputError(f"zero, negative or invalid voxel size in the NIfTI header (pixdim {_fmt(pixdim)})", path)



def count_nonfinite(image: sitk.Image, path: str | os.PathLike | None = None) -> int:
    """How many NaN or infinite voxels ``image`` (read from ``path``) holds; 0 for integer images.

    ITK's NIfTI reader turns NaN into 0, which hides them from us but not from other readers (nibabel,
    MONAI's default loader): for a float NIfTI file the file's own voxels are counted as well.
    """
    import SimpleITK as sitk

    pixels = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(pixels.dtype, np.floating):
        return 0
    count = int(np.count_nonzero(~np.isfinite(pixels)))
    if count == 0 and path is not None and Path(path).is_file() and full_extension(path) in (".nii", ".nii.gz"):
        count = nifti_nonfinite(path)
    return count


def check_finite(image: sitk.Image, path: str | os.PathLike | None = None) -> None:
    """Refuse an image with NaN or infinite voxels (a model would spread them over the whole output)."""
    bad = count_nonfinite(image, path)
    if bad:
        raise InputError(f"holds {bad} NaN or infinite voxel(s); a CT holds finite HU values only", path)



def physical_extent(image: sitk.Image) -> tuple[float, float]:
    """(smallest in-plane extent, through-plane extent) in mm; the through-plane axis is the image axis
    closest to the body's superior-inferior axis, whatever the acquisition plane."""
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    extent = spacing * np.asarray(image.GetSize(), dtype=float)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    through = int(np.argmax(np.abs(direction[2])))  # row 2: each axis' S component
    in_plane = [extent[i] for i in range(3) if i != through]
    return float(min(in_plane)), float(extent[through])


def check_extent(image: sitk.Image, path: str | os.PathLike | None = None) -> None:
    """Refuse a field of view smaller than :data:`MIN_IN_PLANE_MM` in plane or :data:`MIN_THROUGH_PLANE_MM` along z."""
    in_plane, through = physical_extent(image)
    if in_plane < MIN_IN_PLANE_MM or through < MIN_THROUGH_PLANE_MM:
        size = " x ".join(f"{s * d:.1f}" for s, d in zip(image.GetSize(), image.GetSpacing()))
        raise InputError(f"too small to hold a pancreas: the volume covers {size} mm (x y z); at least "
                         f"{MIN_IN_PLANE_MM:g} mm in plane and {MIN_THROUGH_PLANE_MM:g} mm along the body axis "
                         "are needed", path)


def hu_problem(image: sitk.Image) -> str | None:
    """Why the intensities of ``image`` do not look like Hounsfield units, or ``None`` when they do.

    A CT in HU has air near -1000, fat near -100, soft tissue 0-100 and bone above 300. Refused: a mask
    or label map (a handful of small integers), a flat or normalised image (range below 50), an 8-bit
    picture (integers in 0..255), a positive-only image reaching above 1000 (an MRI, or a CT whose rescale
    intercept was not applied) and a median outside the HU scale.
    """
    import SimpleITK as sitk

    array = sitk.GetArrayViewFromImage(image)
    step = max(1, round((array.size / _SAMPLE_VOXELS) ** (1 / 3)))
    sample = np.asarray(array[::step, ::step, ::step], dtype=np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return "holds no finite value"
    low, high = float(sample.min()), float(sample.max())
    integral = bool(np.all(sample == np.round(sample)))
    if integral and high - low <= 255:
        values = np.unique(sample)
        if values.size <= 16:
            shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if values.size > 6 else "")
            return f"holds only {values.size} distinct value(s) ({shown}): a mask or label map, not a CT"
    if image.GetPixelID() in (sitk.sitkUInt8, sitk.sitkInt8) or (integral and low >= 0 and high <= 255):
        return f"values {low:g}..{high:g} are an 8-bit range (a picture or a windowed export), not Hounsfield units"
    p_low, p_high = np.percentile(sample, [0.5, 99.5])
    if high - low < 50:
        return f"intensities span only {low:g}..{high:g}: not Hounsfield units (a normalised or probability image?)"
    if low >= 0 and high > 1000:
        return (f"no negative values ({low:g}..{high:g}): a CT in Hounsfield units has air at -1000; this looks like "
                "an MRI, or a CT stored without its rescale intercept")
    median = float(np.median(sample))
    if not -1100 <= median <= 2000:
        return f"median intensity {median:g} (0.5-99.5 %: {p_low:g}..{p_high:g}) is outside the Hounsfield scale"
    return None


def check_looks_like_ct(image: sitk.Image, path: str | os.PathLike | None = None, force: bool = False,
                        warn: Callable[[str], None] | None = None) -> str | None:
    """Refuse an image whose intensities are not HU (see :func:`hu_problem`); with ``force`` only warn.

    Returns:
        The warning given (``force``), or ``None`` when the image looks like a CT.

    Raises:
        InputError: not HU and not ``force``; the message says how to go on anyway.
    """
    problem = hu_problem(image)
    if problem is None:
        return None
    if not force:
        raise InputError(f"does not look like a CT: {problem} (use --force to segment it anyway)", path)
    message = f"{os.fspath(path)}: {problem}; going on because of --force" if path is not None else problem
    if warn is not None:
        warn(message)
    return message


def check_ct(image: sitk.Image, path: str | os.PathLike | None = None, force: bool = False,
             warn: Callable[[str], None] | None = None) -> str | None:
    """Every check of a CT about to be segmented: geometry, finite voxels, field of view, HU intensities.

    Args:
        image: the volume as read (any pixel type; rescale already applied by the reader).
        path: its file or folder, named in the messages.
        force: intensities that do not look like HU only warn.
        warn: receives the warning when ``force`` lets a non-HU image through.

    Returns:
        The warning given, if any.

    Raises:
        InputError: the first problem found.

    >>> check_ct(read_volume("ct.nii.gz"), "ct.nii.gz")  # doctest: +SKIP
    """
    check_geometry(image, path)
    check_finite(image, path)
    check_extent(image, path)
    return check_looks_like_ct(image, path, force, warn)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"


def read_checked_ct(path: str | os.PathLike, series: str | None = None, budget: int | None = None,
                    force: bool = False, warn: Callable[[str], None] | None = None) -> sitk.Image:
    """Read a CT file or DICOM folder behind every check, in the order they cost: size, header, content.

    This is the read step of the pipeline; the command line, the Python API and every other caller go
    through it, so they refuse the same input with the same words.

    Args:
        path: a volume file or a DICOM series folder.
        series: the SeriesInstanceUID when the folder holds several.
        budget: voxel budget (default :func:`max_voxels`).
        force: only warn when the intensities do not look like HU.
        warn: where a warning goes (default: none).

    Returns:
        The image as stored (often int16; never cast whole to float).

    Raises:
        InputError: naming the file and the problem.
    """
    from PancreasSegLib.io.volumes import read_volume

    check_size_before_reading(path, series, budget)
    image = read_volume(path, series)
    check_ct(image, path, force=force, warn=warn)
    return image
