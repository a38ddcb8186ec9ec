"""graphforge's own IDX reader: round trips and every kind of broken file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from graphforge.builtin.datasets.idx import read_idx, read_idx_images, read_idx_labels
from graphforge.errors import DataError


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-3, 0, 7], dtype=np.int8),
        np.array([[1, -2], [300, -400]], dtype=np.int16),
        np.array([70000, -1], dtype=np.int32),
        np.array([[0.5, -1.25]], dtype=np.float32),
        np.array([1e300, -2.5], dtype=np.float64),
    ],
    ids=["uint8", "int8", "int16", "int32", "float32", "float64"],
)
def test_round_trip(tmp_path, idx_writer, array, gz):
    path = idx_writer(tmp_path / "a-idx", array, gz=gz)
    got = read_idx(path)
    assert got.dtype == array.dtype.newbyteorder("=")
    assert got.shape == array.shape
    np.testing.assert_array_equal(got, array)
    assert got.flags.writeable


def test_gzip_is_detected_by_content_not_name(tmp_path, idx_writer):
    path = idx_writer(tmp_path / "labels", np.array([1, 2, 3], np.uint8), gz=True)
    renamed = path.rename(tmp_path / "labels-without-suffix")
    np.testing.assert_array_equal(read_idx(renamed), [1, 2, 3])


def test_bad_magic_number(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00\x00\x00\x01" + b"\x05")
    with pytest.raises(DataError, match=r"bad magic number 0x12340801") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_unknown_type_code(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"\x05")
    with pytest.raises(DataError, match="unknown IDX type code 0x07"):
        read_idx(path)


def test_truncated_payload(tmp_path, idx_writer):
    path = idx_writer(tmp_path / "images", np.zeros((5, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        DataError, match=r"truncated IDX file .*needs 3920 payload bytes, found 3820"
    ) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_gzip_stream(tmp_path, idx_writer):
    path = idx_writer(tmp_path / "images", np.arange(4000, dtype=np.int32), gz=True)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x02")
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path)


def test_trailing_bytes(tmp_path, idx_writer):
    path = idx_writer(tmp_path / "labels", np.zeros(4, np.uint8))
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(DataError, match="4 bytes after"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(tmp_path / "nope")


def test_images_and_labels_check_dims_and_dtype(tmp_path, idx_writer):
    labels = idx_writer(tmp_path / "labels", np.zeros(3, np.uint8))
    images = idx_writer(tmp_path / "images", np.zeros((3, 2, 2), np.uint8))
    floats = idx_writer(tmp_path / "floats", np.zeros((3, 2, 2), np.float32))
    assert read_idx_images(images).shape == (3, 2, 2)
    assert read_idx_labels(labels).shape == (3,)
    with pytest.raises(DataError, match=r"expected uint8 images \[N, H, W\]"):
        read_idx_images(labels)
    with pytest.raises(DataError, match=r"expected uint8 images"):
        read_idx_images(floats)
    with pytest.raises(DataError, match=r"expected uint8 labels \[N\]"):
        read_idx_labels(images)


def test_real_gzip_payload_is_equal_to_raw(tmp_path, idx_writer):
    array = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    raw = idx_writer(tmp_path / "raw", array)
    gz = tmp_path / "manual.gz"
    gz.write_bytes(gzip.compress(raw.read_bytes()))
    np.testing.assert_array_equal(read_idx(raw), read_idx(gz))
