"""Batch throughput: CTs per minute over many phantoms, with and without overlap, and under torchrun.

One ``pancreasseg segment IN... -o OUT/`` over every CT of a folder, run four ways one after the other:
reading and writing one after the other on the compute thread (``PANCREASSEG_OVERLAP=0``), overlapped
with compute (the default), and under torchrun with 1 and 2 processes (overlapped). For each: the wall
time of the whole command (start-up included: imports, model loading, for torchrun also its launch and
rendezvous) and the ``done`` event's seconds (from the model loaded to the last file written, no
start-up; under torchrun from rank 0's model loaded to the gathered summary).

    python -m PancreasSegLib phantom bench-out/batch --cases 20 --seed 0
    python benchmarks/bench_batch.py --images bench-out/batch/imagesTr --out bench-out
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(name: str, images: list[Path], out: Path, bundle: Path, overlap: bool, nproc: int = 0) -> dict:
    """Segment every image into a fresh folder; wall seconds, done seconds and CTs per minute of both."""
    target = out / f"batch-{name}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    env = {**os.environ, "PANCREASSEG_OVERLAP": "1" if overlap else "0"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "-m"] if nproc \
        else [sys.executable, "-m"]
    command = [*launcher, "PancreasSegLib", "segment", *map(str, images), "-o", str(target), "--model", str(bundle),
               "--device", "cpu", "--progress", "jsonl"]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{name} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    done = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")][-1]
    assert done["event"] == "done" and len(done["outputs"]["segmentation"]) == len(images), done
    count = len(images)
    return {"run": name, "cases": count, "wall_s": round(wall, 2), "ct_per_min_wall": round(60 * count / wall, 1),
            "done_s": done["seconds"], "ct_per_min_done": round(60 * count / done["seconds"], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="folder of CTs (e.g. a phantom dataset's imagesTr)")
    parser.add_argument("--bundle", default=str(ROOT / "Resources" / "Models" / "pancreas-phantom-v1"))
    parser.add_argument("--out", default="bench-out")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    images = sorted(Path(args.images).resolve().glob("*.nii.gz"))
    bundle = Path(args.bundle).resolve()
    report = {"load_average_before": os.getloadavg(), "runs": [
        one_run("sequential", images, out, bundle, overlap=False),
        one_run("overlapped", images, out, bundle, overlap=True),
        one_run("torchrun-1", images, out, bundle, overlap=True, nproc=1),
        one_run("torchrun-2", images, out, bundle, overlap=True, nproc=2),
    ], "load_average_after": os.getloadavg()}
    text = json.dumps(report, indent=2)
    (out / "batch.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
