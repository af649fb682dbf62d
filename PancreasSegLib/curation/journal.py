"""Crash-safe writing of one case: stage, commit, apply; and recovery of an interrupted export.

The protocol (docs/curation.md explains it at length). Everything happens under the dataset lock.

1. **Stage.** Write the new files into ``.staging/<case>/``: ``image.nii.gz`` (omitted when the case's
   image is unchanged), ``label.nii.gz``, ``proposal.nii.gz`` (when given), ``provenance.json``. Nothing a
   reader looks at has changed yet.
2. **Commit.** Write ``.staging/<case>/manifest.json`` atomically. Before it exists an interrupted export
   is rolled back (the staging folder is deleted); once it exists it is rolled forward.
3. **Apply** (idempotent, so recovery can repeat it from any point):
   a. re-export only: snapshot the live label, proposal, provenance (and the image when it changes) into
      ``history/<case>/.<time>.partial/`` by hard link (copy where links are impossible) and rename that
      folder to ``history/<case>/<time>/``; the rename is the step's commit, so it is redone only when
      the final folder does not exist, which also proves the live files are still the old ones;
   b. move the staged image, label and proposal onto their live names with ``os.replace`` (a re-export
      without proposal removes the old live proposal, already kept in history);
   c. move the provenance last: a case exists exactly when ``provenance/<case>.json`` does;
   d. rebuild dataset.json from the committed cases on disk; e. delete the staging folder.

:func:`recover` finishes committed exports and deletes uncommitted ones; the next export and
``pancreasseg verify`` run it (under the lock) before anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from PancreasSegLib.curation.layout import HISTORY, STAGING, case_files, rebuild_dataset_json
from PancreasSegLib.io.atomic import write_json_atomic

MANIFEST = "manifest.json"
#: Staged file name -> live role, in the order they are moved into place (provenance last).
STAGED = (("image.nii.gz", "image"), ("label.nii.gz", "label"), ("proposal.nii.gz", "proposal"),
          ("provenance.json", "provenance"))
#: Names inside a history entry, by role.
HISTORY_NAMES = {"image": "image_0000.nii.gz", "label": "label.nii.gz", "proposal": "proposal.nii.gz",
                 "provenance": "provenance.json"}


def staging_folder(folder: str | os.PathLike, case_id: str) -> Path:
    return Path(folder) / STAGING / case_id


def begin(folder: str | os.PathLike, case_id: str) -> Path:
    """An empty staging folder for ``case_id`` (a leftover one is deleted first)."""
    stage = staging_folder(folder, case_id)
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage


def commit(folder: str | os.PathLike, case_id: str, history: str | None, image_to_history: bool,
           has_proposal: bool) -> None:
    """Write the manifest: from here on the export is finished by :func:`apply` or by :func:`recover`."""
    stage = staging_folder(folder, case_id)
    write_json_atomic(stage / MANIFEST, {"case_id": case_id, "history": history,
                                         "image_to_history": image_to_history, "has_proposal": has_proposal})


def apply(folder: str | os.PathLike, case_id: str) -> Path | None:
    """Move a committed staging folder into place (idempotent). Returns the history entry, if any."""
    folder = Path(folder)
    stage = staging_folder(folder, case_id)
    manifest = json.loads((stage / MANIFEST).read_text(encoding="utf-8"))
    live = case_files(folder, case_id)
    entry = None
    if manifest.get("history"):
        entry = _snapshot(folder, case_id, manifest["history"], live, bool(manifest.get("image_to_history")))
    for staged_name, role in STAGED:
        staged = stage / staged_name
        if staged.exists():
            live[role].parent.mkdir(exist_ok=True)
            os.replace(staged, live[role])
        elif role == "proposal" and not manifest.get("has_proposal"):
            with contextlib.suppress(FileNotFoundError):
                live[role].unlink()
    for path in {p.parent for p in live.values()}:
        _fsync_dir(path)
    rebuild_dataset_json(folder)
    (stage / MANIFEST).unlink()  # only now may recovery take what is left for an uncommitted export
    shutil.rmtree(stage)
    return entry


def _snapshot(folder: Path, case_id: str, stamp: str, live: dict[str, Path], with_image: bool) -> Path:
    case_history = folder / HISTORY / case_id
    final = case_history / stamp
    if final.is_dir():
        return final
    partial = case_history / f".{stamp}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    for role, name in HISTORY_NAMES.items():
        if role == "image" and not with_image:
            continue
        if live[role].exists():
            _link_or_copy(live[role], partial / name)
    _fsync_dir(partial)
    os.rename(partial, final)
    _fsync_dir(case_history)
    return final


def _link_or_copy(src: Path, dst: Path) -> None:
    # A hard link costs no space and keeps the old inode when the live name is replaced later.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
        with open(dst, "rb") as f:
            os.fsync(f.fileno())


def recover(folder: str | os.PathLike) -> list[str]:
    """Finish or undo exports that were interrupted; call it holding the dataset lock.

    Returns:
        One message per repaired thing (empty when the dataset was clean).
    """
    folder = Path(folder)
    done = []
    staging = folder / STAGING
    if staging.is_dir():
        for stage in sorted(staging.iterdir()):
            if not stage.is_dir():
                stage.unlink()
                continue
            if (stage / MANIFEST).is_file():
                apply(folder, stage.name)
                done.append(f"finished the interrupted export of {stage.name}")
            else:
                started = any(stage.iterdir())
                shutil.rmtree(stage)
                if started:
                    done.append(f"discarded the unfinished (uncommitted) export of {stage.name}")
    history = folder / HISTORY
    if history.is_dir():
        for partial in history.glob("*/.*.partial"):
            shutil.rmtree(partial)
            done.append(f"removed the unfinished history snapshot {partial.relative_to(folder)}")
    for leftover in folder.glob(".dataset.*.tmp.json"):  # an atomic write of dataset.json cut short
        leftover.unlink()
    if not (folder / "dataset.json").is_file():
        rebuild_dataset_json(folder)
        done.append("wrote the missing dataset.json")
    return done


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
