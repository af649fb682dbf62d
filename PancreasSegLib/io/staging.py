"""Several output files that appear together or not at all.

Each file goes to a staging folder next to its target (same file system, so the rename is atomic)
and all are renamed into place only when every one is complete: a failure midway (disk full,
Ctrl-C) leaves neither a partial result nor a half-replaced set of earlier results.

>>> with Staging() as staging:  # doctest: +SKIP
...     write_labelmap(label, staging.path("out.seg.nrrd"))
...     write_roi(roi, staging.path("roi.json"))
...     staging.commit()
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from PancreasSegLib.errors import InputError
from PancreasSegLib.io.atomic import check_output_folder, storage_error


class Staging:
    """Output files written under temporary names first, renamed into place together by :meth:`commit`."""

    def __init__(self) -> None:
        self._folders: dict[Path, Path] = {}
        self._files: list[tuple[Path, Path]] = []

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc_info) -> None:
        self.cleanup()

    def path(self, final: str | os.PathLike) -> Path:
        """Where to write ``final`` for now (same folder, so the rename is atomic; same name and extension)."""
        final = check_output_folder(final)
        folder = final.parent if str(final.parent) else Path(".")
        if folder.resolve() not in self._folders:
            try:
                self._folders[folder.resolve()] = Path(tempfile.mkdtemp(prefix=".pancreasseg-", dir=folder))
            except OSError as exc:
                raise storage_error(exc, final) or exc from None
        staged = self._folders[folder.resolve()] / final.name
        self._files.append((staged, final))
        return staged

    def renamed(self, exc: Exception) -> Exception:
        """``exc`` naming the file the user asked for instead of its staging name."""
        for staged, final in self._files:
            if isinstance(exc, InputError) and exc.path == str(staged):
                return type(exc)(str(exc)[len(exc.path) + 2:], final)
        return exc

    def commit(self) -> None:
        """Rename every staged file into place."""
        for staged, final in self._files:
            os.replace(staged, final)
        self._files = []

    def cleanup(self) -> None:
        """Remove the staging folders and whatever is left in them."""
        for folder in self._folders.values():
            shutil.rmtree(folder, ignore_errors=True)
        self._folders = {}
