"""Model bundles with randomly initialised networks: for tests and benchmarks of the plumbing, never for use."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from PancreasSegLib.model.bundle import save_bundle
from PancreasSegLib.model.configs import default_config, tiny_config
from PancreasSegLib.model.networks import build_localizer, build_segmenter


def make_random_bundle(path: str | os.PathLike, seed: int = 0, tiny: bool = True,
                       config: dict[str, Any] | None = None) -> Path:
    """Write a bundle with randomly initialised networks (for tests and benchmarks of the plumbing).

    Args:
        path: the bundle folder to write.
        seed: torch seed for the initial weights (the same seed gives the same weights).
        tiny: miniature networks (:func:`tiny_config`) instead of the default sizes.
        config: a configuration to use instead (``tiny`` is then ignored).
    """
    import torch

    config = copy.deepcopy(config) if config is not None else (tiny_config() if tiny else default_config())
    config.setdefault("training", {})["note"] = f"random initial weights, seed {seed}, never trained"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        localizer = build_localizer(config)
        segmenter = build_segmenter(config)
    card = (f"# {config['name']} (random weights)\n\nRandomly initialised networks (seed {seed}) for testing the "
            "software. It has never been trained and segments nothing meaningful. Not for any use on patients.\n")
    return save_bundle(path, config, localizer, segmenter, card)
