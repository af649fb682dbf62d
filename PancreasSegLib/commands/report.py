"""Summarise a curated dataset: cases, statuses, reviewers and correction effort (text, PNG plot).

The correction effort is what the provenance records per case: Dice between the model's proposal and
the reviewed label, volume change in mL and the number of edited slices.

example:
  pancreasseg report Dataset501_Curated -o effort.png
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="the curated dataset folder")
    parser.add_argument("-o", "--output", metavar="OUT.png", help="also write the plot to this PNG file")
    parser.add_argument("--text", metavar="OUT.txt", help="also write the text report to this file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of text")


def run(args: argparse.Namespace) -> int:
    from PancreasSegLib.curation.report import format_text, summarize, write_report_plot
    from PancreasSegLib.io.atomic import check_output_folder, write_text_atomic

    for path in (args.output, args.text):
        if path:
            check_output_folder(path)
    summary = summarize(args.dataset)
    text = format_text(summary)
    if args.output:
        write_report_plot(summary, args.output)
    if args.text:
        write_text_atomic(args.text, text)
    print(json.dumps(summary) if args.json else text, end="\n" if args.json else "")
    return 0
