"""Model bundles: one folder per model version, checked completely before anything is loaded.

A bundle folder holds::

    model.json              name, version, labels (SNOMED coded), the two stages with their
                            architecture, parameters, preprocessing and weights file + sha256,
                            post-processing, how it was trained, validation metrics
    localizer.safetensors   Mask R-CNN weights (phase 1)
    segmenter.safetensors   3D U-Net weights (phase 2)
    MODEL_CARD.md           intended use, training data, accuracy, limits

Weights are safetensors only (a bundle never makes us unpickle anything) and each file's sha256
is compared with model.json before it is opened. Any problem raises :class:`InputError` naming the
bundle and the problem, and nothing is loaded.

>>> bundle = Bundle.load("Resources/Models/pancreas-phantom-v1")  # doctest: +SKIP
>>> bundle.segmenter(patch)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PancreasSegLib.errors import InputError
from PancreasSegLib.labels import LabelInfo
from PancreasSegLib.model.networks import (
    LOCALIZER_ARCHS,
    SEGMENTER_ARCHS,
    build_localizer,
    build_segmenter,
    segmenter_output_channels,
)

if TYPE_CHECKING:
    import torch

MODEL_JSON = "model.json"
MODEL_CARD = "MODEL_CARD.md"
STAGES = ("localizer", "segmenter")
_ARCHS = {"localizer": LOCALIZER_ARCHS, "segmenter": SEGMENTER_ARCHS}
_BUILDERS = {"localizer": build_localizer, "segmenter": build_segmenter}


@dataclass
class Bundle:
    """A loaded model bundle: its configuration, its labels and both networks (eval mode, float32, CPU)."""

    path: Path
    config: dict[str, Any]
    labels: list[LabelInfo]
    localizer: torch.nn.Module | None = None
    segmenter: torch.nn.Module | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.path.name))

    @property
    def version(self) -> str:
        return str(self.config.get("version", ""))

    def stage(self, name: str) -> dict[str, Any]:
        """The configuration of stage ``name`` ("localizer" or "segmenter")."""
        return self.config["stages"][name]

    @property
    def postprocessing(self) -> dict[str, Any]:
        return self.config.get("postprocessing", {})

    def provenance(self) -> dict[str, Any]:
        """Name, version and weights sha256 of this bundle, for provenance records."""
        return {
            "name": self.name,
            "version": self.version,
            "path": str(self.path),
            "sha256": {s: self.stage(s)["weights"]["sha256"] for s in STAGES},
        }

    @classmethod
    def load(cls, path: str | os.PathLike, stages: tuple[str, ...] = STAGES) -> Bundle:
        """Check a bundle folder completely, then build its networks and load their weights.

        Args:
            path: the bundle folder.
            stages: which networks to load (both by default; the other ones stay ``None``).

        Raises:
            InputError: no such folder, unreadable or incomplete model.json, unknown architecture,
                labels that do not match the segmenter's output channels, a missing weights file,
                a wrong sha256, or weights that do not fit the architecture.
        """
        path = Path(path)
        config = load_config(path)
        for stage in stages:
            _check_weights_file(path, stage, config)
        bundle = cls(path=path, config=config, labels=[LabelInfo.from_json(x) for x in config["labels"]])
        for stage in stages:
            setattr(bundle, stage, _load_network(path, stage, config))
        return bundle


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a bundle's model.json (without touching the weights).

    Raises:
        InputError: naming the bundle folder and the problem.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError("model bundle folder does not exist", path)
    manifest = path / MODEL_JSON
    if not manifest.is_file():
        raise InputError(f"not a model bundle: {MODEL_JSON} is missing", path)
    try:
        config = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{MODEL_JSON} cannot be read ({exc})", path) from None
    if not isinstance(config, dict):
        raise InputError(f"{MODEL_JSON} is not a JSON object", path)
    _validate_config(config, path)
    return config


def _validate_config(config: dict, path: Path) -> None:
    for key in ("name", "labels", "stages"):
        if key not in config:
            raise InputError(f"{MODEL_JSON} has no {key!r}", path)
    try:
        labels = [LabelInfo.from_json(x) for x in config["labels"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{MODEL_JSON} has a malformed label ({exc})", path) from None
    values = sorted(label.value for label in labels)
    if values != list(range(1, len(labels) + 1)):
        raise InputError(f"label values must be 1..{len(labels)} (one per output channel), got {values}", path)
    for stage in STAGES:
        entry = config["stages"].get(stage)
        if not isinstance(entry, dict):
            raise InputError(f"{MODEL_JSON} has no stage {stage!r}", path)
        if entry.get("arch") not in _ARCHS[stage]:
            raise InputError(f"unknown {stage} architecture {entry.get('arch')!r} "
                             f"(known: {', '.join(_ARCHS[stage])})", path)
        weights = entry.get("weights")
        if not isinstance(weights, dict) or not weights.get("file") or not weights.get("sha256"):
            raise InputError(f"{MODEL_JSON}: stage {stage!r} names no weights file with its sha256", path)
        if not isinstance(weights["file"], str) or Path(weights["file"]).name != weights["file"] \
                or weights["file"] in (".", ".."):
            raise InputError(f"{MODEL_JSON}: weights file {weights['file']!r} must lie in the bundle folder", path)
        if not weights["file"].endswith(".safetensors"):
            raise InputError(f"{MODEL_JSON}: weights file {weights['file']!r} is not a .safetensors file "
                             "(other formats, such as pickles, are never loaded)", path)
    channels = segmenter_output_channels(config)
    if channels != len(labels) + 1:
        raise InputError(f"the segmenter has {channels} output channels but the bundle lists {len(labels)} "
                         f"label(s) (expected {len(labels) + 1} = background + labels)", path)


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_weights_file(path: Path, stage: str, config: dict) -> None:
    weights = config["stages"][stage]["weights"]
    file = path / weights["file"]
    if not file.is_file():
        raise InputError(f"{stage} weights file {weights['file']} is missing", path)
    # A symlink may point anywhere; the bundle's files must be the bundle's own.
    if not file.resolve().is_relative_to(path.resolve()):
        raise InputError(f"{stage} weights file {weights['file']} is a link to a file outside the bundle folder", path)
    actual = sha256_file(file)
    if actual != weights["sha256"]:
        raise InputError(f"{stage} weights file {weights['file']} has sha256 {actual[:12]}..., "
                         f"{MODEL_JSON} expects {str(weights['sha256'])[:12]}... (corrupt or tampered)", path)


def _load_network(path: Path, stage: str, config: dict) -> torch.nn.Module:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        net = _BUILDERS[stage](config)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{stage} cannot be built from {MODEL_JSON} ({exc})", path) from None
    try:
        state = load_file(str(path / config["stages"][stage]["weights"]["file"]))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{stage} weights cannot be read as safetensors ({exc})", path) from None
    # fp16-stored weights are copied into the float32 parameters by load_state_dict.
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:2]
        raise InputError(f"{stage} weights do not fit its architecture ({' '.join(first)[:300]})", path) from None
    return net.float().eval()


def state_for_saving(state: dict[str, torch.Tensor] | torch.nn.Module, fp16: bool = False) -> dict[str, torch.Tensor]:
    """A state dict ready for safetensors: detached, contiguous CPU tensors, floats in fp16 if asked."""
    import torch

    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    out = {}
    for key, tensor in state.items():
        tensor = tensor.detach().cpu()
        if fp16 and tensor.is_floating_point():
            tensor = tensor.half()
        out[key] = tensor.contiguous().clone()
    return out


def save_bundle(path: str | os.PathLike, config: dict[str, Any], localizer_state, segmenter_state,
                card_text: str, fp16: bool = False) -> Path:
    """Write a complete bundle folder atomically (into a temporary folder, then renamed into place).

    Args:
        path: the bundle folder to create or replace; its parent must exist.
        config: the model configuration (e.g. :func:`default_config` filled in by training); the
            weights file names and sha256 are filled in here. The caller's dict is not modified.
        localizer_state: the localizer's state dict, or the module itself.
        segmenter_state: the segmenter's state dict, or the module itself.
        card_text: the text of MODEL_CARD.md.
        fp16: store floating-point weights in half precision (halves the size; loaded back as float32).

    Returns:
        The bundle folder.
    """
    from safetensors.torch import save_file

    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output folder {parent} does not exist", path)
    config = copy.deepcopy(config)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        for stage, state in (("localizer", localizer_state), ("segmenter", segmenter_state)):
            weights = config["stages"][stage].setdefault("weights", {})
            weights["file"] = weights.get("file") or f"{stage}.safetensors"
            file = tmp / weights["file"]
            save_file(state_for_saving(state, fp16), str(file), metadata={"format": "pt", "stage": stage})
            weights["sha256"] = sha256_file(file)
            weights["dtype"] = "float16" if fp16 else "float32"
        (tmp / MODEL_CARD).write_text(card_text, encoding="utf-8")
        # model.json last: a folder with a model.json is complete.
        (tmp / MODEL_JSON).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        _validate_config(config, path)
        _replace_folder(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _replace_folder(tmp: Path, path: Path) -> None:
    # A folder cannot be renamed over a non-empty one: move the old one aside first, drop it after.
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.replace(path, old / path.name)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old / path.name, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
