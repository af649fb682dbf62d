"""One NIfTI header parser, for what ITK's reader lets through: truncation, an ambiguous position,
zero voxel sizes and NaN voxels.

A ``.nii`` cut short, or a ``.nii.gz`` whose download stopped half-way, reads without error and
gives a volume whose missing part is 0 HU: a quietly wrong CT. :func:`nifti_missing_bytes` compares
the bytes the header promises with the bytes the file holds.

A NIfTI header can place the image twice, by its qform (a rotation, offsets, voxel sizes) and by its
sform (a general affine). When both are set and disagree, programs disagree too (each prefers one
of them under its own rules), so a label drawn in one program lands somewhere else in another.
:func:`nifti_transform_disagreement` measures how far apart the two place the volume.

ITK replaces a zero ``pixdim`` with 1 mm and NaN voxels with 0; :func:`nifti_pixdim` and
:func:`nifti_nonfinite` look at the file itself.

The header is parsed once per file (:func:`read_header` keeps the last few, keyed by path, size and
modification time), however many of these questions the read and the checks ask.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20
_FLOAT_TYPES = {16: "f4", 64: "f8"}


@dataclass(frozen=True)
class NiftiHeader:
    """The fields of a NIfTI-1 or NIfTI-2 header that the checks need (``endian`` is ``"<"`` or ``">"``)."""

    version: int
    endian: str
    dims: tuple[int, ...]
    datatype: int
    bitpix: int
    pixdim: tuple[float, ...]
    vox_offset: int
    qform_code: int = 0
    sform_code: int = 0
    quatern: tuple[float, ...] = ()
    srows: tuple[float, ...] = ()

    @property
    def expected_size(self) -> int | None:
        """Bytes a complete single file holds: the offset of the data plus the data (None when nonsensical)."""
        ndim = self.dims[0]
        if not 1 <= ndim <= 7 or self.bitpix <= 0 or any(d < 0 for d in self.dims[1: ndim + 1]):
            return None
        voxels = 1
        for d in self.dims[1: ndim + 1]:
            voxels *= max(d, 1)
        return int(self.vox_offset) + voxels * self.bitpix // 8


def is_nifti(path: str | os.PathLike) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def read_header(path: str | os.PathLike) -> NiftiHeader | None:
    """The parsed header of the NIfTI file at ``path``; None when it is no readable NIfTI header."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return None
    return _cached_header(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _cached_header(path: str, size: int, mtime_ns: int) -> NiftiHeader | None:
    return parse_header(_header_bytes(Path(path)))


def _header_bytes(path: Path) -> bytes | None:
    # The first 540 bytes (a NIfTI-2 header; NIfTI-1 uses 348), decompressed; None when unreadable.
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read(540)
    except (OSError, EOFError, zlib.error):
        return None


def parse_header(raw: bytes | None) -> NiftiHeader | None:
    """Parse the first bytes of a NIfTI file (either version, either byte order)."""
    if raw is None or len(raw) < 348:
        return None
    for endian in "<>":
        (sizeof_hdr,) = struct.unpack(endian + "i", raw[:4])
        if sizeof_hdr == 348:
            return NiftiHeader(
                version=1, endian=endian, dims=struct.unpack(endian + "8h", raw[40:56]),
                datatype=struct.unpack(endian + "h", raw[70:72])[0], bitpix=struct.unpack(endian + "h", raw[72:74])[0],
                pixdim=struct.unpack(endian + "8f", raw[76:108]),
                vox_offset=int(struct.unpack(endian + "f", raw[108:112])[0]),
                qform_code=struct.unpack(endian + "h", raw[252:254])[0],
                sform_code=struct.unpack(endian + "h", raw[254:256])[0],
                quatern=struct.unpack(endian + "6f", raw[256:280]), srows=struct.unpack(endian + "12f", raw[280:328]))
        if sizeof_hdr == 540 and len(raw) >= 540:
            return NiftiHeader(
                version=2, endian=endian, dims=struct.unpack(endian + "8q", raw[16:80]),
                datatype=struct.unpack(endian + "h", raw[12:14])[0], bitpix=struct.unpack(endian + "h", raw[14:16])[0],
                pixdim=struct.unpack(endian + "8d", raw[104:168]),
                vox_offset=struct.unpack(endian + "q", raw[168:176])[0])
    return None


def nifti_missing_bytes(path: str | os.PathLike) -> int:
    """How many bytes of image data the NIfTI file at ``path`` lacks (0 for a complete file).

    Works for NIfTI-1 and NIfTI-2, either byte order, plain or gzip-compressed. A file whose header
    cannot be parsed counts as complete here; the image reader reports such files itself.

    >>> nifti_missing_bytes("case_0000.nii.gz")  # doctest: +SKIP
    0
    """
    path = Path(path)
    header = read_header(path)
    expected = header.expected_size if header is not None else None
    if expected is None:
        return 0
    if not path.name.lower().endswith(".gz"):
        return max(0, expected - path.stat().st_size)
    # The gzip trailer holds the uncompressed size modulo 2**32: a cheap test that is right for every
    # complete single-member file. Only when it disagrees (truncation, or a multi-member file as bgzip
    # writes) is the stream decompressed to count.
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        (isize,) = struct.unpack("<I", f.read(4))
    if isize == expected % (1 << 32):
        return 0
    return max(0, expected - _decompressed_size(path))


def nifti_transform_disagreement(path: str | os.PathLike) -> float:
    """How far (mm) the qform and the sform of a NIfTI-1 file put any corner of the volume apart.

    0.0 when only one of them is set (its code is 0 for the other), for NIfTI-2 files and for headers
    that cannot be parsed (the image reader reports those itself).

    >>> nifti_transform_disagreement("case_0000.nii.gz")  # doctest: +SKIP
    0.0
    """
    import numpy as np

    header = read_header(path)
    if header is None or header.version != 1 or header.qform_code <= 0 or header.sform_code <= 0:
        return 0.0
    b, c, d, qx, qy, qz = header.quatern
    pixdim = header.pixdim
    srows = np.array(header.srows, dtype=float).reshape(3, 4)
    # The quaternion's first component is implied; near a half turn it is the square root of a float32
    # rounding error, so (as the NIfTI reference code does) a remainder below 1e-7 means exactly a half turn.
    rest = 1.0 - (b * b + c * c + d * d)
    if rest < 1e-7:
        norm = float(np.sqrt(b * b + c * c + d * d)) or 1.0
        a, b, c, d = 0.0, b / norm, c / norm, d / norm
    else:
        a = float(np.sqrt(rest))
    rotation = np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                         [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                         [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]])
    qfac = -1.0 if pixdim[0] < 0 else 1.0
    qform = np.column_stack([rotation @ np.diag([pixdim[1], pixdim[2], pixdim[3] * qfac]), [qx, qy, qz]])
    size = [max(int(n), 1) for n in header.dims[1:4]]
    corners = np.array([[i, j, k, 1.0] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)])
    shift = np.linalg.norm(corners @ (qform - srows).T, axis=1).max()
    return float(shift) if np.isfinite(shift) else float("inf")


def nifti_pixdim(path: str | os.PathLike) -> tuple[float, float, float] | None:
    """The voxel size (x, y, z) a NIfTI-1 header states; None for NIfTI-2 or no NIfTI (the reader's values stand)."""
    header = read_header(path)
    if header is None or header.version != 1:
        return None
    return tuple(header.pixdim[1:4])


def nifti_nonfinite(path: str | os.PathLike, chunk_bytes: int = 1 << 26) -> int:
    """Non-finite voxels in a single-file NIfTI-1 with float voxels, counted in the file itself."""
    import numpy as np

    path = Path(path)
    header = read_header(path)
    if header is None or header.version != 1 or header.datatype not in _FLOAT_TYPES:
        return 0
    dtype = np.dtype(header.endian + _FLOAT_TYPES[header.datatype])
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        f.seek(max(header.vox_offset, 348))
        count = 0
        step = chunk_bytes - chunk_bytes % dtype.itemsize
        rest = b""
        while chunk := f.read(step):
            chunk = rest + chunk  # a short read may end inside a voxel
            usable = len(chunk) - len(chunk) % dtype.itemsize
            count += int(np.count_nonzero(~np.isfinite(np.frombuffer(chunk[:usable], dtype))))
            rest = chunk[usable:]
        return count


def _decompressed_size(path: Path) -> int:
    total = 0
    decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            while chunk:
                try:
                    total += len(decompressor.decompress(chunk))
                except zlib.error:
                    return total
                chunk = decompressor.unused_data
                if chunk:  # the next gzip member starts here
                    decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
            if decompressor.eof and not decompressor.unused_data:
                decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
    return total
