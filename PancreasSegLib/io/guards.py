"""SimpleITK behind guards: reads that answer bad files in one line and headers that would crash it.

The command line promises one line on stderr for bad input. ITK, GDCM and MetaIO print their own
messages on file descriptor 2 and some headers crash them outright, so every native read goes
through :func:`sitk_read` (or at least :func:`captured_stderr` and :func:`check_header_safe`).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from PancreasSegLib.errors import InputError
from PancreasSegLib.io.atomic import full_extension

if TYPE_CHECKING:
    import SimpleITK as sitk


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Capture what C++ code (ITK, GDCM, MetaIO) prints on file descriptor 2 inside the block.

    Yields a list that holds the captured text once the block ends. The command line promises one
    line on stderr for bad input; the libraries' own chatter would break that promise. File descriptor
    2 is process-wide: keep the block short (one library call), as another thread's output is caught too.
    """
    captured: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no stderr descriptor (embedded interpreter): nothing to capture
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


#: Largest number of dimensions a MetaImage header may declare before ITK sees it (see check_header_safe).
_METAIMAGE_MAX_NDIMS = 4
_NDIMS = re.compile(rb"^[ \t]*NDims[ \t]*[=:][ \t]*(\S*)", re.IGNORECASE | re.MULTILINE)


def check_header_safe(path: str | os.PathLike) -> None:
    """Refuse headers known to crash the native readers, before any of them opens the file.

    ITK's MetaImage reader (MetaIO) keeps per-dimension values in fixed arrays of 10: a ``.mha``/``.mhd``
    header with ``NDims = 93`` corrupts the heap (abort) and ``NDims = 1000`` segfaults, which no
    ``try`` can catch. Found by fuzzing; the header is read here and anything but 1..4 dimensions refused.

    Raises:
        InputError: a MetaImage header with a missing-, malformed- or out-of-range ``NDims``.
    """
    path = Path(path)
    if full_extension(path) not in (".mha", ".mhd") or not path.is_file():
        return
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    head = head.split(b"ElementDataFile", 1)[0]  # the header ends with this key; binary data follows
    values = _NDIMS.findall(head)
    if not values:
        raise InputError("not a MetaImage file: its header has no NDims", path)
    for value in values:
        if not value.isdigit() or not 1 <= int(value) <= _METAIMAGE_MAX_NDIMS:
            shown = value[:20].decode("ascii", "replace")
            raise InputError(f"MetaImage header declares NDims {shown!r}; a volume has 1 to "
                             f"{_METAIMAGE_MAX_NDIMS} dimensions", path)


def sitk_read(path: Path, what: str = "an image") -> sitk.Image:
    """``sitk.ReadImage`` behind the project's guards: empty file, unsafe header, ITK's messages as one line.

    Raises:
        InputError: "cannot be read as <what>: <reason>", naming the file.
    """
    import SimpleITK as sitk

    if path.stat().st_size == 0:
        raise InputError("is empty (0 bytes)", path)
    check_header_safe(path)
    error = None
    with captured_stderr() as chatter:
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            error = exc
    if error is not None:
        raise InputError(f"cannot be read as {what}: {sitk_reason(error, ''.join(chatter))}", path) from None
    return image


_REASONS = (
    (re.compile(r"Unable to determine ImageIO reader"), "not an image file of a known format"),
    (re.compile(r"expected (\d+) bytes but received (\d+)"), "truncated or corrupt: expected {0} bytes, got {1}"),
    (re.compile(r"data not read completely"), "truncated or corrupt: the image data is incomplete"),
    (re.compile(r"Zero-valued spacing|Refusing to change spacing"),
     "zero or invalid voxel spacing in the header"),
    (re.compile(r"does not fully contain the requested region.*?Size: \[([^\]]*)\].*?Size: \[([^\]]*)\]", re.DOTALL),
     "the files differ in image size ({1} in one, {0} expected): not one consistent series"),
    (re.compile(r"Bad direction, determinant is 0"),
     "degenerate direction matrix in the header (determinant 0: two image axes are parallel or one is zero)"),
)


def sitk_reason(exc: BaseException, chatter: str = "") -> str:
    """A short, readable reason from a SimpleITK exception and what the library printed meanwhile."""
    text = f"{exc}\n{chatter}"
    for pattern, reason in _REASONS:
        match = pattern.search(text)
        if match:
            return reason.format(*match.groups())
    # SimpleITK's messages span several lines with C++ file names; keep the most telling line.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Exception" not in line and not line.startswith("sitk::") and ".cxx" not in line:
            return line.removeprefix("Description: ")[:200]
    return (lines[-1] if lines else "unknown error")[:200]
