"""Atomic file writes: write to a temporary name in the same folder, then rename into place.

A reader never sees a half-written file, and an interrupted write (exception, Ctrl-C, SIGKILL)
leaves the previous file, if any, untouched. SimpleITK, VTK and matplotlib pick the file format
from the name, so the temporary name keeps the full extension (``.nii.gz``, ``.seg.nrrd``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from PancreasSegLib.errors import InputError

#: Extensions of more than one part that the project reads or writes.
COMPOUND_EXTENSIONS = (".seg.nrrd", ".nii.gz", ".tar.gz")


def full_extension(path: str | os.PathLike) -> str:
    """The extension of ``path`` including compound ones, lower-cased.

    >>> full_extension("case_0000.nii.gz")
    '.nii.gz'
    >>> full_extension("Result.seg.nrrd")
    '.seg.nrrd'
    """
    name = Path(path).name.lower()
    for ext in COMPOUND_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return Path(name).suffix


def check_output_folder(path: str | os.PathLike) -> Path:
    """Raise :class:`InputError` unless the folder that will hold ``path`` exists and is writable."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output folder {parent} does not exist", path)
    if not os.access(parent, os.W_OK):
        raise InputError(f"output folder {parent} is not writable", path)
    if path.is_dir():
        raise InputError("is a folder, expected a file name", path)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file is removed when the block raises (including ``KeyboardInterrupt``).

    >>> with atomic_path("out.nii.gz") as tmp:  # doctest: +SKIP
    ...     sitk.WriteImage(image, str(tmp))
    """
    path = check_output_folder(path)
    ext = full_extension(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name[: len(path.name) - len(ext)]}.", suffix=f".tmp{ext}",
                                        dir=path.parent if str(path.parent) else ".")
    except OSError as exc:
        raise storage_error(exc, path) or exc from None
    os.close(fd)
    tmp = Path(tmp_name)
    _chmod_like_open(tmp)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        error = storage_error(exc, path) if isinstance(exc, (OSError, RuntimeError)) else None
        if error is not None:
            raise error from None
        raise
    _fsync_dir(path.parent)


#: errno values of a write that failed because of where it went (full disk, quota, read-only, permissions).
_STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                   errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                   errno.EPERM: "permission denied", errno.EFBIG: "file too large for the file system"}
#: The same, as the C++ libraries (ITK, VTK) word them in their exception messages.
_STORAGE_TEXTS = {os.strerror(code).lower(): reason for code, reason in _STORAGE_ERRNOS.items()}
#: Below this much free space, a failed write of unknown cause is reported as a full disk.
_NEARLY_FULL_BYTES = 1 << 20


def storage_error(exc: BaseException, path: Path) -> InputError | None:
    """An :class:`InputError` for a write that failed because of the storage (so the command line exits 2
    with one line instead of a traceback), or ``None`` for any other failure, which stays as it was."""
    reason = _STORAGE_ERRNOS.get(getattr(exc, "errno", None) or -1)
    if reason is None:
        text = str(exc).lower()
        reason = next((r for t, r in _STORAGE_TEXTS.items() if t in text), None)
    if reason is None:
        with contextlib.suppress(OSError):
            if shutil.disk_usage(path.parent if str(path.parent) else ".").free < _NEARLY_FULL_BYTES:
                reason = "no space left on the device"
    if reason is None:
        return None
    return InputError(f"cannot be written: {reason}; nothing was written and any previous file is unchanged", path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: object) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _chmod_like_open(path: Path) -> None:
    # mkstemp creates 0600 files; a file written with open() gets 0666 minus the umask. Datasets are shared.
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~umask)


def _fsync_file(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; not possible (nor needed) on Windows.
    with contextlib.suppress(OSError):
        fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
