"""Parse the ``--progress jsonl`` stream of ``pancreasseg segment`` (and ``train``) into events.

One JSON object per line on stdout::

    {"event": "progress", "stage": "localize", "fraction": 0.4, "message": "..."}
    {"event": "done", "outputs": {"segmentation": "..."}, "roi": {...}, "seconds": 3.2}
    {"event": "error", "message": "one line"}

Output arrives in arbitrary chunks (a line may be split across two reads), and libraries may print
their own lines (warnings, banners) into the same stream: those are ignored, never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

#: The stages of ``segment`` in the order it runs them, with the share of the bar each one fills.
STAGES = {"read": (0.0, 0.05), "localize": (0.05, 0.35), "segment": (0.35, 0.9),
          "postprocess": (0.9, 0.97), "write": (0.97, 1.0)}

#: The stages of ``train --stage both``: caches first, then the localizer gets 1/4 of the time budget
#: and the segmenter the rest (the fraction of each is the fraction of its budget used).
TRAIN_STAGES = {"preprocess": (0.0, 0.1), "localizer": (0.1, 0.325), "segmenter": (0.325, 1.0)}


@dataclass(frozen=True)
class ProgressEvent:
    """One event of the stream: ``kind`` is "progress", "done" or "error"; ``data`` the whole object."""

    kind: str
    data: dict = field(default_factory=dict)

    @property
    def message(self) -> str:
        """The event's human-readable message (may be empty)."""
        return str(self.data.get("message", ""))

    @property
    def overallFraction(self) -> float:
        """Progress of the whole ``segment`` run in 0..1 (a stage's own fraction mapped into its share)."""
        return self.fractionOf(STAGES)

    def fractionOf(self, stages: dict[str, tuple[float, float]]) -> float:
        """Progress of the whole run in 0..1, with ``stages`` giving each stage's share of the bar."""
        if self.kind == "done":
            return 1.0
        stage = self.data.get("stage")
        try:
            fraction = min(max(float(self.data.get("fraction", 0.0)), 0.0), 1.0)
        except (TypeError, ValueError):
            fraction = 0.0
        if stage not in stages:
            return fraction
        start, end = stages[stage]
        return start + (end - start) * fraction


class JsonLinesParser:
    """Accumulate chunks of text and return the complete, valid event lines found so far.

    >>> parser = JsonLinesParser()
    >>> parser.feed('{"event": "progress", "stage": "read", "frac')
    []
    >>> [e.kind for e in parser.feed('tion": 1.0}\\nWarning: something\\n')]
    ['progress']
    """

    def __init__(self) -> None:
        self._buffer = ""
        self.ignoredLines: list[str] = []

    def feed(self, chunk: str) -> list[ProgressEvent]:
        """Add ``chunk``; return the events of every line it completed, in order."""
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split("\n")
        return [event for event in (self._parse(line) for line in lines) if event is not None]

    def flush(self) -> list[ProgressEvent]:
        """Parse what is left in the buffer (a last line without newline)."""
        rest, self._buffer = self._buffer, ""
        event = self._parse(rest)
        return [event] if event is not None else []

    def _parse(self, line: str) -> ProgressEvent | None:
        line = line.strip()
        if not line:
            return None
        try:
            data = json.loads(line)
        except ValueError:
            self.ignoredLines.append(line)
            return None
        if not isinstance(data, dict) or data.get("event") not in ("progress", "done", "error"):
            self.ignoredLines.append(line)
            return None
        return ProgressEvent(str(data["event"]), data)


def lastErrorLine(stderrText: str) -> str:
    """The last non-empty line of ``stderrText`` (the command's one-line error), or an empty string."""
    for line in reversed(stderrText.splitlines()):
        if line.strip():
            return line.strip()
    return ""
