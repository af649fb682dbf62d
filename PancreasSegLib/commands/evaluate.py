"""Compare predicted label maps with references: Dice, HD95, surface Dice, volume error.

--pred and --ref are two label files, or two folders whose files are matched by case name
(nnU-Net style <case>.nii.gz; predictions may also be <case>.seg.nrrd or .nrrd). A reference folder
that is a dataset root is read from its labelsTr folder. Every reference case needs a prediction.

Writes into the folder OUT: metrics.csv (one row per case and structure), summary.json (mean, median,
std, min, max, n per metric, plus the per-case list) and metrics.png (box plot per metric), and prints
a table. "pancreas" is the whole gland (labels 1 and 2); "tumor" is label 2.

Empty masks: both empty -> Dice 1, HD95 0, surface Dice 1; exactly one empty -> Dice 0, surface Dice 0,
HD95 undefined (null, as MONAI's NaN), counted and left out of the HD95 statistics.

Example:
  pancreasseg evaluate --pred predictions/ --ref Dataset001_Pancreas/labelsTr -o eval/
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, metavar="P", help="predicted label file or folder")
    parser.add_argument("--ref", required=True, metavar="R", help="reference label file or folder")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="folder for metrics.csv, summary.json and metrics.png (created if missing)")
    parser.add_argument("--structures", nargs="+", default=["pancreas"], choices=["pancreas", "tumor"],
                        help="structures to evaluate (default: pancreas)")
    parser.add_argument("--tolerance-mm", type=float, default=2.0, help="surface Dice tolerance in mm (default 2)")
    parser.add_argument("--resample", action="store_true",
                        help="resample predictions on another grid onto the reference grid (nearest neighbour) "
                             "instead of refusing them")
    parser.add_argument("--quiet", action="store_true", help="do not print the table")


def run(args: argparse.Namespace) -> int:
    from PancreasSegLib.errors import InputError
    from PancreasSegLib.evaluation.run import evaluate, print_table, write_outputs

    if not args.tolerance_mm >= 0:
        raise InputError("--tolerance-mm must be >= 0")
    result = evaluate(args.pred, args.ref, structures=tuple(dict.fromkeys(args.structures)),
                      tolerance_mm=args.tolerance_mm, resample=args.resample)
    paths = write_outputs(result, args.output)
    if not args.quiet:
        print_table(result)
        print(f"wrote {paths['csv']}, {paths['json']}, {paths['png']}")
    return 0
