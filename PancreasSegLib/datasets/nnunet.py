"""nnU-Net v2 raw datasets: the folder layout every dataset of the project uses.

```
DatasetNNN_Name/
  dataset.json                 channel_names, labels, numTraining, file_ending
  imagesTr/<case>_0000.nii.gz  the CT (one channel)
  labelsTr/<case>.nii.gz       0 background, 1 pancreas, 2 tumor
```

MONAI's ``load_decathlon_datalist`` reads the ``training`` list we add to dataset.json; nnU-Net v2
ignores it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from PancreasSegLib.errors import InputError, read_json
from PancreasSegLib.io.atomic import write_json_atomic

FILE_ENDING = ".nii.gz"
CHANNEL_NAMES = {"0": "CT"}
#: nnU-Net v2 label dictionary (name -> value) of a pancreas(+tumor) dataset.
NNUNET_LABELS = {"background": 0, "pancreas": 1, "tumor": 2}

_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Case:
    """One training case of a dataset folder."""

    case_id: str
    image: Path
    label: Path | None


def validate_case_id(case_id: str) -> str:
    """Return ``case_id`` when it is a safe file-name stem, else raise :class:`InputError`.

    Letters, digits, ``_``, ``-`` and ``.``; no path separators, no ``..``, at most 128 characters.
    """
    if not _CASE_ID.match(case_id) or ".." in case_id or case_id.endswith("_0000"):
        raise InputError(f"invalid case ID {case_id!r}: use letters, digits, '_', '-' and '.', no path parts")
    return case_id


def image_path(folder: str | os.PathLike, case_id: str, file_ending: str = FILE_ENDING) -> Path:
    """``imagesTr/<case>_0000<ending>`` inside ``folder``."""
    return Path(folder) / "imagesTr" / f"{validate_case_id(case_id)}_0000{file_ending}"


def label_path(folder: str | os.PathLike, case_id: str, file_ending: str = FILE_ENDING) -> Path:
    """``labelsTr/<case><ending>`` inside ``folder``."""
    return Path(folder) / "labelsTr" / f"{validate_case_id(case_id)}{file_ending}"


def dataset_json(case_ids: Iterable[str], name: str = "Pancreas", description: str = "",
                 labels: Mapping[str, int] | None = None, file_ending: str = FILE_ENDING,
                 extra: Mapping | None = None) -> dict:
    """The dataset.json of an nnU-Net v2 raw dataset holding ``case_ids``, with a MONAI-readable list."""
    case_ids = sorted(case_ids)
    out = {
        "name": name,
        "description": description,
        "channel_names": dict(CHANNEL_NAMES),
        "labels": dict(labels or NNUNET_LABELS),
        "numTraining": len(case_ids),
        "file_ending": file_ending,
        "training": [
            {"image": f"./imagesTr/{c}_0000{file_ending}", "label": f"./labelsTr/{c}{file_ending}"} for c in case_ids
        ],
    }
    out.update(extra or {})
    return out


def write_dataset_json(folder: str | os.PathLike, case_ids: Iterable[str], **kwargs) -> Path:
    """Write ``folder/dataset.json`` atomically (see :func:`dataset_json`)."""
    return write_json_atomic(Path(folder) / "dataset.json", dataset_json(case_ids, **kwargs))


def read_dataset_json(folder: str | os.PathLike) -> dict:
    """Read and check the keys nnU-Net v2 requires in ``folder/dataset.json``."""
    path = Path(folder) / "dataset.json"
    if not path.is_file():
        raise InputError("no dataset.json (not an nnU-Net v2 raw dataset folder)", folder)
    data = read_json(path)
    missing = [k for k in ("channel_names", "labels", "numTraining", "file_ending") if k not in data]
    if missing:
        raise InputError(f"misses the key(s) {', '.join(missing)}", path)
    return data


def list_cases(folder: str | os.PathLike, require_labels: bool = True) -> list[Case]:
    """The cases of an nnU-Net v2 raw dataset, sorted by case ID.

    Raises:
        InputError: no dataset.json, no imagesTr folder, or (with ``require_labels``) an image without
            its label; the first offending case is named.
    """
    folder = Path(folder)
    meta = read_dataset_json(folder)
    ending = meta["file_ending"]
    images_dir = folder / "imagesTr"
    if not images_dir.is_dir():
        raise InputError("has no imagesTr folder", folder)
    cases = []
    suffix = f"_0000{ending}"
    for image in sorted(images_dir.iterdir()):
        if image.name.startswith(".") or not image.name.endswith(suffix):
            continue
        case_id = image.name[: -len(suffix)]
        label = folder / "labelsTr" / f"{case_id}{ending}"
        if not label.is_file():
            if require_labels:
                raise InputError(f"case {case_id} has no label (expected {label.relative_to(folder)})", folder)
            label = None
        cases.append(Case(case_id, image, label))
    return cases
