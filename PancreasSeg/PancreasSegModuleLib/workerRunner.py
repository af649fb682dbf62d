"""The process runner of the Logic with a warm worker: ``segment`` goes to one ``pancreasseg worker`` kept alive.

The first segment command starts ``PythonSlicer -m PancreasSegLib worker`` in the background (its own
process group, like :class:`~.processRunner.BackgroundProcess`) and sends the command's arguments as a
JSON request on its stdin; later clicks reuse it, with the model still loaded, so a click pays neither
the imports nor the model loading again. The worker's events for the request (``--progress jsonl``,
tagged with the request's id) are handed on as the command's stdout, and its ``done`` or ``error`` ends
the "command" with the exit status the command line would have had. Cancel sends ``cancel`` (the worker
stops at its next progress step, nothing written, and stays loaded); a worker that does not stop in
time is killed. A crashed worker ends the running request with an error and is started again on the
next click. :meth:`WorkerRunner.close` (scene close, module cleanup) sends ``shutdown`` and makes sure
the process is gone. Other commands (``export``, ``train``) run as one-shot background processes.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from .processRunner import CANCELLED_EXIT_CODE, BackgroundProcess, Scheduler, killProcessTree, pollUntilDone

#: The commands sent to the worker; any other runs as its own process.
WORKER_COMMANDS = ("segment",)


class _Worker:
    """One ``... worker`` process: a stdin to write requests to, a queue of its output lines."""

    def __init__(self, prefix: list[str], env: Mapping[str, str] | None) -> None:
        self.prefix, self.env = prefix, dict(env) if env is not None else None
        kwargs: dict = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:
            kwargs["start_new_session"] = True
        self.proc = subprocess.Popen(prefix + ["worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=self.env, **kwargs)
        self.lines: queue.Queue = queue.Queue()
        self.threads = [threading.Thread(target=self._pump, args=(s, k), daemon=True)
                        for s, k in ((self.proc.stdout, "out"), (self.proc.stderr, "err"))]
        for thread in self.threads:
            thread.start()

    def _pump(self, stream, kind: str) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.put((kind, raw.decode("utf-8", errors="replace")))
        stream.close()

    def matches(self, prefix: list[str], env: Mapping[str, str] | None) -> bool:
        return self.prefix == prefix and self.env == (dict(env) if env is not None else None)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ended(self) -> bool:
        """The process is gone and all its output has been read."""
        return self.proc.poll() is not None and not any(t.is_alive() for t in self.threads)

    def send(self, request: dict) -> bool:
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode("utf-8"))
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError):  # the worker is gone; its end is reported by poll()
            return False


class WorkerRunner:
    """A :class:`~.logicTypes.ProcessRunner` that sends ``segment`` commands to a warm worker.

    Args:
        schedule: ``schedule(milliseconds, function)`` on the GUI thread (``qt.QTimer.singleShot``), or None.
        pollIntervalMs: how often the scheduled poll runs.
        cancelGraceSeconds: how long a cancelled request may take to stop before the worker is killed.
    """

    def __init__(self, schedule: Scheduler | None = None, pollIntervalMs: int = 100,
                 cancelGraceSeconds: float = 10.0) -> None:
        self._schedule, self._pollIntervalMs, self._grace = schedule, pollIntervalMs, cancelGraceSeconds
        self._oneShot = BackgroundProcess(schedule=schedule, pollIntervalMs=pollIntervalMs)
        self._worker: _Worker | None = None
        self._usingWorker = False
        self._requestId: str | None = None
        self._count = 0
        self._callbacks: tuple = (None, None, None)
        self._stderrTail: list[str] = []
        self._cancelled = False
        self._cancelDeadline: float | None = None
        #: Process ids of every worker started (the last one is the current worker).
        self.workerPids: list[int] = []

    # -- the ProcessRunner protocol ----------------------------------------------------------------------

    def start(self, args: Sequence[str], onStdout: Callable[[str], None] | None = None,
              onStderr: Callable[[str], None] | None = None, onFinished: Callable[[int, str], None] | None = None,
              env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
        """Run ``args``: a segment command as a request to the worker (started when needed), else a process.

        Raises:
            RuntimeError: a command is still running.
            OSError: the worker cannot be started.
        """
        if self.isRunning():
            raise RuntimeError("a background command is already running")
        args = list(args)
        split = next((i for i, a in enumerate(args) if i > 0 and a in WORKER_COMMANDS), None)
        if split is None or cwd is not None:
            self._usingWorker = False
            self._oneShot.start(args, onStdout=onStdout, onStderr=onStderr, onFinished=onFinished, env=env, cwd=cwd)
            return
        self._usingWorker = True
        worker = self._ensureWorker(args[:split], env)
        self._count += 1
        self._requestId = f"r{self._count}"
        self._callbacks = (onStdout, onStderr, onFinished)
        self._stderrTail, self._cancelled, self._cancelDeadline = [], False, None
        worker.send({"id": self._requestId, "args": args[split:]})
        if self._schedule is not None:
            self._schedule(self._pollIntervalMs, self._scheduledPoll)

    def isRunning(self) -> bool:
        """True while a command (or a worker request) runs."""
        return self._requestId is not None if self._usingWorker else self._oneShot.isRunning()

    @property
    def cancelled(self) -> bool:
        """True when the current or last command was cancelled."""
        return self._cancelled if self._usingWorker else self._oneShot.cancelled

    @property
    def workerPid(self) -> int | None:
        """Process id of the running worker, None when there is none."""
        return self._worker.proc.pid if self._worker is not None and self._worker.alive() else None

    def cancel(self) -> None:
        """Cancel the running command; the worker keeps its models unless it must be killed."""
        if not self._usingWorker:
            self._oneShot.cancel()
            return
        if self._requestId is None or self._cancelled:
            return
        self._cancelled = True
        self._cancelDeadline = time.monotonic() + self._grace
        if self._worker is None or not self._worker.send({"id": f"{self._requestId}-cancel",
                                                          "args": ["cancel", self._requestId]}):
            self._killWorker()

    def poll(self) -> bool:
        """Deliver pending output; return True while the command runs."""
        if not self._usingWorker:
            return self._oneShot.poll()
        if self._requestId is None:
            return False
        worker = self._worker
        while worker is not None and self._requestId is not None:
            try:
                kind, text = worker.lines.get_nowait()
            except queue.Empty:
                break
            self._handle(kind, text)
        if self._requestId is None:
            return False
        if worker is None or worker.ended():
            code = worker.proc.returncode if worker is not None else None
            self._finish(CANCELLED_EXIT_CODE if self._cancelled else 1,
                         f"The segmentation worker stopped unexpectedly (exit status {code}).")
            return False
        if self._cancelDeadline is not None and time.monotonic() > self._cancelDeadline:
            self._killWorker()
            self._finish(CANCELLED_EXIT_CODE, "")
            return False
        return True

    def wait(self, timeoutSeconds: float | None = None, idle: Callable[[], None] | None = None) -> int:
        """Poll until the command ends; return its exit status (130 when cancelled).

        Raises:
            TimeoutError: still running after ``timeoutSeconds``.
        """
        if not self._usingWorker:
            return self._oneShot.wait(timeoutSeconds=timeoutSeconds, idle=idle)
        pollUntilDone(self.poll, timeoutSeconds, idle)
        return self._lastCode

    def close(self, timeoutSeconds: float = 5.0) -> None:
        """Shut the worker down (``shutdown``, then kill what is left); a running request is cancelled."""
        if self._usingWorker and self._requestId is not None:
            self._finish(CANCELLED_EXIT_CODE, "")
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.send({"args": ["shutdown"]})
        try:
            worker.proc.wait(timeout=timeoutSeconds)
        except subprocess.TimeoutExpired:
            pass
        killProcessTree(worker.proc, graceSeconds=1.0)  # also whatever a launcher left behind

    # -- internals -------------------------------------------------------------------------------------

    _lastCode = 0

    def _ensureWorker(self, prefix: list[str], env: Mapping[str, str] | None) -> _Worker:
        if self._worker is not None and (not self._worker.alive() or not self._worker.matches(prefix, env)):
            self.close()
        if self._worker is None:
            self._worker = _Worker(prefix, env)
            self.workerPids.append(self._worker.proc.pid)
        return self._worker

    def _handle(self, kind: str, text: str) -> None:
        onStdout, onStderr, _ = self._callbacks
        if kind == "err":
            self._stderrTail = (self._stderrTail + [text])[-20:]
            if onStderr is not None:
                onStderr(text)
            return
        try:
            event = json.loads(text)
        except ValueError:
            return
        if not isinstance(event, dict) or event.get("id") != self._requestId:
            return  # the ready line, a cancel's answer, or a line of an earlier request
        if onStdout is not None:
            onStdout(text if text.endswith("\n") else text + "\n")
        if event.get("event") == "done":
            self._finish(0, "")
        elif event.get("event") == "error":
            self._finish(int(event.get("exit", 1) or 1), str(event.get("message", "")))

    def _finish(self, code: int, message: str) -> None:
        _, _, onFinished = self._callbacks
        self._requestId, self._callbacks, self._lastCode = None, (None, None, None), code
        tail = "".join(self._stderrTail) + (message + "\n" if message else "")
        if onFinished is not None:
            onFinished(code, tail)

    def _killWorker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            killProcessTree(worker.proc, graceSeconds=1.0)

    def _scheduledPoll(self) -> None:
        if self.poll() and self._schedule is not None:
            self._schedule(self._pollIntervalMs, self._scheduledPoll)
