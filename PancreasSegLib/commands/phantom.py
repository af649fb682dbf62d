"""Make synthetic abdominal CT phantoms with pancreas labels, as an nnU-Net v2 raw dataset.

Case i gets the seed S+i and the ID phantom_<seed> (five digits), so two runs with seed ranges that
do not overlap give disjoint training and test sets. ``--family second`` makes the independently built
test-only family (:mod:`PancreasSegLib.phantoms.second_family`, IDs second_<seed>), never trained on.
dataset.json is rewritten after every finished case, so an interrupted run leaves a valid dataset of
the cases done so far, and running again into the same folder adds (or remakes) cases of its family.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DATASET_NAME = "PancreasPhantom"
FAMILIES = {
    "main": ("PancreasSegLib.phantoms.generator.make_phantom(seed); case phantom_<seed>",
             "Synthetic abdominal CT phantoms made by PancreasSeg, main family (not patient data)."),
    "second": ("PancreasSegLib.phantoms.second_family.make_second_family_phantom(seed); case second_<seed>",
               "Synthetic abdominal CT phantoms made by PancreasSeg, second family: built independently "
               "of the main family, for testing only, never trained on (not patient data)."),
}
DESCRIPTION = FAMILIES["main"][1]
#: The main family's variants: make_phantom keyword, command-line option, the words for dataset.json, and
#: what the option's help adds to them.
VARIANTS = (("randomize", "--randomize", "domain randomisation",
             "(contrast phase, habitus, 0.6-5 mm slices, kernel, noise, artefacts, partial coverage); the same seed "
             "keeps its abdomen"),
            ("vary_anatomy", "--vary-anatomy", "anatomical variety",
             "(a thinner or thicker gland, and a smooth scale, shear and deformation of the whole scan)"),
            ("mesentery", "--mesentery", "mesentery and visceral fat",
             "(thinner bowel, many small loops, mesenteric vessels, fat strands, often a fat rim around the gland)"),
            ("vary_course", "--vary-course", "varied gland course",
             "(body and tail turned, longer or shorter, the tail tip elsewhere; its neighbours follow)"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT",
                        help="dataset folder to create (or an existing phantom dataset to add to)")
    parser.add_argument("--cases", type=int, default=20, metavar="N", help="number of cases (default 20)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the first case (default 0)")
    parser.add_argument("--no-tumor", action="store_true", help="never add a tumour (label 2)")
    parser.add_argument("--size", choices=("default", "small"), default="default",
                        help="default: clinical-like geometry (0.6-1 mm pixels, 80-320 slices); "
                             "small: about 2.5 mm voxels, for quick tests")
    parser.add_argument("--jobs", type=int, default=1, metavar="J", help="cases made in parallel (default 1)")
    for _, option, words, detail in VARIANTS:
        parser.add_argument(option, action="store_true", help=f"main family only: {words} {detail}")
    parser.add_argument("--family", choices=tuple(FAMILIES), default="main",
                        help="main: the training family (default); second: the independently built test-only "
                             "family (cases second_<seed>, pancreas label only), never to be trained on")


def case_id_for(seed: int, family: str = "main") -> str:
    """The case ID of the phantom of ``family`` made from ``seed``."""
    return f"second_{seed:05d}" if family == "second" else f"phantom_{seed:05d}"


def run(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from PancreasSegLib.errors import InputError

    if args.cases < 1:
        raise InputError(f"--cases must be at least 1, got {args.cases}")
    if args.seed < 0:
        raise InputError(f"--seed must not be negative, got {args.seed}")
    if args.jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {args.jobs}")
    out = Path(args.out)
    family = getattr(args, "family", "main")
    variant = {key: bool(getattr(args, key, False)) for key, *_ in VARIANTS}
    if family != "main":
        for key, option, *_ in VARIANTS:
            if variant[key]:
                raise InputError(f"{option} applies to the main family only")
    existing = _prepare_folder(out)
    if existing:
        from PancreasSegLib.datasets.nnunet import read_dataset_json

        there = read_dataset_json(out).get("phantom_family", "main")
        if there != family:
            raise InputError(f"holds phantoms of the {there} family; make the {family} family in another folder", out)
    done = set(existing)
    seeds = list(range(args.seed, args.seed + args.cases))
    tumor = False if args.no_tumor else None
    jobs = min(args.jobs, len(seeds))
    make = partial(make_case, out, tumor=tumor, preset=args.size, family=family, **variant)
    if jobs == 1:
        _collect(out, map(make, seeds), done, family, variant)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            _collect(out, pool.map(make, seeds), done, family, variant)
    print(f"wrote {len(seeds)} cases to {out} ({len(done)} in the dataset)")
    return 0


def _collect(out: Path, results, done: set[str], family: str = "main", variant: dict | None = None) -> None:
    for case_id, summary in results:
        done.add(case_id)
        _write_json(out, done, family, variant)
        print(f"{case_id}: {summary}", file=sys.stderr, flush=True)


def _prepare_folder(out: Path) -> list[str]:
    """Create the dataset folders; return the IDs of the cases already there. Raises InputError when unusable."""
    from PancreasSegLib.datasets.nnunet import list_cases
    from PancreasSegLib.errors import InputError

    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output folder {parent} does not exist", out)
    existing: list[str] = []
    if out.is_dir() and any(out.iterdir()):
        if not (out / "dataset.json").is_file():
            raise InputError("is not empty and holds no dataset.json; choose an empty or new folder", out)
        existing = [c.case_id for c in list_cases(out, require_labels=False)]
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(exist_ok=True)
    return existing


def make_case(out: Path, seed: int, tumor: bool | None, preset: str, family: str = "main",
              randomize: bool = False, vary_anatomy: bool = False, mesentery: bool = False,
              vary_course: bool = False) -> tuple[str, str]:
    """Make and write one phantom; the label goes first, so an image on disk always has its label.

    The second family has no tumour, so ``tumor`` only applies to the main one.
    """
    import numpy as np
    import SimpleITK as sitk

    from PancreasSegLib.datasets.nnunet import image_path, label_path
    from PancreasSegLib.io.volumes import write_labelmap, write_volume
    case_id = case_id_for(seed, family)
    if family == "second":
        from PancreasSegLib.phantoms.second_family import make_second_family_phantom

        image, label = make_second_family_phantom(seed, preset=preset)
    else:
        from PancreasSegLib.phantoms.generator import make_phantom

        image, label = make_phantom(seed, tumor=tumor, preset=preset, randomize=randomize, vary_anatomy=vary_anatomy,
                                    mesentery=mesentery, vary_course=vary_course)
    write_labelmap(label, label_path(out, case_id))
    write_volume(image, image_path(out, case_id))
    counts = np.bincount(sitk.GetArrayViewFromImage(label).ravel(), minlength=3)
    ml = float(np.prod(image.GetSpacing())) / 1000.0
    size = "x".join(str(s) for s in image.GetSize())
    spacing = "x".join(f"{s:.2f}" for s in image.GetSpacing())
    tumour = f", tumor {counts[2] * ml:.1f} mL" if counts[2] else ""
    return case_id, f"{size} voxels of {spacing} mm, pancreas {(counts[1] + counts[2]) * ml:.0f} mL{tumour}"


def _write_json(out: Path, case_ids: set[str], family: str = "main", variant: dict | None = None) -> None:
    from PancreasSegLib import __version__
    from PancreasSegLib.datasets.nnunet import write_dataset_json

    variant = variant or {}
    reference, description = FAMILIES[family]
    chosen = [(key, words) for key, _, words, _ in VARIANTS if variant.get(key)]
    if chosen:
        reference = reference.replace("(seed)", f"(seed, {', '.join(f'{key}=True' for key, _ in chosen)})")
        description = description.replace("main family",
                                          f"main family with {' and '.join(words for _, words in chosen)}")
    write_dataset_json(out, sorted(case_ids), name=DATASET_NAME, description=description,
                       extra={"reference": reference, "phantom_family": family,
                              "randomized": bool(variant.get("randomize")),
                              "anatomy_varied": bool(variant.get("vary_anatomy")),
                              "mesentery": bool(variant.get("mesentery")),
                              "course_varied": bool(variant.get("vary_course")),
                              "licence": "CC0 (synthetic)", "release": __version__})
