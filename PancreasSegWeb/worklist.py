"""The reading room's worklist: the cases of a CASES folder, the dataset case each one becomes, and its status.

CASES is either a folder of CTs (image files and DICOM series folders, one level deep) or an nnU-Net raw
dataset (``dataset.json`` + ``imagesTr/``), a curated one included, to review again. Every case gets a key
that is the same for every reader of the same folder (a hash of its path inside CASES) and, when it is
first opened, a case ID of the target dataset (``case_0001``, ...): the ID never comes from a file name,
which may hold a patient's name. The keys and IDs are kept in ``DATASET/.review/sources.json``, written
under a lock so that two readers never get the same new ID. A reader holds a case's own lock
(``DATASET/.review/locks/<key>.lock``) while the case is open; the others see it as locked, and by whom.

A case's status is its provenance's (``corrected``, ``approved``, ``rejected``) once it was exported,
``proposed`` while the model's proposal is open, else ``new``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from PancreasSegLib.constants import REVIEW_STATUSES
from PancreasSegLib.curation.layout import committed_cases, next_case_id, provenance_path
from PancreasSegLib.curation.lock import DatasetLock, read_holder
from PancreasSegLib.curation.provenance import read_provenance
from PancreasSegLib.datasets.nnunet import FILE_ENDING
from PancreasSegLib.errors import InputError
from PancreasSegLib.io.atomic import full_extension, write_json_atomic

#: Every status a case can have in the worklist, in the order of the work.
STATUSES = ("new", "proposed", *REVIEW_STATUSES)
#: The reading room's own files inside the dataset folder (hidden: nnU-Net and ``verify`` skip them).
REVIEW_FOLDER = ".review"
CT_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Names (without ending) of label maps that lie next to their CTs, as ``pancreasseg demo`` writes them.
LABEL_MARKERS = ("_label", "_labels", "_seg", "_mask")


@dataclass
class Case:
    """One case of the worklist.

    ``image`` is a file or a DICOM series folder inside CASES; ``case_id`` the dataset's ID (None until
    reserved); ``in_dataset`` is True when CASES is a curated dataset holding the case's label (opening it
    shows the label and keeps its proposal).
    """

    key: str
    title: str
    image: Path
    case_id: str | None = None
    in_dataset: bool = False


def case_key(cases_root: Path, path: Path) -> str:
    """The same short key for the same case, whichever reader computes it.

    >>> case_key(Path("/data/cts"), Path("/data/cts/a.nii.gz"))
    'd1f94ec9c6b27dcf'
    """
    # The folder resolved, not the file: a CT may be a link to a file elsewhere, and is still this case.
    relative = (path.parent.resolve() / path.name).relative_to(cases_root.resolve()).as_posix()
    return hashlib.sha256(relative.encode("utf-8")).hexdigest()[:16]


def find_cases(cases_root: str | os.PathLike) -> list[Case]:
    """The cases of a CASES folder, sorted by title.

    Raises:
        InputError: the folder does not exist or holds no CT.
    """
    root = Path(cases_root)
    if not root.is_dir():
        raise InputError("is not a folder of CTs or DICOM series", root)
    if (root / "dataset.json").is_file() and (root / "imagesTr").is_dir():
        cases = _dataset_cases(root)
    else:
        cases = [Case(case_key(root, p), p.name, p) for p in sorted(root.iterdir()) if _is_case(p)]
    if not cases:
        raise InputError("holds no CT (image files or DICOM series folders)", root)
    return sorted(cases, key=lambda case: case.title)


def _dataset_cases(root: Path) -> list[Case]:
    reviewed = set(committed_cases(root))
    suffix = f"_0000{FILE_ENDING}"
    cases = []
    for path in sorted((root / "imagesTr").iterdir()):
        if path.name.endswith(suffix) and not path.name.startswith("."):
            case_id = path.name[: -len(suffix)]
            cases.append(Case(case_key(root, path), case_id, path, case_id, in_dataset=case_id in reviewed))
    return cases


def _is_case(path: Path) -> bool:
    if path.name.startswith("."):
        return False
    if path.is_dir():
        return _holds_dicom(path)
    ending = full_extension(path)
    if ending not in CT_ENDINGS or path.name.endswith(".seg.nrrd"):
        return False
    stem = path.name[: -len(ending)].lower()
    return not any(stem.endswith(marker) for marker in LABEL_MARKERS)


def _holds_dicom(folder: Path, probe: int = 5) -> bool:
    """True when one of the folder's first files is DICOM (the preamble's "DICM" at byte 128)."""
    files = [p for p in sorted(folder.iterdir()) if p.is_file()][:probe]
    for path in files:
        try:
            with open(path, "rb") as handle:
                if handle.read(132)[128:] == b"DICM":
                    return True
        except OSError:
            continue
    return False


class Worklist:
    """The cases of CASES with their dataset IDs and statuses, for one target dataset.

    Args:
        cases_root: the CASES folder.
        dataset: the curated dataset the reviewed cases are exported into (it must exist).
    """

    def __init__(self, cases_root: str | os.PathLike, dataset: str | os.PathLike) -> None:
        self.cases_root, self.dataset = Path(cases_root), Path(dataset)
        self.review_folder = self.dataset / REVIEW_FOLDER
        self.review_folder.mkdir(exist_ok=True)
        self.cases = find_cases(self.cases_root)
        self.proposed: set[str] = set()
        self._load_ids()

    def case(self, key: str) -> Case:
        """The case with ``key`` (KeyError when there is none: keys come from the page)."""
        for case in self.cases:
            if case.key == key:
                return case
        raise KeyError(key)

    def refresh(self) -> None:
        """Read again the IDs other readers reserved (their exports then show with their statuses)."""
        self._load_ids()

    def status(self, case: Case) -> str:
        """``corrected`` / ``approved`` / ``rejected`` once exported, ``proposed`` or ``new`` otherwise."""
        if case.case_id and case.case_id in committed_cases(self.dataset):
            try:
                status = read_provenance(provenance_path(self.dataset, case.case_id)).get("status")
            except InputError:
                status = None
            if status in REVIEW_STATUSES:
                return status
        return "proposed" if case.key in self.proposed else "new"

    def reserve_id(self, case: Case) -> str:
        """The dataset case ID of ``case``, reserved under a lock the first time (shared by every reader)."""
        if case.case_id:
            return case.case_id
        with DatasetLock(self.review_folder, timeout=30.0, name="sources.lock"):
            ids = self._read_ids()
            if case.key not in ids:
                ids[case.key] = _next_free(self.dataset, ids.values())
                write_json_atomic(self.review_folder / "sources.json", {"cases": ids})
        self._load_ids()
        return case.case_id  # type: ignore[return-value]

    def next_case(self, after: Case | None, skip: set[str] = frozenset()) -> Case | None:
        """The first case after ``after`` (wrapping round) still to review (``new`` or ``proposed``)."""
        start = self.cases.index(after) + 1 if after in self.cases else 0
        for case in self.cases[start:] + self.cases[:start]:
            if case is not after and case.key not in skip and self.status(case) in ("new", "proposed"):
                return case
        return None

    def lock_path(self, case: Case) -> Path:
        """The case's lock file: held while a reader has the case open."""
        return self.review_folder / "locks" / f"{case.key}.lock"

    def locked_by(self, case: Case) -> str | None:
        """Who holds the case's lock (reviewer and machine), or None when nobody does.

        The lock is the operating system's: it goes when its holder ends, however it ends.
        """
        text = read_holder(self.lock_path(case))
        if text is None:
            return None
        try:
            holder = json.loads(text)
            return f"{holder.get('reviewer') or 'someone'} on {holder.get('host', 'another machine')}"
        except (ValueError, AttributeError):
            return text

    def lock(self, case: Case, reviewer: str) -> DatasetLock:
        """Take the case's lock for ``reviewer`` (release it when the case closes).

        Raises:
            ValueError: another reader holds it.
        """
        path = self.lock_path(case)
        path.parent.mkdir(exist_ok=True)
        holder = json.dumps({"reviewer": reviewer, "host": socket.gethostname(), "pid": os.getpid()})
        lock = DatasetLock(path.parent, timeout=0, name=path.name, holder=holder)
        try:
            lock.acquire()
        except InputError:
            raise ValueError(f"{case.title} is open by {self.locked_by(case) or 'another reader'}.") from None
        return lock

    def _read_ids(self) -> dict[str, str]:
        try:
            data = json.loads((self.review_folder / "sources.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        cases = data.get("cases") if isinstance(data, dict) else None
        return {str(k): str(v) for k, v in cases.items()} if isinstance(cases, dict) else {}

    def _load_ids(self) -> None:
        ids = self._read_ids()
        for case in self.cases:
            if case.case_id is None:  # a dataset's own cases keep their IDs
                case.case_id = ids.get(case.key)


def _next_free(dataset: Path, reserved) -> str:
    """The dataset's next automatic ID, or one more than the highest reserved one when that is higher."""
    free = int(next_case_id(dataset)[len("case_"):])
    taken = [int(v[len("case_"):]) for v in reserved if v.startswith("case_") and v[len("case_"):].isdigit()]
    return f"case_{max([free, *(n + 1 for n in taken)]):04d}"
