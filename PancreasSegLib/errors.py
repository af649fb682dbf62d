"""The project's error types and how the command line reports them."""

from __future__ import annotations

import os


class InputError(ValueError):
    """Bad input or bad usage: the command line prints the message on one line and exits with 2.

    The message names the file (or option) and the problem, e.g.
    ``"scan.nii.gz: not a 3D image (it has 2 dimensions)"``.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class NoPancreasFound(InputError):
    """Phase 1 found no pancreas in the volume (exit 2 unless ``--allow-empty``)."""


class Cancelled(RuntimeError):
    """The run was cancelled by a signal; nothing was written."""


def read_json(path: str | os.PathLike):
    """Parse a UTF-8 JSON file; an unreadable file or bad JSON is an :class:`InputError` naming it."""
    import json
    from pathlib import Path

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot be read as JSON ({exc})", path) from None
