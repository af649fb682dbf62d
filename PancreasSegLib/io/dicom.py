"""DICOM series folders: choosing one series, reading it, refusing unevenly spaced slices.

GDCM (through SimpleITK) sorts the slices along their normal and applies rescale slope/intercept,
so the volume comes out in Hounsfield units with the geometry of ImagePositionPatient and
ImageOrientationPatient.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from PancreasSegLib.errors import InputError

if TYPE_CHECKING:
    import SimpleITK as sitk

#: Relative deviation of a slice gap from the median gap that still counts as evenly spaced.
SLICE_GAP_TOLERANCE = 0.05


def list_dicom_series(folder: str | os.PathLike) -> list[str]:
    """The SeriesInstanceUIDs of the DICOM series found in ``folder`` (not recursive)."""
    import SimpleITK as sitk

    from PancreasSegLib.io.guards import captured_stderr

    with captured_stderr():
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def read_dicom_series(folder: Path, series: str | None = None) -> sitk.Image:
    """Read the DICOM series ``series`` (or the only one) in ``folder``; see :func:`volume_io.read_volume`."""
    import SimpleITK as sitk

    from PancreasSegLib.io.guards import captured_stderr, sitk_reason

    uids = list_dicom_series(folder)
    if not uids:
        raise InputError("no DICOM series found in this folder", folder)
    if series is None:
        if len(uids) > 1:
            listing = "; ".join(_describe_series(folder, uid) for uid in uids)
            raise InputError(f"holds {len(uids)} DICOM series, choose one with --series UID: {listing}", folder)
        series = uids[0]
    elif series not in uids:
        raise InputError(f"has no DICOM series {series}; it holds: {', '.join(uids)}", folder)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    error = None
    with captured_stderr() as chatter:
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            error = exc
    if error is not None:
        raise InputError(f"DICOM series {series} cannot be read: {sitk_reason(error, ''.join(chatter))}",
                         folder) from None
    _check_slice_spacing(reader, len(files), folder, series)
    return image


def _describe_series(folder: Path, uid: str) -> str:
    import SimpleITK as sitk

    from PancreasSegLib.io.guards import captured_stderr

    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
    description = ""
    with contextlib.suppress(RuntimeError, IndexError), captured_stderr():
        reader = sitk.ImageFileReader()
        reader.SetFileName(files[0])
        reader.ReadImageInformation()
        if reader.HasMetaDataKey("0008|103e"):
            description = reader.GetMetaData("0008|103e").strip()
    return f"{uid} ({len(files)} files{', ' + repr(description) if description else ''})"


def _check_slice_spacing(reader: sitk.ImageSeriesReader, n_files: int, folder: Path, series: str) -> None:
    # ITK stacks unevenly spaced slices at their mean spacing without an error: missing slices would
    # put every later slice, and so the segmentation, in the wrong place.
    import numpy as np

    if n_files < 3:
        return
    try:
        positions = np.array([[float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")]
                              for i in range(n_files)])
        orientations = np.array([[float(v) for v in reader.GetMetaData(i, "0020|0037").split("\\")]
                                 for i in range(n_files)])
    except (RuntimeError, ValueError):
        return  # no per-slice positions (e.g. a multi-frame file): nothing to check
    # ITK takes the first slice's orientation for all: a slice tilted differently would be stacked as if it
    # were parallel (contradictory headers, or two series sharing one UID).
    tilted = np.flatnonzero(np.any(np.abs(orientations - orientations[0]) > 1e-4, axis=1))
    if tilted.size:
        raise InputError(f"DICOM series {series}: {tilted.size} slice(s) have another ImageOrientationPatient than "
                         "the first: not one consistent series", folder)
    orientation = orientations[0].tolist()
    normal = np.cross(orientation[:3], orientation[3:])
    gaps = np.diff(positions @ normal)
    median = float(np.median(np.abs(gaps)))
    if median == 0 or np.any(np.abs(np.abs(gaps) - median) > SLICE_GAP_TOLERANCE * median):
        raise InputError(f"DICOM series {series}: slices are not evenly spaced (gaps {np.abs(gaps).min():.3g} to "
                         f"{np.abs(gaps).max():.3g} mm): missing or duplicate slices?", folder)
