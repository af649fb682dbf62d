"""Run a command line in the background, stream its output, kill its whole process tree on cancel.

The module starts ``PythonSlicer -m PancreasSegLib segment ...`` through this runner. ``PythonSlicer`` is
a launcher that starts the real interpreter as a child, so killing only the process we started would leave
the computation running: the command is started in its own process group (POSIX) or process group
console (Windows) and the whole group is terminated.

Output is read by two threads (stdout, stderr) into a queue; :meth:`BackgroundProcess.poll` hands it to
the callbacks on the caller's thread. In Slicer a Qt timer calls ``poll`` (passed in as ``schedule``), so
callbacks run in the GUI thread; without Qt, :meth:`BackgroundProcess.wait` polls until the end.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence

#: Exit status reported when the run was cancelled (the command's own SIGTERM/SIGINT status).
CANCELLED_EXIT_CODE = 130

OutputCallback = Callable[[str], None]
FinishedCallback = Callable[[int, str], None]
Scheduler = Callable[[int, Callable[[], None]], None]


class BackgroundProcess:
    """One background command at a time, with streamed output and tree-wide cancel.

    Args:
        schedule: ``schedule(milliseconds, function)`` calls ``function`` later on the GUI thread
            (in Slicer: ``qt.QTimer.singleShot``). ``None``: the caller drives :meth:`poll` or :meth:`wait`.
        pollIntervalMs: how often the scheduled poll runs.
        terminateGraceSeconds: after SIGTERM, how long the command may take to clean up before SIGKILL.

    >>> runner = BackgroundProcess()
    >>> lines = []
    >>> runner.start([sys.executable, "-c", "print('hi')"], onStdout=lines.append)
    >>> runner.wait()
    0
    >>> lines
    ['hi\\n']
    """

    def __init__(self, schedule: Scheduler | None = None, pollIntervalMs: int = 100,
                 terminateGraceSeconds: float = 3.0) -> None:
        self._schedule = schedule
        self._pollIntervalMs = pollIntervalMs
        self._grace = terminateGraceSeconds
        self._proc: subprocess.Popen | None = None
        self._queue: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._stderrTail: list[str] = []
        self._onStdout: OutputCallback | None = None
        self._onStderr: OutputCallback | None = None
        self._onFinished: FinishedCallback | None = None
        self._cancelled = False
        self._finishedCode: int | None = None

    # -- public API (the ProcessRunner protocol of the Logic) ------------------------------------------

    def start(self, args: Sequence[str], onStdout: OutputCallback | None = None,
              onStderr: OutputCallback | None = None, onFinished: FinishedCallback | None = None,
              env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
        """Start ``args``; output lines go to the callbacks, ``onFinished(exitCode, stderrTail)`` at the end.

        Raises:
            RuntimeError: a command is still running.
            OSError: the program cannot be started (not found, not executable).
        """
        if self.isRunning():
            raise RuntimeError("a background command is already running")
        self._reset()
        self._onStdout, self._onStderr, self._onFinished = onStdout, onStderr, onFinished
        kwargs: dict = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:
            kwargs["start_new_session"] = True  # own process group: killpg reaches the launcher's children
        self._proc = subprocess.Popen(
            list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None, cwd=cwd, **kwargs,
        )
        for stream, kind in ((self._proc.stdout, "out"), (self._proc.stderr, "err")):
            thread = threading.Thread(target=self._pump, args=(stream, kind), daemon=True)
            thread.start()
            self._threads.append(thread)
        if self._schedule is not None:
            self._schedule(self._pollIntervalMs, self._scheduledPoll)

    def isRunning(self) -> bool:
        """True from :meth:`start` until the finished callback has been called."""
        return self._proc is not None and self._finishedCode is None

    @property
    def pid(self) -> int | None:
        """Process id of the started command (the launcher, in Slicer)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def cancelled(self) -> bool:
        """True when the current or last run was cancelled."""
        return self._cancelled

    def cancel(self) -> None:
        """Stop the command and every process it started; the finished callback still comes, with 130."""
        if not self.isRunning():
            return
        self._cancelled = True
        killProcessTree(self._proc, self._grace)

    def poll(self) -> bool:
        """Deliver pending output to the callbacks; return True while the command is still running."""
        if self._proc is None or self._finishedCode is not None:
            return False
        self._drain()
        if self._proc.poll() is None or any(t.is_alive() for t in self._threads):
            return True
        for thread in self._threads:
            thread.join()
        self._drain()
        code = CANCELLED_EXIT_CODE if self._cancelled else int(self._proc.returncode)
        self._finishedCode = code
        if self._onFinished is not None:
            self._onFinished(code, "".join(self._stderrTail))
        return False

    def wait(self, timeoutSeconds: float | None = None, idle: Callable[[], None] | None = None) -> int:
        """Poll until the command ends; return its exit status (130 when cancelled).

        Args:
            timeoutSeconds: give up waiting (the command keeps running) and raise ``TimeoutError``.
            idle: called between polls (in Slicer: ``slicer.app.processEvents``).
        """
        pollUntilDone(self.poll, timeoutSeconds, idle)
        if self._finishedCode is None:
            raise RuntimeError("no command was started")
        return self._finishedCode

    # -- internals ---------------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._queue = queue.Queue()
        self._threads = []
        self._stderrTail = []
        self._cancelled = False
        self._finishedCode = None

    def _pump(self, stream, kind: str) -> None:
        for raw in iter(stream.readline, b""):
            self._queue.put((kind, raw.decode("utf-8", errors="replace")))
        stream.close()

    def _drain(self) -> None:
        while True:
            try:
                kind, text = self._queue.get_nowait()
            except queue.Empty:
                return
            if kind == "out":
                if self._onStdout is not None:
                    self._onStdout(text)
            else:
                # Keep the last lines only: the one-line error message is at the end.
                self._stderrTail = (self._stderrTail + [text])[-20:]
                if self._onStderr is not None:
                    self._onStderr(text)

    def _scheduledPoll(self) -> None:
        if self.poll() and self._schedule is not None:
            self._schedule(self._pollIntervalMs, self._scheduledPoll)


def pollUntilDone(poll: Callable[[], bool], timeoutSeconds: float | None = None,
                  idle: Callable[[], None] | None = None) -> None:
    """Call ``poll()`` until it answers False, ``idle()`` between calls; ``TimeoutError`` after ``timeoutSeconds``."""
    deadline = None if timeoutSeconds is None else time.monotonic() + timeoutSeconds
    while poll():
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the background command is still running")
        if idle is not None:
            idle()
        time.sleep(0.02)


def killProcessTree(proc: subprocess.Popen, graceSeconds: float = 3.0) -> None:
    """Terminate ``proc`` and all its descendants: SIGTERM to its process group, SIGKILL after the grace.

    SIGTERM first lets the command remove its temporary files (it promises no partial output); the
    SIGKILL afterwards makes sure nothing survives a command that ignores it.
    """
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False)
        return
    try:
        group = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    _signalGroup(group, signal.SIGTERM)
    deadline = time.monotonic() + graceSeconds
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _groupAlive(group):
            return
        time.sleep(0.05)
    _signalGroup(group, signal.SIGKILL)
    proc.wait()


def _signalGroup(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _groupAlive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if __name__ == "__main__" and sys.argv[1:] == ["--selftest"]:  # pragma: no cover
    import doctest

    doctest.testmod()
