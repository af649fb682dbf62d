"""The source instances a DICOM SEG references: loaded, repaired where the repair is certain, else refused.

A SEG points at its source images by SOPClassUID and SOPInstanceUID, inside their study and series, so
those must be there. Anonymisers and old archives damage them in a few known ways:

- a blank or missing SOPClassUID while the file meta still holds ``MediaStorageSOPClassUID``: the class
  is taken from the file meta when that names a single-frame image storage class that agrees with the
  Modality (the file meta is written from the dataset, so it is the same object's class);
- a blank or missing SOPInstanceUID, StudyInstanceUID or SeriesInstanceUID: refused, since a reference
  to a UID invented here (or copied from the file meta, which archives do not index) would point at
  nothing in a PACS;
- two files with one SOPInstanceUID: refused when the series is chosen (:mod:`PancreasSegLib.io.dicom_scan`).

When the file meta and the dataset disagree the dataset wins, as the standard says.
"""

from __future__ import annotations

from pathlib import Path

from PancreasSegLib.errors import InputError

#: Image storage classes a SEG of a CT can reference, with the Modality they hold.
_CLASS_MODALITY = {
    "1.2.840.10008.5.1.4.1.1.2": "CT",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.4": "MR",  # MR Image Storage
    "1.2.840.10008.5.1.4.1.1.128": "PT",  # Positron Emission Tomography Image Storage
}
_ENHANCED_CLASSES = {"1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2", "1.2.840.10008.5.1.4.1.1.4.1"}


def load_sources(files: list[str], folder: Path) -> list:
    """Read the source instances of a SEG and check (or repair) the UIDs it will reference.

    Returns:
        The pydicom datasets, in the order of ``files``, SOPClassUID repaired where that is certain.

    Raises:
        InputError: naming the first file whose UIDs cannot be repaired, or a multi-frame source.
    """
    import pydicom

    sources = []
    for file in files:
        ds = pydicom.dcmread(file)
        name = Path(file).name
        if int(ds.get("NumberOfFrames") or 1) > 1 or str(ds.get("SOPClassUID") or "") in _ENHANCED_CLASSES:
            raise InputError(f"DICOM instance {name} is an enhanced (multi-frame) image: export-dicom-seg "
                             "references single-frame series only", folder)
        for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            if not str(ds.get(keyword) or "").strip():
                raise InputError(f"DICOM instance {name} has no {keyword} (blank or missing, e.g. removed by an "
                                 "anonymiser): a DICOM SEG must reference its source images by their UIDs, and "
                                 "inventing them would point at nothing; export the series again with its UIDs",
                                 folder)
        _repair_sop_class(ds, name, folder)
        sources.append(ds)
    return sources


def _repair_sop_class(ds, name: str, folder: Path) -> None:
    sop_class = str(ds.get("SOPClassUID") or "").strip()
    if sop_class:
        if sop_class not in _CLASS_MODALITY:
            raise InputError(f"DICOM instance {name} is of SOP class {sop_class}, not a CT, MR or PET image: a "
                             "DICOM SEG of this program references such images only", folder)
        return
    meta = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "").strip()
    modality = str(ds.get("Modality") or "").strip()
    if _CLASS_MODALITY.get(meta) != modality:
        raise InputError(f"DICOM instance {name} has no SOPClassUID and its file meta ({meta or 'none'}) does not "
                         f"name an image class that agrees with its Modality ({modality or 'none'}): the class "
                         "cannot be repaired", folder)
    ds.SOPClassUID = meta
