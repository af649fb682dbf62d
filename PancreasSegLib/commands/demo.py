"""Run the whole job on a synthetic abdominal CT: make it, picture it, and segment it when a model is installed.

Writes into OUT_DIR: phantom.nii.gz (the CT), phantom_label.nii.gz (its true label), phantom.png
(the picture) and, when the default model bundle is present, pancreas.seg.nrrd (the result, for
3D Slicer), segmentation.png (its picture), and prints Dice and HD95 against the true label.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PancreasSegLib.constants import default_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder for the demo's files (created if missing)")
    parser.add_argument("--seed", type=int, default=2021, help="phantom seed (default 2021)")
    parser.add_argument("--size", choices=("default", "small"), default="default", help="phantom geometry preset")


def run(args: argparse.Namespace) -> int:
    from PancreasSegLib.errors import InputError
    from PancreasSegLib.io.volumes import write_labelmap, write_volume
    from PancreasSegLib.outputs.montage import write_montage
    from PancreasSegLib.phantoms.generator import make_phantom

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
    model = default_model()
    if (model / "model.json").is_file():
        written += segment(model, image_file, label, out)
    else:
        print(f"no model bundle at {model}: skipped segmentation")
    for path in written:
        print(path)
    return 0


def segment(model: Path, image_file: Path, truth, out: Path) -> list[Path]:
    """Segment the phantom with the default bundle, picture the result and compare it with the truth."""
    from PancreasSegLib.evaluation.metrics import compare_labels
    from PancreasSegLib.pipeline.predictor import Predictor

    seg_file, picture = out / "pancreas.seg.nrrd", out / "segmentation.png"
    predictor = Predictor.from_bundle(model)
    prediction = predictor.predict_file(image_file, seg_file, snapshot_out=picture,
                                        snapshot_title=f"synthetic phantom: {predictor.bundle.name} segmentation")
    metrics = compare_labels(prediction.label, truth)[0]["pancreas"]
    seconds = sum(prediction.seconds.values())
    print(f"{predictor.bundle.name} on {predictor.device}: Dice {metrics.dice:.3f}, HD95 {metrics.hd95_mm:.1f} mm "
          f"against the phantom's true label, {seconds:.1f} s")
    return [seg_file, picture]
