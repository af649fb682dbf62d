"""Train the localizer, the segmenter or both into a model bundle (resumable; --init fine-tunes).

DATASET is an nnU-Net v2 raw dataset (dataset.json, imagesTr, labelsTr), e.g. one made by
`pancreasseg phantom` or `pancreasseg export`. Caches and checkpoints go into BUNDLE.work/ beside
the bundle; after Ctrl-C or a kill, the same command continues from the last checkpoint. The bundle
(model.json, weights, MODEL_CARD.md, train.log) is written only when training is complete.

Under torchrun the ranks train one model with DistributedDataParallel (gloo on the CPU, NCCL on
GPUs); rank 0 alone reports and writes the work folder and the bundle:

    torchrun --nproc-per-node 2 -m PancreasSegLib train DATASET -o BUNDLE
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", help="nnU-Net v2 raw dataset folder")
    parser.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="bundle folder to write")
    parser.add_argument("--stage", choices=("localizer", "segmenter", "both"), default="both",
                        help="what to train (default both); an untrained stage comes from --init, else is random")
    parser.add_argument("--init", metavar="BUNDLE", help="fine-tune from this bundle (its configuration and weights)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initial weights and sampling")
    parser.add_argument("--epochs", type=int, metavar="N", help="epochs per stage (default: the recipe's)")
    parser.add_argument("--minutes", type=float, metavar="M",
                        help="wall-time budget (both stages: 1/4 localizer, 3/4 segmenter); with --epochs, "
                             "whichever ends first")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of cases held out (default 0.1)")
    parser.add_argument("--recipe", choices=("cpu", "tiny"), default="cpu",
                        help="network sizes and training settings of a fresh model (default cpu)")
    parser.add_argument("--crop", choices=("roi", "whole"),
                        help="segmenter training crops: around the label like phase 1's ROI (default), or whole "
                             "volumes (single-stage baseline)")
    parser.add_argument("--segmenter-spacing", type=float, metavar="MM",
                        help="isotropic voxel size of the segmenter in mm (default: the recipe's, or the --init "
                             "bundle's; changing it under --init fine-tunes the same network at a new resolution)")
    parser.add_argument("--name", help="model name in model.json (default: the bundle folder's name)")
    parser.add_argument("--version", default="1.0.0", help="model version (default 1.0.0)")
    parser.add_argument("--threads", type=int, metavar="T", help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--restart", action="store_true",
                        help="discard the checkpoints of an earlier run and start over")
    parser.add_argument("--progress", choices=("bar", "jsonl", "none"), default="bar",
                        help="progress on stderr (bar) or as JSON lines on stdout (jsonl)")


def command_line(args: argparse.Namespace) -> str:
    """The command that repeats this run (for the model card), rebuilt from the parsed options."""
    parts = ["pancreasseg", "train", args.dataset, "-o", args.output, "--stage", args.stage, "--seed", str(args.seed),
             "--recipe", args.recipe, "--val-fraction", f"{args.val_fraction:g}"]
    for option in ("init", "epochs", "minutes", "crop", "segmenter_spacing", "name", "threads"):
        value = getattr(args, option)
        if value is not None:
            parts += [f"--{option.replace('_', '-')}", f"{value:g}" if isinstance(value, float) else str(value)]
    if args.version != "1.0.0":
        parts += ["--version", args.version]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    import torch

    from PancreasSegLib.errors import InputError
    from PancreasSegLib.model.distributed import World
    from PancreasSegLib.progress import Reporter, make_reporter
    from PancreasSegLib.training.loop import Interrupted
    from PancreasSegLib.training.run import TrainOptions, train

    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {args.epochs}")
    if args.segmenter_spacing is not None and not 0.3 <= args.segmenter_spacing <= 8:
        raise InputError(f"--segmenter-spacing must be between 0.3 and 8 mm, got {args.segmenter_spacing}")
    if args.minutes is not None and args.minutes <= 0:
        raise InputError(f"--minutes must be positive, got {args.minutes}")
    world = World.from_env()
    if args.threads:
        torch.set_num_threads(args.threads)
    elif world.distributed:  # torchrun sets OMP_NUM_THREADS=1 for every rank; share the node's cores out instead
        torch.set_num_threads(world.cpu_threads())
    reporter = make_reporter(args.progress) if world.main else Reporter()  # rank 0 alone reports
    options = TrainOptions(
        dataset=Path(args.dataset), output=Path(args.output), stage=args.stage,
        init=Path(args.init) if args.init else None, device=args.device, seed=args.seed, epochs=args.epochs,
        minutes=args.minutes, val_fraction=args.val_fraction, recipe=args.recipe, crop=args.crop,
        segmenter_spacing=args.segmenter_spacing, name=args.name,
        version=args.version, restart=args.restart,
        command=command_line(args),
    )
    started = time.perf_counter()
    try:
        bundle = train(options, reporter, log_to_stderr=args.progress == "none")
    except Interrupted as exc:
        reporter.error(str(exc))
        if world.main:
            print(f"\npancreasseg train: {exc}", file=sys.stderr)
        return 130
    reporter.done({"bundle": str(bundle)}, seconds=time.perf_counter() - started)
    return 0
