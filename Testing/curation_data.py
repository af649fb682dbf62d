"""Tiny seeded cases for the curation tests: an image, a label, a proposal, and a DICOM CT series."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PATIENT_NAME = "Doe^Jane^Quinn"
PATIENT_ID = "PID-7734-XQ"
PATIENT_BIRTH_DATE = "19610203"


def make_case(seed: int = 0, shape=(8, 12, 14), spacing=(1.5, 1.25, 2.5), origin=(-10.0, 20.0, 5.0),
              direction=None):
    """(image int16, label uint8, proposal uint8): a box of pancreas with a tumor, and a shifted proposal."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    ct = rng.integers(-200, 200, size=shape).astype(np.int16)
    z0 = 1 + seed % 3
    label = np.zeros(shape, np.uint8)
    label[z0:z0 + 4, 3:9, 3:11] = 1
    label[z0 + 1, 5:7, 5:7] = 2
    proposal = np.zeros(shape, np.uint8)
    proposal[z0 + 1:z0 + 4, 3:9, 4:11] = 1
    images = []
    for array in (ct, label, proposal):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        if direction is not None:
            image.SetDirection(direction)
        images.append(image)
    return tuple(images)


def write_dicom_series(folder: Path, image, seed: int = 0) -> str:
    """Write ``image`` (int16, axial-type direction) as single-frame CT instances with patient data set.

    Returns:
        The SeriesInstanceUID.
    """
    import pydicom
    import SimpleITK as sitk
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    array = sitk.GetArrayFromImage(image)
    study, series, frame = (generate_uid(entropy_srcs=[f"{what}{seed}"]) for what in ("study", "series", "for"))
    direction = np.array(image.GetDirection()).reshape(3, 3)
    rng = np.random.default_rng(seed)
    order = rng.permutation(array.shape[0])  # files on disk in scrambled order, as from a PACS export
    for n, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = PATIENT_NAME, PATIENT_ID, \
            PATIENT_BIRTH_DATE, "F"
        ds.StudyDate, ds.StudyTime, ds.SeriesDate, ds.SeriesTime = "20240102", "101500", "20240102", "101500"
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "ACC123", "Ref^Doc", "1"
        ds.Modality, ds.Manufacturer, ds.SeriesNumber, ds.InstanceNumber = "CT", "Test", 1, int(k) + 1
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP, ds.AcquisitionNumber = "120", 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, int(k)))]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [f"{image.GetSpacing()[1]:.6f}", f"{image.GetSpacing()[0]:.6f}"]
        ds.SliceThickness = f"{image.GetSpacing()[2]:.6f}"
        ds.Rows, ds.Columns = array.shape[1], array.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
        ds.PixelData = np.ascontiguousarray(array[k]).astype(np.int16).tobytes()
        ds.save_as(folder / f"IM{n:04d}.dcm", enforce_file_format=True)
    return series
