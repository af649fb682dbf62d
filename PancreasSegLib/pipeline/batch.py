"""Many CTs through one loaded predictor, reading and writing in the background while the model computes.

As nnU-Net's predictor does with its preprocessing and export workers: while case *i* computes on the
calling thread, one background thread reads and checks case *i+1* and another writes case *i-1*. What
the caller sees is the same as a plain loop over :meth:`Predictor.predict_file`:

- the progress events, warnings and per-case callbacks arrive in the same order, all on the calling
  thread (what a background step reports waits in a queue until its turn; a reporter that raises to
  cancel, as the worker's does, therefore raises where a plain loop would have raised);
- the first failure in input order is the one raised, after every earlier case is written, and no later
  case's outputs are renamed into place;
- each case's outputs are staged and renamed into place when complete; when the run is cancelled (a
  signal, a reporter raising) a write still in flight is not committed, so nothing partial is left.

>>> runner = BatchRunner(Predictor.from_bundle("Resources/Models/pancreas-phantom-v1"))  # doctest: +SKIP
>>> runner.run([BatchCase("a.nii.gz", "out/a.nii.gz"), BatchCase("b.nii.gz", "out/b.nii.gz")])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from PancreasSegLib.errors import Cancelled
from PancreasSegLib.pipeline.predictor import Prediction, Predictor, ReadCase
from PancreasSegLib.progress import Progress

#: How often (seconds) the calling thread looks at the queue while it waits for a background step.
_POLL_S = 0.05


@dataclass
class BatchCase:
    """One input and its outputs; ``read``, ``compute`` and ``write`` are keyword arguments of the three steps."""

    source: str | os.PathLike
    target: str | os.PathLike
    read: dict[str, Any] = field(default_factory=dict)
    compute: dict[str, Any] = field(default_factory=dict)
    write: dict[str, Any] = field(default_factory=dict)


class _InOrder:
    """Calls posted per case from any thread, run on the calling thread strictly case by case."""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self._queues = [deque() for _ in range(count)]
        self._closed = [False] * count
        self.current = 0

    def post(self, index: int, call: Callable[[], None]) -> None:
        with self._lock:
            self._queues[index].append(call)

    def close(self, index: int) -> None:
        """No more calls come for case ``index``: the next case may speak once these have run."""
        with self._lock:
            self._closed[index] = True

    def pump(self) -> None:
        """Run every call whose turn has come (on the calling thread only)."""
        while self.current < len(self._queues):
            with self._lock:
                queue = self._queues[self.current]
                call = queue.popleft() if queue else None
                finished = call is None and self._closed[self.current]
            if call is not None:
                call()
            elif finished:
                self.current += 1
            else:
                return


def _raiser(exc: BaseException) -> Callable[[], None]:
    def call() -> None:
        raise exc

    return call


class BatchRunner:
    """Segment many CTs with one :class:`Predictor`, overlapping reading and writing with compute.

    Args:
        predictor: the loaded model.
        overlap: False runs the three steps one after the other on the calling thread (a plain loop).
    """

    def __init__(self, predictor: Predictor, overlap: bool = True) -> None:
        self.predictor = predictor
        self.overlap = overlap

    def run(self, cases: Sequence[BatchCase], progress: Progress | None = None,
            warn: Callable[[str], None] | None = None,
            on_case: Callable[[int, Prediction], None] | None = None) -> list[Prediction]:
        """Segment ``cases`` in order.

        Args:
            cases: the inputs and outputs, with the keyword arguments of each step.
            progress: called as ``progress(stage, fraction, message)`` for every case, in order.
            warn: receives each case's warnings (default: printed on stderr).
            on_case: called as ``on_case(index, prediction)`` once a case is written, in order.

        Returns:
            The predictions, in the order of ``cases``.

        Raises:
            InputError, NoPancreasFound, Cancelled: the first case that failed, as :meth:`Predictor.predict_file`.
        """
        report = progress or (lambda *a: None)
        if not self.overlap:
            return [self._plain(i, case, report, warn, on_case) for i, case in enumerate(cases)]
        return _Overlapped(self.predictor, cases, report, warn, on_case).run()

    def _plain(self, index, case, report, warn, on_case) -> Prediction:
        read = self.predictor.read_case(case.source, progress=report, warn=warn, **case.read)
        prediction = self.predictor.compute_case(read, progress=report, **case.compute)
        self.predictor.write_case(read, prediction, case.target, progress=report, **case.write)
        if on_case is not None:
            on_case(index, prediction)
        return prediction


class _Overlapped:
    """One overlapped run: a reader and a writer thread around the calling thread's compute."""

    def __init__(self, predictor, cases, report, warn, on_case) -> None:
        self.predictor, self.cases, self.report, self.warn, self.on_case = predictor, cases, report, warn, on_case
        self.order = _InOrder(len(cases))
        self.results: list[Prediction | None] = [None] * len(cases)
        self.stopped = threading.Event()

    def _poster(self, index: int, call: Callable[..., None]) -> Callable[..., None]:
        return lambda *args: self.order.post(index, lambda: call(*args))

    def _read(self, index: int) -> ReadCase | None:
        case = self.cases[index]
        warn = self._poster(index, self.warn) if self.warn is not None else None
        try:
            return self.predictor.read_case(case.source, progress=self._poster(index, self.report), warn=warn,
                                            **case.read)
        except BaseException as exc:  # raised on the calling thread when this case's turn comes
            self.order.post(index, _raiser(exc))
            self.order.close(index)
            return None

    def _write(self, index: int, read: ReadCase, prediction: Prediction) -> None:
        case = self.cases[index]
        try:
            self.predictor.write_case(read, prediction, case.target, progress=self._poster(index, self.report),
                                      may_commit=lambda: not self.stopped.is_set(), **case.write)
            self.results[index] = prediction
            if self.on_case is not None:
                self.order.post(index, lambda: self.on_case(index, prediction))
        except BaseException as exc:
            self.order.post(index, _raiser(exc))
        finally:
            self.order.close(index)

    def _live(self, index: int) -> Progress:
        """The compute step's reporter: straight through when this case has the floor, else queued."""

        def report(stage: str, fraction: float, message: str = "") -> None:
            self.order.post(index, lambda: self.report(stage, fraction, message))
            self.order.pump()

        return report

    def _wait(self, future: Future) -> Any:
        while True:
            self.order.pump()
            try:
                return future.result(timeout=_POLL_S)
            except TimeoutError:
                continue

    def _finish(self, index: int) -> None:
        """Let every earlier case and this one have their say (raising the first failure among them)."""
        while self.order.current <= index:
            self.order.pump()
            if self.order.current <= index:
                self.stopped.wait(_POLL_S)

    def run(self) -> list[Prediction]:
        reader = ThreadPoolExecutor(1, thread_name_prefix="pancreasseg-read")
        writer = ThreadPoolExecutor(1, thread_name_prefix="pancreasseg-write")
        try:
            reads = {0: reader.submit(self._read, 0)}
            written: Future | None = None
            for index in range(len(self.cases)):
                if index + 1 < len(self.cases):
                    reads[index + 1] = reader.submit(self._read, index + 1)
                read = self._wait(reads.pop(index))
                if read is None:  # its failure is queued behind the earlier cases
                    self._finish(index)
                try:
                    prediction = self.predictor.compute_case(read, progress=self._live(index),
                                                             **self.cases[index].compute)
                except Exception as exc:
                    if isinstance(exc, Cancelled):  # a cancel stops at once; the write in flight is dropped
                        raise
                    self.order.post(index, _raiser(exc))
                    self.order.close(index)
                    self._finish(index)
                if written is not None:  # one write in flight at most, so memory stays at about three cases
                    self._wait(written)
                written = writer.submit(self._write, index, read, prediction)
            self._finish(len(self.cases) - 1)
            return list(self.results)
        finally:
            self.stopped.set()  # after a failure or a cancel, nothing more is renamed into place
            reader.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=True)
