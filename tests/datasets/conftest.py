"""Fixtures that write tiny dataset files into ``tmp_path`` and forbid downloads."""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as an IDX file (big-endian header and payload)."""
    code = IDX_CODES[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """Write ``array`` to ``path`` (``path.gz``, gzip-compressed, when ``gz``)."""
    data = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def make_digit_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Random uint8 28x28 images whose top-left pixel encodes the label (to trace rows)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    images[:, 0, 0] = labels
    return images


def write_mnist_files(
    directory: Path,
    *,
    prefix: str = "",
    test_stem: str = "t10k",
    n_train: int = 40,
    n_test: int = 20,
    num_classes: int = 4,
    label_offset: int = 0,
    gz: bool = False,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write the four IDX files of an MNIST-style dataset; return the arrays written."""
    arrays = {}
    for part, stem, n in (("train", "train", n_train), ("test", test_stem, n_test)):
        labels = (np.arange(n) % num_classes + label_offset).astype(np.uint8)
        images = make_digit_images(labels, seed)
        write_idx(directory / f"{prefix}{stem}-images-idx3-ubyte", images, gz=gz)
        write_idx(directory / f"{prefix}{stem}-labels-idx1-ubyte", labels, gz=gz)
        arrays[f"{part}_images"], arrays[f"{part}_labels"] = images, labels
    return arrays


def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int]) -> None:
    """Write a CIFAR-10 python batch like the real ones (bytes keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"fake", b"data": data, b"labels": labels}, f, protocol=2)


def write_cifar(directory: Path, per_batch: int = 20, n_test: int = 20) -> Path:
    """Write five tiny training batches, a test batch and the meta file."""
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        write_cifar_batch(directory / name, data, [i % 10 for i in range(n)])
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    with open(directory / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch}, f, protocol=2)
    return directory


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Replace torchvision's downloading dataset classes; record any call and fail it."""
    import torchvision.datasets as tvd

    calls: list[tuple] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append((args, kwargs))
        raise AssertionError("a test tried to download")

    for name in ("MNIST", "FashionMNIST", "KMNIST", "EMNIST", "CIFAR10"):
        monkeypatch.setattr(tvd, name, refuse)
    return calls


@pytest.fixture
def mnist_writer() -> Callable[..., dict[str, np.ndarray]]:
    """The :func:`write_mnist_files` helper."""
    return write_mnist_files


@pytest.fixture
def idx_writer() -> Callable[..., Path]:
    """The :func:`write_idx` helper."""
    return write_idx


@pytest.fixture
def cifar_writer() -> Callable[..., Path]:
    """The :func:`write_cifar` helper."""
    return write_cifar
