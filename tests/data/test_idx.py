import contextlib
import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data.idx import check_images_labels, parse_idx, read_idx
from cnnlab.errors import DataError
from tests.conftest import idx_bytes, write_idx


def test_reads_raw_and_gz(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", array)
    write_idx(tmp_path / "a.gz", array, gz=True)
    for name in ("a", "a.gz"):
        got = read_idx(tmp_path / name)
        assert got.shape == (2, 3, 4) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, array)
        assert got.flags.writeable


def test_multibyte_types_are_big_endian() -> None:
    data = bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + (1).to_bytes(4, "big") + (258).to_bytes(4, "big")
    assert parse_idx(data).tolist() == [1, 258]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "truncated: 2 bytes"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "wrong magic number"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "unknown type byte 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "truncated: dimensions (3,) need 3 bytes"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "trailing bytes"),
    ],
)
def test_malformed_bytes_raise_data_error_naming_the_file(data: bytes, message: str) -> None:
    with pytest.raises(
        DataError, match="^myfile: .*" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        parse_idx(data, "myfile")


def test_bad_gzip_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:30])
    with pytest.raises(DataError, match=f"{path}: not a valid gzip file or truncated"):
        read_idx(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read file"):
        read_idx(tmp_path / "nope")


def test_images_and_labels_must_agree() -> None:
    images = np.zeros((3, 28, 28), np.uint8)
    with pytest.raises(DataError, match="count mismatch: 3 images but 2 labels"):
        check_images_labels(images, np.zeros(2, np.uint8), 10, "set")
    with pytest.raises(DataError, match=r"label 10 out of range: expected 0\.\.9"):
        check_images_labels(images, np.array([0, 10, 1], np.uint8), 10, "set")
    with pytest.raises(DataError, match="images must be uint8 with 3 dimensions"):
        check_images_labels(np.zeros((3, 784), np.uint8), np.zeros(3, np.uint8), 10, "set")
    with pytest.raises(DataError, match="labels must be uint8 with 1 dimension"):
        check_images_labels(images, np.zeros((3, 1), np.uint8), 10, "set")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_raise_data_error(data: bytes) -> None:
    with contextlib.suppress(DataError):
        parse_idx(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_files_only_raise_data_error(data: st.DataObject) -> None:
    good = bytearray(idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4)))
    for _ in range(data.draw(st.integers(1, 4))):
        good[data.draw(st.integers(0, len(good) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(good)))
    with contextlib.suppress(DataError):
        parse_idx(bytes(good[:cut]))


def test_a_gzip_bomb_is_refused_before_it_is_decompressed(tmp_path: Path) -> None:
    """A header that declares 2^31 images: refused from the header, nothing inflated."""
    import struct
    import tracemalloc

    path = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**31, 28, 28))
        for _ in range(64):  # 64 MiB of zeros, which compress to ~64 KiB
            f.write(bytes(2**20))
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    with pytest.raises(DataError, match=r"declares dimensions \(2147483648, 28, 28\)"):
        read_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20  # nothing was decompressed past the header


def test_decompression_stops_one_byte_past_the_declared_data(tmp_path: Path) -> None:
    path = tmp_path / "long-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]) + bytes(10**6)))
    with pytest.raises(DataError, match="trailing bytes"):
        read_idx(path)
