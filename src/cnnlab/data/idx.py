"""A strict reader for the IDX format of (Fashion-)MNIST.

Layout: two zero bytes, a type byte, a dimension count, then one big-endian uint32
per dimension, then the values in row-major order. Every problem raises
:class:`~cnnlab.errors.DataError` naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from cnnlab.errors import DataError

# type byte -> numpy dtype (multi-byte values are big-endian in IDX files)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


MAX_BYTES = 2**30  # no IDX data set is near 1 GiB (EMNIST's largest file: 0.55 GB)


def read_bytes(path: str | Path) -> bytes:
    """Return the contents of ``path``, decompressed when it ends in ``.gz``.

    A compressed file is decompressed as a stream, never past what its IDX header
    declares (plus one byte, to tell trailing bytes), and a header that declares more than
    :data:`MAX_BYTES` is refused before anything is decompressed: a small file that
    inflates to gigabytes (a "gzip bomb") costs no memory.
    """
    path = Path(path)
    try:
        if path.suffix != ".gz":
            if path.stat().st_size > MAX_BYTES + 4 + 4 * 255:  # the largest header
                raise DataError(
                    f"{path}: {path.stat().st_size:,} bytes, more than any IDX data set has "
                    f"(at most {MAX_BYTES:,} here); not read"
                )
            return path.read_bytes()
        with gzip.open(path, "rb") as f:
            head = f.read(4)
            head += f.read(4 * head[3]) if len(head) == 4 else b""
            size = declared_size(head, str(path))
            return head if size is None else head + f.read(size + 1)
    except OSError as e:
        if isinstance(e, gzip.BadGzipFile) or not e.strerror:
            raise DataError(f"{path}: not a valid gzip file or truncated ({e})") from e
        raise DataError(f"{path}: cannot read file ({e.strerror})") from e
    except (EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a valid gzip file or truncated ({e})") from e


def declared_size(head: bytes, name: str) -> int | None:
    """The data bytes an IDX header declares (None if ``head`` is no complete header:
    :func:`parse_idx` then says what is wrong); more than :data:`MAX_BYTES` is refused."""
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in IDX_DTYPES or not head[3]:
        return None
    if len(head) < 4 + 4 * head[3]:
        return None
    shape = tuple(int(d) for d in np.frombuffer(head, dtype=">u4", count=head[3], offset=4))
    size = int(np.prod(shape, dtype=object)) * IDX_DTYPES[head[2]].itemsize
    if size > MAX_BYTES:
        raise DataError(
            f"{name}: the header declares dimensions {shape}, {size:,} bytes of data, more "
            f"than any IDX data set has (at most {MAX_BYTES:,} here); the file is damaged "
            "or not what it claims to be"
        )
    return size


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array with the file's shape and dtype.

    >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9])).tolist()
    [7, 8, 9]
    """
    if len(data) < 4:
        raise DataError(f"{name}: truncated: {len(data)} bytes, an IDX header needs at least 4")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{name}: wrong magic number 0x{data[:4].hex()}: IDX files start with two zero "
            "bytes; is this really an IDX file?"
        )
    type_byte, ndim = data[2], data[3]
    if type_byte not in IDX_DTYPES:
        known = ", ".join(f"0x{t:02x}" for t in IDX_DTYPES)
        raise DataError(f"{name}: unknown type byte 0x{type_byte:02x} (known: {known})")
    if ndim == 0:
        raise DataError(f"{name}: the header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{name}: truncated header: {len(data)} bytes, {header} needed for {ndim} dimensions"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_byte]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        problem = "truncated" if actual < expected else "trailing bytes"
        raise DataError(
            f"{name}: {problem}: dimensions {shape} need {expected} bytes of data, "
            f"the file has {actual}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # an owned, writable, native-order copy


def read_idx(path: str | Path) -> np.ndarray:
    """Read a raw or gzip-compressed IDX file."""
    return parse_idx(read_bytes(path), str(path))


def check_images_labels(
    images: np.ndarray, labels: np.ndarray, num_classes: int, name: str
) -> None:
    """Check that an image/label pair fits together: (N, H, W) uint8, N labels in range."""
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{name}: images must be uint8 with 3 dimensions (N, H, W), "
            f"got {images.dtype} with shape {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(
            f"{name}: labels must be uint8 with 1 dimension, "
            f"got {labels.dtype} with shape {labels.shape}"
        )
    if len(images) != len(labels):
        raise DataError(f"{name}: count mismatch: {len(images)} images but {len(labels)} labels")
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(
            f"{name}: label {int(labels.max())} out of range: expected 0..{num_classes - 1}"
        )
