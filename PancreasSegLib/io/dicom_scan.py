"""Finding the DICOM series in a folder from the files' headers, and choosing the one to read.

Every file's header is read with pydicom (pixels are left on disk) and grouped by SeriesInstanceUID, so
that what real archives put next to a CT series does not get in the way: files that are not DICOM, a
DICOMDIR, structured reports (dose reports), raw-data or private-only objects (no image) are passed over;
localizer (scout) images inside the CT series are dropped; series of localizers or of images without a
position (screen captures) are only read when asked for, or when nothing else is there. GDCM's own folder
scan aborts on some of these objects, which is why the scan is done here.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from PancreasSegLib.errors import InputError

#: Shown for a series whose files carry no (or a blank) SeriesInstanceUID.
NO_UID = "(no SeriesInstanceUID)"


@dataclass(frozen=True)
class Instance:
    """What the scan keeps of one image file's header."""

    path: Path
    series: str
    sop_instance: str
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    frames: int
    localizer: bool
    description: str


@dataclass(frozen=True)
class Series:
    """One series of a folder: its files (localizers dropped) in slice order along the normal."""

    uid: str
    instances: tuple[Instance, ...]
    auxiliary: bool  # only localizers or images without a position: read only when asked for

    @property
    def files(self) -> list[str]:
        return [os.fspath(i.path) for i in self.instances]

    def describe(self) -> str:
        text = self.instances[0].description
        return f"{self.uid or NO_UID} ({len(self.instances)} files{', ' + repr(text) if text else ''})"


def scan_folder(folder: str | os.PathLike) -> tuple[list[Series], bool]:
    """The image series in ``folder`` (not recursive) and whether it holds a DICOMDIR."""
    folder = Path(folder)
    groups: dict[str, list[Instance]] = {}
    has_dicomdir = False
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        instance, dicomdir = _read_header(path)
        has_dicomdir |= dicomdir
        if instance is not None:
            groups.setdefault(instance.series, []).append(instance)
    series = []
    for uid, instances in groups.items():
        kept = [i for i in instances if not i.localizer] or instances
        auxiliary = all(i.localizer for i in kept) or all(i.position is None and i.frames == 1 for i in kept)
        series.append(Series(uid, tuple(_in_slice_order(kept)), auxiliary))
    return series, has_dicomdir


def choose_series(folder: str | os.PathLike, series: str | None = None) -> Series:
    """The series to read: ``series``, else the only one that is not auxiliary, else the only one.

    Raises:
        InputError: no DICOM image in the folder (with a hint when it holds a DICOMDIR), an unknown
            ``series``, several candidates without ``series`` (listed), or two files of the chosen series
            with one SOPInstanceUID.
    """
    folder = Path(folder)
    found, has_dicomdir = scan_folder(folder)
    if not found and has_dicomdir:
        folders = _dicomdir_folders(folder)
        if len(folders) == 1:  # a DICOMDIR over one folder of images (a CD or USB export): read that folder
            found, _ = scan_folder(folders[0])
        elif folders:
            listing = ", ".join(os.fspath(f.relative_to(folder)) for f in folders[:10])
            raise InputError(f"holds a DICOMDIR whose images lie in {len(folders)} folders: give one of them "
                             f"({listing})", folder)
    if not found:
        raise InputError("no DICOM series found in this folder", folder)
    if series is not None:
        chosen = [s for s in found if s.uid == series]
        if not chosen:
            raise InputError(f"has no DICOM series {series}; it holds: {', '.join(s.uid or NO_UID for s in found)}",
                             folder)
    else:
        chosen = [s for s in found if not s.auxiliary] or found
        if len(chosen) > 1:
            listing = "; ".join(s.describe() for s in chosen)
            raise InputError(f"holds {len(chosen)} DICOM series, choose one with --series UID: {listing}", folder)
    _check_unique_instances(chosen[0], folder)
    return chosen[0]


def list_dicom_series(folder: str | os.PathLike) -> list[str]:
    """The SeriesInstanceUIDs of the DICOM image series in ``folder`` (not recursive; '' for a missing UID)."""
    return [s.uid for s in scan_folder(folder)[0]]


def _dicomdir_folders(folder: Path) -> list[Path]:
    """The folders (inside ``folder``) that hold the image files a DICOMDIR in ``folder`` lists."""
    from pydicom.fileset import FileSet

    path = next((p for p in folder.iterdir() if p.name.upper() == "DICOMDIR"), None)
    try:
        fileset = FileSet(path)
        files = [Path(instance.path) for instance in fileset if instance.DirectoryRecordType == "IMAGE"]
    except Exception:  # noqa: BLE001 - any damage to the DICOMDIR leaves just "no series here"
        return []
    root = folder.resolve()
    return sorted({f.parent for f in files if f.is_file() and f.resolve().is_relative_to(root)})


def _read_header(path: Path) -> tuple[Instance | None, bool]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, TypeError, KeyError, EOFError, AttributeError):
        return None, False
    meta_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    if meta_class == "1.2.840.10008.1.3.10" or path.name.upper() == "DICOMDIR":
        return None, True
    try:
        if "Rows" not in ds or "Columns" not in ds:
            return None, False  # not an image: a report, raw data, private tags only
        image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
        return Instance(
            path=path, series=str(ds.get("SeriesInstanceUID") or "").strip(),
            sop_instance=str(ds.get("SOPInstanceUID") or "").strip(),
            position=_floats(ds.get("ImagePositionPatient"), 3),
            orientation=_floats(ds.get("ImageOrientationPatient"), 6),
            frames=int(ds.get("NumberOfFrames") or 1), localizer="LOCALIZER" in image_type[2:3],
            description=str(ds.get("SeriesDescription") or "").strip()), False
    except (ValueError, TypeError, OverflowError):
        return None, False  # a header too damaged to place the file: GDCM would not read it either


def _floats(value, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value)
    except TypeError:  # a single number where several belong
        values = (float(value),)
    return values if len(values) == n and all(np.isfinite(values)) else None


def _in_slice_order(instances: list[Instance]) -> list[Instance]:
    # Along the normal of the first file's orientation, as GDCM sorts; files without one keep the name order.
    reference = next((i.orientation for i in instances if i.orientation is not None), None)
    if reference is None or any(i.position is None for i in instances):
        return instances
    normal = np.cross(reference[:3], reference[3:])
    return sorted(instances, key=lambda i: float(np.dot(i.position, normal)))


def _check_unique_instances(series: Series, folder: Path) -> None:
    counts = Counter(i.sop_instance for i in series.instances if i.sop_instance)
    twice = [uid for uid, n in counts.items() if n > 1]
    if twice:
        names = [i.path.name for i in series.instances if i.sop_instance == twice[0]]
        raise InputError(f"files {' and '.join(names[:2])} have the same SOPInstanceUID {twice[0]}: one instance "
                         f"stored twice or a broken anonymisation ({len(twice)} UID(s) repeated)", folder)
