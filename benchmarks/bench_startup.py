"""From request to file: a cold ``pancreasseg segment`` (light and full imports) against a warm worker.

All on the same CT, one after the other in one run: the command line as a fresh process (what each
click of the module cost before the worker), the same with ``PANCREASSEG_FULL_IMPORTS=1`` (MONAI and
torchvision imported whole, as before the light imports), and ``pancreasseg worker``: its start-up with
the model loaded, then the first and second requests, each timed from writing the request to reading
its ``done`` event. Peak RSS is the child's own.

    python benchmarks/bench_startup.py --input bench-out/bench_ct.nii.gz --out bench-out
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cold(ct: Path, out: Path, bundle: Path, full_imports: bool) -> dict:
    """One ``segment`` as a fresh process; wall seconds and its peak RSS (GB)."""
    env = {k: v for k, v in os.environ.items() if k != "PANCREASSEG_FULL_IMPORTS"}
    if full_imports:
        env["PANCREASSEG_FULL_IMPORTS"] = "1"
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "PancreasSegLib", "segment", str(ct),
                             "-o", str(out), "--model", str(bundle), "--device", "cpu", "--progress", "none"],
                            cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    return {"wall_s": round(seconds, 2), "peak_rss_gb": round(int(result.stdout.split()[-1]) / 1e6, 2)}


def warm(ct: Path, out_dir: Path, bundle: Path, requests: int = 2) -> dict:
    """A worker with the model loaded: start-up to ``ready`` (model loaded), then each request's wall time."""
    env = {k: v for k, v in os.environ.items() if k != "PANCREASSEG_FULL_IMPORTS"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "PancreasSegLib", "worker", "--model", str(bundle), "--device",
                             "cpu"], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert json.loads(proc.stdout.readline())["event"] == "ready"
    report = {"startup_s": round(time.perf_counter() - started, 2), "requests": []}
    for i in range(requests):
        request = {"id": f"r{i}", "args": ["segment", str(ct), "-o", str(out_dir / f"warm{i}.nii.gz"),
                                           "--model", str(bundle), "--device", "cpu"]}
        tick = time.perf_counter()
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("id") == request["id"] and event["event"] in ("done", "error"):
                break
        assert event["event"] == "done", event
        report["requests"].append({"wall_s": round(time.perf_counter() - tick, 2), "timings": event["timings"]})
    proc.stdin.write(json.dumps({"args": ["shutdown"]}) + "\n")
    proc.stdin.flush()
    proc.wait(timeout=60)
    report["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 2)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="the CT (e.g. bench_inference.py's bench_ct.nii.gz)")
    parser.add_argument("--bundle", default=str(ROOT / "Resources" / "Models" / "pancreas-phantom-v1"))
    parser.add_argument("--out", default="bench-out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ct, bundle = Path(args.input).resolve(), Path(args.bundle).resolve()
    report = {
        "load_average_before": os.getloadavg(),
        "warm_worker": warm(ct, out, bundle),  # first: RUSAGE_CHILDREN is the maximum over all children so far
        "cold_light_imports": cold(ct, out / "cold.nii.gz", bundle, full_imports=False),
        "cold_full_imports": cold(ct, out / "cold_full.nii.gz", bundle, full_imports=True),
        "load_average_after": os.getloadavg(),
    }
    text = json.dumps(report, indent=2)
    (out / "startup.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
