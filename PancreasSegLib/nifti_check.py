"""NIfTI problems that ITK's reader lets through: truncated data and an ambiguous position.

A ``.nii`` cut short, or a ``.nii.gz`` whose download stopped half-way, reads without error and
gives a volume whose missing part is 0 HU: a quietly wrong CT. :func:`nifti_missing_bytes` compares
the bytes the header promises with the bytes the file holds.

A NIfTI header can place the image twice, by its qform (a rotation, offsets, voxel sizes) and by its
sform (a general affine). When both are set and disagree, programs disagree too (each prefers one
of them under its own rules), so a label drawn in one program lands somewhere else in another.
:func:`nifti_transform_disagreement` measures how far apart the two place the volume.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

_CHUNK = 1 << 20


def nifti_missing_bytes(path: str | os.PathLike) -> int:
    """How many bytes of image data the NIfTI file at ``path`` lacks (0 for a complete file).

    Works for NIfTI-1 and NIfTI-2, either byte order, plain or gzip-compressed. A file whose header
    cannot be parsed counts as complete here; the image reader reports such files itself.

    >>> nifti_missing_bytes("case_0000.nii.gz")  # doctest: +SKIP
    0
    """
    path = Path(path)
    compressed = path.name.lower().endswith(".gz")
    header = _header(path)
    if header is None:
        return 0
    expected = _expected_size(header)
    if expected is None:
        return 0
    if not compressed:
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

    header = _header(Path(path))
    if header is None or len(header) < 348:
        return 0.0
    for endian in "<>":
        if struct.unpack(endian + "i", header[:4])[0] == 348:
            break
    else:
        return 0.0
    dims = struct.unpack(endian + "8h", header[40:56])
    pixdim = struct.unpack(endian + "8f", header[76:108])
    qform_code, sform_code = struct.unpack(endian + "2h", header[252:256])
    if qform_code <= 0 or sform_code <= 0:
        return 0.0
    b, c, d, qx, qy, qz = struct.unpack(endian + "6f", header[256:280])
    srows = np.array(struct.unpack(endian + "12f", header[280:328]), dtype=float).reshape(3, 4)
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
    size = [max(int(n), 1) for n in dims[1:4]]
    corners = np.array([[i, j, k, 1.0] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)])
    shift = np.linalg.norm(corners @ (qform - srows).T, axis=1).max()
    return float(shift) if np.isfinite(shift) else float("inf")


def _header(path: Path) -> bytes | None:
    # The first 540 bytes (a NIfTI-2 header; NIfTI-1 uses 348), decompressed; None when unreadable.
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read(540)
    except (OSError, EOFError, zlib.error):
        return None


def _expected_size(header: bytes) -> int | None:
    if len(header) < 348:
        return None
    for endian in "<>":
        (sizeof_hdr,) = struct.unpack(endian + "i", header[:4])
        if sizeof_hdr == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            (bitpix,) = struct.unpack(endian + "h", header[72:74])
            (vox_offset,) = struct.unpack(endian + "f", header[108:112])
            break
        if sizeof_hdr == 540 and len(header) >= 540:
            (bitpix,) = struct.unpack(endian + "h", header[14:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            (vox_offset,) = struct.unpack(endian + "q", header[168:176])
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0 or any(d < 0 for d in dims[1 : ndim + 1]):
        return None
    voxels = 1
    for d in dims[1 : ndim + 1]:
        voxels *= max(d, 1)
    return int(vox_offset) + voxels * bitpix // 8


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
