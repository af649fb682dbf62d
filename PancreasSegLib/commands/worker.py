"""Keep models loaded and segment on request: one JSON request a line on stdin, jsonl events on stdout.

Each request is a JSON object with an ``id`` and the ``args`` of a command line::

    {"id": "r1", "args": ["segment", "ct.nii.gz", "-o", "pancreas.seg.nrrd", "--roi-out", "roi.json"]}
    {"id": "r2", "args": ["cancel", "r1"]}
    {"args": ["shutdown"]}

``segment`` takes the same arguments as ``pancreasseg segment`` and answers with the events of
``--progress jsonl`` (whatever ``--progress`` says), each carrying the request's ``id``, and ends with
``done`` or ``error`` for that id; an ``error`` also carries the command line's ``exit`` status (2 bad
input, 1 internal error, 130 cancelled). Requests run one after the other, in order. ``cancel ID...``
cancels queued or running requests (a running one stops at its next progress step, nothing written)
and answers ``done`` itself. ``shutdown`` cancels everything and ends the worker; at the end of stdin
the worker finishes what is queued, then ends. A bad request gets an ``error`` event and the worker
goes on: at once when it is not JSON or names no known command, in its turn when its arguments are
bad. On start the worker prints ``{"event": "ready", ...}``.

The last ``--keep-models`` models used (bundle folder and device) stay loaded; a request for another
loads it. Only the parts of MONAI and torchvision that inference uses are imported.

examples:
  echo '{"id": "r1", "args": ["segment", "ct.nii.gz", "-o", "p.nii.gz"]}' | pancreasseg worker
  pancreasseg worker --model Resources/Models/pancreas-phantom-v1    # load it before the first request
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import queue
import signal
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from PancreasSegLib.constants import DEVICES

_END = object()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-models", type=int, default=2, metavar="N",
                        help="how many models (bundle and device) stay loaded (default: 2)")
    parser.add_argument("--model", metavar="BUNDLE_DIR", help="load this model at start, before the first request")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="the device of --model (default: auto)")


def run(args: argparse.Namespace) -> int:
    from PancreasSegLib.model import light_imports

    light_imports.enable()
    worker = Worker(sys.stdin, sys.stdout, keep_models=max(1, args.keep_models))
    if args.model:
        worker.load(Path(args.model), args.device)
    return worker.serve()


class Worker:
    """The request loop: a reader thread takes requests off ``stdin``, the calling thread runs them.

    Args:
        stdin: where the JSON requests come from, one a line.
        stdout: where the events go, one JSON object a line, flushed at once.
        keep_models: how many loaded models are kept.
    """

    def __init__(self, stdin: TextIO, stdout: TextIO, keep_models: int = 2) -> None:
        self.stdin, self.stdout, self.keep_models = stdin, stdout, keep_models
        self.models: collections.OrderedDict[tuple, Any] = collections.OrderedDict()
        self._requests: queue.Queue = queue.Queue()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self._current: str | None = None
        self._stopping = False  # shutdown: everything still to run or running is cancelled
        self._terminating = False

    # -- output ----------------------------------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        """Write one event line (from either thread)."""
        with self._lock:
            self.stdout.write(json.dumps(event, separators=(", ", ": ")) + "\n")
            self.stdout.flush()

    def _error(self, request_id: Any, message: str, exit_status: int) -> None:
        self.emit({"id": request_id, "event": "error", "message": " ".join(str(message).split()),
                   "exit": exit_status})

    # -- models ----------------------------------------------------------------------------------------

    def load(self, bundle: Path, device: str) -> Any:
        """The predictor of ``bundle`` on ``device``: from the cache, or loaded (dropping the oldest)."""
        from PancreasSegLib.pipeline.predictor import Predictor

        manifest = Path(bundle) / "model.json"
        stamp = manifest.stat().st_mtime_ns if manifest.is_file() else 0  # a rewritten bundle is loaded again
        key = (str(Path(bundle).resolve()), device, stamp)
        if key in self.models:
            self.models.move_to_end(key)
            return self.models[key]
        predictor = Predictor.from_bundle(bundle, device)
        self.models[key] = predictor
        while len(self.models) > self.keep_models:
            self.models.popitem(last=False)
        return predictor

    # -- the loop ----------------------------------------------------------------------------------------

    def serve(self) -> int:
        """Answer requests until ``shutdown``, the end of stdin or SIGTERM; return the exit status."""
        from PancreasSegLib import __version__

        previous = _on_sigterm(self._terminate)
        self.emit({"event": "ready", "pid": os.getpid(), "version": __version__})
        reader = threading.Thread(target=self._read, name="worker-stdin", daemon=True)
        reader.start()
        try:
            while not self._terminating:
                request = self._requests.get()
                if request is _END:
                    break
                self._answer(request["id"], request["args"])
        finally:
            _on_sigterm(previous)
        return 130 if self._terminating else 0

    def _terminate(self, signum, frame) -> None:
        from PancreasSegLib.errors import Cancelled

        self._terminating = True
        if self._current is not None:
            raise Cancelled("cancelled by signal SIGTERM")
        self._requests.put(_END)

    def _read(self) -> None:
        for line in self.stdin:
            if line.strip() and not self._take(line):
                return
        self._requests.put(_END)

    def _take(self, line: str) -> bool:
        """Handle one request line; False after ``shutdown``."""
        try:
            request = json.loads(line)
        except ValueError:
            self._error(None, f"not a JSON request: {line.strip()[:200]}", 2)
            return True
        request_id = request.get("id") if isinstance(request, dict) else None
        args = request.get("args") if isinstance(request, dict) else None
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            self._error(request_id, 'a request is {"id": ..., "args": ["segment", ...]} with string args', 2)
            return True
        command = args[0]
        if command == "cancel":
            self._cancelled.update(args[1:])
            self.emit({"id": request_id, "event": "done", "cancelled": args[1:]})
        elif command == "shutdown":
            self._stopping = True
            self._requests.put(_END)
            self.emit({"id": request_id, "event": "done", "shutdown": True})
            return False
        elif command == "segment":
            self._requests.put({"id": request_id, "args": args})
        else:
            self._error(request_id, f"the worker runs segment, cancel and shutdown, not {command!r}", 2)
        return True

    def _answer(self, request_id: Any, argv: list[str]) -> None:
        """Run one segment request, ending with its ``done`` or ``error`` event."""
        from PancreasSegLib.commands import segment
        from PancreasSegLib.errors import Cancelled, InputError

        if self.cancelled(request_id):
            self._cancelled.discard(request_id)
            self._error(request_id, "cancelled, nothing written", 130)
            return
        text = io.StringIO()
        try:
            parser = argparse.ArgumentParser(prog="pancreasseg segment")
            segment.add_arguments(parser)
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                args = parser.parse_args(argv[1:])
        except SystemExit:
            lines = [line for line in text.getvalue().splitlines() if line.strip()]
            self._error(request_id, lines[-1] if lines else "bad arguments", 2)
            return
        self._current = request_id
        try:
            segment._run(args, _RequestReporter(self, request_id), self.load)
        except InputError as exc:
            self._error(request_id, str(exc), 2)
        except (Cancelled, KeyboardInterrupt):
            self._error(request_id, "cancelled, nothing written", 130)
        except MemoryError:
            self._error(request_id, "out of memory", 1)
        except Exception as exc:  # the worker goes on; the client sees what happened
            self._error(request_id, f"internal error: {type(exc).__name__}: {exc}", 1)
        finally:
            self._current = None
            self._cancelled.discard(request_id)

    def cancelled(self, request_id: Any) -> bool:
        """True when ``request_id`` has been cancelled (or the worker is ending)."""
        return self._terminating or self._stopping or request_id in self._cancelled


class _RequestReporter:
    """``segment``'s jsonl reporter for one request: tags every event with the id; raises when cancelled."""

    def __init__(self, worker: Worker, request_id: Any) -> None:
        from PancreasSegLib.progress import JsonlReporter

        self.worker, self.request_id = worker, request_id
        self._jsonl = JsonlReporter(self)  # formats the events as the command line does; self is its stream
        self._pending = ""

    def write(self, text: str) -> None:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self.worker.emit({"id": self.request_id, **json.loads(line)})

    def flush(self) -> None:
        pass

    def _check(self) -> None:
        from PancreasSegLib.errors import Cancelled

        if self.worker.cancelled(self.request_id):
            raise Cancelled("cancelled")

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        self._check()
        self._jsonl(stage, fraction, message)

    def event(self, name: str, **fields: Any) -> None:
        self._jsonl.event(name, **fields)

    def done(self, outputs: dict[str, Any], roi: Any = None, seconds: float = 0.0, **extra: Any) -> None:
        self._jsonl.done(outputs, roi, seconds, **extra)

    def error(self, message: str) -> None:
        pass  # the worker writes the error event, with the exit status


def _on_sigterm(handler):
    if handler is None:
        return None
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a test): no signal handling
        return None
