"""Running under torchrun: which rank this process is, its device and threads, and talking to the other ranks.

torchrun (``torch.distributed.run``) starts one process per rank and tells each who it is through the
environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``, with ``MASTER_ADDR`` and
``MASTER_PORT`` for the rendezvous, on one machine or many. Without them a process is rank 0 of 1 and
nothing here talks to anyone.

>>> World.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}).shard("abcde")
['b', 'd']
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from PancreasSegLib.errors import InputError

T = TypeVar("T")
#: How long a rank waits for the others at a collective: a rank with a shorter shard waits at the gather.
TIMEOUT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (rank 0 of 1 when not under torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> World:
        """Read torchrun's variables; missing ones mean a single process.

        Raises:
            InputError: a variable is not a number, or the rank lies outside the world.
        """
        env = os.environ if env is None else env
        try:
            size = int(env.get("WORLD_SIZE", "1"))
            rank = int(env.get("RANK", "0"))
            local_rank = int(env.get("LOCAL_RANK", str(rank)))
            local_size = int(env.get("LOCAL_WORLD_SIZE", str(size)))
        except ValueError:
            raise InputError("RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be whole numbers") from None
        if size < 1 or not 0 <= rank < size or not 0 <= local_rank < max(1, local_size):
            raise InputError(f"rank {rank} (local {local_rank}) does not fit a world of {size}")
        return cls(rank, size, local_rank, max(1, local_size))

    @property
    def distributed(self) -> bool:
        """More than one rank."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that prints summaries and writes checkpoints."""
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: every ``size``-th one from position ``rank``, so shares differ by
        at most one item and together cover every item exactly once."""
        return list(items)[self.rank :: self.size]

    def device(self, device: str = "auto") -> str:
        """The device for this rank: ``cuda:LOCAL_RANK`` when CUDA is asked for (or ``auto`` and present)."""
        import torch

        if self.distributed and device in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return device

    def cpu_threads(self, cpus: int | None = None) -> int:
        """Intra-op threads for one rank on the CPU: the machine's cores shared among this node's ranks."""
        if cpus is None:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cpus // self.local_size)


def backend(device: str) -> str:
    """NCCL for CUDA devices, gloo otherwise."""
    return "nccl" if device.startswith("cuda") else "gloo"


@contextlib.contextmanager
def process_group(world: World, device: str = "cpu") -> Iterator[None]:
    """Join the other ranks for the block (nothing to do for a single process)."""
    import torch.distributed as dist

    if not world.distributed or dist.is_initialized():
        yield
        return
    dist.init_process_group(backend(device), timeout=TIMEOUT, rank=world.rank, world_size=world.size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def gather(obj: Any, world: World) -> list[Any] | None:
    """Every rank's ``obj`` (picklable, small) on rank 0, in rank order; None on the other ranks."""
    if not world.distributed:
        return [obj]
    import torch.distributed as dist

    gathered: list[Any] | None = [None] * world.size if world.main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered
