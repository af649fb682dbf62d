"""What the module shows and needs of a model bundle, checked the moment the user picks it.

Reading and validating ``model.json`` is ``PancreasSegLib.model.bundle.load_config`` (the same check the
command makes, without hashing the weights); here the module only adds that the weights files it names
are present, and turns the configuration into what the GUI shows. The full check (weights' sha256, the
networks) still happens in the command. A wrong pick is reported at once instead of after the CT has
been written out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from PancreasSegLib.constants import DEFAULT_MODEL_NAME
from PancreasSegLib.labels import LabelInfo
from PancreasSegLib.model.bundle import MODEL_JSON, STAGES, load_config

#: The note of a model that says nothing of its own training, and of a folder that is no usable model.
RESEARCH_USE_ONLY = "Research use only, not for clinical use."


@dataclass(frozen=True)
class ModelInfo:
    """What the module shows and needs of a bundle."""

    path: Path
    name: str
    version: str
    labels: tuple[LabelInfo, ...]
    trainedOnPhantoms: bool
    weights: tuple[str, ...]
    description: str = ""
    untrained: bool = False

    @property
    def summary(self) -> str:
        """One line for the UI: name, version and what the bundle says it is."""
        text = f"{self.name} {self.version}".strip()
        if self.description:
            text += f": {self.description}"
        return text

    @property
    def warning(self) -> str:
        """The note the module shows in plain sight next to the model choice (never empty)."""
        if self.untrained:
            return "Untrained model (random weights): for testing the software only, it segments nothing useful."
        if self.trainedOnPhantoms:
            return ("Trained on synthetic phantoms \u2014 research use only. Not validated on patient CT, "
                    "not for clinical use.")
        return RESEARCH_USE_ONLY


def bundledModelCandidates(moduleDir: str | os.PathLike) -> list[Path]:
    """Where the bundled model may be: next to an installed module, or in the source tree's Resources."""
    moduleDir = Path(moduleDir)
    return [moduleDir / "Resources" / "Models" / DEFAULT_MODEL_NAME,
            moduleDir.parent / "Resources" / "Models" / DEFAULT_MODEL_NAME]


def findBundledModel(moduleDir: str | os.PathLike) -> Path | None:
    """The first existing bundled model folder, or None."""
    return next((p for p in bundledModelCandidates(moduleDir) if (p / MODEL_JSON).is_file()), None)


def isModelFolder(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a ``model.json`` (what a registered model choice must still have)."""
    return (Path(path) / MODEL_JSON).is_file()


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model drop-down: what it reads and the bundle folder it stands for ("" for none)."""

    label: str
    path: str


def _samePath(a: str, b: str) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def modelChoices(bundled: str | os.PathLike | None, registered: list[str],
                 current: str | os.PathLike) -> tuple[list[ModelChoice], int]:
    """The model drop-down's entries and the index of the model in use, so that it never shows another.

    The entries are the bundled model, then the fine-tuned models (newest first); a model folder chosen
    elsewhere (the Advanced section) gets an entry of its own, and no model at all reads as such.

    Args:
        bundled: the bundled model's folder, None when it is missing.
        registered: the fine-tuned bundles registered as model choices, newest last.
        current: the model folder in use (the parameter node's ``modelPath``; "" or "." when none).

    Returns:
        ``(choices, index)``: ``choices[index]`` is the model in use.

    >>> choices, index = modelChoices(None, ["/m/a", "/m/b"], "/m/a")
    >>> [c.label for c in choices], index
    (['b (fine-tuned)', 'a (fine-tuned)'], 1)
    """
    choices = []
    if bundled is not None:
        choices.append(ModelChoice(f"{Path(bundled).name} (bundled)", str(bundled)))
    choices += [ModelChoice(f"{Path(path).name} (fine-tuned)", str(path)) for path in reversed(registered)]
    current = str(current).strip()
    if current in ("", "."):
        return [ModelChoice("(no model chosen: see Advanced)", "")] + choices, 0
    index = next((i for i, choice in enumerate(choices) if _samePath(choice.path, current)), None)
    if index is None:
        choices.append(ModelChoice(f"{Path(current).name} (from a folder)", current))
        index = len(choices) - 1
    return choices, index


def weightsFiles(config: dict) -> tuple[str, ...]:
    """The weights files of a validated bundle configuration, one per stage, in stage order."""
    return tuple(config["stages"][stage]["weights"]["file"] for stage in STAGES)


def validateModelFolder(path: str | os.PathLike) -> ModelInfo:
    """Check ``path`` with the library's ``load_config`` and that its weights files are there.

    Raises:
        ValueError: with a message naming the folder and what is wrong (``InputError`` is a ValueError).
    """
    if not str(path).strip():
        raise ValueError("No model folder selected.")
    folder = Path(path)
    config = load_config(folder)
    weights = weightsFiles(config)
    missing = [w for w in weights if not (folder / w).is_file()]
    if missing:
        raise ValueError(f"{folder} misses the weights file(s) {', '.join(missing)}.")
    name = str(config["name"])
    description = " ".join(str(config.get("description") or "").split())
    # Only what the bundle says about itself and its training counts, not e.g. a file name in a path.
    about = json.dumps([name, description, config.get("training"), config.get("parent")]).lower()
    untrained = "random weights" in about or "never trained" in about or "untrained" in description.lower()
    labels = tuple(LabelInfo.from_json(entry) for entry in config["labels"])
    return ModelInfo(folder, name, str(config.get("version", "")), labels, "phantom" in about, weights, description,
                     untrained)


class ModelInfoCache:
    """The checked model of the GUI: ``model.json`` is read again only when the path changes.

    The widget refreshes its labels on every parameter change; asking this cache instead of
    :func:`validateModelFolder` keeps that from reading the bundle each time. A run still checks the
    folder afresh (the Logic calls :func:`validateModelFolder`).
    """

    def __init__(self) -> None:
        self._path: str | None = None
        self._info: ModelInfo | None = None
        self._error: str | None = None

    def get(self, path: str | os.PathLike) -> ModelInfo:
        """The :class:`ModelInfo` of ``path``, from the last check when the path is unchanged.

        Raises:
            ValueError: the folder is not a usable bundle (the message of the check, kept as well).
        """
        key = str(path)
        if key != self._path:
            self._path, self._info, self._error = key, None, None
            try:
                self._info = validateModelFolder(key)
            except ValueError as exc:
                self._error = str(exc)
        if self._error is not None:
            raise ValueError(self._error)
        return self._info  # type: ignore[return-value]
