"""Writing CT series slice by slice with pydicom, with hooks to damage them as real archives do.

The corpus of oddities (:mod:`dicom_oddities`) builds on :func:`write_series`: every file carries the patient
data of :data:`PATIENT`, so that a test can check that nothing the project writes holds any of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

#: Patient data in every file written here (non-ASCII on purpose); ``export`` must never write any of it.
PATIENT = {"PatientName": "Müller^Jürgen", "PatientID": "MRN-0471-QK", "PatientBirthDate": "19480229",
           "AccessionNumber": "ACC-99172", "InstitutionName": "Klinikum Süd"}
#: The transfer syntaxes the corpus writes, by short name.
SYNTAXES = {
    "explicit": "1.2.840.10008.1.2.1", "implicit": "1.2.840.10008.1.2", "big-endian": "1.2.840.10008.1.2.2",
    "deflate": "1.2.840.10008.1.2.1.99", "rle": "1.2.840.10008.1.2.5", "jpeg-baseline": "1.2.840.10008.1.2.4.50",
    "jpeg-extended": "1.2.840.10008.1.2.4.51", "jpeg-lossless": "1.2.840.10008.1.2.4.70",
    "jpeg-ls": "1.2.840.10008.1.2.4.80", "jpeg2000-lossless": "1.2.840.10008.1.2.4.90",
    "jpeg2000": "1.2.840.10008.1.2.4.91",
}

Edit = Callable[["object", int], None]


def ct_volume(shape_zyx=(10, 32, 32), spacing=(1.5, 1.5, 2.5), origin=(-24.0, -30.0, 80.0), direction=None,
              low: int = -1024, high: int = 1500, seed: int = 0) -> sitk.Image:
    """A small int16 CT in HU (air, fat, soft tissue, a bone disc, noise), large enough for ``segment``'s checks."""
    rng = np.random.default_rng(seed)
    _, y, x = np.indices(shape_zyx)
    cy, cx = (shape_zyx[1] - 1) / 2, (shape_zyx[2] - 1) / 2
    r = ((y - cy) / (0.45 * shape_zyx[1])) ** 2 + ((x - cx) / (0.45 * shape_zyx[2])) ** 2
    hu = np.where(r < 1, -100.0, -1000.0)
    hu = np.where(r < 0.6, 40.0, hu)
    hu = np.where(((y - cy - 4) ** 2 + (x - cx) ** 2) < 9, 700.0, hu)
    hu = np.clip(np.round(hu + rng.normal(0, 10, shape_zyx)), low, high)
    image = sitk.GetImageFromArray(hu.astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def base_dataset(image: sitk.Image, k: int, study: str, series: str, frame: str, number: int = 1):
    """Slice ``k`` of ``image`` as a CT Image Storage dataset (signed 16 bit, rescale 1/0), file meta set."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    array = sitk.GetArrayViewFromImage(image)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    for keyword, value in PATIENT.items():
        setattr(ds, keyword, value)
    ds.PatientSex, ds.StudyID, ds.ReferringPhysicianName = "M", "1", ""
    ds.StudyDate, ds.StudyTime, ds.SeriesDate, ds.SeriesTime = "20240102", "101500", "20240102", "101500"
    ds.Modality, ds.Manufacturer, ds.SeriesNumber, ds.InstanceNumber = "CT", "Test", number, k + 1
    ds.SeriesDescription, ds.PositionReferenceIndicator = f"CT {number}", ""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.KVP, ds.AcquisitionNumber = "120", 1
    ds.ImagePositionPatient = [f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*direction[:, 0], *direction[:, 1])]
    ds.PixelSpacing = [f"{image.GetSpacing()[1]:.6f}", f"{image.GetSpacing()[0]:.6f}"]
    ds.SliceThickness = f"{image.GetSpacing()[2]:.6f}"
    ds.Rows, ds.Columns = array.shape[1], array.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
    ds.PixelData = np.ascontiguousarray(array[k]).astype("<i2").tobytes()
    return ds


def write_series(folder: Path, image: sitk.Image, seed: int = 0, edit: Edit | None = None,
                 syntax: str = "explicit", number: int = 1, series: str | None = None) -> list[Path]:
    """Write ``image`` as one single-frame file per slice (names in scrambled order, as from a PACS).

    Args:
        folder: where the files go (created).
        image: an int16 volume in HU.
        seed: decides the UIDs and the file order.
        edit: called with each dataset and its slice index before it is saved.
        syntax: a key of :data:`SYNTAXES`.
        number: SeriesNumber.
        series: SeriesInstanceUID (default: one made from ``seed``).

    Returns:
        The files written, slice by slice.
    """
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, frame = (generate_uid(entropy_srcs=[f"{what}{seed}"]) for what in ("study", "for"))
    series = series or generate_uid(entropy_srcs=[f"series{seed}-{number}"])
    order = np.random.default_rng(seed).permutation(image.GetSize()[2])
    paths = []
    for k in range(image.GetSize()[2]):
        ds = base_dataset(image, k, study, series, frame, number)
        if edit is not None:
            edit(ds, k)
        path = folder / f"S{number}IM{int(order[k]):04d}.dcm"
        save(ds, path, syntax)
        paths.append(path)
    return paths


def save(ds, path: Path, syntax: str = "explicit") -> None:
    """Save ``ds`` in the transfer syntax ``syntax`` (pydicom for RLE and deflate, GDCM for the JPEG family)."""
    from pydicom.uid import UID

    uid = UID(SYNTAXES[syntax])
    if syntax == "rle":
        ds.compress(uid)
    elif syntax in ("deflate", "implicit"):
        ds.file_meta.TransferSyntaxUID = uid
    ds.save_as(path, enforce_file_format=True)
    if syntax in ("big-endian",) or syntax.startswith("jpeg"):
        transcode(path, uid)


def transcode(path: Path, syntax: str) -> None:
    """Rewrite ``path`` in the transfer syntax ``syntax`` with GDCM's encoders (python-gdcm)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    if not reader.Read():
        raise RuntimeError(f"GDCM cannot read {path}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(str(syntax))))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"GDCM cannot encode {path} as {syntax}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(path))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"GDCM cannot write {path}")


def write_enhanced(path: Path, image: sitk.Image) -> None:
    """``image`` as one Enhanced CT Image Storage file, every slice a frame, geometry in functional groups."""
    from pydicom.dataset import Dataset
    from pydicom.uid import EnhancedCTImageStorage, generate_uid

    def item(**values):
        ds = Dataset()
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        return ds

    ds = base_dataset(image, 0, generate_uid(), generate_uid(), generate_uid())
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                    "RescaleIntercept", "RescaleSlope", "RescaleType", "InstanceNumber"):
        delattr(ds, keyword)
    ds.NumberOfFrames, ds.ImageType = image.GetSize()[2], ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    spacing, direction = image.GetSpacing(), np.asarray(image.GetDirection()).reshape(3, 3)
    ds.SharedFunctionalGroupsSequence = [item(
        PixelMeasuresSequence=[item(PixelSpacing=[spacing[1], spacing[0]], SliceThickness=spacing[2])],
        PlaneOrientationSequence=[item(ImageOrientationPatient=[*direction[:, 0], *direction[:, 1]])],
        PixelValueTransformationSequence=[item(RescaleIntercept=0, RescaleSlope=1, RescaleType="HU")])]
    ds.PerFrameFunctionalGroupsSequence = [
        item(PlanePositionSequence=[item(ImagePositionPatient=list(image.TransformIndexToPhysicalPoint((0, 0, k))))])
        for k in range(image.GetSize()[2])]
    ds.PixelData = sitk.GetArrayFromImage(image).astype("<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    save(ds, path)


def write_non_image(path: Path, sop_class: str, modality: str | None) -> None:
    """A DICOM file without an image: a report (``modality``), or private tags only (``None``)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if modality is not None:  # a report: standard identification, no image
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), modality
    block = ds.private_block(0x0019, "ACME RAW", create=True)
    block.add_new(0x10, "OB", bytes(64))
    ds.save_as(path, enforce_file_format=modality is not None)
