"""``train`` under torchrun: DistributedDataParallel over the ranks, rank 0 alone writing files.

Every rank builds the same network from the same seed and loads the same checkpoint when resuming;
:class:`~torch.nn.parallel.DistributedDataParallel` then averages the gradients of each step, so the
weights stay identical on every rank. Each rank draws its own batches (the trainers' per-iteration
seeds carry the rank), so N ranks see N batches per iteration. Rank 0 alone claims the work folder,
builds the caches, writes the log, the checkpoints and the bundle; the others wait for it and read
what it wrote. After each step the ranks agree on the elapsed time and on whether to stop (the
slowest rank's time, any rank's stop request), so a time budget or Ctrl-C ends every rank at the
same iteration. The process group is gloo on the CPU and NCCL on CUDA
(:func:`PancreasSegLib.model.distributed.backend`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from PancreasSegLib.errors import InputError
from PancreasSegLib.model.distributed import World, gather

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def on_main(world: World, work: Callable[[], T]) -> T:
    """Run ``work`` on rank 0 only and give every rank its result (or rank 0's error, as an InputError).

    Raises:
        InputError: rank 0 failed with one (re-raised as is on rank 0).
    """
    if not world.distributed:
        return work()
    import torch.distributed as dist

    message: list = [None]
    error: BaseException | None = None
    if world.main:
        try:
            message = [("ok", work())]
        except Exception as exc:  # shared so that no rank waits for a result that never comes
            error = exc
            message = [("error", str(exc))]
    dist.broadcast_object_list(message, src=0)
    kind, value = message[0]
    if error is not None:
        raise error
    if kind == "error":
        raise InputError(f"rank 0 stopped: {value}")
    return value


def wrap(model: torch.nn.Module, world: World, device: str) -> torch.nn.Module:
    """``model`` itself for one process, else ``model`` in DistributedDataParallel (it broadcasts rank 0's weights)."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [int(device.split(":")[1])] if device.startswith("cuda:") else None
    return DistributedDataParallel(model, device_ids=ids)  # each forward starts from rank 0's buffers


def agreement(world: World, device: str) -> Callable[[float, bool], tuple[float, bool]] | None:
    """``agree(seconds, stop) -> (max seconds, any stop)`` over the ranks; None for one process."""
    if not world.distributed:
        return None
    import torch
    import torch.distributed as dist

    def agree(seconds: float, stop: bool) -> tuple[float, bool]:
        both = torch.tensor([seconds, float(stop)], dtype=torch.float64, device=device)
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        return float(both[0]), bool(both[1] > 0)

    return agree


def weights_digest(model: torch.nn.Module) -> str:
    """A short SHA-256 of the model's parameters and buffers, in name order (equal weights, equal digest)."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def finish_stage(model: torch.nn.Module, world: World, stage: str, log: Callable[[str], None]) -> None:
    """Give every rank rank 0's buffers (batch-norm statistics, as checkpointed), log every rank's weight
    digest on rank 0, and raise there if the ranks' weights drifted apart."""
    if not world.distributed:
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)
    digests = gather(weights_digest(model), world)
    if digests is None:
        return
    log(f"{stage}: weights on {world.size} ranks: {' '.join(digests)}")
    if len(set(digests)) != 1:
        raise RuntimeError(f"{stage}: the ranks' weights differ after training ({', '.join(digests)})")


class Follower:
    """A rank other than 0's view of the work folder: it reads checkpoints and writes nothing."""

    def __init__(self, work) -> None:
        self._work = work

    def save_checkpoint(self, *args, **kwargs) -> None:
        """Rank 0 writes the checkpoints."""

    def __getattr__(self, name: str):
        return getattr(self._work, name)
