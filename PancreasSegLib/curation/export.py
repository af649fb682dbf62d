"""Export one reviewed case into a curated nnU-Net v2 raw dataset, with provenance and history.

Inputs are read and checked completely before anything is written: a refused export leaves the
dataset exactly as it was. The writing itself follows the protocol of
:mod:`PancreasSegLib.curation.journal`, under the dataset lock of :mod:`PancreasSegLib.curation.lock`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from PancreasSegLib import __version__
from PancreasSegLib.checks.ct import check_finite, check_geometry
from PancreasSegLib.curation import journal
from PancreasSegLib.curation.layout import (
    SUBFOLDERS,
    check_target_folder,
    committed_cases,
    next_case_id,
    provenance_path,
    rebuild_dataset_json,
)
from PancreasSegLib.curation.lock import DEFAULT_TIMEOUT, DatasetLock
from PancreasSegLib.curation.provenance import (
    SCHEMA,
    STATUSES,
    array_sha256,
    compare,
    model_info,
    read_provenance,
    source_info,
    utc_now,
)
from PancreasSegLib.datasets.nnunet import FILE_ENDING, NNUNET_LABELS, read_dataset_json, validate_case_id
from PancreasSegLib.errors import Cancelled, InputError
from PancreasSegLib.io.atomic import write_json_atomic
from PancreasSegLib.io.grid import geometry, geometry_difference

if TYPE_CHECKING:
    import SimpleITK as sitk

MAX_TEXT = 4000


@dataclass
class ExportResult:
    """What :func:`export_case` did. ``comparison`` is None when no proposal was given."""

    case_id: str
    dataset: str
    status: str
    revision: int
    comparison: dict | None
    history: str | None = None
    recovered: list[str] = field(default_factory=list)

    @property
    def dice(self) -> float | None:
        return None if self.comparison is None else self.comparison["dice"]

    @property
    def volume_change_ml(self) -> float | None:
        return None if self.comparison is None else self.comparison["volume_change_ml"]

    @property
    def edited_slices(self) -> int | None:
        return None if self.comparison is None else self.comparison["edited_slices"]

    def to_json(self) -> dict:
        out = asdict(self)
        out.update(dice=self.dice, volume_change_ml=self.volume_change_ml, edited_slices=self.edited_slices)
        return out


def export_case(image: str | os.PathLike | sitk.Image, label: str | os.PathLike | sitk.Image,
                dataset: str | os.PathLike, proposal: str | os.PathLike | sitk.Image | None = None,
                case_id: str | None = None, reviewer: str | None = None, status: str = "corrected",
                note: str | None = None, model: str | os.PathLike | Mapping | None = None,
                series: str | None = None, lock_timeout: float = DEFAULT_TIMEOUT) -> ExportResult:
    """Add (or re-export) one reviewed case to a curated dataset.

    Args:
        image: the CT, as a file, a DICOM series folder or a SimpleITK image.
        label: the reviewed label map (0 background, 1 pancreas, 2 tumor) in the image's grid.
        dataset: the dataset folder; created when missing (its parent must exist).
        proposal: the model's original label map, to measure what the reviewer changed.
        case_id: the case to write; default the next free ``case_0001``-style ID. Never derive it from
            a patient name or a file name that may hold one.
        reviewer, note: free text kept in the provenance.
        status: ``corrected`` (the proposal was edited), ``approved`` (accepted as it was) or
            ``rejected`` (the proposal was discarded and the label drawn anew).
        model: the bundle folder (or a ``{"name", "version"}`` mapping) of the model behind the proposal.
        series: SeriesInstanceUID to read when ``image`` is a folder with several series.
        lock_timeout: seconds to wait for another export into the same dataset.

    Returns:
        The case ID, revision, Dice / volume change / edited slices against the proposal, and the
        history entry that now holds the previous export (re-export only).

    Raises:
        InputError: bad status or case ID, unreadable or non-3D input, a label or proposal whose grid
            differs from the image or that holds undeclared values, a bad model bundle, a folder that is
            not a dataset, or the lock not free in time. Nothing is written in any of these cases.

    >>> result = export_case("ct.nii.gz", "corrected.nii.gz", "Dataset501_Curated",
    ...                      proposal="proposal.nii.gz", reviewer="dr-a")  # doctest: +SKIP
    >>> result.case_id, result.dice  # doctest: +SKIP
    ('case_0001', 0.93)
    """
    import SimpleITK as sitk

    if status not in STATUSES:
        raise InputError(f"invalid status {status!r}: use one of {', '.join(STATUSES)}")
    if case_id is not None:
        validate_case_id(case_id)
    reviewer, note = _text("reviewer", reviewer), _text("note", note)
    dataset = Path(dataset)
    check_target_folder(dataset)
    labels = _declared_labels(dataset)

    ct = _read(image, "image", series)
    check_geometry(ct, _name(image))
    check_finite(ct, _name(image))
    grid = geometry(ct)
    corrected = _as_label(_read(label, "label"), grid, labels, _name(label))
    proposed = None if proposal is None else _as_label(_read(proposal, "proposal"), grid, labels, _name(proposal))
    comparison = None
    if proposed is not None:
        comparison = compare(sitk.GetArrayViewFromImage(proposed), sitk.GetArrayViewFromImage(corrected),
                             ct.GetSpacing(), labels)
    record = {
        "schema": SCHEMA,
        "case_id": None,
        "status": status,
        "reviewer": reviewer,
        "note": note,
        "model": model_info(model),
        "image": {**grid, "pixel_type": ct.GetPixelIDTypeAsString(),
                  "sha256": array_sha256(sitk.GetArrayViewFromImage(ct))},
        "label_sha256": array_sha256(sitk.GetArrayViewFromImage(corrected)),
        "source": source_info(image, ct, series) if not isinstance(image, sitk.Image) else {"kind": "image"},
        "comparison": comparison,
        "tool": f"pancreasseg {__version__}",
    }
    clean = _without_metadata(ct)

    case_id, entry, recovered = _commit_case(dataset, case_id, record, clean, corrected, proposed, lock_timeout)
    return ExportResult(case_id=case_id, dataset=str(dataset), status=status, revision=record["revision"],
                        comparison=comparison, history=None if entry is None else str(entry), recovered=recovered)


def _commit_case(dataset: Path, case_id: str | None, record: dict, clean, corrected, proposed,
                 lock_timeout: float) -> tuple[str, Path | None, list]:
    """Under the dataset's lock: stage the case's files, pass the commit point, move them into place."""
    create_dataset(dataset)
    with DatasetLock(dataset, lock_timeout):
        recovered = journal.recover(dataset)
        for sub in SUBFOLDERS:
            (dataset / sub).mkdir(exist_ok=True)
        case_id = case_id or next_case_id(dataset)
        previous = _previous(dataset, case_id)
        now = utc_now()
        record.update(case_id=case_id, created=previous.get("created", now) if previous else now, updated=now,
                      revision=int(previous.get("revision", 1)) + 1 if previous else 1)
        image_changed = previous is None or previous.get("image", {}).get("sha256") != record["image"]["sha256"]
        stage = journal.begin(dataset, case_id)
        try:
            if image_changed:
                _write_image(clean, stage / "image.nii.gz")
            _write_image(corrected, stage / "label.nii.gz")
            if proposed is not None:
                _write_image(proposed, stage / "proposal.nii.gz")
            write_json_atomic(stage / "provenance.json", record)
            stamp = _history_stamp(dataset, case_id, now) if previous is not None else None
            journal.commit(dataset, case_id, stamp, image_to_history=previous is not None and image_changed,
                           has_proposal=proposed is not None)
        except BaseException:  # before the commit point: undo, so that "cancelled" means nothing written
            shutil.rmtree(stage, ignore_errors=True)
            raise
        try:
            entry = journal.apply(dataset, case_id)
        except (KeyboardInterrupt, Cancelled):  # after the commit point it is too late to cancel: finish
            entry = journal.apply(dataset, case_id)
    return case_id, entry, recovered


def _text(what: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    if len(value) > MAX_TEXT:
        raise InputError(f"the {what} is longer than {MAX_TEXT} characters")
    return value or None


def _name(obj) -> str | None:
    return None if obj is None or not isinstance(obj, (str, os.PathLike)) else os.fspath(obj)


def _read(obj, what: str, series: str | None = None) -> sitk.Image:
    import SimpleITK as sitk

    if isinstance(obj, sitk.Image):
        if obj.GetDimension() != 3 or obj.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"the {what} is not a 3D scalar image")
        return obj
    from PancreasSegLib.io.volumes import read_volume

    return read_volume(obj, series)


def _declared_labels(dataset: Path) -> dict[str, int]:
    if not (dataset / "dataset.json").is_file():
        return dict(NNUNET_LABELS)
    meta = read_dataset_json(dataset)
    if meta["file_ending"] != FILE_ENDING:
        raise InputError(f"the dataset uses file ending {meta['file_ending']}; export writes {FILE_ENDING}", dataset)
    labels = meta["labels"]
    if not isinstance(labels, dict) or any(not isinstance(v, int) for v in labels.values()):
        raise InputError("dataset.json 'labels' must map names to integer values (no region labels)", dataset)
    return labels


def _as_label(label: sitk.Image, grid: dict, labels: Mapping[str, int], name: str | None) -> sitk.Image:
    """The label as uint8 on exactly the image's grid, after checking grid and values."""
    import SimpleITK as sitk

    problem = geometry_difference(geometry(label), grid)
    if problem:
        raise InputError(f"its grid does not match the image's: {problem}", name)
    array = sitk.GetArrayFromImage(label)
    if not np.issubdtype(array.dtype, np.integer) and (
            not np.all(np.isfinite(array)) or not np.all(array == np.round(array))):
        raise InputError("holds non-integer values; a label map holds label values only", name)
    values = {int(v) for v in np.unique(array)}
    undeclared = sorted(values - {int(v) for v in labels.values()})
    if undeclared:
        declared = ", ".join(f"{v} {k}" for k, v in sorted(labels.items(), key=lambda kv: kv[1]))
        raise InputError(f"holds undeclared label value(s) {', '.join(map(str, undeclared))} "
                         f"(the dataset declares {declared})", name)
    out = sitk.GetImageFromArray(array.astype(np.uint8))
    out.SetSpacing(grid["spacing"])
    out.SetOrigin(grid["origin"])
    out.SetDirection(grid["direction"])
    return out


def _without_metadata(image: sitk.Image) -> sitk.Image:
    # DICOM tags (patient name, IDs, UIDs) must not travel into the curated files.
    from PancreasSegLib.io.images import without_metadata

    return without_metadata(image)


def _write_image(image: sitk.Image, path: Path) -> None:
    from PancreasSegLib.io.volumes import write_volume

    write_volume(image, path)


def create_dataset(dataset: str | os.PathLike) -> None:
    """Create a missing dataset folder whole (subfolders, empty dataset.json) by one rename.

    Raises:
        InputError: the folder cannot be created.
    """
    dataset = Path(dataset)
    if dataset.exists():
        return
    parent = dataset.resolve().parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{dataset.name}.creating-", dir=parent))
    try:
        for sub in SUBFOLDERS:
            (tmp / sub).mkdir()
        rebuild_dataset_json(tmp, name=dataset.name)
        (tmp / ".lock").touch()
        os.rename(tmp, dataset)
    except OSError:
        if not dataset.is_dir():  # not a concurrent creator winning the race: a real failure
            shutil.rmtree(tmp, ignore_errors=True)
            raise InputError("cannot create the dataset folder", dataset) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _previous(dataset: Path, case_id: str) -> dict | None:
    if case_id not in committed_cases(dataset):
        return None
    try:
        return read_provenance(provenance_path(dataset, case_id))
    except InputError:
        return {}


def _history_stamp(dataset: Path, case_id: str, now: str) -> str:
    # File-name-safe on every OS (no colons), sortable, unique for the case.
    stamp = now.replace("-", "").replace(":", "")
    base, n = stamp, 1
    while (dataset / "history" / case_id / stamp).exists():
        n += 1
        stamp = f"{base}-{n}"
    return stamp
