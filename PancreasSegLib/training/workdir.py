"""The work folder of a training run (``BUNDLE.work/`` next to the bundle): caches, checkpoints, log.

Nothing here ever goes into the bundle, which stays pickle-free: a checkpoint is the network's
weights as safetensors, the loop's state as JSON (iteration, elapsed time, validation history) and,
for the optimizer and torch's random state only, a ``torch.save`` file read back with
``weights_only=True``. A checkpoint is written into a fresh folder that is renamed into place, so a
kill at any moment leaves the previous or the new checkpoint, never a mix.

``run.json`` records what the run is (dataset hashes, split, seed, recipe, parent): the same
command finds it and resumes; a different run into the same folder is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PancreasSegLib.errors import InputError
from PancreasSegLib.io.atomic import write_json_atomic

if TYPE_CHECKING:
    import torch

RUN_JSON = "run.json"


def work_folder_for(bundle: str | os.PathLike) -> Path:
    """``BUNDLE.work`` beside the bundle folder."""
    bundle = Path(bundle)
    return bundle.with_name(bundle.name + ".work")


@dataclass
class LoopState:
    """What a stage's loop needs to continue: counters, elapsed time and the validation history."""

    iteration: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    done: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "seconds": self.seconds, "cpu_seconds": self.cpu_seconds,
                "done": self.done, "history": self.history, "metrics": self.metrics}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoopState:
        return cls(int(data["iteration"]), float(data["seconds"]), float(data.get("cpu_seconds", 0.0)),
                   bool(data["done"]), list(data.get("history", [])), dict(data.get("metrics", {})))


class WorkFolder:
    """Caches, checkpoints and the log of one training run."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.cache = self.path / "cache"
        self.checkpoints = self.path / "checkpoints"
        self.log_file = self.path / "train.log"

    def claim(self, identity: dict[str, Any], restart: bool = False) -> bool:
        """Create the folder for the run ``identity``, or find the same run's folder to resume.

        Returns:
            True when an earlier run with the same identity is continued.

        Raises:
            InputError: the folder holds a different run and ``restart`` is not set.
        """
        run_json = self.path / RUN_JSON
        if restart and self.checkpoints.exists():
            shutil.rmtree(self.checkpoints)
        if run_json.is_file() and not restart:
            try:
                earlier = json.loads(run_json.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                earlier = None
            if earlier != json.loads(json.dumps(identity)):
                differs = sorted(k for k in set(identity) | set(earlier or {})
                                 if (earlier or {}).get(k) != json.loads(json.dumps(identity.get(k))))
                raise InputError(f"holds a different training run (differs in: {', '.join(differs) or 'format'}); "
                                 "use --restart to start over or choose another output", self.path)
            return any(self.checkpoints.glob("*/state.json"))
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_json, identity)
        return False

    def log(self, line: str) -> None:
        """Append one line to the work folder's train.log (copied into the bundle at the end)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")

    def save_checkpoint(self, stage: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        state: LoopState) -> None:
        """Write the stage's checkpoint into a new folder and swap it in (old one removed after)."""
        import torch
        from safetensors.torch import save_file

        from PancreasSegLib.model.bundle import state_for_saving

        self.checkpoints.mkdir(parents=True, exist_ok=True)
        final, new, old = (self.checkpoints / stage, self.checkpoints / f"{stage}.new",
                           self.checkpoints / f"{stage}.old")
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        save_file(state_for_saving(model), str(new / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}, new / "optimizer.pt")
        (new / "state.json").write_text(json.dumps(state.to_json(), indent=1), encoding="utf-8")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(new, final)
        shutil.rmtree(old, ignore_errors=True)

    def checkpoint_folder(self, stage: str) -> Path | None:
        """The stage's latest complete checkpoint folder (the previous one if a swap was cut short)."""
        for name in (stage, f"{stage}.old"):
            folder = self.checkpoints / name
            if (folder / "state.json").is_file():
                return folder
        return None

    def load_checkpoint(self, stage: str, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer | None) -> LoopState | None:
        """Load the stage's latest checkpoint into ``model`` (and ``optimizer``); ``None`` when there is none."""
        import torch
        from safetensors.torch import load_file

        folder = self.checkpoint_folder(stage)
        if folder is None:
            return None
        state = LoopState.from_json(json.loads((folder / "state.json").read_text(encoding="utf-8")))
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        if optimizer is not None and (folder / "optimizer.pt").is_file():
            extra = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
            optimizer.load_state_dict(extra["optimizer"])
            torch.set_rng_state(extra["torch_rng"])
        return state
