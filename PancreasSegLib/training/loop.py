"""The training loop both phases share: budget, learning-rate schedule, checkpoints, interruption.

The budget is iterations (``epochs x iterations_per_epoch``), wall-clock seconds, or both (whichever
ends first). The learning rate warms up linearly, then decays polynomially (power 0.9, as nnU-Net)
with the fraction of the budget used, so a time budget decays it too and a resumed run picks up the
schedule where it stopped.

SIGINT (Ctrl-C) and SIGTERM finish the current iteration, write a checkpoint and raise
:class:`Interrupted`; running the same command again continues from there. A second Ctrl-C stops
at once (the previous checkpoint stays). A SIGKILL loses at most ``checkpoint_seconds`` of work.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PancreasSegLib.errors import Cancelled
from PancreasSegLib.training.workdir import LoopState, WorkFolder

if TYPE_CHECKING:
    import torch

#: ``step(iteration) -> {"loss": float, ...}``: one optimisation step (the loop sets the learning rate).
Step = Callable[[int], dict[str, float]]
#: ``validate() -> {"dice": float, ...}``: metrics on the validation cases (an empty dict without any).
Validate = Callable[[], dict[str, float]]


class Interrupted(Cancelled):
    """Training stopped by a signal (or a test hook) after writing a checkpoint."""


@dataclass
class Budget:
    """How long a stage trains: ``iterations`` and/or ``seconds`` (whichever is reached first)."""

    iterations: int | None = None
    seconds: float | None = None

    def fraction(self, state: LoopState) -> float:
        parts = [0.0]
        if self.iterations:
            parts.append(state.iteration / self.iterations)
        if self.seconds:
            parts.append(state.seconds / self.seconds)
        return min(1.0, max(parts))

    def exhausted(self, state: LoopState) -> bool:
        return self.fraction(state) >= 1.0


def learning_rate(base: float, iteration: int, fraction: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` iterations, then ``base * (1 - fraction) ** 0.9``."""
    if warmup and iteration < warmup:
        return base * (iteration + 1) / warmup
    return base * max(0.0, 1.0 - fraction) ** 0.9


@contextlib.contextmanager
def stop_requests() -> Iterator[list[str]]:
    """Within the block, SIGINT/SIGTERM only append their name to the yielded list (the loop polls it).

    A second SIGINT raises ``KeyboardInterrupt`` at once. Outside the main thread nothing is installed.
    """
    requests: list[str] = []

    def handler(signum, frame):
        if requests and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requests.append(signal.Signals(signum).name)

    saved = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            saved[sig] = signal.signal(sig, handler)
    except ValueError:
        pass
    try:
        yield requests
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def run_loop(stage: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: Step, validate: Validate,
             budget: Budget, settings: dict[str, Any], work: WorkFolder, state: LoopState,
             report: Callable[[str, float, str], None], log: Callable[[str], None],
             stop_after: int | None = None, checkpoint_seconds: float = 120.0,
             agree: Callable[[float, bool], tuple[float, bool]] | None = None) -> LoopState:
    """Train ``model`` until ``budget`` is used up, checkpointing into ``work``; returns the final state.

    Args:
        stage: "localizer" or "segmenter" (checkpoint and log names).
        model: the network (in train mode while stepping; ``validate`` may switch modes and back).
        optimizer: its optimizer; every param group's ``lr`` is set before each step.
        step: one optimisation step.
        validate: validation metrics, run after every epoch and at the end.
        budget: iterations and/or seconds.
        settings: the stage's training settings (``lr``, ``warmup_iterations``, ``iterations_per_epoch``).
        work: where checkpoints go.
        state: the state to continue from (a fresh :class:`LoopState` or a loaded checkpoint's).
        report: progress callback ``(stage, fraction, message)``.
        log: receives the log lines.
        stop_after: test hook: behave as if interrupted once this iteration is done.
        checkpoint_seconds: at most this much wall time between checkpoints.
        agree: under torchrun, ``agree(seconds, stop) -> (seconds, stop)`` shared by all ranks after each
            step, so that every rank ends at the same iteration (:func:`PancreasSegLib.training.ddp.agreement`).

    Raises:
        Interrupted: after writing a checkpoint, when a stop was requested.
    """
    per_epoch = max(1, int(settings["iterations_per_epoch"]))
    base_lr, warmup = float(settings["lr"]), int(settings.get("warmup_iterations", 0))
    last_checkpoint = time.monotonic()
    val = state.history[-1] if state.history else {}
    losses: list[float] = []
    with stop_requests() as requests:
        while not budget.exhausted(state):
            lr = learning_rate(base_lr, state.iteration, budget.fraction(state), warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            tick, cpu_tick = time.perf_counter(), time.process_time()
            out = step(state.iteration)
            state.iteration += 1
            state.seconds += time.perf_counter() - tick
            state.cpu_seconds += time.process_time() - cpu_tick
            stopping = bool(requests) or (stop_after is not None and state.iteration >= stop_after)
            if agree is not None:
                state.seconds, stopping = agree(state.seconds, stopping)
            if not math.isfinite(out["loss"]):
                raise FloatingPointError(f"{stage}: the loss became {out['loss']} at iteration {state.iteration}")
            losses.append(out["loss"])
            epoch_end = state.iteration % per_epoch == 0
            if epoch_end or budget.exhausted(state):
                val = _validate(validate)
                entry = {"iteration": state.iteration, "loss": round(sum(losses) / len(losses), 5),
                         "lr": lr, "seconds": round(state.seconds, 1), **val}
                state.history.append(entry)
                log(f"{stage} iteration {state.iteration}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in entry.items()
                                                                       if k != "iteration"))
                losses = []
            if agree is None:  # a request that came during validation counts now
                stopping = bool(requests) or (stop_after is not None and state.iteration >= stop_after)
            done = budget.exhausted(state)
            if epoch_end or done or stopping or time.monotonic() - last_checkpoint > checkpoint_seconds:
                state.done = done
                if done:
                    state.metrics = val
                work.save_checkpoint(stage, model, optimizer, state)
                last_checkpoint = time.monotonic()
            message = f"it {state.iteration} loss {out['loss']:.3f}" + (f" dice {val['dice']:.3f}" if "dice" in val
                                                                        else "")
            report(stage, budget.fraction(state), message)
            if stopping and not done:
                why = (requests[0] if requests else f"stop after iteration {stop_after}"
                       if stop_after is not None and state.iteration >= stop_after else "another rank stopped")
                log(f"{stage}: interrupted ({why}) at iteration {state.iteration}; checkpoint written")
                raise Interrupted(f"{stage} training interrupted at iteration {state.iteration}; "
                                  "run the same command again to continue")
    if not state.done:  # budget already used up when resuming
        state.done = True
        work.save_checkpoint(stage, model, optimizer, state)
    return state


def _validate(validate: Validate) -> dict[str, float]:
    return {k: round(float(v), 5) for k, v in validate().items()}


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
