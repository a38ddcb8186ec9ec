"""A strict reader of IDX files (the MNIST file format), raw or gzip-compressed.

An IDX file is a 4-byte magic number ``0x00 0x00 <type code> <ndim>``, then ``ndim``
big-endian uint32 dimension sizes, then the values in C order (big-endian).
Anything else — a wrong magic number, an unknown type, a payload shorter or longer
than the dimensions say — is a :class:`~graphforge.errors.DataError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from graphforge.errors import DataError

#: IDX type code -> numpy dtype (big-endian where it matters).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == _GZIP_MAGIC:
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read IDX file ({type(exc).__name__}: {exc})") from None
    return data


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into a native-endian numpy array.

    Args:
        path: The file; compression is detected from its content, not its name.

    Returns:
        The array, shaped as the header says, with the header's dtype.

    Raises:
        DataError: If the file cannot be read, is not IDX, or is truncated or too long.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(data)} bytes, no header)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (bad magic number 0x{data[:4].hex()}; "
            f"expected 0x0000 then a type code and a dimension count)"
        )
    type_code, ndim = data[2], data[3]
    dtype = IDX_DTYPES.get(type_code)
    if dtype is None:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX type code 0x{type_code:02x} (known: {known})")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{path}: truncated IDX header ({ndim} dimensions need {header_len} bytes, "
            f"file has {len(data)})"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    count = math.prod(dims)
    expected = count * dtype.itemsize
    actual = len(data) - header_len
    if actual < expected:
        raise DataError(
            f"{path}: truncated IDX file (shape {dims} needs {expected} payload bytes, "
            f"found {actual})"
        )
    if actual > expected:
        raise DataError(
            f"{path}: corrupt IDX file ({actual - expected} bytes after the {expected} "
            f"bytes that shape {dims} needs)"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header_len)
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def read_idx_images(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX image file: uint8 ``[N, H, W]``.

    Raises:
        DataError: If the file is malformed or not 3-D uint8.
    """
    array = read_idx(path)
    if array.dtype != np.uint8 or array.ndim != 3:
        raise DataError(
            f"{path}: expected uint8 images [N, H, W], found {array.dtype} with shape {array.shape}"
        )
    return array


def read_idx_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX label file: uint8 ``[N]``.

    Raises:
        DataError: If the file is malformed or not 1-D uint8.
    """
    array = read_idx(path)
    if array.dtype != np.uint8 or array.ndim != 1:
        raise DataError(
            f"{path}: expected uint8 labels [N], found {array.dtype} with shape {array.shape}"
        )
    return array
