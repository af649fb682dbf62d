"""Run the whole job on a synthetic abdominal CT: make it, picture it, and segment it when a model is installed.

Writes into OUT_DIR: phantom.nii.gz (the CT), phantom_label.nii.gz (its true label), phantom.png
(the picture) and, when the default model bundle is present, segmentation.nii.gz and its picture.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: The model bundle the demo segments with, when it exists.
DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "Resources" / "Models" / "pancreas-phantom-v1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder for the demo's files (created if missing)")
    parser.add_argument("--seed", type=int, default=2021, help="phantom seed (default 2021)")
    parser.add_argument("--size", choices=("default", "small"), default="default", help="phantom geometry preset")


def run(args: argparse.Namespace) -> int:
    from PancreasSegLib.errors import InputError
    from PancreasSegLib.montage import write_montage
    from PancreasSegLib.phantom import make_phantom
    from PancreasSegLib.volume_io import write_labelmap, write_volume

    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", out)
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputError(f"output folder {out.parent} does not exist", out)
    out.mkdir(exist_ok=True)
    image, label = make_phantom(args.seed, preset=args.size)
    image_file = write_volume(image, out / "phantom.nii.gz")
    written = [image_file, write_labelmap(label, out / "phantom_label.nii.gz")]
    written.append(write_montage(image, label, out / "phantom.png",
                                 title=f"synthetic phantom, seed {args.seed}: true label"))
    if (DEFAULT_BUNDLE / "model.json").is_file():
        written += segment(image_file, out)
    else:
        print(f"no model bundle at {DEFAULT_BUNDLE}: skipped segmentation")
    for path in written:
        print(path)
    return 0


def segment(image_file: Path, out: Path) -> list[Path]:
    """Segment the phantom with the default bundle and picture the result."""
    from PancreasSegLib.montage import write_montage
    from PancreasSegLib.predictor import Predictor
    from PancreasSegLib.volume_io import read_ct, read_volume

    seg_file = out / "segmentation.nii.gz"
    Predictor.from_bundle(DEFAULT_BUNDLE).predict_file(image_file, seg_file)
    picture = write_montage(read_ct(image_file), read_volume(seg_file), out / "segmentation.png",
                            title="synthetic phantom: model segmentation")
    return [seg_file, picture]
