"""Write a PNG of a CT volume: axial, coronal and sagittal slices with an optional label overlay.

Slices pass through the label's centroid (or the volume's centre), shown in a CT window
(default width 400, level 40) with the patient's orientation marked and true physical aspect.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="CT volume (NIfTI, NRRD, MHA or a DICOM folder)")
    parser.add_argument("--label", metavar="LABEL", help="label map to overlay (any grid in the same space)")
    parser.add_argument("-o", "--output", required=True, metavar="PNG", help="picture to write (.png)")
    parser.add_argument("--title", help="text above the picture (default: size, spacing, orientation)")
    parser.add_argument("--window", nargs=2, type=float, default=(400.0, 40.0), metavar=("WIDTH", "LEVEL"),
                        help="CT window in HU (default 400 40)")
    parser.add_argument("--series", metavar="UID", help="DICOM series to read when the folder holds several")


def run(args: argparse.Namespace) -> int:
    from PancreasSegLib.errors import InputError
    from PancreasSegLib.io.atomic import check_output_folder
    from PancreasSegLib.io.volumes import read_ct, read_volume
    from PancreasSegLib.outputs.montage import write_montage

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise InputError("the picture must be a .png file", out)
    check_output_folder(out)
    if args.window[0] <= 0:
        raise InputError(f"--window width must be positive, got {args.window[0]:g}")
    image = read_ct(args.image, args.series)
    label = read_volume(args.label) if args.label else None
    write_montage(image, label, out, title=args.title, window=tuple(args.window))
    print(out)
    return 0
