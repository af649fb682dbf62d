"""The lifecycle of the Logic's one background job: start, stream, cancel or shut down, end.

A flow (segment, export, fine-tune) prepares its files in a temporary folder (:meth:`JobRunner.tempFolder`),
then hands a :class:`Job` and its command line to :meth:`JobRunner.launch`. From then on the runner owns the
job: it feeds the command's ``--progress jsonl`` events to the callbacks, and at the end it calls
``onCancelled``, ``onError`` with the command's one-line message, or the job's ``finish`` (which brings the
result into the scene) and ``onDone`` with its result; the temporary folder is removed in every case.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .logicTypes import Callbacks, ProcessRunner
from .processRunner import CANCELLED_EXIT_CODE
from .progress import STAGES, JsonLinesParser, ProgressEvent, lastErrorLine


@dataclass
class Job:
    """One background command of the Logic and what its end needs."""

    kind: str
    tempDir: str
    callbacks: Callbacks
    #: ``finish(job) -> result`` after a successful end; raises RuntimeError/ValueError/OSError to fail the job.
    finish: Callable[[Job], Any] | None = None
    context: dict = field(default_factory=dict)
    #: Stage shares of the progress bar for this command's events.
    stages: dict = field(default_factory=lambda: STAGES)
    #: False for a command that prints one JSON summary instead of events (``export --json``).
    readsEvents: bool = True
    #: Rewrites the command's error message for the GUI (e.g. names a checkbox instead of an option).
    explainError: Callable[[str], str] | None = None
    parser: JsonLinesParser = field(default_factory=JsonLinesParser)
    stdout: list[str] = field(default_factory=list)
    done: ProgressEvent | None = None
    error: ProgressEvent | None = None
    #: The bar never goes back (a stage may restart, e.g. when the ROI grows).
    fraction: float = 0.0
    closed: bool = False  # ended by shutdown(): a late end report from the runner is ignored

    @property
    def outputs(self) -> dict:
        """The ``outputs`` of the command's ``done`` event (empty without one)."""
        return (self.done.data.get("outputs") or {}) if self.done is not None else {}


class JobRunner:
    """Runs one :class:`Job` at a time on a :class:`~.logicTypes.ProcessRunner`.

    Args:
        runner: the background process runner.
        environment: ``environment() -> env`` of the command (called at each start).
        tempRoot: where temporary run folders go (system default when None).
    """

    def __init__(self, runner: ProcessRunner, environment: Callable[[], dict[str, str]],
                 tempRoot: str | None = None) -> None:
        self.runner = runner
        self.environment = environment
        self.tempRoot = tempRoot
        self.current: Job | None = None
        self.lastResult: Any = None

    # -- state -----------------------------------------------------------------------------------------

    def isRunning(self) -> bool:
        """True while a job runs."""
        return self.current is not None

    @property
    def runningKind(self) -> str | None:
        """The running job's kind ("segment", "export", "train"), else None."""
        return self.current.kind if self.current is not None else None

    def refuseIfRunning(self) -> None:
        """Raise ValueError while a job runs (one job at a time)."""
        if self.isRunning():
            raise ValueError("A run is already in progress: wait for it or cancel it.")

    # -- start -----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def tempFolder(self, prefix: str) -> Iterator[str]:
        """A new temporary folder for a job, removed again when preparing or launching the job fails."""
        tempDir = tempfile.mkdtemp(prefix=prefix, dir=self.tempRoot)
        try:
            yield tempDir
        except BaseException:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise

    def launch(self, job: Job, args: list[str]) -> None:
        """Start ``args`` as ``job``.

        Raises:
            ValueError: the program cannot be started.
        """
        self.current = job
        try:
            self.runner.start(args, onStdout=lambda text: self._onStdout(job, text),
                              onStderr=lambda text: self._onStderr(job, text),
                              onFinished=lambda code, stderr: self._onFinished(job, code, stderr),
                              env=self.environment())
        except OSError as exc:
            self.current = None
            raise ValueError(f"Cannot start {args[0]}: {exc.strerror or exc}") from None
        except BaseException:
            self.current = None
            raise

    # -- stop ------------------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Kill the running command and every process it started; its end comes through the runner."""
        if self.current is not None:
            self.runner.cancel()

    def shutdown(self, timeoutSeconds: float = 10.0, quiet: bool = False) -> None:
        """End a running job now: kill its process tree, wait for it, remove its temporary files.

        Unlike :meth:`cancel` it does not leave the end to a later timer tick, which may never come once
        the scene or the application goes.

        Args:
            timeoutSeconds: how long to wait for the runner to report the end before cleaning up anyway.
            quiet: drop the job's callbacks first (the widget that would receive them is going away).
        """
        job = self.current
        if job is None:
            return
        if quiet:
            job.callbacks = Callbacks()
        self.runner.cancel()
        with contextlib.suppress(TimeoutError, RuntimeError):
            self.runner.wait(timeoutSeconds=timeoutSeconds)
        if self.current is job:  # the runner did not report the end in time: finish it here
            self.current = None
            job.closed = True
            shutil.rmtree(job.tempDir, ignore_errors=True)
            if job.callbacks.onCancelled is not None:
                job.callbacks.onCancelled()

    def wait(self, idle: Callable[[], None] | None = None, timeoutSeconds: float | None = None) -> Any:
        """Block until the running job ends; return its result.

        Raises:
            RuntimeError: nothing runs, the job failed (with the command's one-line message) or was cancelled.
        """
        if self.current is None:
            raise RuntimeError("Nothing is running.")
        outcome: dict = {}
        callbacks = self.current.callbacks
        previous = (callbacks.onDone, callbacks.onError, callbacks.onCancelled)

        def chain(index: int, key: str) -> Callable[..., None]:
            def call(*args: Any) -> None:
                outcome[key] = args[0] if args else None
                if previous[index] is not None:
                    previous[index](*args)
            return call

        callbacks.onDone, callbacks.onError, callbacks.onCancelled = (
            chain(0, "done"), chain(1, "error"), chain(2, "cancelled"))
        self.runner.wait(timeoutSeconds=timeoutSeconds, idle=idle)
        if "error" in outcome:
            raise RuntimeError(outcome["error"])
        if "cancelled" in outcome:
            raise RuntimeError("Cancelled.")
        return outcome.get("done")

    # -- what the runner reports -----------------------------------------------------------------------

    def _onStdout(self, job: Job, text: str) -> None:
        job.stdout.append(text)
        if not job.readsEvents:
            return
        for event in job.parser.feed(text):
            self._onEvent(job, event)

    @staticmethod
    def _onStderr(job: Job, text: str) -> None:
        line = text.strip()
        if line and job.callbacks.onMessage is not None:
            job.callbacks.onMessage(line)

    @staticmethod
    def _onEvent(job: Job, event: ProgressEvent) -> None:
        if event.kind == "progress" and job.callbacks.onProgress is not None:
            job.fraction = max(job.fraction, event.fractionOf(job.stages))
            job.callbacks.onProgress(job.fraction, event.message or str(event.data.get("stage", "")))
        elif event.kind == "done":
            job.done = event
        elif event.kind == "error":
            job.error = event

    def _onFinished(self, job: Job, exitCode: int, stderr: str) -> None:
        if job.closed:  # shutdown() already ended it and removed its files
            return
        if job.readsEvents:
            for event in job.parser.flush():
                self._onEvent(job, event)
        if self.current is job:
            self.current = None
        try:
            self._report(job, exitCode, stderr)
        finally:
            shutil.rmtree(job.tempDir, ignore_errors=True)

    def _report(self, job: Job, exitCode: int, stderr: str) -> None:
        cb = job.callbacks
        if getattr(self.runner, "cancelled", False) or exitCode == CANCELLED_EXIT_CODE:
            if cb.onCancelled is not None:
                cb.onCancelled()
            return
        if exitCode != 0 or job.error is not None:
            message = (job.error.message if job.error is not None else "") or lastErrorLine(stderr)
            if message and job.explainError is not None:
                message = job.explainError(message)
            self._fail(cb, message or f"The command failed (exit status {exitCode}).")
            return
        try:
            result = job.finish(job) if job.finish is not None else None
        except (RuntimeError, ValueError, OSError) as exc:
            self._fail(cb, str(exc))
            return
        self.lastResult = result
        if cb.onDone is not None:
            cb.onDone(result)

    @staticmethod
    def _fail(callbacks: Callbacks, message: str) -> None:
        if callbacks.onError is not None:
            callbacks.onError(message)
