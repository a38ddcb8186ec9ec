"""CIFAR-10 from tiny fake python-pickle batches."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from graphforge.builtin.datasets.cifar10 import Cifar10, read_batch
from graphforge.errors import DataError


@pytest.mark.parametrize("nested", [True, False])
def test_loads_batches(tmp_path, cifar_writer, no_download, nested):
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    cifar_writer(folder, per_batch=20, n_test=30)
    data = Cifar10(val_fraction=0.1).load(root=tmp_path, download=False, seed=0)
    assert data.sizes() == {"train": 90, "val": 10, "test": 30}
    assert data.train.x.dtype == torch.uint8 and data.train.x.shape[1:] == (3, 32, 32)
    assert data.class_names[0] == "airplane" and data.class_names[-1] == "truck"
    assert torch.bincount(data.val.y).tolist() == [1] * 10
    assert no_download == []


def test_pixel_layout_is_channel_first(tmp_path, cifar_writer):
    cifar_writer(tmp_path)
    rows = np.zeros((10, 3072), np.uint8)
    rows[:, :1024] = 10  # red plane
    rows[:, 1024:2048] = 20  # green plane
    rows[:, 2048:] = 30  # blue plane
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": rows, b"labels": list(range(10))}, f, protocol=2)
    split = read_batch(tmp_path / "test_batch")
    assert split.x[:, 0].unique().tolist() == [10]
    assert split.x[:, 1].unique().tolist() == [20]
    assert split.x[:, 2].unique().tolist() == [30]


def test_missing_batch(tmp_path, cifar_writer, no_download):
    cifar_writer(tmp_path / "cifar-10-batches-py")
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DataError, match="is missing data_batch_3"):
        Cifar10().load(root=tmp_path, download=False, seed=0)


def test_no_files(tmp_path, no_download):
    with pytest.raises(DataError, match="no CIFAR-10 batches found.*--data-root.*--download"):
        Cifar10().load(root=tmp_path, download=False, seed=0)
    assert no_download == []


def test_tarball_hint(tmp_path, no_download):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match="extract it first"):
        Cifar10().load(root=tmp_path, download=False, seed=0)


def test_truncated_pickle(tmp_path, cifar_writer):
    cifar_writer(tmp_path)
    path = tmp_path / "data_batch_2"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="cannot read .*data_batch_2.*corrupt"):
        Cifar10().load(root=tmp_path, download=False, seed=0)


def test_wrong_shape(tmp_path, cifar_writer):
    cifar_writer(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, f)
    with pytest.raises(DataError, match=r"'data' must be uint8 \[N, 3072\]"):
        Cifar10().load(root=tmp_path, download=False, seed=0)


def test_label_count_mismatch_and_range(tmp_path, cifar_writer):
    cifar_writer(tmp_path)
    path = tmp_path / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, f)
    with pytest.raises(DataError, match="4 images but 3 labels"):
        read_batch(path)
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, f)
    with pytest.raises(DataError, match=r"label 10 at index 1, outside 0\.\.9"):
        read_batch(path)


def test_missing_key(tmp_path):
    path = tmp_path / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, f)
    with pytest.raises(DataError, match="has no 'labels' entry"):
        read_batch(path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickles_cannot_run_code(tmp_path):
    path = tmp_path / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, f)
    with pytest.raises(DataError, match="refusing to load"):
        read_batch(path)


def test_highest_protocol_numpy_pickles_load(tmp_path):
    path = tmp_path / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({"data": np.ones((2, 3072), np.uint8), "labels": [1, 2]}, f, protocol=5)
    split = read_batch(path)
    assert split.y.tolist() == [1, 2] and int(split.x.sum()) == 2 * 3072


def test_download(tmp_path, monkeypatch, cifar_writer):
    import torchvision.datasets as tvd

    calls = []

    def fake_cifar(root, train, download):
        calls.append(root)
        cifar_writer(tmp_path / "cifar-10-batches-py")

    monkeypatch.setattr(tvd, "CIFAR10", fake_cifar)
    data = Cifar10().load(root=tmp_path, download=True, seed=0)
    assert calls == [str(tmp_path)] and len(data.test) == 20
