"""A light check of a model bundle folder, done the moment the user picks it.

The full check (weights' sha256, architecture) happens in the command; here we only make sure the folder
is a bundle at all, so a wrong pick is reported at once instead of after the CT has been written out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from PancreasSegLib.labels import STANDARD_LABELS, LabelInfo

BUNDLED_MODEL_NAME = "pancreas-phantom-v1"
DEFAULT_WEIGHTS = ("localizer.safetensors", "segmenter.safetensors")


@dataclass(frozen=True)
class ModelInfo:
    """What the module shows and needs of a bundle."""

    path: Path
    name: str
    version: str
    labels: tuple[LabelInfo, ...]
    trainedOnPhantoms: bool
    weights: tuple[str, ...] = field(default=DEFAULT_WEIGHTS)
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
        return "Research use only, not for clinical use."


def bundledModelCandidates(moduleDir: str | os.PathLike) -> list[Path]:
    """Where the bundled model may be: next to an installed module, or in the source tree's Resources."""
    moduleDir = Path(moduleDir)
    return [moduleDir / "Resources" / "Models" / BUNDLED_MODEL_NAME,
            moduleDir.parent / "Resources" / "Models" / BUNDLED_MODEL_NAME]


def findBundledModel(moduleDir: str | os.PathLike) -> Path | None:
    """The first existing bundled model folder, or None."""
    return next((p for p in bundledModelCandidates(moduleDir) if (p / "model.json").is_file()), None)


def _weightFiles(manifest: dict) -> tuple[str, ...]:
    found: list[str] = []

    def visit(value) -> None:
        if isinstance(value, str) and value.endswith(".safetensors") and "/" not in value and "\\" not in value:
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    visit(manifest)
    return tuple(dict.fromkeys(found)) or DEFAULT_WEIGHTS


def _labels(manifest: dict) -> tuple[LabelInfo, ...]:
    labels = []
    for entry in manifest.get("labels") or []:
        try:
            labels.append(LabelInfo.from_json(entry))
        except (KeyError, TypeError, ValueError):
            # A label without full coding still gets our standard coding when its value is one we know.
            value = entry.get("value") if isinstance(entry, dict) else None
            if value in STANDARD_LABELS:
                labels.append(STANDARD_LABELS[value])
    return tuple(labels) or (STANDARD_LABELS[1],)


def validateModelFolder(path: str | os.PathLike) -> ModelInfo:
    """Check that ``path`` holds model.json (parsable) and its weights files; return what it says.

    Raises:
        ValueError: with a message naming the folder and what is missing.
    """
    if not str(path).strip():
        raise ValueError("No model folder selected.")
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"Model folder {folder} does not exist.")
    manifestPath = folder / "model.json"
    if not manifestPath.is_file():
        raise ValueError(f"{folder} is not a model bundle: it has no model.json.")
    try:
        manifest = json.loads(manifestPath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{manifestPath} cannot be read as JSON ({exc}).") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifestPath} is not a JSON object.")
    weights = _weightFiles(manifest)
    missing = [w for w in weights if not (folder / w).is_file()]
    if missing:
        raise ValueError(f"{folder} misses the weights file(s) {', '.join(missing)}.")
    name = str(manifest.get("name") or folder.name)
    description = " ".join(str(manifest.get("description") or "").split())
    # Only what the bundle says about itself and its training counts, not e.g. a file name in a path.
    about = json.dumps([name, description, manifest.get("training"), manifest.get("parent")]).lower()
    untrained = "random weights" in about or "never trained" in about or "untrained" in description.lower()
    return ModelInfo(folder, name, str(manifest.get("version", "")), _labels(manifest), "phantom" in about,
                     weights, description, untrained)
