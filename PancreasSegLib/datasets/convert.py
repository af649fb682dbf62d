"""Converting public pancreas datasets to the project's nnU-Net v2 raw layout.

* MSD Task07_Pancreas: ``dataset.json`` with a ``training`` list of ``{"image": "./imagesTr/pancreas_001.nii.gz",
  "label": "./labelsTr/pancreas_001.nii.gz"}``, labels 0 background, 1 pancreas, 2 cancer (= our values).
* NIH Pancreas-CT (TCIA): one DICOM series per patient under ``.../PANCREAS_0001/<study>/<series>/*.dcm`` and
  label files ``.../label0001.nii.gz`` (1 = pancreas). The labels' headers do not reliably match the DICOM
  geometry; :func:`PancreasSegLib.datasets.label_alignment.align_label_to_image` puts each label onto its image grid.

Images are copied (written as .nii.gz), never linked. Every file is written atomically and a case whose
image and label both exist in the output is skipped, so an interrupted conversion resumes where it stopped.
``dataset.json`` is rewritten after each case and records per-case conversion notes under ``conversion``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from PancreasSegLib.datasets.nnunet import image_path, label_path, validate_case_id, write_dataset_json
from PancreasSegLib.errors import InputError, read_json
from PancreasSegLib.io.atomic import atomic_path, full_extension
from PancreasSegLib.io.grid import grid_mismatch

if TYPE_CHECKING:
    import SimpleITK as sitk

Log = Callable[[str], None]


def convert_msd(src: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False,
                log: Log | None = None) -> list[str]:
    """Convert MSD Task07_Pancreas (its training cases) into an nnU-Net v2 raw dataset.

    Args:
        src: the Task07_Pancreas folder (dataset.json, imagesTr, labelsTr).
        out: output dataset folder (created if missing; its parent must exist).
        overwrite: convert cases again even when their output exists.
        log: receives one line per case.

    Returns:
        The case IDs of the output dataset.

    Raises:
        InputError: no training cases, a listed file missing, a label not on its image's grid or with values
            outside {0, 1, 2}; the first offending case is named.

    >>> convert_msd("Task07_Pancreas", "Dataset007_Pancreas")  # doctest: +SKIP
    """

    src = Path(src)
    pairs = _msd_training_pairs(src)  # checked before the output folder is made: a refusal writes nothing
    if not pairs:
        raise InputError("has no training cases", src)
    out = _prepare_output(out)
    notes = _previous_notes(out)
    done: list[str] = []
    for n, (image_file, label_file) in enumerate(pairs, 1):
        case_id = validate_case_id(_stem(image_file))
        if _converted(out, case_id) and not overwrite:
            done.append(case_id)
            _log(log, f"[{n}/{len(pairs)}] {case_id}: already converted, skipped")
            continue
        for path in (image_file, label_file):
            if not path.is_file():
                raise InputError(f"case {case_id}: listed in dataset.json but missing", path)
        image_info = _read_information(image_file)
        label = _read(label_file)
        mismatch = grid_mismatch(label, image_info)
        if mismatch:
            raise InputError(f"case {case_id}: the label is not on the image's grid ({mismatch})", label_file)
        label = _checked_label(label, {0, 1, 2}, case_id, label_file)
        if full_extension(image_file) == ".nii.gz":
            with atomic_path(image_path(out, case_id)) as tmp:
                shutil.copyfile(image_file, tmp)
        else:
            _write(_read(image_file), image_path(out, case_id))
        _write(label, label_path(out, case_id))
        notes[case_id] = f"from {image_file.name} and {label_file.name}"
        done.append(case_id)
        _write_dataset_json(out, done, notes, "MSD Task07_Pancreas")
        _log(log, f"[{n}/{len(pairs)}] {case_id}: converted")
    _write_dataset_json(out, done, notes, "MSD Task07_Pancreas")
    return sorted(done)


def _msd_training_pairs(src: Path) -> list[tuple[Path, Path]]:
    meta = src / "dataset.json"
    if meta.is_file():
        training = read_json(meta).get("training", [])
        pairs = [(_inside(src, e["image"], meta), _inside(src, e["label"], meta)) for e in training
                 if isinstance(e, dict) and "image" in e and "label" in e]
    elif (src / "imagesTr").is_dir():
        pairs = [(p, src / "labelsTr" / p.name) for p in sorted((src / "imagesTr").glob("*.nii.gz"))]
    else:
        raise InputError("is not an MSD task folder (no dataset.json, no imagesTr)", src)
    # "._name" files are macOS resource forks copied along with the data, never images.
    return [(i, lab) for i, lab in pairs if not i.name.startswith(".") and not lab.name.startswith(".")]


def _inside(src: Path, name, meta: Path) -> Path:
    """``src / name`` for a dataset.json entry, refused when it is not a relative path inside ``src``
    (an absolute path, ``..``, or a symlink leading out): a dataset must not make us read elsewhere."""
    if not isinstance(name, str) or not name:
        raise InputError(f"training entry {name!r} is not a file name", meta)
    path = src / name
    if Path(name).is_absolute() or ".." in Path(name).parts or not path.resolve().is_relative_to(src.resolve()):
        raise InputError(f"training entry {name!r} points outside the dataset folder", meta)
    return path


_PATIENT = re.compile(r"^PANCREAS_(\d{4})$", re.IGNORECASE)
_LABEL = re.compile(r"^label(\d{4})\.nii(\.gz)?$", re.IGNORECASE)


def convert_nih(src: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False, skip_bad: bool = False,
                log: Log | None = None) -> list[str]:
    """Convert NIH Pancreas-CT (DICOM series + label NIfTIs) into an nnU-Net v2 raw dataset.

    Patient folders ``PANCREAS_NNNN`` and label files ``labelNNNN.nii.gz`` are found anywhere under
    ``src`` and paired by number; the case ID is ``nih_pancreas_NNNN``.

    Args:
        src: the download folder (holding e.g. ``Pancreas-CT/`` and ``TCIA_pancreas_labels-02-05-2017/``).
        out: output dataset folder.
        overwrite: convert cases again even when their output exists.
        skip_bad: skip (and report) a case that cannot be converted instead of stopping at it.
        log: receives one line per case.

    Returns:
        The case IDs of the output dataset.

    Raises:
        InputError: no patient folders or labels found, or (without ``skip_bad``) the first case with no label,
            no or several matching DICOM series, label values other than 0 and 1, or a label that cannot be
            placed on its image.
    """
    src, out = Path(src), _prepare_output(out)
    if not src.is_dir():
        raise InputError("no such folder", src)
    patients = {m.group(1): p for p in sorted(src.rglob("*")) if p.is_dir() and (m := _PATIENT.match(p.name))}
    labels = {m.group(1): p for p in sorted(src.rglob("*")) if p.is_file() and (m := _LABEL.match(p.name))}
    if not patients:
        raise InputError("holds no NIH Pancreas-CT patient folders (PANCREAS_NNNN)", src)
    if not labels:
        raise InputError("holds no NIH Pancreas-CT label files (labelNNNN.nii.gz)", src)
    notes = _previous_notes(out)
    done: list[str] = []
    skipped: list[str] = []
    for n, number in enumerate(sorted(patients), 1):
        case_id = f"nih_pancreas_{number}"
        prefix = f"[{n}/{len(patients)}] {case_id}"
        if _converted(out, case_id) and not overwrite:
            done.append(case_id)
            _log(log, f"{prefix}: already converted, skipped")
            continue
        try:
            if number not in labels:
                raise InputError(f"case {case_id}: no label file label{number}.nii.gz found", patients[number])
            image, label, note = _nih_case(case_id, patients[number], labels[number])
        except InputError as exc:
            if not skip_bad:
                raise
            skipped.append(case_id)
            _log(log, f"{prefix}: SKIPPED: {exc}")
            continue
        _write(image, image_path(out, case_id))
        _write(label, label_path(out, case_id))
        notes[case_id] = note
        done.append(case_id)
        _write_dataset_json(out, done, notes, "NIH Pancreas-CT")
        _log(log, f"{prefix}: converted; {note}")
    if not done:
        raise InputError("no case could be converted", src)
    _write_dataset_json(out, done, notes, "NIH Pancreas-CT")
    if skipped:
        _log(log, f"skipped {len(skipped)} case(s): {', '.join(skipped)}")
    return sorted(done)


def _nih_case(case_id: str, patient: Path, label_file: Path) -> tuple[sitk.Image, sitk.Image, str]:
    from PancreasSegLib.datasets.label_alignment import align_label_to_image
    from PancreasSegLib.io.dicom import list_dicom_series
    from PancreasSegLib.io.volumes import read_volume

    label = _read(label_file)
    # Only folders that hold files are scanned: ITK warns on stderr about every folder without a series.
    folders = [f for f in [patient, *sorted(p for p in patient.rglob("*") if p.is_dir())]
               if any(child.is_file() and not child.name.startswith(".") for child in f.iterdir())]
    series = [(folder, uid) for folder in folders for uid in list_dicom_series(folder)]
    if not series:
        raise InputError(f"case {case_id}: no DICOM series found", patient)
    if len(series) > 1:
        # Several series (e.g. a scout): keep those with the label's number of voxels.
        matching = [s for s in series if _series_size(*s) == label.GetSize()]
        if len(matching) != 1:
            raise InputError(f"case {case_id}: {len(series)} DICOM series and {len(matching)} of them match the "
                             f"label's size {label.GetSize()}", patient)
        series = matching
    folder, uid = series[0]
    image = _as_int16_if_exact(read_volume(folder, uid))
    label = _checked_label(label, {0, 1}, case_id, label_file)
    try:
        label, note = align_label_to_image(label, image)
    except InputError as exc:
        raise InputError(f"case {case_id}: {exc}", label_file) from None
    return image, label, note


def _series_size(folder: Path, uid: str) -> tuple[int, ...]:
    import SimpleITK as sitk

    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    reader.ReadImageInformation()
    return (*reader.GetSize()[:2], len(files))


def _as_int16_if_exact(image: sitk.Image) -> sitk.Image:
    import SimpleITK as sitk

    # The DICOM reader returns int32 or float after rescaling; CT in HU fits int16, which halves the files.
    array = sitk.GetArrayViewFromImage(image)
    if array.size and array.min() >= -32768 and array.max() <= 32767 and np.all(array == np.round(array)):
        return sitk.Cast(image, sitk.sitkInt16)
    return sitk.Cast(image, sitk.sitkFloat32)


def _checked_label(label: sitk.Image, allowed: set[int], case_id: str, path: Path) -> sitk.Image:
    import SimpleITK as sitk

    values = np.unique(sitk.GetArrayViewFromImage(label))
    unknown = [v for v in values.tolist() if v not in allowed]
    if unknown:
        shown = ", ".join(f"{v:g}" for v in unknown[:5])
        raise InputError(f"case {case_id}: label values {shown} outside {sorted(allowed)}", path)
    return sitk.Cast(label, sitk.sitkUInt8)


def _read(path: Path) -> sitk.Image:
    from PancreasSegLib.io.volumes import read_volume

    return read_volume(path)


def _read_information(path: Path):
    """The header of ``path`` (size, spacing, origin, direction) without reading the voxels.

    SimpleITK's file reader answers the same geometry questions as an image, which is all
    :func:`grid_mismatch` asks.
    """
    import SimpleITK as sitk

    from PancreasSegLib.io.guards import check_header_safe

    check_header_safe(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return _read(path)  # read_volume reports the problem in its words
    return reader if reader.GetDimension() == 3 else _read(path)


def _write(image: sitk.Image, path: Path) -> None:
    import SimpleITK as sitk

    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def _prepare_output(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", out)
    if not out.parent.is_dir():
        raise InputError(f"output folder {out.parent} does not exist", out)
    for sub in ("imagesTr", "labelsTr"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    return out


def _converted(out: Path, case_id: str) -> bool:
    return image_path(out, case_id).is_file() and label_path(out, case_id).is_file()


def _previous_notes(out: Path) -> dict[str, str]:
    try:
        return dict(json.loads((out / "dataset.json").read_text(encoding="utf-8")).get("conversion", {}))
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _write_dataset_json(out: Path, case_ids: list[str], notes: dict[str, str], source: str) -> None:
    write_dataset_json(out, case_ids, name=source.replace(" ", "_"),
                       description=f"{source} converted by pancreasseg convert",
                       extra={"source": source, "conversion": {c: notes[c] for c in sorted(case_ids) if c in notes}})


def _stem(path: Path) -> str:
    ext = full_extension(path)
    return path.name[: len(path.name) - len(ext)] if ext else path.name


def _log(log: Log | None, line: str) -> None:
    if log is not None:
        log(line)
