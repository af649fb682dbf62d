"""Where a curated dataset keeps each file, and the dataset.json that is rebuilt from what is on disk.

```
DatasetNNN_Name/
  dataset.json                        nnU-Net v2 keys + MONAI "training" list + "curation" summary
  imagesTr/<case>_0000.nii.gz         the CT
  labelsTr/<case>.nii.gz              the reviewed label, same grid as the image
  proposals/<case>.nii.gz             the model's proposal (when there was one)
  provenance/<case>.json              see PancreasSegLib.curation.provenance; its presence makes the case
  history/<case>/<time>/              an earlier export of the case: label, proposal, provenance(, image)
  .staging/<case>/                    an export in progress (see PancreasSegLib.curation.journal)
  .lock                               the lock concurrent exporters take turns on
```
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from PancreasSegLib import __version__
from PancreasSegLib.curation.provenance import STATUSES, read_provenance
from PancreasSegLib.datasets.nnunet import FILE_ENDING, NNUNET_LABELS, dataset_json, image_path, label_path
from PancreasSegLib.errors import InputError
from PancreasSegLib.io.atomic import write_json_atomic

PROPOSALS = "proposals"
PROVENANCE = "provenance"
HISTORY = "history"
STAGING = ".staging"
SUBFOLDERS = ("imagesTr", "labelsTr", PROPOSALS, PROVENANCE, HISTORY)
#: Keys of dataset.json this package maintains; any other key a user added is kept as it is.
MANAGED_KEYS = ("channel_names", "labels", "numTraining", "file_ending", "training", "curation")

_AUTO_ID = re.compile(r"^case_(\d{4,})$")


def proposal_path(folder: str | os.PathLike, case_id: str) -> Path:
    return Path(folder) / PROPOSALS / f"{case_id}{FILE_ENDING}"


def provenance_path(folder: str | os.PathLike, case_id: str) -> Path:
    return Path(folder) / PROVENANCE / f"{case_id}.json"


def case_files(folder: str | os.PathLike, case_id: str) -> dict[str, Path]:
    """The live files of a case by role: image, label, proposal, provenance."""
    return {"image": image_path(folder, case_id), "label": label_path(folder, case_id),
            "proposal": proposal_path(folder, case_id), "provenance": provenance_path(folder, case_id)}


def committed_cases(folder: str | os.PathLike) -> list[str]:
    """Case IDs whose provenance file exists: the provenance is written last, so it marks a whole case."""
    prov = Path(folder) / PROVENANCE
    if not prov.is_dir():
        return []
    return sorted(p.name[: -len(".json")] for p in prov.iterdir()
                  if p.name.endswith(".json") and not p.name.startswith("."))


def next_case_id(folder: str | os.PathLike) -> str:
    """``case_0001``, ``case_0002``, ...: one more than the highest automatic ID used anywhere in the
    dataset (live, history or staging), so that an ID is never reused."""
    folder = Path(folder)
    highest = 0
    names = []
    for sub, suffix in (("imagesTr", f"_0000{FILE_ENDING}"), ("labelsTr", FILE_ENDING), (PROVENANCE, ".json"),
                        (PROPOSALS, FILE_ENDING), (HISTORY, ""), (STAGING, "")):
        if (folder / sub).is_dir():
            names += [n[: len(n) - len(suffix)] for n in os.listdir(folder / sub) if n.endswith(suffix)]
    for name in names:
        match = _AUTO_ID.match(name)
        if match:
            highest = max(highest, int(match.group(1)))
    return f"case_{highest + 1:04d}"


def is_dataset_folder(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return (folder / "dataset.json").is_file() or (folder / ".lock").is_file()


def check_target_folder(folder: str | os.PathLike) -> None:
    """Refuse to turn an unrelated non-empty folder (say, a home folder) into a dataset."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError("is a file, expected a dataset folder", folder)
    if folder.is_dir() and not is_dataset_folder(folder) and any(folder.iterdir()):
        raise InputError("is not empty and holds no dataset.json: not a dataset folder", folder)
    if folder.is_dir() and not os.access(folder, os.W_OK):
        raise InputError("the dataset folder is not writable", folder)
    for sub in (*SUBFOLDERS, STAGING, "dataset.json"):
        # Writes go through these names: a link would send them (and renames over them) somewhere else.
        if (folder / sub).is_symlink():
            raise InputError(f"{sub} is a symbolic link; a dataset's folders must lie inside it", folder)
    parent = folder.resolve().parent
    if not folder.exists() and not parent.is_dir():
        raise InputError(f"the folder {parent} does not exist", folder)


def rebuild_dataset_json(folder: str | os.PathLike, name: str | None = None) -> Path:
    """Write dataset.json from the committed cases on disk, keeping keys a user added.

    Args:
        folder: the dataset folder.
        name: the dataset name for a new dataset.json (default: kept, or the folder's name).
    """
    folder = Path(folder)
    existing = {}
    if (folder / "dataset.json").is_file():
        try:
            from PancreasSegLib.datasets.nnunet import read_dataset_json

            existing = read_dataset_json(folder)
        except InputError:
            existing = {}
    cases = committed_cases(folder)
    statuses: Counter[str] = Counter()
    for case_id in cases:
        try:
            statuses[str(read_provenance(provenance_path(folder, case_id)).get("status"))] += 1
        except InputError:
            statuses["unreadable"] += 1
    summary = {
        "tool": f"pancreasseg {__version__}",
        "cases": len(cases),
        "cases_by_status": {s: statuses.get(s, 0) for s in STATUSES} | {s: n for s, n in statuses.items()
                                                                        if s not in STATUSES},
    }
    extra = {k: v for k, v in existing.items() if k not in MANAGED_KEYS and k not in ("name", "description")}
    extra["curation"] = summary
    data = dataset_json(cases, name=existing.get("name", name or folder.resolve().name),
                        description=existing.get("description", "Reviewed pancreas labels with provenance"),
                        labels=existing.get("labels", NNUNET_LABELS), extra=extra)
    return write_json_atomic(folder / "dataset.json", data)
