"""A corpus of DICOM oddities found in real archives, written with pydicom into a test's folder.

Each case is a folder (or several) that ``segment``, ``export`` and ``export-dicom-seg`` get as their
DICOM input, the volume it holds (None where it must be refused) and what each command must do with it:
``None`` for "works", else words of its one-line refusal. :data:`CASES` maps a name to the function that
writes the case; ``docs/robustness.md`` has the same table for people.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from dicom_writer import ct_volume, write_enhanced, write_non_image, write_series

COMMANDS = ("segment", "export", "export-dicom-seg")


@dataclass
class Oddity:
    """One case: the input, the volume it holds, and what each command must do with it."""

    path: Path
    reference: sitk.Image | None
    expect: dict[str, str | None] = field(default_factory=dict)  # command -> words of the refusal, None: works
    series: str | None = None
    tolerance: float = 0.0  # largest |HU| difference of the read volume from the reference (lossy codecs)
    sources: list[Path] = field(default_factory=list)  # the CT files a SEG must reference

    def refusal(self, command: str) -> str | None:
        return self.expect.get(command)


def _all(words: str) -> dict[str, str]:
    return dict.fromkeys(COMMANDS, words)


def _seg(words: str) -> dict[str, str | None]:
    return {"segment": None, "export": None, "export-dicom-seg": words}


def plain(folder: Path) -> Oddity:
    image = ct_volume()
    return Oddity(folder, image, sources=write_series(folder, image))


def _edited(edit: Callable, expect: dict | None = None, **kwargs) -> Callable[[Path], Oddity]:
    def build(folder: Path) -> Oddity:
        image = ct_volume()
        return Oddity(folder, image, expect or {}, sources=write_series(folder, image, edit=edit, **kwargs))
    return build


def _set(**values) -> Callable:
    def edit(ds, k):
        for keyword, value in values.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
    return edit


def _duplicate_uid(ds, k):
    if k in (3, 4):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1234.5"


def _meta_disagrees(ds, k):
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage


def _blank_class_bad_meta(ds, k):
    from pydicom.uid import SecondaryCaptureImageStorage

    ds.SOPClassUID = ""
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage


def duplicate_file(folder: Path) -> Oddity:
    paths = write_series(folder, ct_volume())
    shutil.copy(paths[4], folder / "copy_of_one_slice.dcm")
    return Oddity(folder, None, _all("the same SOPInstanceUID"))


def compressed(syntax: str, tolerance: float = 0.0) -> Callable[[Path], Oddity]:
    def build(folder: Path) -> Oddity:
        image = ct_volume()
        if syntax in ("jpeg-baseline", "jpeg-extended"):  # 8 and 12 bits stored, unsigned, rescaled to HU
            # 12 bits: air well above 0, or the codec's error around it wraps to 4095 (as on real scanners)
            slope, bits, intercept = (8, 8, -1024) if syntax == "jpeg-baseline" else (1, 12, -2048)
            stored = np.round((sitk.GetArrayFromImage(image).astype(float) - intercept) / slope).clip(0, 2 ** bits - 1)
            image = sitk.Cast(sitk.GetImageFromArray((stored * slope + intercept).astype(np.int16)), sitk.sitkInt16)
            image.CopyInformation(ct_volume())

            def edit(ds, k):
                ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (8 if bits == 8 else 16), \
                    bits, bits - 1, 0
                ds.RescaleSlope, ds.RescaleIntercept = str(slope), str(intercept)
                ds.PixelData = stored[k].astype(np.uint8 if bits == 8 else "<u2").tobytes()
        else:
            edit = None
        paths = write_series(folder, image, edit=edit, syntax=syntax)
        return Oddity(folder, image, tolerance=tolerance, sources=paths)
    return build


def enhanced_multiframe(folder: Path) -> Oddity:
    image = ct_volume()
    write_enhanced(folder / "enhanced.dcm", image)
    return Oddity(folder, image, _seg("enhanced (multi-frame)"))


def gantry_tilt(degrees: float) -> Callable[[Path], Oddity]:
    def build(folder: Path) -> Oddity:
        tilt = np.radians(degrees)

        def edit(ds, k):  # slice planes tilted about x, the table still moving along z: a sheared stack
            ds.ImageOrientationPatient = [1, 0, 0, 0, f"{np.cos(tilt):.8f}", f"{np.sin(tilt):.8f}"]
        write_series(folder, ct_volume(), edit=edit)
        return Oddity(folder, None, _all(f"sheared by {degrees:g} degrees"))
    return build


def unequal_spacing(folder: Path) -> Oddity:
    image = ct_volume()

    def edit(ds, k):
        ds.ImagePositionPatient[2] = f"{80 + 2.5 * k + (0.6 if k % 2 else 0):.6f}"
    write_series(folder, image, edit=edit)
    return Oddity(folder, None, _all("not evenly spaced"))


def missing_slice(folder: Path) -> Oddity:
    paths = write_series(folder, ct_volume())
    paths[5].unlink()
    return Oddity(folder, None, _all("not evenly spaced"))


def localizer_in_series(folder: Path) -> Oddity:
    """A sagittal scout of another size that shares the CT's SeriesInstanceUID."""
    image = ct_volume()
    paths = write_series(folder, image, seed=4)
    scout = sitk.Cast(ct_volume(shape_zyx=(2, 24, 40), seed=9), sitk.sitkInt16)
    scout.SetDirection((0, 0, 1, 1, 0, 0, 0, 1, 0))

    def edit(ds, k):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    write_series(folder, scout, seed=4, edit=edit, series=_series_of(paths[0]), number=9)
    return Oddity(folder, image, sources=paths)


def clutter_beside(folder: Path) -> Oddity:
    """A scout series, a dose report (SR), a dose screen (RGB secondary capture), private-only raw data."""
    image = ct_volume()
    paths = write_series(folder, image, seed=5, number=2)
    write_series(folder, sitk.Cast(ct_volume(shape_zyx=(1, 24, 40), seed=8), sitk.sitkInt16), seed=5, number=1,
                 edit=_set(ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]))
    write_series(folder, sitk.Cast(ct_volume(shape_zyx=(1, 24, 40)), sitk.sitkInt16), seed=5, number=999,
                 edit=_rgb_secondary_capture)
    write_non_image(folder / "dose_report.dcm", "1.2.840.10008.5.1.4.1.1.88.67", "SR")
    write_non_image(folder / "raw.dcm", "1.2.840.10008.5.1.4.1.1.66", None)
    (folder / "README.TXT").write_text("exported from an archive\n")
    return Oddity(folder, image, sources=paths)


def two_series(choose: bool) -> Callable[[Path], Oddity]:
    def build(folder: Path) -> Oddity:
        image = ct_volume()
        paths = write_series(folder, image, seed=6, number=2)
        write_series(folder, ct_volume(seed=3), seed=6, number=3)
        if choose:
            return Oddity(folder, image, series=_series_of(paths[0]), sources=paths)
        return Oddity(folder, None, _all("holds 2 DICOM series, choose one with --series"))
    return build


def dicomdir(beside: bool = False, two: bool = False) -> Callable[[Path], Oddity]:
    """A DICOMDIR over the series (files in a sub-folder tree; ``two``: two series in two folders), or a
    DICOMDIR in the images' own folder (``beside``)."""
    def build(folder: Path) -> Oddity:
        from pydicom.fileset import FileSet

        image = ct_volume()
        staging = folder.parent / f".{folder.name}-staging"
        paths = write_series(staging, image, seed=7)
        if two:
            paths += write_series(staging, image, seed=7, number=2)
        fileset = FileSet()
        for path in paths:
            fileset.add(path)
        fileset.write(folder)
        shutil.rmtree(staging)
        files = [p for p in folder.rglob("*") if p.is_file() and p.name != "DICOMDIR"]
        if two:
            return Oddity(folder, None, _all("holds a DICOMDIR whose images lie in 2 folders"))
        if beside:
            shutil.copy(folder / "DICOMDIR", files[0].parent / "DICOMDIR")
            return Oddity(files[0].parent, image, sources=files)
        return Oddity(folder, image, sources=files)
    return build


def _rgb_secondary_capture(ds, k):
    from pydicom.uid import SecondaryCaptureImageStorage

    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.Modality, ds.ImageType = "OT", ["DERIVED", "SECONDARY"]
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "RescaleIntercept", "RescaleSlope",
                    "RescaleType"):
        delattr(ds, keyword)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(int(ds.Rows) * int(ds.Columns) * 3)


def rgb(folder: Path) -> Oddity:
    def edit(ds, k):  # a colour rendering that kept the CT's geometry
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = np.random.default_rng(k).integers(0, 255, int(ds.Rows) * int(ds.Columns) * 3,
                                                         dtype=np.uint8).tobytes()
    write_series(folder, ct_volume(), edit=edit)
    return Oddity(folder, None, _all("not a scalar image"))


def secondary_capture(folder: Path) -> Oddity:
    def edit(ds, k):
        from pydicom.uid import SecondaryCaptureImageStorage

        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        del ds.ImagePositionPatient, ds.ImageOrientationPatient
    write_series(folder, ct_volume(), edit=edit)
    return Oddity(folder, None, _all("no ImagePositionPatient"))


def unsigned_negative_intercept(folder: Path) -> Oddity:
    image = ct_volume()

    def edit(ds, k):
        ds.PixelRepresentation, ds.RescaleIntercept = 0, "-1024"
        ds.PixelData = (sitk.GetArrayViewFromImage(image)[k].astype(np.int32) + 1024).astype("<u2").tobytes()
    return Oddity(folder, image, sources=write_series(folder, image, edit=edit))


def private_tags(folder: Path) -> Oddity:
    def edit(ds, k):
        block = ds.private_block(0x0029, "ACME CT 1.0", create=True)
        block.add_new(0x10, "LO", "Ωmega private text")
        block.add_new(0x11, "OB", bytes(range(32)))
    image = ct_volume()
    paths = write_series(folder, image, edit=edit)
    write_non_image(folder / "private_only.dcm", "1.2.840.10008.5.1.4.1.1.66", None)
    return Oddity(folder, image, sources=paths)


def latin1(folder: Path) -> Oddity:
    def edit(ds, k):
        ds.SpecificCharacterSet = "ISO_IR 100"
    image = ct_volume()
    return Oddity(folder, image, sources=write_series(folder, image, edit=edit))


def _series_of(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


CASES: dict[str, Callable[[Path], Oddity]] = {
    "plain": plain,
    "blank SOP class and instance UIDs (anonymised)": _edited(_set(SOPClassUID="", SOPInstanceUID=""),
                                                              _seg("has no SOPInstanceUID")),
    "blank SOPClassUID": _edited(_set(SOPClassUID="")),
    "missing SOPClassUID": _edited(_set(SOPClassUID=None)),
    "missing SOPInstanceUID": _edited(_set(SOPInstanceUID=None), _seg("has no SOPInstanceUID")),
    "blank SeriesInstanceUID": _edited(_set(SeriesInstanceUID=""), _seg("has no SeriesInstanceUID")),
    "missing SeriesInstanceUID": _edited(_set(SeriesInstanceUID=None), _seg("has no SeriesInstanceUID")),
    "two slices with one SOPInstanceUID": _edited(_duplicate_uid, _all("the same SOPInstanceUID")),
    "one file twice": duplicate_file,
    "file meta disagrees with the dataset": _edited(_meta_disagrees),
    "blank SOPClassUID, file meta of another class": _edited(_blank_class_bad_meta, _seg("cannot be repaired")),
    "implicit VR little endian": compressed("implicit"),
    "explicit VR big endian": compressed("big-endian"),
    "deflate": compressed("deflate"),
    "RLE lossless": compressed("rle"),
    "JPEG baseline (8 bit)": compressed("jpeg-baseline", tolerance=64.0),
    "JPEG extended (12 bit)": compressed("jpeg-extended", tolerance=64.0),
    "JPEG lossless": compressed("jpeg-lossless"),
    "JPEG-LS lossless": compressed("jpeg-ls"),
    "JPEG 2000 lossless": compressed("jpeg2000-lossless"),
    "JPEG 2000": compressed("jpeg2000", tolerance=64.0),
    "enhanced multi-frame CT": enhanced_multiframe,
    "gantry tilt": gantry_tilt(15),
    "unequal slice spacing": unequal_spacing,
    "missing slice": missing_slice,
    "localizer inside the series": localizer_in_series,
    "scout, dose report, dose screen, raw data beside": clutter_beside,
    "two series, no --series": two_series(choose=False),
    "two series, --series": two_series(choose=True),
    "DICOMDIR over the series": dicomdir(),
    "DICOMDIR over two series": dicomdir(two=True),
    "DICOMDIR beside the images": dicomdir(beside=True),
    "RGB": rgb,
    "secondary capture without geometry": secondary_capture,
    "unsigned pixels, negative intercept": unsigned_negative_intercept,
    "private tags, private-only file": private_tags,
    "ISO_IR 100 (Latin-1) names": latin1,
}
