"""Convert MSD Task07_Pancreas or NIH Pancreas-CT to an nnU-Net v2 raw dataset.

  pancreasseg convert msd Task07_Pancreas Dataset007_MSDPancreas
  pancreasseg convert nih PancreasCT_download Dataset082_NIHPancreas

msd: reads dataset.json's training list (labels 0/1/2 kept; macOS "._" files ignored).
nih: pairs PANCREAS_NNNN DICOM folders with labelNNNN.nii.gz files found anywhere under SRC. The labels'
headers do not reliably match the DICOM geometry: each label is put onto its image grid, using its header
when that places it on soft tissue, otherwise the axis flips that do; a case where no placement is
clearly right is refused (or skipped with --skip-bad). The choice per case is printed and recorded in
dataset.json under "conversion".

Images are copied as .nii.gz, labels written as uint8 on exactly the image grid. Cases already in OUT
are skipped, so an interrupted conversion continues where it stopped (--overwrite redoes them).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", choices=["msd", "nih"], help="dataset kind")
    parser.add_argument("src", metavar="SRC", help="the downloaded dataset folder")
    parser.add_argument("out", metavar="OUT", help="output dataset folder (created; its parent must exist)")
    parser.add_argument("--overwrite", action="store_true", help="convert cases again that already exist in OUT")
    parser.add_argument("--skip-bad", action="store_true",
                        help="nih: skip and list cases that cannot be converted instead of stopping at the first")
    parser.add_argument("--quiet", action="store_true", help="no line per case")


def run(args: argparse.Namespace) -> int:
    from PancreasSegLib.datasets.convert import convert_msd, convert_nih

    log = None if args.quiet else (lambda line: print(line, flush=True))
    if args.source == "msd":
        cases = convert_msd(args.src, args.out, overwrite=args.overwrite, log=log)
    else:
        cases = convert_nih(args.src, args.out, overwrite=args.overwrite, skip_bad=args.skip_bad, log=log)
    print(f"{args.out}: {len(cases)} case(s)")
    return 0
