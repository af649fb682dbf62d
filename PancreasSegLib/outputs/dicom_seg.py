"""DICOM Segmentation (SEG) objects for a label map on a DICOM CT series, written with highdicom.

Each label value present becomes one binary segment, coded with its SNOMED CT category and type from
:mod:`PancreasSegLib.labels` (Pancreas 15776009; tumor 108369006 with the pancreas as anatomic region),
identified by the algorithm (model name and version) that made it. The label is put on the source
series' grid first: used as it is when the grids agree within 1e-4 mm, resampled (nearest neighbour)
otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from PancreasSegLib import __version__
from PancreasSegLib.errors import InputError
from PancreasSegLib.io.grid import geometry, geometry_difference
from PancreasSegLib.labels import STANDARD_LABELS, LabelInfo

if TYPE_CHECKING:
    import SimpleITK as sitk

ALGORITHM_TYPES = ("automatic", "semiautomatic", "manual")


def write_dicom_seg(label: str | os.PathLike | sitk.Image, dicom_folder: str | os.PathLike,
                    out: str | os.PathLike, series: str | None = None, model: Mapping | None = None,
                    labels: Mapping[int, LabelInfo] | None = None, algorithm_type: str = "automatic",
                    series_number: int = 300) -> dict:
    """Write ``label`` as a DICOM SEG referencing the CT series in ``dicom_folder``.

    Args:
        label: label map (file or SimpleITK image); values are segment label values of ``labels``.
        dicom_folder: folder holding the source CT series.
        out: the .dcm file to write (atomically).
        series: SeriesInstanceUID when the folder holds several series.
        model: ``{"name", "version"}`` of the algorithm (see ``curation.provenance.model_info``);
            default this program.
        labels: label value -> description; default the standard pancreas/tumor labels.
        algorithm_type: ``automatic`` (model output), ``semiautomatic`` (reviewed/corrected) or ``manual``.
        series_number: SeriesNumber of the new SEG series.

    Returns:
        A summary: ``segments`` (number, label, value), ``frames``, ``resampled`` and ``path``.

    Raises:
        InputError: unreadable series or label, undeclared label values, an empty label, a label that
            lies outside the series, or source instances a SEG cannot reference (blank or missing UIDs,
            an unrepairable SOP class, a multi-frame source: see :mod:`.dicom_sources`).

    >>> write_dicom_seg("pancreas.nii.gz", "ct_dicom/", "pancreas_seg.dcm")  # doctest: +SKIP
    """
    import highdicom as hd
    import SimpleITK as sitk
    from pydicom.sr.codedict import codes

    from PancreasSegLib.io.atomic import atomic_path, check_output_folder
    from PancreasSegLib.io.dicom_scan import choose_series
    from PancreasSegLib.io.volumes import read_volume
    from PancreasSegLib.outputs.dicom_sources import load_sources

    labels = dict(labels or STANDARD_LABELS)
    if algorithm_type not in ALGORITHM_TYPES:
        raise InputError(f"invalid algorithm type {algorithm_type!r}: use one of {', '.join(ALGORITHM_TYPES)}")
    check_output_folder(out)
    folder = Path(dicom_folder)
    if not folder.is_dir():
        raise InputError("expected the folder of the source DICOM series", folder)
    ct = read_volume(folder, series)
    files = choose_series(folder, series).files  # the files the volume was read from, in slice order
    sources = load_sources(files, folder)
    seg_image = label if isinstance(label, sitk.Image) else read_volume(label)
    name = None if isinstance(label, sitk.Image) else os.fspath(label)
    array, resampled = _on_grid(seg_image, ct, name)
    present = [int(v) for v in np.unique(array) if v != 0]
    undeclared = [v for v in present if v not in labels]
    if undeclared:
        raise InputError(f"holds undeclared label value(s) {', '.join(map(str, undeclared))}", name)
    if not present:
        raise InputError("the label is empty: nothing to put into a DICOM SEG", name)

    frames, segment_of = _frames(ct, array, present, files, sources, folder)

    model = dict(model or {"name": "PancreasSeg", "version": __version__})
    algorithm = None
    if algorithm_type != "manual":
        algorithm = hd.AlgorithmIdentificationSequence(name=str(model.get("name", "PancreasSeg"))[:64],
                                                       family=codes.cid7162.ArtificialIntelligence,
                                                       version=str(model.get("version") or __version__)[:64])
    descriptions = [_description(hd, number, labels[value], algorithm_type, algorithm)
                    for value, number in segment_of.items()]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="PancreasSeg",
        manufacturer_model_name=str(model.get("name", "PancreasSeg"))[:64], software_versions=__version__,
        device_serial_number="0", content_label="PANCREAS", content_description="Pancreas segmentation",
        series_description="Pancreas segmentation (research use)",
    )
    with atomic_path(out) as tmp:
        seg.save_as(tmp)
    return {"path": os.fspath(out), "frames": int(seg.NumberOfFrames), "resampled": resampled,
            "segments": [{"number": n, "label": labels[v].name, "value": v} for v, n in segment_of.items()]}


def _on_grid(label: sitk.Image, ct: sitk.Image, name: str | None) -> tuple[np.ndarray, bool]:
    import SimpleITK as sitk

    if geometry_difference(geometry(label), geometry(ct)) is None:
        return sitk.GetArrayFromImage(label), False
    source = sitk.GetArrayViewFromImage(label)
    if source.dtype.kind == "f" and not np.all(source == np.round(source)):
        raise InputError("holds non-integer values; a label map holds label values only", name)
    resampled = sitk.Resample(sitk.Cast(label, sitk.sitkUInt8), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                              sitk.sitkUInt8)
    array = sitk.GetArrayFromImage(resampled)
    if np.any(source) and not np.any(array):
        raise InputError("the label lies outside the DICOM series (no voxel overlaps it)", name)
    return array, True


def _description(hd, number: int, info: LabelInfo, algorithm_type: str, algorithm):
    def concept(code):
        return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)

    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=info.name, segmented_property_category=concept(info.category),
        segmented_property_type=concept(info.type), algorithm_type=algorithm_type.upper(),
        algorithm_identification=algorithm,
        anatomic_regions=[concept(info.anatomic_region)] if info.anatomic_region else None,
        display_color=hd.color.CIELabColor.from_rgb(*(round(c * 255) for c in info.color)),
        tracking_id=info.name, tracking_uid=hd.UID(),
    )


def _frames(ct: sitk.Image, array: np.ndarray, present: list[int], files: list[str], sources: list,
            folder: Path) -> tuple[np.ndarray, dict[int, int]]:
    """One frame of segment numbers per source instance, and label value -> segment number."""
    # One frame per source instance, matched by position so that the file order does not matter.
    frames = np.zeros((len(sources), array.shape[1], array.shape[2]), np.uint8)
    for i, ds in enumerate(sources):
        k = ct.TransformPhysicalPointToIndex([float(v) for v in ds.ImagePositionPatient])[2]
        if not 0 <= k < array.shape[0] or (int(ds.Rows), int(ds.Columns)) != array.shape[1:]:
            raise InputError(f"DICOM instance {Path(files[i]).name} does not fit the series grid", folder)
        frames[i] = np.clip(array[k], 0, 255)
    segment_of = {value: number for number, value in enumerate(present, start=1)}
    lookup = np.zeros(256, np.uint8)  # label value -> segment number (1, 2, ... for the values present)
    for value, number in segment_of.items():
        lookup[value] = number
    frames = lookup[frames]
    return frames, segment_of
