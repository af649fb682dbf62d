"""``train`` under torchrun: two gloo ranks on the CPU train one model (DDP); rank 0 alone writes; resume."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from phantom_datasets import write_phantom_dataset

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (910, 911, 912)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """Three small phantoms as an nnU-Net v2 raw dataset."""
    return write_phantom_dataset(tmp_path_factory.mktemp("data") / "Dataset910_Tiny", SEEDS)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(dataset: Path, out: Path, epochs: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--nnodes", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "-m", "PancreasSegLib",
               "train", str(dataset), "-o", str(out), "--recipe", "tiny", "--epochs", str(epochs), "--seed", "3",
               "--val-fraction", "0.34", "--device", "cpu", "--progress", "jsonl"]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)


def _digests(log: str, stage: str) -> list[list[str]]:
    return [line.split(": ")[-1].split() for line in log.splitlines() if f"{stage}: weights on 2 ranks:" in line]


def test_two_ranks_train_one_model_that_rank_0_alone_writes_and_that_resumes(phantoms, tmp_path):
    from PancreasSegLib.model.bundle import Bundle
    from PancreasSegLib.model.configs import recipe_config
    from PancreasSegLib.training.run import _build

    out = tmp_path / "ddp-model"
    first = _torchrun(phantoms, out, epochs=1)
    assert first.returncode == 0, first.stderr[-3000:]
    done = [json.loads(line) for line in first.stdout.splitlines() if '"event": "done"' in line]
    assert len(done) == 1 and done[0]["outputs"]["bundle"] == str(out)  # rank 0 alone reports
    assert done[0]["seconds"] > 0  # the whole run's time, as segment reports its own
    log = (out / "train.log").read_text(encoding="utf-8")
    assert len(re.findall(r"starting training", log)) == 1 and ", 2 ranks" in log  # one writer of the log
    for stage in ("localizer", "segmenter"):
        [digests] = _digests(log, stage)
        assert len(digests) == 2 and digests[0] == digests[1]  # DDP kept the ranks' weights identical
    config = recipe_config("tiny")
    for stage in ("localizer", "segmenter"):
        start = _build(stage, config, 3).state_dict()
        trained = getattr(Bundle.load(out), stage).state_dict()
        moved = [k for k, v in start.items() if v.is_floating_point()
                 and not torch.allclose(v.float(), trained[k].float(), atol=1e-3)]
        assert moved, f"the {stage} did not train"
    assert sorted(p.name for p in out.parent.iterdir()) == ["ddp-model", "ddp-model.work"]

    again = _torchrun(phantoms, out, epochs=2)  # a larger budget continues both stages on both ranks
    assert again.returncode == 0, again.stderr[-3000:]
    log = (out / "train.log").read_text(encoding="utf-8")
    assert "localizer: resuming at iteration 2" in log and "segmenter: resuming at iteration 2" in log
    record = json.loads((out / "model.json").read_text(encoding="utf-8"))["training"]
    assert {s: record["stages"][s]["iterations"] for s in ("localizer", "segmenter")} == {"localizer": 4,
                                                                                         "segmenter": 4}
    for stage in ("localizer", "segmenter"):
        resumed = _digests(log, stage)[-1]
        assert resumed[0] == resumed[1] != _digests(log, stage)[0][0]


def test_each_rank_draws_its_own_batches_and_rank_0_those_of_one_process(phantoms, tmp_path):
    from PancreasSegLib.checks.dataset import check_training_dataset
    from PancreasSegLib.model.bundle import sha256_file
    from PancreasSegLib.model.configs import recipe_config, training_settings
    from PancreasSegLib.training.caches import build_caches, load_cache
    from PancreasSegLib.training.localizer import LocalizerTrainer
    from PancreasSegLib.training.run import _build
    from PancreasSegLib.training.segmenter import SegmenterTrainer

    config = recipe_config("tiny")
    settings = {s: training_settings(config, s) for s in ("localizer", "segmenter")}
    cases = check_training_dataset(phantoms)
    hashes = {c.case_id: {"image": sha256_file(c.image), "label": sha256_file(c.label)} for c in cases}
    files = build_caches(cases, hashes, config, settings, ["localizer", "segmenter"], tmp_path, 0, lambda line: None)
    for stage, cls in (("localizer", LocalizerTrainer), ("segmenter", SegmenterTrainer)):
        model = _build(stage, config, 0)
        optimizer = torch.optim.AdamW(model.parameters())
        items = load_cache(files[stage])

        def first_image(rank: int | None) -> np.ndarray:
            extra = {} if rank is None else {"rank": rank}
            trainer = cls(model, optimizer, items, [], config["stages"][stage], settings[stage], 0, "cpu", **extra)
            images = trainer.batch(5)[0]
            return (images[0] if isinstance(images, list) else images).numpy()

        alone, rank0, rank1 = first_image(None), first_image(0), first_image(1)
        assert np.array_equal(alone, rank0) and not np.array_equal(rank0, rank1), stage
