"""Two-phase versus single-stage versus HU threshold, on held-out phantoms: Dice and HD95 side by side.

(a) the two-phase bundle (localizer ROI, segmenter on the crop, post-processing), (b) a single-stage
bundle: the same segmenter architecture and spacing trained on whole-volume patches with the same
budget, run by sliding window over the whole volume (``Predictor.predict_image(phase2_only=True)``),
(c) a HU threshold baseline. Pancreas = labels 1 and 2 of the reference. Also reported: how much of
each pancreas phase 1's ROI held (its recall), which bounds what phase 2 can reach.

Usage (phantoms with seeds disjoint from the training seeds)::

    pancreasseg phantom phantoms-eval --cases 20 --seed 0
    python benchmarks/compare_single_stage.py phantoms-eval \\
        --two-phase Resources/Models/pancreas-phantom-v1 --single-stage single-stage-baseline -o results.md
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def threshold_baseline(image, low: float = 25.0, high: float = 140.0, sigma_mm: float = 1.5):
    """The classic rule-based baseline: smoothed HU in the soft-tissue band, opened, largest component.

    Args:
        image: CT in HU (SimpleITK).
        low, high: the HU band of enhanced parenchyma.
        sigma_mm: Gaussian smoothing before thresholding (noise).

    Returns:
        uint8 label map (1 = pancreas) on the image's grid.
    """
    import SimpleITK as sitk

    from PancreasSegLib.pipeline.postprocess import largest_component

    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), sigma_mm)
    mask = sitk.BinaryThreshold(smooth, low, high, 1, 0)
    mask = sitk.BinaryMorphologicalOpening(mask, [2, 2, 1])
    keep = largest_component(sitk.GetArrayViewFromImage(mask) > 0).astype(np.uint8)
    out = sitk.GetImageFromArray(keep)
    out.CopyInformation(image)
    return out


def _metrics(pred, ref) -> tuple[float, float]:
    import SimpleITK as sitk

    from PancreasSegLib.evaluation.metrics import binary_metrics

    m = binary_metrics(sitk.GetArrayViewFromImage(pred) > 0, sitk.GetArrayViewFromImage(ref) > 0,
                       ref.GetSpacing()[::-1])
    return m.dice, m.hd95_mm


def _summary(rows: list[dict], method: str) -> dict:
    dice = np.array([r["dice"] for r in rows if r["method"] == method])
    hd = np.array([r["hd95_mm"] for r in rows if r["method"] == method])
    secs = np.array([r["seconds"] for r in rows if r["method"] == method])
    finite = hd[np.isfinite(hd)]
    return {"n": len(dice), "dice_mean": dice.mean(), "dice_std": dice.std(), "dice_median": np.median(dice),
            "hd95_mean": finite.mean() if len(finite) else math.nan,
            "hd95_median": np.median(finite) if len(finite) else math.nan,
            "failed": int(np.sum(~np.isfinite(hd))), "seconds": secs.mean()}


def _read_rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("dice", "hd95_mm", "seconds", "roi_recall"):
            row[key] = float(row[key]) if row.get(key) not in (None, "") else None
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="nnU-Net v2 raw dataset of held-out cases (imagesTr, labelsTr)")
    parser.add_argument("--two-phase", help="two-phase bundle")
    parser.add_argument("--single-stage", help="single-stage bundle (segmenter trained on whole volumes)")
    parser.add_argument("-o", "--output", required=True,
                        help="markdown file to write (a .csv with per-case rows beside it)")
    parser.add_argument("--limit", type=int, help="only the first N cases")
    parser.add_argument("--rows-from", metavar="CSV", help="per-case rows of an earlier run to include (other methods)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    from PancreasSegLib.datasets.nnunet import list_cases
    from PancreasSegLib.io.volumes import read_ct, read_volume
    from PancreasSegLib.pipeline.predictor import Predictor
    from PancreasSegLib.training.localizer import roi_fraction

    cases = list_cases(args.dataset)[: args.limit]
    two = Predictor.from_bundle(args.two_phase, args.device) if args.two_phase else None
    single = Predictor.from_bundle(args.single_stage, args.device) if args.single_stage else None
    rows, recalls = _read_rows(args.rows_from) if args.rows_from else [], []
    recalls = [r["roi_recall"] for r in rows if r.get("roi_recall") not in (None, "")]
    for case in cases:
        image, ref = read_ct(case.image), read_volume(case.label)
        methods = []
        if two is not None:
            methods.append(("two-phase", lambda: two.predict_image(image, allow_empty=True)))
        if single is not None:
            methods.append(("single-stage", lambda: single.predict_image(image, allow_empty=True, phase2_only=True)))
        if two is not None:  # computed once, with the two-phase run
            methods.append(("HU threshold", lambda: threshold_baseline(image)))
        for name, run in methods:
            tick = time.perf_counter()
            out = run()
            seconds = time.perf_counter() - tick
            label = getattr(out, "label", out)
            dice, hd95 = _metrics(label, ref)
            rows.append({"case": case.case_id, "method": name, "dice": dice, "hd95_mm": hd95, "seconds": seconds})
            if name == "two-phase":
                recalls.append(roi_fraction(ref, out.localizer_roi))
                rows[-1]["roi_recall"] = recalls[-1]
            print(f"{case.case_id} {name:<13} Dice {dice:.3f} HD95 {hd95:6.2f} mm {seconds:5.1f} s", file=sys.stderr,
                  flush=True)
    out = Path(args.output)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, ["case", "method", "dice", "hd95_mm", "seconds", "roi_recall"])
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"Held-out phantoms: {len(cases)} ({cases[0].case_id} .. {cases[-1].case_id}).", "",
             "| method | Dice mean ± sd | Dice median | HD95 mean (mm) | HD95 median (mm) | no output | s/case |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for method in dict.fromkeys(r["method"] for r in rows):
        s = _summary(rows, method)
        lines.append(f"| {method} | {s['dice_mean']:.3f} ± {s['dice_std']:.3f} | {s['dice_median']:.3f} | "
                     f"{s['hd95_mean']:.2f} | {s['hd95_median']:.2f} | {s['failed']} | {s['seconds']:.1f} |")
    order = {"two-phase": 0, "single-stage": 1, "HU threshold": 2}
    lines[4:] = sorted(lines[4:], key=lambda line: order.get(line.split(" | ")[0][2:], 3))
    if recalls:
        lines += ["", f"Phase 1 ROI recall (share of the pancreas inside the ROI): mean {np.mean(recalls):.4f}, "
                  f"min {np.min(recalls):.4f}; complete (>= 99 %) in {int(np.sum(np.array(recalls) >= 0.99))} of "
                  f"{len(recalls)} cases.", ""]
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
