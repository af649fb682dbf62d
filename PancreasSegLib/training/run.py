"""One training run, from the dataset check to the written bundle.

Order of work: check the dataset (exit 2 naming the first bad case before anything is built), hash
every file, split the cases (seeded, case level), claim the work folder (or find the same run to
resume), preprocess every case once into the caches, train the localizer, then the segmenter, and
write the bundle: weights in fp16, model.json with the data (case IDs and file hashes), the split,
seed, budget, parent bundle and validation metrics, a model card, and the log as ``train.log``.
"""

from __future__ import annotations

import copy
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from PancreasSegLib.errors import InputError
from PancreasSegLib.model.configs import recipe_config, training_settings
from PancreasSegLib.model.distributed import World, process_group
from PancreasSegLib.training.ddp import Follower, agreement, finish_stage, on_main, wrap
from PancreasSegLib.training.loop import Budget, run_loop
from PancreasSegLib.training.workdir import LoopState, WorkFolder, work_folder_for

STAGE_CHOICES = ("localizer", "segmenter", "both")
#: Share of a ``--minutes`` budget the localizer gets when both stages train (the segmenter gets the rest).
LOCALIZER_TIME_SHARE = 1 / 4
#: Learning rate factor when fine-tuning from ``--init``.
FINE_TUNE_LR = 0.3


@dataclass
class TrainOptions:
    """What ``pancreasseg train`` was asked to do (see the command's help for each field)."""

    dataset: Path
    output: Path
    stage: str = "both"
    init: Path | None = None
    device: str = "auto"
    seed: int = 0
    epochs: int | None = None
    minutes: float | None = None
    val_fraction: float = 0.1
    recipe: str = "cpu"
    crop: str | None = None
    segmenter_spacing: float | None = None
    name: str | None = None
    version: str = "1.0.0"
    restart: bool = False
    command: str = ""
    checkpoint_seconds: float = 120.0
    stop_after: int | None = None  # test hook: interrupt each stage's loop after this iteration


def split_cases(case_ids: list[str], seed: int, val_fraction: float) -> tuple[list[str], list[str]]:
    """Seeded case-level split: (train IDs, validation IDs), each sorted; at least one training case.

    >>> split_cases(["a", "b", "c", "d"], 0, 0.25)[1].__len__()
    1
    """
    ids = sorted(case_ids)
    n_val = int(round(len(ids) * val_fraction)) if val_fraction > 0 else 0
    n_val = min(max(n_val, 1 if val_fraction > 0 and len(ids) > 1 else 0), len(ids) - 1)
    order = np.random.default_rng([seed, 0]).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    return sorted(set(ids) - set(val)), val


def train(options: TrainOptions, report=None, log_to_stderr: bool = False) -> Path:
    """Run the training described by ``options`` and write the bundle; returns the bundle folder.

    Under torchrun every rank calls this; they train one model with DistributedDataParallel and rank 0
    alone writes the work folder and the bundle (:mod:`PancreasSegLib.training.ddp`).

    Raises:
        InputError: bad dataset (first offending case named), bad options, or a work folder that
            belongs to a different run.
        Interrupted: a stop was requested; the checkpoint is written and the same call continues.
    """
    import torch

    from PancreasSegLib.model.device import resolve_device

    report = report or (lambda *a: None)
    if options.stage not in STAGE_CHOICES:
        raise InputError(f"--stage must be one of {', '.join(STAGE_CHOICES)}, not {options.stage!r}")
    if not 0 <= options.val_fraction < 1:
        raise InputError(f"--val-fraction must be in [0, 1), got {options.val_fraction}")
    output = Path(options.output)
    if output.exists() and not output.is_dir():
        raise InputError("exists and is not a bundle folder", output)
    if not (output.parent if str(output.parent) else Path(".")).is_dir():
        raise InputError(f"output folder {output.parent} does not exist", output)
    world = World.from_env()
    device = resolve_device(world.device(options.device))
    if world.distributed and device.startswith("cuda"):
        torch.cuda.set_device(device)
    with process_group(world, device):
        return _train(options, world, device, report, log_to_stderr)


def _train(options: TrainOptions, world: World, device: str, report, log_to_stderr: bool) -> Path:
    import torch

    from PancreasSegLib.checks.dataset import check_training_dataset
    from PancreasSegLib.model.bundle import Bundle, sha256_file
    from PancreasSegLib.training.caches import build_caches

    cases = check_training_dataset(options.dataset)  # before anything else: bad data exits 2 here
    parent = Bundle.load(options.init) if options.init else None
    config = copy.deepcopy(parent.config) if parent else recipe_config(options.recipe)
    recipe = config.setdefault("training", {}).setdefault("recipe", recipe_config(options.recipe)["training"]["recipe"])
    if options.crop:
        recipe.setdefault("segmenter", {})["crop"] = options.crop
    if options.segmenter_spacing:
        _set_segmenter_spacing(config["stages"]["segmenter"], float(options.segmenter_spacing))
    stages = ["localizer", "segmenter"] if options.stage == "both" else [options.stage]
    settings = {s: training_settings(config, s) for s in ("localizer", "segmenter")}
    if parent:
        for s in stages:
            settings[s]["lr"] = settings[s]["lr"] * FINE_TUNE_LR

    hashes = {c.case_id: {"image": sha256_file(c.image), "label": sha256_file(c.label)} for c in cases}
    train_ids, val_ids = split_cases(list(hashes), options.seed, options.val_fraction)
    identity = {
        "format": "pancreasseg-train/1", "dataset": Path(options.dataset).resolve().name, "cases": hashes,
        "split": {"train": train_ids, "validation": val_ids}, "seed": options.seed, "stages": stages,
        "recipe": options.recipe if not parent else None, "settings": settings,
        "parent": parent.provenance()["sha256"] if parent else None,
        "segmenter_spacing_mm": config["stages"]["segmenter"]["spacing_xyz_mm"],
    }  # the budget is not part of it: a run may be continued with a longer (or shorter) one
    work = WorkFolder(work_folder_for(Path(options.output)))
    resumed = on_main(world, lambda: work.claim(identity, options.restart))

    def log(line: str) -> None:
        if not world.main:
            return
        stamped = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}"
        work.log(stamped)
        if log_to_stderr:
            print(stamped, flush=True, file=sys.stderr)

    log(("resuming" if resumed else "starting") + f" training of {', '.join(stages)} on {len(train_ids)} training and "
        f"{len(val_ids)} validation case(s) of {identity['dataset']}, seed {options.seed}, device {device}, "
        f"torch {torch.__version__} with {torch.get_num_threads()} thread(s)"
        + (f", {world.size} ranks" if world.distributed else ""))
    files = on_main(world, lambda: build_caches(
        cases, hashes, config, settings, stages, work.cache, options.seed, log,
        lambda done, total: report("preprocess", done / total, f"case {done} of {total}")))
    nets, states = {}, {}
    for stage in stages:
        budget = _budget(options, settings[stage], stage, len(stages))
        nets[stage], states[stage] = _train_stage(stage, config, settings[stage], files[stage], train_ids, val_ids,
                                                  parent, budget, options, device, work, report, log, world)
        if stage == "localizer":
            val_cases = [c for c in cases if c.case_id in val_ids]
            metrics = on_main(world, lambda: _roi_metrics(nets["localizer"], config["stages"]["localizer"],
                                                          val_cases, device))
            states[stage].metrics.update(metrics)
            if metrics:
                log("localizer ROI validation: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return on_main(world, lambda: _write_bundle(options, config, settings, nets, states, parent, hashes, train_ids,
                                                val_ids, device, work, log))


def _set_segmenter_spacing(stage: dict, spacing_mm: float) -> None:
    """Set the segmenter's isotropic spacing; its inference window keeps its field of view in mm."""
    old = np.asarray(stage["spacing_xyz_mm"], dtype=float)[::-1]  # z, y, x like the patch size
    div = int(stage.get("size_divisor", 16))
    stage["patch_size_zyx"] = [int(np.ceil(p * o / spacing_mm / div) * div)
                               for p, o in zip(stage["patch_size_zyx"], old)]
    stage["spacing_xyz_mm"] = [spacing_mm] * 3


def _budget(options: TrainOptions, settings: dict, stage: str, n_stages: int) -> Budget:
    epochs = options.epochs if options.epochs is not None else (None if options.minutes else int(settings["epochs"]))
    seconds = None
    if options.minutes:
        share = 1.0 if n_stages == 1 else (LOCALIZER_TIME_SHARE if stage == "localizer" else 1 - LOCALIZER_TIME_SHARE)
        seconds = options.minutes * 60 * share
    iterations = epochs * int(settings["iterations_per_epoch"]) if epochs is not None else None
    return Budget(iterations, seconds)


def _build(stage: str, config: dict, seed: int):
    import torch

    from PancreasSegLib.model.networks import build_localizer, build_segmenter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return (build_localizer if stage == "localizer" else build_segmenter)(config)


def _train_stage(stage, config, settings, files, train_ids, val_ids, parent, budget, options, device, work, report,
                 log, world):
    import torch

    from PancreasSegLib.training.caches import load_cache
    from PancreasSegLib.training.localizer import LocalizerTrainer
    from PancreasSegLib.training.segmenter import SegmenterTrainer

    model = _build(stage, config, options.seed)
    if parent is not None:
        model.load_state_dict(getattr(parent, stage).state_dict())
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(settings["lr"]),
                                  weight_decay=float(settings["weight_decay"]))
    state = work.load_checkpoint(stage, model, optimizer)
    if state is not None and state.done and budget.exhausted(state):
        log(f"{stage}: already trained ({state.iteration} iterations), nothing to resume")
        return model.eval(), state
    if state is not None:
        state.done = False  # a larger budget than the finished run's continues it
        log(f"{stage}: resuming at iteration {state.iteration} ({state.seconds:.0f} s trained)")
    state = state or LoopState()
    items = load_cache(files)
    train_items = [x for x in items if x["case_id"] in set(train_ids)]
    val_items = [x for x in items if x["case_id"] in set(val_ids)]
    if not train_items:
        raise InputError(f"no training case has a pancreas to train the {stage} on", options.dataset)
    cls = LocalizerTrainer if stage == "localizer" else SegmenterTrainer
    try:
        trainer = cls(model, optimizer, train_items, val_items, config["stages"][stage], settings, options.seed,
                      device, world.rank, wrap(model, world, device))
    except ValueError as exc:
        raise InputError(f"cannot train the {stage}: {exc}", options.dataset) from None
    log(f"{stage}: budget {budget.iterations or 'no'} iteration limit, "
        f"{f'{budget.seconds / 60:.1f} min' if budget.seconds else 'no time limit'}; "
        f"{len(train_items)} training / {len(val_items)} validation case(s)")
    validate = trainer.validate if world.main else dict  # rank 0 validates; the others' history is not kept
    state = run_loop(stage, model, optimizer, trainer.step, validate, budget, settings,
                     work if world.main else Follower(work), state, report, log, options.stop_after,
                     options.checkpoint_seconds, agreement(world, device))
    finish_stage(model, world, stage, log)
    log(f"{stage}: done after {state.iteration} iterations, {state.seconds:.0f} s "
        f"({state.seconds / max(state.iteration, 1):.2f} s/iteration)")
    return model.eval(), state


def _roi_metrics(model, stage_config, val_cases, device) -> dict[str, float]:
    from PancreasSegLib.training.localizer import roi_validation

    return roi_validation(model, stage_config, val_cases, device)


def _write_bundle(options, config, settings, nets, states, parent, hashes, train_ids, val_ids, device, work, log):
    import monai
    import torch

    from PancreasSegLib.io.atomic import write_text_atomic
    from PancreasSegLib.model.bundle import save_bundle
    from PancreasSegLib.training.card import model_card

    output = Path(options.output)
    config = copy.deepcopy(config)
    config["name"] = options.name or output.name
    config["version"] = options.version
    weights = {}
    for stage in ("localizer", "segmenter"):
        if stage in nets:
            weights[stage] = nets[stage]
        elif parent is not None:
            weights[stage] = getattr(parent, stage)
        else:
            weights[stage] = _build(stage, config, options.seed)
    record = {
        "recipe": config.get("training", {}).get("recipe", {}),
        "data": {
            "dataset": Path(options.dataset).resolve().name,
            "cases": [{"case_id": c, "image_sha256": h["image"], "label_sha256": h["label"]}
                      for c, h in sorted(hashes.items())],
        },
        "split": {"train": train_ids, "validation": val_ids, "val_fraction": options.val_fraction},
        "seed": options.seed,
        "budget": {"epochs": options.epochs, "minutes": options.minutes},
        "stages_trained": list(nets),
        "stages_not_trained": {s: ("copied from the parent bundle" if parent is not None else "random weights")
                               for s in ("localizer", "segmenter") if s not in nets},
        "stages": {s: {"iterations": st.iteration, "seconds": round(st.seconds, 1),
                       "cpu_seconds": round(st.cpu_seconds, 1),
                       "seconds_per_iteration": round(st.seconds / max(st.iteration, 1), 3),
                       "settings": settings[s], "history": st.history} for s, st in states.items()},
        "parent": ({"name": parent.name, "version": parent.version, "sha256": parent.provenance()["sha256"]}
                   if parent is not None else None),
        "device": device,
        "software": {"torch": torch.__version__, "monai": monai.__version__, "python": platform.python_version()},
        "command": options.command,
    }
    config["training"] = record
    if parent is not None and config.get("quality"):
        # The parent's "unsure" ranges describe the parent: they stay (better than no flags) but say so,
        # until `pancreasseg calibrate` measures this model on its own validation cases.
        config["quality"]["inherited_from"] = record["parent"]
    config["metrics"] = {**(config.get("metrics") if parent is None else {}),
                         **{f"validation_{s}": st.metrics for s, st in states.items()}}
    log(f"writing the bundle {output}")
    save_bundle(output, config, weights["localizer"], weights["segmenter"], model_card(config), fp16=True)
    write_text_atomic(output / "train.log", work.log_file.read_text(encoding="utf-8"))
    return output
