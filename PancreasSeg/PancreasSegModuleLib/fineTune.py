"""The "Fine-tune on curated set" command line: ``pancreasseg train DATASET --init BUNDLE -o NEW``.

The new bundle goes beside the curated dataset folder (``<dataset's parent>/<name>``) unless the user
gives an absolute path. ``train`` keeps its checkpoints in ``<bundle>.work`` next to the bundle, so a
cancelled fine-tune continues where it stopped when it is started again with the same name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: A bundle folder name: letters, digits and ``_ - .``, not starting with a dot (no path tricks).
_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,99}$")


@dataclass(frozen=True)
class FineTuneOptions:
    """The choices of the fine-tune controls of the Export section."""

    datasetFolder: str
    bundleName: str
    minutes: float = 10.0
    device: str = "auto"


def checkDataset(datasetFolder: str) -> Path:
    """The curated dataset folder, checked as far as the module can without reading images.

    Raises:
        ValueError: no folder chosen, no such folder, or no ``dataset.json`` / ``labelsTr`` in it.
    """
    if not datasetFolder.strip():
        raise ValueError("Choose the curated dataset folder to fine-tune on.")
    folder = Path(datasetFolder)
    if not folder.is_dir():
        raise ValueError(f"The dataset folder {folder} does not exist.")
    if not (folder / "dataset.json").is_file() or not (folder / "labelsTr").is_dir():
        raise ValueError(f"{folder} is not a curated dataset (no dataset.json or labelsTr): export cases into it "
                         "first.")
    return folder


def bundleOutputPath(datasetFolder: str, bundleName: str) -> Path:
    """Where the new bundle goes: ``bundleName`` beside the dataset folder, or ``bundleName`` if absolute.

    Raises:
        ValueError: an empty or unsafe name, or a folder that exists and is not an earlier run's bundle.
    """
    name = bundleName.strip()
    if not name:
        raise ValueError("Give the new model a name (its bundle folder).")
    path = Path(name)
    if not path.is_absolute():
        if not _NAME.match(name):
            raise ValueError(f"Invalid model name {name!r}: use letters, digits, '_', '-' and '.', "
                             "no path separators.")
        path = Path(datasetFolder).resolve().parent / name
    if not path.parent.is_dir():
        raise ValueError(f"The folder {path.parent} does not exist.")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(f"{path} already exists: choose another name for the new model.")
    return path


def buildTrainArguments(datasetFolder: str, initBundle: str, outputBundle: str, options: FineTuneOptions) -> list[str]:
    """The ``train`` arguments (after the command prefix), with JSON-lines progress for the module."""
    if not 0.1 <= float(options.minutes) <= 24 * 60:
        raise ValueError(f"The time budget must be between 0.1 and 1440 minutes, got {options.minutes}.")
    return ["train", datasetFolder, "-o", outputBundle, "--stage", "both", "--init", initBundle,
            "--minutes", f"{float(options.minutes):g}", "--device", options.device, "--progress", "jsonl"]
