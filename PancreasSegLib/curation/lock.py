"""An exclusive lock on a curated dataset, so that concurrent exporters take turns.

The lock is an OS-level lock on ``DATASET/.lock``: ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on
Windows. Both are released by the operating system when the holder dies (even by SIGKILL), so a
crashed exporter never leaves a stale lock behind; the file itself stays and means nothing on its own.
The holder writes its process ID and host into the file only to make the "busy" message useful.

Neither works reliably across machines on every network file system (NFS without lock daemon, some
SMB mounts): keep one curated dataset on a local disk, or export from one machine at a time.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from types import TracebackType

from PancreasSegLib.errors import InputError

LOCK_NAME = ".lock"
#: Seconds an exporter waits for another one to finish before giving up.
DEFAULT_TIMEOUT = 120.0


class DatasetBusy(InputError):
    """Another process held the dataset's lock for longer than the timeout."""


class DatasetLock:
    """Context manager holding the exclusive lock of a dataset folder.

    Args:
        folder: the dataset folder (it must exist).
        timeout: seconds to wait for the lock; 0 tries once.
        name: the lock file's name in ``folder`` (another name is another lock, e.g. one per case).
        holder: what the holder writes into the file for others to read (default: its process and host).

    Raises:
        DatasetBusy: the lock was not free within ``timeout`` seconds.

    >>> with DatasetLock("Dataset501_Curated"):  # doctest: +SKIP
    ...     ...  # nobody else writes into the dataset here
    """

    def __init__(self, folder: str | os.PathLike, timeout: float = DEFAULT_TIMEOUT, name: str = LOCK_NAME,
                 holder: str | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self.timeout = float(timeout)
        self.holder = holder
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + max(self.timeout, 0.0)
        delay = 0.02
        while True:
            if _try_lock(fd):
                break
            if time.monotonic() >= deadline:
                holder = _read_holder(fd)
                os.close(fd)
                raise DatasetBusy(f"another export holds the dataset lock ({holder}); gave up after "
                                  f"{self.timeout:g} s, try again when it has finished", self.folder)
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        self._fd = fd
        _write_holder(fd, self.holder)

    @property
    def held(self) -> bool:
        """True between :meth:`acquire` and :meth:`release`."""
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DatasetLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _write_holder(fd: int, holder: str | None = None) -> None:
    text = f"{holder or f'pid {os.getpid()} on {socket.gethostname()}'}\n".encode()
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, text)
    except OSError:  # the message is a courtesy; the lock is what counts
        pass


def read_holder(path: str | os.PathLike) -> str | None:
    """What the current holder of the lock file ``path`` wrote, or None when nobody holds it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            _unlock(fd)
            return None
        return _read_holder(fd)
    finally:
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "unknown process"


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        # Lock one byte far beyond the holder text, so that writing the text is not blocked by our own lock.
        os.lseek(fd, 1 << 20, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 1 << 20, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
