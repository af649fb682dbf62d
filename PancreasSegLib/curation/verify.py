"""Integrity check of a curated (or any nnU-Net v2 raw) dataset folder.

It checks what nnU-Net's own ``verify_dataset_integrity`` checks (dataset.json keys, counts, every image
with its label, same grid, declared label values) and what the curation adds: every case has its
provenance and the provenance matches the files (grid, voxel hashes, revision count), proposals match
their image, history entries are complete, no export is left unfinished.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from PancreasSegLib.curation.layout import HISTORY, PROPOSALS, PROVENANCE, STAGING
from PancreasSegLib.curation.provenance import STATUSES, array_sha256, read_provenance
from PancreasSegLib.errors import InputError
from PancreasSegLib.io.grid import geometry, geometry_difference


@dataclass
class VerifyResult:
    """The problems found (empty when the dataset is sound) and what the dataset holds.

    ``curated`` is False for a plain nnU-Net raw dataset (no provenance folder, no curation summary):
    then only the nnU-Net-level checks apply.
    """

    folder: str
    problems: list[str] = field(default_factory=list)
    cases: int = 0
    history_entries: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)
    curated: bool = True

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if not self.curated:
            return f"{self.folder}: OK, {self.cases} case(s) (a plain nnU-Net dataset: no provenance checked)"
        by_status = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "none"
        return f"{self.folder}: OK, {self.cases} case(s) ({by_status}), {self.history_entries} history entr" \
               f"{'y' if self.history_entries == 1 else 'ies'}"


def verify_dataset(folder: str | os.PathLike, recover: bool = True, lock_timeout: float = 120.0) -> VerifyResult:
    """Check a dataset folder and return every problem found.

    Args:
        folder: the dataset folder.
        recover: first finish or undo an export that was interrupted (crash, kill), holding the dataset
            lock, as the next export would. With False nothing is written and an interrupted export is
            reported as a problem.
        lock_timeout: seconds to wait for a running export before recovering.

    Returns:
        A :class:`VerifyResult`; ``result.ok`` is True when no problem was found.

    >>> result = verify_dataset("Dataset501_Curated")  # doctest: +SKIP
    >>> result.ok, result.cases  # doctest: +SKIP
    (True, 3)
    """
    folder = Path(folder)
    result = VerifyResult(str(folder))
    if not folder.is_dir():
        result.problems.append("no such dataset folder")
        return result
    if recover and ((folder / ".lock").exists() or (folder / STAGING).exists()):
        from PancreasSegLib.curation.journal import recover as recover_dataset
        from PancreasSegLib.curation.lock import DatasetLock

        try:
            lock = DatasetLock(folder, lock_timeout)
            lock.acquire()
        except PermissionError:  # a read-only copy: check it as it is, unfinished exports show up as problems
            _check(folder, result)
            return result
        try:
            result.recovered = recover_dataset(folder)
            _check(folder, result)
        finally:
            lock.release()
    else:
        _check(folder, result)
    return result


def _check(folder: Path, result: VerifyResult) -> None:
    from PancreasSegLib.datasets.nnunet import read_dataset_json

    problems = result.problems
    try:
        meta = read_dataset_json(folder)
    except InputError as exc:
        problems.append(str(exc))
        return
    ending = meta["file_ending"]
    labels = meta["labels"]
    if not isinstance(labels, dict) or not all(isinstance(v, int) for v in labels.values()):
        problems.append("dataset.json: 'labels' must map names to integer values")
        return
    values = sorted(labels.values())
    if values[:1] != [0] or values != list(range(len(values))):
        problems.append(f"dataset.json: label values must be 0, 1, 2, ... (found {values})")
    if len(meta["channel_names"]) != 1:
        problems.append(f"dataset.json: expected one channel, found {len(meta['channel_names'])}")
    declared = set(values)

    images = _stems(folder / "imagesTr", f"_0000{ending}", problems)
    labels_tr = _stems(folder / "labelsTr", ending, problems)
    # A plain nnU-Net raw dataset (e.g. from `pancreasseg phantom`) has no provenance to check.
    result.curated = (folder / PROVENANCE).is_dir() or "curation" in meta
    provenance = _stems(folder / PROVENANCE, ".json", problems, required=False)
    proposals = _stems(folder / PROPOSALS, ending, problems, required=False)
    for case in sorted(images - labels_tr):
        problems.append(f"{case}: image without label (labelsTr/{case}{ending})")
    for case in sorted(labels_tr - images):
        problems.append(f"{case}: label without image (imagesTr/{case}_0000{ending})")
    for case in sorted(images - provenance if result.curated else ()):
        problems.append(f"{case}: no provenance (provenance/{case}.json)")
    for case in sorted(provenance - images):
        problems.append(f"{case}: provenance without image")
    for case in sorted(proposals - images):
        problems.append(f"{case}: proposal without image")
    if meta["numTraining"] != len(images):
        problems.append(f"dataset.json: numTraining is {meta['numTraining']} but imagesTr holds {len(images)} case(s)")
    if "training" in meta:
        listed = sorted(str(e.get("label", "")) for e in meta["training"] if isinstance(e, dict))
        expected = sorted(f"./labelsTr/{c}{ending}" for c in images)
        if listed != expected:
            problems.append("dataset.json: the 'training' list does not match the cases on disk")

    history = _history_entries(folder, problems)
    statuses: Counter[str] = Counter()
    for case in sorted(images & labels_tr):
        prov = _check_case(folder, case, ending, declared, case in proposals, case in provenance, problems)
        if not result.curated:
            continue
        if prov is not None:
            statuses[str(prov.get("status"))] += 1
            revision = prov.get("revision")
            if revision != len(history.get(case, [])) + 1:
                problems.append(f"{case}: provenance revision {revision} but history holds "
                                f"{len(history.get(case, []))} earlier export(s)")
    for case, entries in sorted(history.items()):
        if case not in images:
            problems.append(f"history/{case}: history of a case that is not in the dataset")
        for entry in entries:
            _check_history_entry(folder / HISTORY / case / entry, case, declared, problems)
    summary = meta.get("curation", {}).get("cases_by_status") if isinstance(meta.get("curation"), dict) else None
    if summary is not None and {k: v for k, v in summary.items() if v} != dict(statuses):
        problems.append("dataset.json: the curation summary's counts per status do not match the provenance files")
    staging = folder / STAGING
    if staging.is_dir():
        for stage in sorted(staging.iterdir()):
            problems.append(f"{STAGING}/{stage.name}: unfinished export (run verify without --no-recover, or export)")
    result.cases = len(images)
    result.history_entries = sum(len(v) for v in history.values())
    result.statuses = dict(statuses)


def _stems(sub: Path, suffix: str, problems: list[str], required: bool = True) -> set[str]:
    if not sub.is_dir():
        if required:
            problems.append(f"no {sub.name} folder")
        return set()
    stems = set()
    for path in sub.iterdir():
        if path.name.endswith(suffix) and not path.name.startswith(".") and path.is_file():
            stems.add(path.name[: -len(suffix)])
        else:
            problems.append(f"{sub.name}/{path.name}: unexpected file (not <case>{suffix})")
    return stems


def _read(path: Path, problems: list[str], what: str):
    import SimpleITK as sitk

    from PancreasSegLib.io.guards import check_header_safe

    try:
        check_header_safe(path)
        image = sitk.ReadImage(str(path))
        return image, sitk.GetArrayFromImage(image)
    except (RuntimeError, InputError):
        problems.append(f"{what}: cannot be read ({path.name})")
        return None, None


def _check_case(folder: Path, case: str, ending: str, declared: set[int], has_proposal: bool,
                has_provenance: bool, problems: list[str]) -> dict | None:
    image, image_array = _read(folder / "imagesTr" / f"{case}_0000{ending}", problems, case)
    label, label_array = _read(folder / "labelsTr" / f"{case}{ending}", problems, case)
    if image is None or label is None:
        return None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        problems.append(f"{case}: the image is not a 3D scalar volume")
        return None
    grid = geometry(image)
    _check_label(case, "label", label, label_array, grid, declared, problems)
    if image_array.dtype.kind == "f" and np.isnan(image_array).any():
        problems.append(f"{case}: the image holds NaN values")
    if has_proposal:
        proposal, proposal_array = _read(folder / PROPOSALS / f"{case}{ending}", problems, case)
        if proposal is not None:
            _check_label(case, "proposal", proposal, proposal_array, grid, declared, problems)
    if not has_provenance:
        return None
    try:
        prov = read_provenance(folder / PROVENANCE / f"{case}.json")
    except InputError as exc:
        problems.append(f"{case}: provenance {exc}")
        return None
    if prov.get("case_id") != case:
        problems.append(f"{case}: provenance names the case {prov.get('case_id')!r}")
    if prov.get("status") not in STATUSES:
        problems.append(f"{case}: provenance status {prov.get('status')!r} is not one of {', '.join(STATUSES)}")
    recorded = prov.get("image", {})
    try:
        problem = geometry_difference(recorded, grid)
    except (KeyError, TypeError, ValueError):
        problem = "is missing or malformed"
    if problem:
        problems.append(f"{case}: provenance image grid {problem}")
    if recorded.get("sha256") and recorded["sha256"] != array_sha256(image_array):
        problems.append(f"{case}: the image's voxels are not those the provenance records (changed outside export?)")
    if prov.get("label_sha256") and prov["label_sha256"] != array_sha256(label_array.astype(np.uint8)):
        problems.append(f"{case}: the label's voxels are not those the provenance records (changed outside export?)")
    if (prov.get("comparison") is not None) != has_proposal:
        problems.append(f"{case}: provenance and proposals/ disagree on whether there is a proposal")
    return prov


def _check_label(case: str, what: str, label, array: np.ndarray, grid: dict, declared: set[int],
                 problems: list[str]) -> None:
    problem = geometry_difference(geometry(label), grid)
    if problem:
        problems.append(f"{case}: {what} grid does not match the image: {problem}")
    if array.dtype.kind not in "iu":
        problems.append(f"{case}: {what} has a non-integer pixel type ({array.dtype})")
    undeclared = sorted({int(v) for v in np.unique(array)} - declared)
    if undeclared:
        problems.append(f"{case}: {what} holds undeclared label value(s) {', '.join(map(str, undeclared))}")


def _history_entries(folder: Path, problems: list[str]) -> dict[str, list[str]]:
    root = folder / HISTORY
    entries: dict[str, list[str]] = {}
    if not root.is_dir():
        return entries
    for case_dir in sorted(root.iterdir()):
        if not case_dir.is_dir():
            problems.append(f"history/{case_dir.name}: unexpected file")
            continue
        for entry in sorted(case_dir.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                problems.append(f"history/{case_dir.name}/{entry.name}: unfinished or unexpected history entry")
                continue
            entries.setdefault(case_dir.name, []).append(entry.name)
    return entries


def _check_history_entry(entry: Path, case: str, declared: set[int], problems: list[str]) -> None:
    where = f"history/{case}/{entry.name}"
    if not (entry / "provenance.json").is_file() or not (entry / "label.nii.gz").is_file():
        problems.append(f"{where}: misses provenance.json or label.nii.gz")
        return
    try:
        prov = read_provenance(entry / "provenance.json")
    except InputError as exc:
        problems.append(f"{where}: {exc}")
        return
    if prov.get("case_id") != case:
        problems.append(f"{where}: provenance names the case {prov.get('case_id')!r}")
    label, array = _read(entry / "label.nii.gz", problems, where)
    if label is None:
        return
    try:
        problem = geometry_difference(geometry(label), prov["image"])
    except (KeyError, TypeError, ValueError):
        problem = "cannot be compared (provenance has no image grid)"
    if problem:
        problems.append(f"{where}: label grid vs. its provenance: {problem}")
    undeclared = sorted({int(v) for v in np.unique(array)} - declared)
    if undeclared:
        problems.append(f"{where}: label holds undeclared label value(s) {', '.join(map(str, undeclared))}")
