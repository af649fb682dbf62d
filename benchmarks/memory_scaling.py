"""Peak memory of ``pancreasseg segment`` against the input's voxel count (supports the voxel budget).

Each run is a fresh process (``python -m PancreasSegLib segment``) on a synthetic int16 CT of 512 x 512
x N voxels (air around a soft-tissue body, so the CT checks pass); its peak RSS is read from
``getrusage`` of the finished child. Two modes: ``localizer`` (phase 1 over every slice, a localizer
that finds nothing, ``--allow-empty``: an empty label map on the input grid is still built and written)
and ``roi`` (phase 1 skipped, phase 2 on a fixed 120 mm box). A line fitted through the runs gives the
fixed cost and the bytes per input voxel.

    OMP_NUM_THREADS=1 python benchmarks/memory_scaling.py --slices 32 64 128 256 --out memory.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "Testing"))  # bundle_doubles: random-weight bundles for the plumbing


def synthetic_ct(slices: int, path: Path) -> int:
    import SimpleITK as sitk

    y, x = np.mgrid[:512, :512]
    body = ((y - 256) / 200.0) ** 2 + ((x - 256) / 230.0) ** 2 < 1
    plane = np.where(body, 40, -1000).astype(np.int16)
    plane[(y - 300) ** 2 + (x - 256) ** 2 < 400] = 700
    volume = np.repeat(plane[None], slices, axis=0)
    volume += np.random.default_rng(0).integers(-10, 10, volume.shape, dtype=np.int16)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.8, 0.8, 2.5))
    sitk.WriteImage(image, str(path))
    return volume.size


def peak_rss_of(args: list[str]) -> tuple[int, float, int]:
    """(peak RSS in bytes, wall seconds, exit status) of ``args`` run under a small wrapper process.

    The wrapper reports its only child's ``ru_maxrss``: our own RUSAGE_CHILDREN would give the largest of
    all runs so far.
    """
    tick = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _ONE_RUN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          check=False, text=True)
    seconds = time.perf_counter() - tick
    rss_kib = int(proc.stderr.strip().splitlines()[-1])  # Linux reports KiB
    return rss_kib * 1024, seconds, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--out", type=Path, default=None)
    options = parser.parse_args()

    from bundle_doubles import make_random_bundle

    from PancreasSegLib.model.configs import tiny_config

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = tiny_config()
        config["stages"]["localizer"]["score_threshold"] = 1.01
        bundle = make_random_bundle(tmp / "bundle", config=config)
        roi = tmp / "roi.json"
        roi.write_text(json.dumps({"center": [204.0, 204.0, 40.0], "size": [120.0, 120.0, 60.0], "margin_mm": 20.0}))
        for mode in ("localizer", "roi"):
            for slices in sorted(options.slices):
                ct = tmp / "ct.nrrd"
                voxels = synthetic_ct(slices, ct)
                args = [sys.executable, "-m", "PancreasSegLib", "segment", str(ct), "-o", str(tmp / "seg.nrrd"),
                        "--model", str(bundle), "--progress", "none", "--device", "cpu"]
                args += ["--allow-empty"] if mode == "localizer" else ["--roi", str(roi), "--allow-empty"]
                rss, seconds, code = peak_rss_of(args)
                rows.append({"mode": mode, "slices": slices, "voxels": voxels, "peak_rss_bytes": rss,
                             "seconds": round(seconds, 1), "exit": code})
                print(f"{mode:9s} 512x512x{slices:<4d} {voxels / 1e6:6.1f} M voxels  peak RSS {rss / 2**20:7.0f} MiB  "
                      f"{seconds:5.1f} s  exit {code}", flush=True)
    for mode in ("localizer", "roi"):
        sel = [r for r in rows if r["mode"] == mode and r["exit"] == 0]
        if len(sel) >= 2:
            slope, intercept = np.polyfit([r["voxels"] for r in sel], [r["peak_rss_bytes"] for r in sel], 1)
            print(f"{mode}: peak RSS = {intercept / 2**30:.2f} GiB + {slope:.1f} bytes x voxels")
    if options.out:
        options.out.write_text(json.dumps(rows, indent=2) + "\n")


_ONE_RUN = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


if __name__ == "__main__":
    main()
