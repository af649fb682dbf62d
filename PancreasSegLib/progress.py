"""Progress reporting (a bar for people, JSON lines for programs) and cancellation by signal.

``--progress jsonl`` writes one JSON object per line on stdout, flushed at once::

    {"event": "progress", "stage": "localize", "fraction": 0.4, "message": "slices 1-16 of 38"}
    {"event": "done", "outputs": {"segmentation": "out.seg.nrrd"}, "roi": {...}, "seconds": 3.2}
    {"event": "error", "message": "ct.nii.gz: no pancreas found"}

Stages are ``read``, ``localize``, ``segment``, ``postprocess``, ``write``; ``fraction`` is the
fraction of the current stage, 0 to 1. This is how the Slicer module drives its progress bar.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from PancreasSegLib.errors import Cancelled

#: The stages of one run, in order; the Slicer module maps them onto its progress bar.
STAGES = ("read", "localize", "segment", "postprocess", "write")
#: What the pipeline calls to report: ``progress(stage, fraction, message)``.
Progress = Callable[[str, float, str], None]
KINDS = ("bar", "jsonl", "none")


class Reporter:
    """Silent reporter; the base of the others. Call it as ``reporter(stage, fraction, message)``."""

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        pass

    def event(self, name: str, **fields: Any) -> None:
        """Any other event (e.g. one case done when several inputs are segmented)."""

    def done(self, outputs: dict[str, Any], roi: Any = None, seconds: float = 0.0, **extra: Any) -> None:
        pass

    def error(self, message: str) -> None:
        pass


class JsonlReporter(Reporter):
    """One JSON object per line on ``stream`` (stdout by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def _write(self, obj: dict[str, Any]) -> None:
        self.stream.write(json.dumps(obj, separators=(", ", ": ")) + "\n")
        self.stream.flush()

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        self._write({"event": "progress", "stage": stage, "fraction": round(min(1.0, max(0.0, float(fraction))), 4),
                     "message": message})

    def event(self, name: str, **fields: Any) -> None:
        self._write({"event": name, **fields})

    def done(self, outputs: dict[str, Any], roi: Any = None, seconds: float = 0.0, **extra: Any) -> None:
        self._write({"event": "done", "outputs": outputs, "roi": roi, "seconds": round(float(seconds), 3), **extra})

    def error(self, message: str) -> None:
        self._write({"event": "error", "message": " ".join(str(message).split())})


class BarReporter(Reporter):
    """A one-line progress bar on stderr for people; plain lines, one per stage, when stderr is not a terminal."""

    width = 30

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._stage = None
        self._last = 0.0

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        if not self.tty:
            if stage != self._stage:
                self.stream.write(f"{stage}: {message}\n")
                self.stream.flush()
            self._stage = stage
            return
        now = time.monotonic()
        if stage == self._stage and fraction < 1.0 and now - self._last < 0.1:
            return
        self._stage, self._last = stage, now
        filled = int(round(self.width * fraction))
        line = f"\r{stage:<11} [{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%} {message[:40]:<40}"
        self.stream.write(line)
        self.stream.flush()

    def _end_line(self) -> None:
        if self.tty and self._stage is not None:
            self.stream.write("\n")
            self._stage = None

    def done(self, outputs: dict[str, Any], roi: Any = None, seconds: float = 0.0, **extra: Any) -> None:
        self._end_line()
        volume = f", pancreas {extra['volume_ml']:.1f} mL" if isinstance(extra.get("volume_ml"), float) else ""
        self.stream.write(f"done in {seconds:.1f} s{volume}\n")

    def error(self, message: str) -> None:
        self._end_line()


def make_reporter(kind: str) -> Reporter:
    """The reporter for ``--progress bar|jsonl|none``."""
    if kind == "jsonl":
        return JsonlReporter()
    if kind == "bar":
        return BarReporter()
    return Reporter()


@contextlib.contextmanager
def cancel_on_signals() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into :class:`Cancelled` inside the block; handlers restored after.

    The exception unwinds through the atomic writers, which remove their temporary files, so a
    cancelled run leaves nothing behind. Only possible in the main thread; elsewhere a no-op.
    """

    def handler(signum, frame):
        raise Cancelled(f"cancelled by signal {signal.Signals(signum).name}")

    saved = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            saved[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)
