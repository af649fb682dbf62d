"""``segment`` under torchrun: inputs shared out by rank, every output written once, rank 0 reports (gloo, CPU)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk
from bundle_doubles import make_random_bundle
from inference_doubles import blob_volume, same_grid, test_config

from PancreasSegLib.errors import InputError
from PancreasSegLib.io.volumes import read_volume
from PancreasSegLib.model.distributed import World

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchrun")
    bundle = make_random_bundle(folder / "bundle", seed=0, config=test_config())
    cts = []
    for seed in range(5):
        image, _ = blob_volume(shape_zyx=(24, 40, 48), seed=seed)
        cts.append(folder / f"case{seed}.nii.gz")
        sitk.WriteImage(image, str(cts[-1]))
    roi = folder / "roi.json"
    roi.write_text(json.dumps({"center": [10.0, 5.0, 0.0], "size": [60.0, 40.0, 40.0], "margin_mm": 20.0}))
    return {"bundle": bundle, "cts": cts, "roi": roi}


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_the_shards_cover_every_input_exactly_once(size):
    items = list(range(20))
    shards = [World(rank, size, rank, size).shard(items) for rank in range(size)]
    assert sorted(i for shard in shards for i in shard) == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_the_world_comes_from_torchruns_variables():
    world = World.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (world.rank, world.size, world.local_rank, world.local_size) == (3, 4, 1, 2)
    assert world.distributed and not world.main and world.cpu_threads(16) == 8 and world.device("cpu") == "cpu"
    assert World.from_env({}) == World() and not World().distributed
    with pytest.raises(InputError, match="does not fit"):
        World.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(files, out: Path, launch: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *launch, "-m", "PancreasSegLib",
                             "segment", *map(str, files["cts"]), "-o", str(out), "--model", str(files["bundle"]),
                             "--roi", str(files["roi"]), "--device", "cpu", "--progress", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _check(files, out: Path, stdout: str) -> None:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    done = [e for e in events if e["event"] == "done"]
    assert len(done) == 1 and done[0]["ranks"] == 2  # rank 0 alone reports
    expected = [str(out / f"case{i}.nii.gz") for i in range(len(files["cts"]))]
    assert done[0]["outputs"]["segmentation"] == expected and len(done[0]["roi"]) == len(expected)
    assert sorted(p.name for p in out.iterdir()) == sorted(n for p in expected
                                                            for n in (Path(p).name, f"{Path(p).name}.quality.json"))
    for ct, written in zip(files["cts"], expected):
        assert same_grid(read_volume(written), read_volume(ct))
    rank0 = [e["input"] for e in events if e["event"] == "case"]
    assert rank0 == [str(files["cts"][i]) for i in (0, 2, 4)]  # rank 0's own share, in order


def test_two_processes_share_the_inputs_and_rank_0_prints_the_summary(files, tmp_path):
    proc = _torchrun(files, tmp_path, ["--nproc-per-node", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                                       f"127.0.0.1:{_free_port()}", "--nnodes", "1"])
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    _check(files, tmp_path, stdout)


def test_two_nodes_on_one_machine_write_every_output_once(files, tmp_path):
    port = _free_port()
    nodes = [_torchrun(files, tmp_path, ["--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1",
                                         "--master-addr", "127.0.0.1", "--master-port", str(port)])
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=120) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert outputs[1][0].strip() == ""  # the second node's rank prints nothing
    _check(files, tmp_path, outputs[0][0])
