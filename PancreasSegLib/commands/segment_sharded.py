"""``segment`` under torchrun: each rank segments its share of the inputs, rank 0 reports for all.

The inputs are shared out round-robin by rank (:meth:`World.shard`), so every output is written by
exactly one rank, staged and renamed into place as on a single process. Each rank runs on
``cuda:LOCAL_RANK`` when there are GPUs, else on the CPU with the node's cores shared among its ranks.
At the end every rank sends rank 0 what it wrote (or its first error) over a gloo process group, and
rank 0 alone prints: the progress of its own cases as they run, then one ``done`` event for all inputs
in input order, or the first failure in rank order (exit 2 or 1). The other ranks print nothing.
A cancelled rank (SIGTERM, which torchrun sends to all on Ctrl-C) leaves at once, with exit 130.

    torchrun --nproc-per-node 2 -m PancreasSegLib segment scans/*.nii.gz -o results/ --progress jsonl
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PancreasSegLib.constants import default_model


def run_sharded(args: argparse.Namespace, reporter, plan: list[tuple[Path, Path]], world,
                segment_cases: Callable, report_done: Callable) -> int:
    """Segment this rank's share of ``plan``; on rank 0 report the whole run. Returns the exit status.

    ``segment_cases(predictor, pairs, reporter, into)`` and ``report_done`` are ``segment``'s own steps.
    """
    import torch

    from PancreasSegLib.errors import Cancelled, InputError
    from PancreasSegLib.model.distributed import gather, process_group
    from PancreasSegLib.pipeline.predictor import Predictor
    from PancreasSegLib.progress import Reporter

    device = world.device(args.device)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    else:  # torchrun sets OMP_NUM_THREADS=1 for every rank; share the node's cores out instead
        torch.set_num_threads(world.cpu_threads())
    own = world.shard(list(enumerate(plan)))
    local = reporter if world.main else Reporter()
    started = time.perf_counter()
    with process_group(world, "cpu"):  # only small Python objects travel: gloo, whatever the device
        written: list = []
        outcome: dict[str, Any] = {"rank": world.rank, "status": 0}
        try:
            predictor = Predictor.from_bundle(Path(args.model) if args.model else default_model(), device)
            outcome["model"] = predictor.describe()
            if own:
                segment_cases(predictor, [pair for _, pair in own], local, written)
        except InputError as exc:
            outcome.update(status=2, error=str(exc))
        except (Cancelled, KeyboardInterrupt):
            raise  # every rank is being stopped: no gather
        except Exception as exc:
            outcome.update(status=1, error=f"internal error: {type(exc).__name__}: {exc}")
        outcome["results"] = [(own[i][0], result) for i, result in written]
        gathered = gather(outcome, world)
    if not world.main:
        return int(outcome["status"])
    return _summarise(gathered, reporter, len(plan), time.perf_counter() - started, world.size, report_done)


def _summarise(gathered: list[dict[str, Any]], reporter, count: int, seconds: float, ranks: int,
               report_done) -> int:
    from PancreasSegLib.errors import InputError

    failed = [o for o in gathered if o["status"]]
    if failed:
        first = failed[0]
        if first["status"] == 2:
            raise InputError(first["error"])
        reporter.error(first["error"])
        print(f"pancreasseg segment: error: {first['error']}", file=sys.stderr)
        return int(first["status"])
    results = sorted((r for o in gathered for r in o["results"]), key=lambda r: r[0])
    if [index for index, _ in results] != list(range(count)):
        raise RuntimeError(f"the ranks wrote {len(results)} of {count} inputs")
    report_done(reporter, [result for _, result in results], seconds, gathered[0]["model"], several=count > 1,
                ranks=ranks)
    return 0
