"""Tiny CT volumes in Hounsfield units for the input-check and security tests, as files or DICOM series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

#: What :func:`write_dicom_ct` puts in every file: name, family name, ID, birth date.
PATIENT = ("Roe^Richard", "Roe", "MRN-5512-ZZ", "19500317")


def abdomen(shape_zyx=(12, 40, 48), spacing=(1.6, 1.5, 3.0), dtype=np.int16, seed=0) -> sitk.Image:
    """A tiny CT in HU: air around an elliptic body of fat and soft tissue with a bone disc."""
    rng = np.random.default_rng(seed)
    _, y, x = np.indices(shape_zyx)
    cy, cx = (shape_zyx[1] - 1) / 2, (shape_zyx[2] - 1) / 2
    r = ((y - cy) / (0.45 * shape_zyx[1])) ** 2 + ((x - cx) / (0.45 * shape_zyx[2])) ** 2
    hu = np.where(r < 1, -100.0, -1000.0)
    hu = np.where(r < 0.6, 40.0, hu)
    hu = np.where(((y - cy - 5) ** 2 + (x - cx) ** 2) < 9, 700.0, hu)
    hu = hu + rng.normal(0, 10, shape_zyx)
    image = sitk.GetImageFromArray(hu.astype(dtype))
    image.SetSpacing(spacing)
    image.SetOrigin((-30.0, -20.0, 100.0))
    return image


def write_dicom_ct(folder: Path, hu: np.ndarray, slope: float, intercept: float, spacing=(1.5, 1.6, 3.0)) -> None:
    """An unsigned 16-bit CT series that stores (HU - intercept) / slope, with patient data set."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    study, series = generate_uid(entropy_srcs=["s"]), generate_uid(entropy_srcs=["r"])
    stored = np.round((hu - intercept) / slope).astype(np.uint16)
    for k in range(hu.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, generate_uid()
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT[0], PATIENT[2], PATIENT[3]
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, k + 1
        ds.ImagePositionPatient = [0.0, 0.0, k * spacing[2]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{intercept:g}", f"{slope:g}", "HU"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        ds.save_as(folder / f"IM{k:04d}.dcm", enforce_file_format=True)
