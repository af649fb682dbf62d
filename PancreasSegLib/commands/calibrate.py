"""Calibrate a bundle's "unsure" flags on validation cases it was not trained on.

PRED is a folder written by `pancreasseg segment` with this bundle (each label with its
<label>.quality.json), REF the validation cases' labels (a dataset root or its labelsTr). For each
quality measure, the range the model showed on the cases it segmented well (Dice >= 0.8), widened by
the smallest share of its span (0.1 to 2) that flags at most 10 % of those cases when each is judged
by the others' ranges, is written into the bundle's model.json under "quality"; the weights and their
sha256 stay as they are. From then on a result outside a range is written but flagged as unsure.
Calibrate on validation data only, never on a test set.

Example:
  pancreasseg phantom val/ --cases 20 --seed 6000 --randomize
  pancreasseg segment val/imagesTr/*_0000.nii.gz -o val-pred/ --model my-model
  pancreasseg calibrate my-model --pred val-pred/ --ref val/
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", help="the model bundle folder to calibrate")
    parser.add_argument("--pred", required=True, metavar="PRED", help="predictions with their quality records")
    parser.add_argument("--ref", required=True, metavar="REF", help="reference labels of the same cases")
    parser.add_argument("--dry-run", action="store_true", help="print the ranges, write nothing")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from PancreasSegLib.errors import InputError
    from PancreasSegLib.evaluation.calibration import calibration_records, flag_counts, store_calibration
    from PancreasSegLib.model.bundle import load_config
    from PancreasSegLib.pipeline.quality import calibrate

    load_config(args.bundle)  # a bad bundle is refused before any work
    records = calibration_records(args.pred, args.ref)
    try:
        calibration = calibrate(records)
    except ValueError as exc:
        raise InputError(str(exc), args.pred) from None
    for name, (lo, hi) in calibration["ranges"].items():
        print(f"{name:20s} {lo:10.4g} .. {hi:<10.4g}")
    counts = flag_counts(records, calibration)
    print(f"{counts['cases']} validation case(s), {calibration['good_cases']} with Dice >= 0.8; "
          f"flagged on them: {counts['flagged']}")
    if not args.dry_run:
        source = f"{Path(args.ref).resolve().name}: {', '.join(r['case_id'] for r in records)}"
        path = store_calibration(args.bundle, calibration, source)
        print(f"wrote the calibration into {path}")
    return 0
