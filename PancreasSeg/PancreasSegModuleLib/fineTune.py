"""The "Fine-tune on curated set" flow: ``pancreasseg train DATASET --init BUNDLE -o NEW`` in the background.

The new bundle goes beside the curated dataset folder (``<dataset's parent>/<name>``) unless the user
gives an absolute path. ``train`` keeps its checkpoints in ``<bundle>.work`` next to the bundle, so a
cancelled fine-tune continues where it stopped when it is started again with the same name. On success
the new bundle is checked and registered as a model choice; on failure or cancel nothing is registered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from .backgroundJob import Job, JobRunner
from .commandLines import CommandLines
from .datasetFlow import requireDatasetFolder
from .logicTypes import Callbacks, FineTuneOptions
from .modelBundle import ModelInfo
from .progress import TRAIN_STAGES

#: A bundle folder name: letters, digits and ``_ - .``, not starting with a dot (no path tricks).
_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,99}$")


def checkDataset(datasetFolder: str) -> Path:
    """The curated dataset folder, checked as far as the module can without reading images.

    Raises:
        ValueError: no folder chosen ("" or "."), no such folder, or no ``dataset.json`` / ``labelsTr`` in it.
    """
    folder = requireDatasetFolder(datasetFolder)
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


class FineTuneFlow:
    """Fine-tuning: a part of :class:`~.segmentationLogic.SegmentationLogic`, which provides the attributes
    annotated here."""

    jobs: JobRunner
    commands: CommandLines
    registeredModels: list[str]
    checkModel: Callable[[str], ModelInfo]
    _dependenciesReady: Callable[[str], bool]

    def fineTune(self, initModelPath: str, options: FineTuneOptions, callbacks: Callbacks | None = None) -> bool:
        """Fine-tune ``initModelPath`` on the curated dataset in the background; on success the new bundle
        is registered as a model choice and ``onDone`` gets its :class:`~.modelBundle.ModelInfo`.

        Returns False when not started (required packages missing and not installed).

        Raises:
            ValueError: a run in progress, a bad model, dataset, name or time budget.
        """
        self.jobs.refuseIfRunning()
        self.checkModel(initModelPath)
        dataset = checkDataset(options.datasetFolder)
        output = bundleOutputPath(str(dataset), options.bundleName)
        args = self.commands.train(str(initModelPath), str(output), options)
        if not self._dependenciesReady("train"):
            return False
        # train writes nothing of ours in a temporary folder (its checkpoints stay in <bundle>.work to
        # resume); the job's own temporary folder only keeps the bookkeeping uniform.
        with self.jobs.tempFolder("PancreasSeg-train-") as tempDir:
            self.jobs.launch(Job("train", tempDir, callbacks or Callbacks(), finish=self._finishFineTune,
                                 context={"output": str(output)}, stages=TRAIN_STAGES), args)
        return True

    def registerModel(self, bundlePath: str) -> ModelInfo:
        """Check ``bundlePath`` and add it to the model choices (no duplicates, newest last)."""
        info = self.checkModel(bundlePath)
        path = str(Path(bundlePath))
        self.registeredModels = [p for p in self.registeredModels if p != path] + [path]
        return info

    def _finishFineTune(self, job: Job) -> ModelInfo:
        bundle = job.outputs.get("bundle") or job.context["output"]
        try:
            return self.registerModel(bundle)
        except ValueError as exc:
            raise RuntimeError(f"The training reported success but the new bundle is not usable: {exc}") from None
