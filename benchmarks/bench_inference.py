"""Inference speed: two-phase (localizer + segmenter on the ROI) against single-stage (segmenter on the whole volume).

One run, side by side, on a 512 x 512 x 300 CT phantom (0.78 mm pixels, 1 mm slices). Each mode runs
in a fresh child process so that its peak memory (RSS) is its own; wall time covers reading the CT
file, both phases (or the single stage), post-processing and writing the label map; loading the model
and importing torch are reported separately.

With an untrained (random-weights) bundle the localizer usually finds nothing; phase 1 still runs on
every slice and its time counts, then the ROI is taken from the phantom's label plus the margin (the
table says so). The ROI-border guard can be switched off for random weights (``--no-guard``), whose
noise would otherwise always touch the crop border and trigger the second pass.

    python benchmarks/bench_inference.py --out bench-out            # phantom + random default-size bundle
    python benchmarks/bench_inference.py --bundle Resources/Models/pancreas-phantom-v1 --out bench-out
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "Testing"))  # bundle_doubles: random-weight bundles for the plumbing

SIZE = (512, 512, 300)  # x, y, z
SPACING = (0.78, 0.78, 1.0)


def make_input(folder: Path, seed: int) -> tuple[Path, Path | None, str]:
    """Write the benchmark CT (int16 .nii.gz) and its label; a phantom when the generator is installed."""
    import SimpleITK as sitk

    ct, label = folder / "bench_ct.nii.gz", folder / "bench_label.nii.gz"
    if ct.exists() and label.exists():
        return ct, label, "existing files"
    try:
        from PancreasSegLib.phantoms.generator import make_phantom

        image, lab = make_phantom(seed, size=SIZE, spacing=SPACING, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), tumor=False)
        source = f"PancreasSegLib.phantoms.generator.make_phantom(seed={seed})"
    except ImportError:
        image, lab = _blob_phantom(seed)
        source = "synthetic blob (phantom generator not installed)"
    sitk.WriteImage(image, str(ct), useCompression=True)
    sitk.WriteImage(lab, str(label), useCompression=True)
    return ct, label, source


def _blob_phantom(seed: int):
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: SIZE[2], : SIZE[1], : SIZE[0]]
    body = ((x - 256) / 220.0) ** 2 + ((y - 256) / 170.0) ** 2 <= 1
    organ = ((x - 290) / 75.0) ** 2 + ((y - 250) / 25.0) ** 2 + ((z - 150) / 30.0) ** 2 <= 1
    hu = np.where(body, 40, -1000) + np.where(organ, 60, 0) + rng.normal(0, 15, (SIZE[2], SIZE[1], SIZE[0]))
    image, label = sitk.GetImageFromArray(hu.astype(np.int16)), sitk.GetImageFromArray(organ.astype(np.uint8))
    for im in (image, label):
        im.SetSpacing(SPACING)
    return image, label


def child(args: argparse.Namespace) -> None:
    """One mode in this process; writes its measurements as JSON."""
    started = time.perf_counter()
    import numpy as np
    import SimpleITK as sitk
    import torch

    from PancreasSegLib.errors import NoPancreasFound
    from PancreasSegLib.io.volumes import read_volume, write_labelmap
    from PancreasSegLib.pipeline.predictor import Predictor

    torch.set_num_threads(args.threads or torch.get_num_threads())
    imported = time.perf_counter()
    predictor = Predictor.from_bundle(args.bundle, args.device)
    if args.no_guard:
        predictor.bundle.config["postprocessing"]["border_guard_mm"] = 0.0
    loaded = time.perf_counter()
    cpu0 = time.process_time()
    tick = time.perf_counter()
    image = read_volume(args.input)
    seconds = {"read": time.perf_counter() - tick}
    roi_source = "localizer"
    if args.mode == "single-stage":
        prediction = predictor.predict_image(image, phase2_only=True, allow_empty=True)
        roi_source = "whole volume"
    else:
        tick = time.perf_counter()
        try:
            prediction = predictor.predict_image(image)
        except NoPancreasFound:
            # Untrained localizer: the time it took to find nothing counts (every slice was seen, only the
            # few refinement slices were not), then the label's box plus the margin stands in for its ROI.
            localize_s = time.perf_counter() - tick
            roi = _label_roi(read_volume(args.label), float(predictor.bundle.stage("localizer")["margin_mm"]))
            prediction = predictor.predict_image(image, roi=roi, allow_empty=True)
            prediction.seconds = {"localize": localize_s, **prediction.seconds}
            roi_source = "phantom label + margin (the random localizer found nothing)"
    seconds.update(prediction.seconds)
    tick = time.perf_counter()
    write_labelmap(prediction.label, Path(args.workdir) / f"{args.mode}.nii.gz")
    seconds["write"] = time.perf_counter() - tick
    total = sum(seconds.values())
    result = {
        "mode": args.mode,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "wall_s": round(total, 3),
        "cpu_s": round(time.process_time() - cpu0, 3),
        "import_s": round(imported - started, 3),
        "model_load_s": round(loaded - imported, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "roi_source": roi_source,
        "roi": prediction.roi.to_json() if prediction.roi is not None else None,
        "roi_grown": prediction.grown,
        "foreground_voxels": int(np.count_nonzero(sitk.GetArrayViewFromImage(prediction.label))),
        "threads": torch.get_num_threads(),
        "device": predictor.device,
    }
    Path(args.json).write_text(json.dumps(result, indent=2))


def _label_roi(label, margin: float):
    import numpy as np
    import SimpleITK as sitk

    from PancreasSegLib.pipeline.roi import ROI, image_axes

    idx = np.argwhere(sitk.GetArrayViewFromImage(label) > 0)[:, ::-1]  # x, y, z
    corners = np.array([label.TransformContinuousIndexToPhysicalPoint([float(c) for c in p])
                        for p in (idx.min(0) - 0.5, idx.max(0) + 0.5)])
    return ROI.from_lps_bounds(corners.min(0) - margin, corners.max(0) + margin, image_axes(label), margin)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-out", help="folder for the phantom, the bundle and the results")
    parser.add_argument("--input", help="CT file to use instead of generating the phantom")
    parser.add_argument("--label", help="its label (for the ROI when the localizer is untrained)")
    parser.add_argument("--bundle", help="model bundle (default: random weights, default sizes)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-guard", action="store_true", help="switch the ROI-border guard off")
    parser.add_argument("--modes", default="two-phase,single-stage")
    parser.add_argument("--child", choices=("two-phase", "single-stage"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        child(args)
        return 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.input:
        ct, label, source = Path(args.input), Path(args.label) if args.label else None, f"file {args.input}"
    else:
        ct, label, source = make_input(out, args.seed)
    bundle = args.bundle
    if bundle is None:
        from bundle_doubles import make_random_bundle

        bundle = out / "random-default-bundle"
        if not (bundle / "model.json").exists():
            make_random_bundle(bundle, seed=0, tiny=False)
    results = []
    for mode in args.modes.split(","):
        result_file = out / f"result-{mode}.json"
        command = [sys.executable, __file__, "--child", mode, "--input", str(ct), "--bundle", str(bundle),
                   "--json", str(result_file), "--workdir", str(out), "--device", args.device,
                   "--threads", str(args.threads)]
        if label:
            command += ["--label", str(label)]
        if args.no_guard:
            command.append("--no-guard")
        load = os.getloadavg()[0]
        subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        result = json.loads(result_file.read_text())
        result["load_before"] = round(load, 2)
        results.append(result)
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "input": {"file": str(ct), "source": source, "size_xyz": SIZE, "spacing_xyz": SPACING},
        "bundle": str(bundle),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "results": results,
    }
    (out / "bench_inference.json").write_text(json.dumps(report, indent=2))
    print(table(report))
    return 0


def table(report: dict) -> str:
    """The results as a Markdown table (what goes into the README)."""
    rows = {r["mode"]: r for r in report["results"]}
    phases = ["read", "localize", "segment", "postprocess", "write"]
    lines = ["| mode | wall s | CPU s | peak RSS MB | " + " | ".join(phases) + " |",
             "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in phases) + " |"]
    for mode, r in rows.items():
        cells = [f"{r['seconds'].get(p, 0.0):.2f}" if p in r["seconds"] else "-" for p in phases]
        lines.append(f"| {mode} | {r['wall_s']:.2f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} | "
                     + " | ".join(cells) + " |")
    if "two-phase" in rows and "single-stage" in rows:
        ratio = rows["single-stage"]["wall_s"] / rows["two-phase"]["wall_s"]
        lines.append(f"\nsingle-stage / two-phase wall time: {ratio:.1f}x")
    lines.append(f"\n{report['date']}, {report['machine']}; input: {report['input']['source']}; "
                 f"two-phase ROI: {rows.get('two-phase', {}).get('roi_source', '-')}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
