"""Segment the pancreas in CT volumes (two-phase: Mask R-CNN localizer, then 3D U-Net on the ROI).

INPUT is a CT file (.nii.gz, .nii, .nrrd, .mha) or a folder holding one DICOM series. With one INPUT,
OUT is the output file (.seg.nrrd, .nii.gz or .nrrd); with several, OUT is an existing folder and
each result is named after its input. The label map has exactly the input's grid. Every file is
written atomically at the end; a cancelled run (Ctrl-C, SIGTERM: exit 130) leaves no partial file.

Inputs are checked before any work: voxel spacing, direction matrix, NaN/inf voxels, a field of view
large enough for a pancreas, intensities in Hounsfield units (--force: only warn), and the size against
a voxel budget (--max-voxels, $PANCREASSEG_MAX_VOXELS).

With several inputs the next one is read and the last result written while the model computes
(PANCREASSEG_OVERLAP=0: one after the other). Under torchrun (`torchrun --nproc-per-node N -m
PancreasSegLib segment IN... -o OUT/`) the inputs are shared out by rank, each rank on cuda:LOCAL_RANK
when there are GPUs, and rank 0 prints the summary.

Exit status: 0 done, 2 bad input or no pancreas found (unless --allow-empty), 1 internal error.

examples:
  pancreasseg segment ct.nii.gz -o pancreas.seg.nrrd --roi-out roi.json --snapshot qa.png
  pancreasseg segment scans/*.nii.gz -o results/ --progress jsonl
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PancreasSegLib.constants import DEFAULT_MODEL_NAME, DEVICES, default_model

_FOLDER_FORMATS = (".nii.gz", ".seg.nrrd", ".nrrd")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="CT file or DICOM series folder")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output label file (.seg.nrrd, .nii.gz, .nrrd), or a folder for several inputs")
    parser.add_argument("--model", metavar="BUNDLE_DIR", default=None,
                        help=f"model bundle folder (default: $PANCREASSEG_MODEL or the bundled {DEFAULT_MODEL_NAME})")
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="auto: CUDA, then MPS, then CPU (default: auto)")
    parser.add_argument("--series", metavar="UID", help="SeriesInstanceUID when a DICOM folder holds several series")
    parser.add_argument("--roi-out", metavar="ROI.json", help="write the segmented ROI (LPS box) as JSON")
    parser.add_argument("--roi", metavar="ROI.json", help="segment this ROI and skip phase 1 (the localizer)")
    parser.add_argument("--margin-mm", type=float, default=None,
                        help="margin around phase 1's detections (default: the model's, 20 mm)")
    parser.add_argument("--progress", default="bar", choices=("bar", "jsonl", "none"),
                        help="bar on stderr for people, JSON lines on stdout for programs (default: bar)")
    parser.add_argument("--allow-empty", action="store_true",
                        help="write an empty label map instead of failing when no pancreas is found")
    parser.add_argument("--probabilities", metavar="PROB.nii.gz",
                        help="also write the pancreas probability (float32, input grid)")
    parser.add_argument("--surface", metavar="SURFACE.stl|.vtp", help="also write the smoothed surface mesh")
    parser.add_argument("--snapshot", metavar="QA.png", help="also write a montage with the result overlaid")
    parser.add_argument("--phase2-only", action="store_true",
                        help="single-stage baseline: the segmenter over the whole volume, no localizer")
    parser.add_argument("--force", action="store_true",
                        help="segment even when the intensities do not look like Hounsfield units (only warn)")
    parser.add_argument("--max-voxels", type=int, default=None, metavar="N",
                        help="refuse volumes with more voxels than this, before reading them "
                             "(default: $PANCREASSEG_MAX_VOXELS or 1024*1024*1000)")
    parser.add_argument("--format", default=".nii.gz", choices=_FOLDER_FORMATS,
                        help="file type of the results when OUT is a folder (default: .nii.gz)")


def run(args: argparse.Namespace) -> int:
    from PancreasSegLib.progress import cancel_on_signals, make_reporter

    reporter = make_reporter(args.progress)
    try:
        with cancel_on_signals():
            return _run(args, reporter)
    except BaseException as exc:
        from PancreasSegLib.errors import Cancelled, InputError

        if isinstance(exc, InputError):
            reporter.error(str(exc))
        elif isinstance(exc, (Cancelled, KeyboardInterrupt)):
            reporter.error("cancelled, nothing written")
        elif isinstance(exc, Exception):
            reporter.error(f"internal error: {type(exc).__name__}: {exc}")
        raise


def _run(args: argparse.Namespace, reporter, load_predictor: Callable[[Path, str], Any] | None = None) -> int:
    """Segment every input of ``args``; ``load_predictor(bundle, device)`` (the worker's cache) loads the model."""
    from PancreasSegLib.model import light_imports

    light_imports.enable()  # this process is ours: only the parts of MONAI and torchvision that inference uses
    from PancreasSegLib.checks.ct import max_voxels
    from PancreasSegLib.errors import InputError

    plan = _plan(args)
    args.max_voxels = max_voxels(args.max_voxels)
    roi = None
    if args.roi:
        from PancreasSegLib.pipeline.roi import read_roi

        roi = read_roi(args.roi)
    if args.roi and args.phase2_only:
        raise InputError("--roi and --phase2-only exclude each other")
    from PancreasSegLib.model.distributed import World
    from PancreasSegLib.pipeline.predictor import Predictor

    world = World.from_env()
    if world.distributed:
        from PancreasSegLib.commands.segment_sharded import run_sharded

        return run_sharded(args, reporter, plan, world, lambda predictor, pairs, rep, into: segment_all(
            predictor, pairs, args, roi, rep, len(plan) > 1, into), report_done)
    model = Path(args.model) if args.model else default_model()
    predictor = (load_predictor or Predictor.from_bundle)(model, args.device)
    started = time.perf_counter()
    results = segment_all(predictor, plan, args, roi, reporter, several=len(plan) > 1)
    report_done(reporter, [r for _, r in results], time.perf_counter() - started, predictor.describe(),
                several=len(plan) > 1)
    return 0


def segment_all(predictor, plan: list[tuple[Path, Path]], args: argparse.Namespace, roi, reporter,
                several: bool, into: list | None = None) -> list[tuple[int, tuple[dict[str, str], dict[str, Any]]]]:
    """Segment ``plan`` in order, reading the next input and writing the last result while one computes.

    Returns ``(position in plan, (outputs, info))`` per case written (also appended to ``into`` as they
    come, so a caller still has them when a later case fails); a ``case`` event follows each when ``several``.
    """
    from PancreasSegLib.pipeline.batch import BatchCase, BatchRunner
    from PancreasSegLib.pipeline.quality import QUALITY_SUFFIX

    cases = [BatchCase(source, target,
                       read={"series": args.series, "force": args.force, "max_voxels": args.max_voxels},
                       compute={"roi": roi, "allow_empty": args.allow_empty, "margin_mm": args.margin_mm,
                                "phase2_only": args.phase2_only},
                       write={"roi_out": args.roi_out, "probabilities_out": args.probabilities,
                              "surface_out": args.surface, "snapshot_out": args.snapshot,
                              "quality_out": f"{target}{QUALITY_SUFFIX}"})
             for source, target in plan]
    results: list[tuple[int, tuple[dict[str, str], dict[str, Any]]]] = [] if into is None else into

    def on_case(index: int, prediction) -> None:
        outputs, info = prediction.outputs, _info(prediction)
        if prediction.warnings:
            print(f"pancreasseg segment: warning: {plan[index][0].name}: {'; '.join(prediction.warnings)}",
                  file=sys.stderr, flush=True)
        results.append((index, (outputs, info)))
        if several:
            reporter.event("case", input=str(plan[index][0]), outputs=outputs, **info)

    overlap = len(cases) > 1 and os.environ.get("PANCREASSEG_OVERLAP", "1") != "0"
    BatchRunner(predictor, overlap=overlap).run(cases, reporter, lambda text: _warn(reporter, text), on_case)
    return results


def report_done(reporter, results: list[tuple[dict[str, str], dict[str, Any]]], seconds: float,
                model: dict[str, Any], several: bool, **extra: Any) -> None:
    """The ``done`` event: one case's outputs and ROI, or for several each output kind as a list."""
    if not several:
        outputs, info = results[0]
        info = dict(info)
        reporter.done(outputs, info.pop("roi"), seconds, **info, model=model, **extra)
        return
    merged: dict[str, list] = {}
    for outputs, _ in results:
        for key, value in outputs.items():
            merged.setdefault(key, []).append(value)
    warnings = [w for _, info in results for w in info.get("warnings", [])]
    reporter.done(merged, [info["roi"] for _, info in results], seconds, model=model, warnings=warnings,
                  unsure=sum(bool(info.get("unsure")) for _, info in results), **extra)


def _plan(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """Check inputs and outputs before any work; return (input, output) pairs."""
    from PancreasSegLib.errors import InputError
    from PancreasSegLib.io.atomic import check_output_folder, full_extension
    from PancreasSegLib.io.volumes import LABEL_EXTENSIONS

    inputs = [Path(p) for p in args.inputs]
    for path in inputs:
        if not path.exists():
            raise InputError("no such file or folder", path)
    out = Path(args.output)
    if len(inputs) > 1 or out.is_dir():
        if not out.is_dir():
            raise InputError("with several inputs OUT must be an existing folder", out)
        if not os.access(out, os.W_OK):
            raise InputError("output folder is not writable", out)
        for option in ("roi_out", "probabilities", "surface", "snapshot"):
            if len(inputs) > 1 and getattr(args, option):
                raise InputError(f"--{option.replace('_', '-')} needs a single INPUT")
        pairs = [(path, out / f"{_case_name(path)}{args.format}") for path in inputs]
        targets = [t for _, t in pairs]
        if len(set(targets)) != len(targets):
            raise InputError("two inputs would write the same output name", out)
    else:
        check_output_folder(out)
        if full_extension(out) not in LABEL_EXTENSIONS:
            raise InputError(f"unsupported label file type {full_extension(out) or '(none)'}; use one of "
                             f"{', '.join(LABEL_EXTENSIONS)}", out)
        pairs = [(inputs[0], out)]
    for option in ("roi_out", "probabilities", "surface", "snapshot"):
        if getattr(args, option):
            check_output_folder(getattr(args, option))
    _check_extension(args.roi_out, (".json",), "--roi-out")
    _check_extension(args.probabilities, (".nii.gz", ".nii", ".nrrd", ".mha"), "--probabilities")
    _check_extension(args.surface, (".stl", ".vtp"), "--surface")
    _check_extension(args.snapshot, (".png",), "--snapshot")
    return pairs


def _check_extension(path: str | None, allowed: tuple[str, ...], option: str) -> None:
    from PancreasSegLib.errors import InputError
    from PancreasSegLib.io.atomic import full_extension

    if path and full_extension(path) not in allowed:
        raise InputError(f"{option} must end in {' or '.join(allowed)}", path)


def _case_name(path: Path) -> str:
    from PancreasSegLib.io.atomic import full_extension

    name = path.name[: len(path.name) - len(full_extension(path))] if path.is_file() else path.name
    # nnU-Net image files carry a channel suffix that their label files do not.
    return name[:-5] if name.endswith("_0000") else name


def _info(prediction) -> dict[str, Any]:
    info = {
        "roi": prediction.roi.to_json() if prediction.roi is not None else None,
        "found": prediction.found,
        "volume_ml": round(prediction.volume_ml(), 3),
        "roi_grown": prediction.grown,
        "timings": {k: round(v, 3) for k, v in prediction.seconds.items()},
        "unsure": prediction.unsure,
        "warnings": list(prediction.warnings),
        "quality": prediction.quality,
    }
    if prediction.surface_volume_ml is not None:
        info["surface_volume_ml"] = round(prediction.surface_volume_ml, 3)
    return info


def _warn(reporter, text: str) -> None:
    print(f"pancreasseg segment: warning: {text}", file=sys.stderr)
    reporter.event("warning", message=text)
