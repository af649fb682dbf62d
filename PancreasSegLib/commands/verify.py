"""Check the integrity of a curated (nnU-Net v2 raw) dataset folder; exit 2 listing every problem.

Checks dataset.json (keys, numTraining, training list, status summary), that every image has its label
and provenance, grids match, label values are declared, files are readable, provenance matches the files
and history entries are complete. An export interrupted by a crash is first finished or undone (under the
dataset lock), as the next export would do; --no-recover only reads.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="the dataset folder")
    parser.add_argument("--no-recover", action="store_true",
                        help="write nothing: report an interrupted export instead of finishing it")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from PancreasSegLib.curation.verify import verify_dataset

    result = verify_dataset(args.dataset, recover=not args.no_recover)
    if args.json:
        print(json.dumps(asdict(result) | {"ok": result.ok}))
    elif result.ok:
        for message in result.recovered:
            print(f"{args.dataset}: recovered: {message}")
        print(result.summary())
    else:
        print(f"{args.dataset}: {len(result.problems)} problem(s)")
        for message in result.recovered:
            print(f"recovered: {message}")
        for problem in result.problems:
            print(problem)
    return 0 if result.ok else 2
