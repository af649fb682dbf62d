"""DICOM series folders: reading the chosen series, refusing stacks whose geometry GDCM would get wrong.

The series is found and its files put in slice order by :mod:`PancreasSegLib.io.dicom_scan`; GDCM (through
SimpleITK) decodes the pixels, whatever the transfer syntax it supports (uncompressed, deflate, RLE, JPEG
baseline, extended and lossless, JPEG-LS, JPEG 2000), and applies rescale slope/intercept, so the volume
comes out in Hounsfield units with the geometry of ImagePositionPatient and ImageOrientationPatient. ITK
stacks the slices at one spacing along the first slice's normal without a word, so before that is
trusted every slice's position is checked against it: missing or unevenly spaced slices, slices of
another orientation and a sheared stack (gantry tilt) are refused. An enhanced (multi-frame) CT file is
read as one volume, its per-frame positions checked the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from PancreasSegLib.errors import InputError
from PancreasSegLib.io.dicom_scan import NO_UID, Series, choose_series, list_dicom_series

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = ["list_dicom_series", "read_dicom_series", "SLICE_GAP_TOLERANCE"]

#: Relative deviation of a slice gap from the median gap that still counts as evenly spaced.
SLICE_GAP_TOLERANCE = 0.05
#: Largest sideways offset of a slice from the line through the first one along the normal, as a fraction
#: of the slice gap: ITK would put that slice this far from where it was acquired (gantry tilt).
SHEAR_TOLERANCE = 0.1


def read_dicom_series(folder: str | os.PathLike, series: str | None = None) -> sitk.Image:
    """Read the DICOM series ``series`` (or the only candidate) in ``folder``; see :func:`volumes.read_volume`."""
    import SimpleITK as sitk

    from PancreasSegLib.io.guards import captured_stderr, sitk_reason

    folder = Path(folder)
    chosen = choose_series(folder, series)
    name = chosen.uid or NO_UID
    _check_stack(chosen, folder, name)
    error = None
    with captured_stderr() as chatter:
        try:
            if len(chosen.instances) == 1:
                image = sitk.ReadImage(chosen.files[0])
            else:
                reader = sitk.ImageSeriesReader()
                reader.SetFileNames(chosen.files)
                image = reader.Execute()
        except RuntimeError as exc:
            error = exc
    if error is not None:
        raise InputError(f"DICOM series {name} cannot be read: {sitk_reason(error, ''.join(chatter))}",
                         folder) from None
    _check_positions_on_grid(image, _frame_positions(chosen), folder, name)
    return image


def _check_stack(series: Series, folder: Path, name: str) -> None:
    instances = series.instances
    if len(instances) > 1 and any(i.frames > 1 for i in instances):
        raise InputError(f"DICOM series {name} mixes multi-frame and other files ({len(instances)} files): give "
                         "a folder holding the multi-frame file alone", folder)
    missing = [i.path.name for i in instances if i.position is None or i.orientation is None]
    if missing and instances[0].frames == 1:
        raise InputError(f"DICOM series {name}: {len(missing)} file(s) have no ImagePositionPatient or "
                         f"ImageOrientationPatient (e.g. {missing[0]}): a screen capture or secondary capture, not "
                         "a CT volume with a known geometry", folder)
    if len(instances) < 2:
        return
    # ITK takes the first slice's orientation for all: a slice tilted differently would be stacked as if it
    # were parallel (contradictory headers, or two series sharing one UID).
    orientations = np.array([i.orientation for i in instances])
    tilted = np.flatnonzero(np.any(np.abs(orientations - orientations[0]) > 1e-4, axis=1))
    if tilted.size:
        raise InputError(f"DICOM series {name}: {tilted.size} slice(s) have another ImageOrientationPatient than "
                         "the first: not one consistent series", folder)
    _check_spacing(np.array([i.position for i in instances]), orientations[0], folder, name)


def _check_spacing(positions: np.ndarray, orientation: np.ndarray, folder: Path, name: str) -> None:
    if len(positions) < 2:
        return
    normal = np.cross(orientation[:3], orientation[3:])
    steps = np.diff(positions, axis=0)
    gaps = steps @ normal
    median = float(np.median(np.abs(gaps)))
    if median == 0:
        raise InputError(f"DICOM series {name}: all slices lie at one position: not a volume", folder)
    offsets = positions - positions[0]
    along = offsets @ normal
    sideways = np.linalg.norm(offsets - np.outer(along, normal), axis=1)
    if np.any(sideways > SHEAR_TOLERANCE * median):
        angle = float(np.degrees(np.arctan2(sideways[-1], abs(along[-1]))))
        raise InputError(f"DICOM series {name}: the slices are sheared by {angle:.3g} degrees (gantry tilt): the "
                         "stack is not a rectangular grid; resample it onto one (e.g. in Slicer's DICOM import, "
                         "which regularises the acquisition geometry) and segment that", folder)
    if len(positions) >= 3 and np.any(np.abs(np.abs(gaps) - median) > SLICE_GAP_TOLERANCE * median):
        raise InputError(f"DICOM series {name}: slices are not evenly spaced (gaps {np.abs(gaps).min():.3g} to "
                         f"{np.abs(gaps).max():.3g} mm): missing or duplicate slices?", folder)


def _frame_positions(series: Series) -> np.ndarray | None:
    """The position of every slice (single-frame files) or frame (one multi-frame file), in stack order."""
    if series.instances[0].frames == 1:
        return np.array([i.position for i in series.instances])
    import pydicom

    ds = pydicom.dcmread(series.instances[0].path, stop_before_pixels=True)
    try:
        positions = np.array([[float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
                              for frame in ds.PerFrameFunctionalGroupsSequence])
        orientation = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None  # not an enhanced object with per-frame positions: GDCM's geometry is all there is
    _check_spacing(positions, np.array([float(v) for v in orientation]), series.instances[0].path.parent,
                   series.uid or NO_UID)
    return positions


def _check_positions_on_grid(image: sitk.Image, positions: np.ndarray | None, folder: Path, name: str) -> None:
    # The last word: every slice must lie where the volume as read puts it (frames are stacked in file order).
    if positions is None:
        return
    if len(positions) != image.GetSize()[2]:
        raise InputError(f"DICOM series {name}: {len(positions)} slice positions for {image.GetSize()[2]} slices "
                         "read", folder)
    expected = np.array([image.TransformIndexToPhysicalPoint((0, 0, k)) for k in range(len(positions))])
    if not np.allclose(expected, positions, rtol=0, atol=SHEAR_TOLERANCE * image.GetSpacing()[2]):
        raise InputError(f"DICOM series {name}: the slices do not lie where the volume as read puts them (up "
                         f"to {np.abs(expected - positions).max():.3g} mm off)", folder)
