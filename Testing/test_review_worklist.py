"""The reading room's worklist without a browser: the cases of CASES, their dataset IDs, statuses and locks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("trame_slicer", reason="the reading room needs trame-slicer (pip install -e \".[review]\")")

from curation_data import make_case  # noqa: E402

from PancreasSegLib.curation.export import create_dataset, export_case  # noqa: E402
from PancreasSegLib.errors import InputError  # noqa: E402
from PancreasSegWeb.worklist import Worklist, case_key, find_cases  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Bound of every wait on another process (s).
WAIT = 30.0


def _ct(path: Path, seed: int = 0) -> Path:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(make_case(seed)[0], str(path))
    return path


def _dicom_folder(folder: Path, files: int = 2) -> Path:
    """A folder of files with DICOM's preamble (what the worklist looks at; nothing reads them here)."""
    folder.mkdir(parents=True)
    for n in range(files):
        (folder / f"IM{n:04d}").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    return folder


@pytest.fixture
def cases(tmp_path) -> Path:
    root = tmp_path / "cts"
    for n, name in enumerate(("b.nii.gz", "a.nrrd", "Doe_Jane.nii.gz")):
        _ct(root / name, seed=n)
    _dicom_folder(root / "series1")
    return root


@pytest.fixture
def dataset(tmp_path) -> Path:
    folder = tmp_path / "Dataset501_Curated"
    create_dataset(folder)
    return folder


def _ids(worklist: Worklist) -> dict[str, str | None]:
    return {case.title: case.case_id for case in worklist.cases}


def test_cts_and_dicom_series_folders_are_cases_and_labels_notes_and_hidden_files_are_not(cases):
    (cases / "b_label.nii.gz").write_bytes(b"")
    (cases / "b_seg.nrrd").write_bytes(b"")
    (cases / "b.seg.nrrd").write_bytes(b"")
    (cases / ".hidden.nii.gz").write_bytes(b"")
    (cases / "notes.txt").write_text("no CT")
    (cases / "reports").mkdir()
    (cases / "reports" / "report.pdf").write_bytes(b"%PDF" + b"\0" * 200)
    found = find_cases(cases)
    assert [case.title for case in found] == ["Doe_Jane.nii.gz", "a.nrrd", "b.nii.gz", "series1"]
    assert all(case.case_id is None and not case.in_dataset for case in found)
    assert found[-1].image == cases / "series1"


@pytest.mark.parametrize("make", [lambda root: root / "missing", lambda root: root], ids=["missing", "empty"])
def test_a_missing_folder_or_one_without_ct_is_refused_by_name(tmp_path, make):
    root = make(tmp_path / "cts")
    if root.name == "cts":
        root.mkdir()
        (root / "notes.txt").write_text("no CT")
    with pytest.raises(InputError, match="cts"):
        find_cases(root)


def test_a_case_has_the_same_key_however_the_folder_is_named(cases, monkeypatch):
    monkeypatch.chdir(cases.parent)
    absolute = {case.title: case.key for case in find_cases(cases)}
    relative = {case.title: case.key for case in find_cases(Path("cts"))}
    (cases.parent / "link").symlink_to(cases, target_is_directory=True)
    linked = {case.title: case.key for case in find_cases(cases.parent / "link")}
    assert absolute == relative == linked
    assert len(set(absolute.values())) == len(absolute)


def test_a_ct_linked_from_elsewhere_is_a_case(cases, tmp_path):
    (cases / "c.nii.gz").symlink_to(_ct(tmp_path / "elsewhere" / "scan.nii.gz"))
    found = {case.title: case for case in find_cases(cases)}
    assert "c.nii.gz" in found
    assert found["c.nii.gz"].key == case_key(cases, cases / "c.nii.gz")


def test_every_case_is_new_at_first_and_proposed_while_its_proposal_is_open(cases, dataset):
    worklist = Worklist(cases, dataset)
    assert {worklist.status(case) for case in worklist.cases} == {"new"}
    first = worklist.cases[0]
    worklist.proposed.add(first.key)
    assert worklist.status(first) == "proposed"
    assert worklist.next_case(None) is first
    assert worklist.next_case(None, skip={first.key}) is worklist.cases[1]


@pytest.mark.parametrize("status", ["corrected", "approved", "rejected"])
def test_an_exported_case_has_the_status_it_was_exported_with(cases, dataset, status):
    worklist = Worklist(cases, dataset)
    case = worklist.case(worklist.cases[1].key)
    worklist.proposed.add(case.key)
    image, label, proposal = make_case(1)
    export_case(image, label, dataset, proposal=proposal, case_id=worklist.reserve_id(case), reviewer="dr-a",
                status=status)
    assert worklist.status(case) == status
    assert Worklist(cases, dataset).status(Worklist(cases, dataset).case(case.key)) == status  # after a restart
    assert worklist.next_case(worklist.cases[0]) is worklist.cases[2]  # done: the next one to review skips it


def test_an_unreadable_provenance_leaves_the_case_to_review(cases, dataset):
    worklist = Worklist(cases, dataset)
    case = worklist.cases[0]
    image, label, _ = make_case(0)
    export_case(image, label, dataset, case_id=worklist.reserve_id(case), reviewer="dr-a")
    (dataset / "provenance" / f"{case.case_id}.json").write_text("{ not json")
    assert worklist.status(case) == "new"


def test_an_unknown_key_is_a_key_error(cases, dataset):
    with pytest.raises(KeyError):
        Worklist(cases, dataset).case("0123456789abcdef")


def test_case_ids_follow_the_dataset_and_never_come_from_the_file_name(cases, dataset):
    image, label, _ = make_case(3)
    export_case(image, label, dataset, reviewer="dr-a")  # case_0001 is already there
    worklist = Worklist(cases, dataset)
    doe = next(case for case in worklist.cases if case.title.startswith("Doe"))
    assert worklist.reserve_id(doe) == "case_0002"
    assert worklist.reserve_id(worklist.cases[1]) == "case_0003"
    assert worklist.reserve_id(doe) == "case_0002"  # reserved once
    assert "Doe" not in (dataset / ".review" / "sources.json").read_text()


def test_reserved_ids_are_the_same_after_a_restart_and_for_another_reader(cases, dataset):
    first = Worklist(cases, dataset)
    reserved = {case.title: first.reserve_id(case) for case in first.cases[:2]}
    again = Worklist(cases, dataset)
    assert {title: cid for title, cid in _ids(again).items() if cid} == reserved
    assert again.reserve_id(again.cases[2]) == "case_0003"
    assert first.reserve_id(first.case(again.cases[2].key)) == "case_0003"  # the other reader sees it too


def test_readers_reserving_at_once_never_get_the_same_id(cases, dataset):
    readers = [Worklist(cases, dataset) for _ in range(4)]
    got: list[str] = []
    errors: list[BaseException] = []

    def reserve(worklist: Worklist) -> None:
        try:
            got.extend(worklist.reserve_id(case) for case in worklist.cases)
        except BaseException as exc:  # noqa: BLE001 (reported below, in the test's thread)
            errors.append(exc)

    threads = [threading.Thread(target=reserve, args=(reader,)) for reader in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert sorted(set(got)) == ["case_0001", "case_0002", "case_0003", "case_0004"]
    assert _ids(Worklist(cases, dataset)) == _ids(readers[0])


def test_a_reservation_waits_for_the_reader_holding_the_lock(cases, dataset):
    from PancreasSegLib.curation.lock import DatasetLock

    worklist = Worklist(cases, dataset)
    done = threading.Event()
    with DatasetLock(worklist.review_folder, timeout=0, name="sources.lock"):
        thread = threading.Thread(target=lambda: (worklist.reserve_id(worklist.cases[0]), done.set()))
        thread.start()
        assert not done.wait(timeout=0.5)  # still waiting while the lock is held
    thread.join(timeout=WAIT)
    assert done.is_set() and worklist.cases[0].case_id == "case_0001"


def test_a_curated_dataset_is_reviewed_again_with_its_own_ids(tmp_path, dataset):
    for seed in (0, 1):
        image, label, proposal = make_case(seed)
        export_case(image, label, dataset, proposal=proposal, reviewer="dr-a", status="approved")
    _ct(dataset / "imagesTr" / "case_0003_0000.nii.gz", seed=2)  # an image whose export never finished
    worklist = Worklist(dataset, dataset)
    assert [(c.title, c.case_id, c.in_dataset) for c in worklist.cases] == [
        ("case_0001", "case_0001", True), ("case_0002", "case_0002", True), ("case_0003", "case_0003", False)]
    assert [worklist.status(case) for case in worklist.cases] == ["approved", "approved", "new"]
    assert worklist.reserve_id(worklist.cases[2]) == "case_0003"
    assert not (dataset / ".review" / "sources.json").exists()


HOLDER = """
import sys
from PancreasSegWeb.worklist import Worklist
worklist = Worklist(sys.argv[1], sys.argv[2])
lock = worklist.lock(worklist.cases[0], "dr-other")
print("holding", flush=True)
sys.stdin.read()
"""


def _wait_for(condition, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the holder ended before {what}: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"not within {WAIT:g} s: {what}")


@pytest.mark.parametrize("ending", ["closes", "is-killed"])
def test_a_case_open_by_another_reader_shows_who_holds_it_until_that_reader_ends(cases, dataset, ending):
    worklist = Worklist(cases, dataset)
    case = worklist.cases[0]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(cases), str(dataset)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        who = _wait_for(lambda: worklist.locked_by(case), "the case is locked", holder)
        assert who == f"dr-other on {socket.gethostname()}"
        assert worklist.locked_by(worklist.cases[1]) is None
        with pytest.raises(ValueError, match="open by dr-other"):
            worklist.lock(case, "dr-a")
        if ending == "closes":
            holder.stdin.close()
        else:
            holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=WAIT)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=WAIT)
    assert worklist.locked_by(case) is None
    lock = worklist.lock(case, "dr-a")
    try:
        assert Worklist(cases, dataset).locked_by(case).startswith("dr-a on ")
    finally:
        lock.release()
    assert worklist.locked_by(case) is None


def test_a_case_exported_by_another_reader_shows_its_status_once_the_worklist_is_refreshed(cases, dataset):
    mine, other = Worklist(cases, dataset), Worklist(cases, dataset)
    case = other.cases[2]
    image, label, _ = make_case(2)
    export_case(image, label, dataset, case_id=other.reserve_id(case), reviewer="dr-b", status="rejected")
    mine.refresh()
    assert mine.status(mine.case(case.key)) == "rejected"
