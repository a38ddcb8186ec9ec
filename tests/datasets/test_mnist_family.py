"""MNIST, Fashion-MNIST, KMNIST and EMNIST from tiny IDX files."""

from __future__ import annotations

import string

import numpy as np
import pytest
import torch

from graphforge.builtin.datasets import mnist
from graphforge.builtin.datasets.mnist import (
    VARIANTS,
    EmnistBalanced,
    EmnistByClass,
    EmnistLetters,
    FashionMnist,
    Kmnist,
    Mnist,
)
from graphforge.errors import DataError


def test_torchvision_layout_gz(tmp_path, mnist_writer, no_download):
    arrays = mnist_writer(tmp_path / "MNIST" / "raw", gz=True)
    data = Mnist(val_fraction=0.25).load(root=tmp_path, download=False, seed=0)
    assert data.name == "mnist" and data.kind == "images"
    assert data.sizes() == {"train": 32, "val": 8, "test": 20}
    assert data.train.x.dtype == torch.uint8 and data.train.x.shape[1:] == (1, 28, 28)
    assert data.class_names == [str(i) for i in range(10)]
    assert data.num_classes == 10
    # the test split is the test file, in order
    assert torch.equal(data.test.x[:, 0], torch.from_numpy(arrays["test_images"]))
    assert torch.equal(data.test.y, torch.from_numpy(arrays["test_labels"]).long())
    # validation is stratified: a quarter of the 10 train images of each of 4 classes
    assert torch.bincount(data.val.y).tolist() == [2, 2, 2, 2]
    assert no_download == []


def test_flat_layout_raw(tmp_path, mnist_writer, no_download):
    arrays = mnist_writer(tmp_path, n_train=40, num_classes=4)
    data = Mnist(val_fraction=0.25).load(root=tmp_path, download=False, seed=0)
    train_x = torch.cat([data.train.x, data.val.x])[:, 0]
    train_y = torch.cat([data.train.y, data.val.y])
    # every image keeps its label (the label is written into pixel 0,0)
    assert torch.equal(train_x[:, 0, 0].long(), train_y)
    assert len(train_x) == len(arrays["train_images"])


def test_same_seed_same_validation_split(tmp_path, mnist_writer, no_download):
    mnist_writer(tmp_path, n_train=80)
    first = Mnist().load(root=tmp_path, download=False, seed=3)
    again = Mnist().load(root=tmp_path, download=False, seed=3)
    other = Mnist().load(root=tmp_path, download=False, seed=4)
    assert torch.equal(first.val.x, again.val.x)
    assert not torch.equal(first.val.x, other.val.x)


def test_zero_val_fraction_gives_empty_val(tmp_path, mnist_writer, no_download):
    mnist_writer(tmp_path)
    data = Mnist(val_fraction=0).load(root=tmp_path, download=False, seed=0)
    assert data.sizes() == {"train": 40, "val": 0, "test": 20}
    assert data.val.x.shape[1:] == (1, 28, 28)


@pytest.mark.parametrize(
    ("cls", "folder", "first_class"),
    [(FashionMnist, "FashionMNIST", "T-shirt/top"), (Kmnist, "KMNIST", "o")],
)
def test_fashion_and_kmnist_folders(tmp_path, mnist_writer, no_download, cls, folder, first_class):
    mnist_writer(tmp_path / folder / "raw")
    data = cls(val_fraction=0.25).load(root=tmp_path, download=False, seed=0)
    assert data.num_classes == 10
    assert data.class_names[0] == first_class


def test_mnist_files_do_not_count_as_fashion(tmp_path, mnist_writer, no_download):
    mnist_writer(tmp_path / "MNIST" / "raw")
    with pytest.raises(DataError, match="fashion-mnist: no IDX files found"):
        FashionMnist().load(root=tmp_path, download=False, seed=0)


def test_emnist_letters_labels_and_transpose(tmp_path, idx_writer, no_download):
    raw = tmp_path / "EMNIST" / "raw"
    # one asymmetric image per class; stored transposed as in the EMNIST files
    upright = np.zeros((52, 28, 28), np.uint8)
    upright[:, 0, 5] = 255  # a mark in the top row, column 5
    labels = (np.arange(52) % 26 + 1).astype(np.uint8)  # 1..26
    stored = upright.transpose(0, 2, 1)
    for part in ("train", "test"):
        idx_writer(raw / f"emnist-letters-{part}-images-idx3-ubyte", stored, gz=True)
        idx_writer(raw / f"emnist-letters-{part}-labels-idx1-ubyte", labels, gz=True)
    data = EmnistLetters(val_fraction=0).load(root=tmp_path, download=False, seed=0)
    assert data.num_classes == 26
    assert data.class_names == list(string.ascii_lowercase)
    assert data.test.y.tolist() == (labels.astype(int) - 1).tolist()
    assert data.train.y.min() == 0 and data.train.y.max() == 25
    assert torch.equal(data.test.x[:, 0], torch.from_numpy(upright))


def test_emnist_letters_rejects_label_zero(tmp_path, mnist_writer, no_download):
    # label_offset=0 writes labels 0..3, but letters are stored 1..26
    mnist_writer(tmp_path, prefix="emnist-letters-", test_stem="test")
    with pytest.raises(DataError, match=r"has label 0 at index 0, outside 1\.\.26"):
        EmnistLetters().load(root=tmp_path, download=False, seed=0)


def test_out_of_range_label(tmp_path, mnist_writer, no_download):
    mnist_writer(tmp_path, num_classes=12)
    with pytest.raises(
        DataError, match=r"train-labels-idx1-ubyte has label 10 at index 10, outside 0\.\.9"
    ):
        Mnist().load(root=tmp_path, download=False, seed=0)


def test_emnist_class_names():
    assert len(VARIANTS["emnist-balanced"].class_names) == 47
    assert len(VARIANTS["emnist-bymerge"].class_names) == 47
    assert len(VARIANTS["emnist-byclass"].class_names) == 62
    assert VARIANTS["emnist-byclass"].class_names[10] == "A"
    assert VARIANTS["emnist-byclass"].class_names[36] == "a"
    assert VARIANTS["emnist-balanced"].class_names[36:] == tuple("abdefghnqrt")
    assert VARIANTS["emnist-digits"].class_names == tuple("0123456789")


@pytest.mark.parametrize("cls", [EmnistBalanced, EmnistByClass])
def test_other_emnist_splits_load(tmp_path, mnist_writer, no_download, cls):
    split = cls.variant.name.split("-", 1)[1]
    mnist_writer(
        tmp_path / "EMNIST" / "raw",
        prefix=f"emnist-{split}-",
        test_stem="test",
        num_classes=5,
        n_train=50,
    )
    data = cls().load(root=tmp_path, download=False, seed=0)
    assert data.num_classes == len(cls.variant.class_names)
    assert data.sizes() == {"train": 45, "val": 5, "test": 20}


def test_count_mismatch(tmp_path, mnist_writer, idx_writer, no_download):
    mnist_writer(tmp_path)
    idx_writer(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="has 20 images but .*t10k-labels-idx1-ubyte has 19 labels"):
        Mnist().load(root=tmp_path, download=False, seed=0)


def test_corrupt_file_is_named(tmp_path, mnist_writer, no_download):
    mnist_writer(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="train-images-idx3-ubyte: truncated IDX file"):
        Mnist().load(root=tmp_path, download=False, seed=0)


def test_partial_file_set(tmp_path, mnist_writer, no_download):
    mnist_writer(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="but not t10k-images-idx3-ubyte"):
        Mnist().load(root=tmp_path, download=False, seed=0)


def test_no_files_says_how_to_get_them(tmp_path, no_download):
    with pytest.raises(DataError) as err:
        Mnist().load(root=tmp_path, download=False, seed=0)
    message = str(err.value)
    assert message.startswith(f"mnist: no IDX files found under {tmp_path}")
    assert "train-images-idx3-ubyte" in message
    assert "--data-root" in message and "--download" in message
    assert "\n" not in message
    assert no_download == []


def test_no_root_and_no_download(no_download):
    with pytest.raises(DataError, match="--data-root.*--download"):
        EmnistLetters().load(root=None, download=False, seed=0)
    assert no_download == []


def test_missing_root(tmp_path, no_download):
    with pytest.raises(DataError, match=r"--data-root .*nowhere does not exist.*--download"):
        Mnist().load(root=tmp_path / "nowhere", download=False, seed=0)


def test_root_is_a_file(tmp_path, no_download):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(DataError, match="is a file"):
        Mnist().load(root=path, download=True, seed=0)


def test_download_uses_torchvision_then_own_reader(tmp_path, monkeypatch, mnist_writer):
    import torchvision.datasets as tvd

    calls = []

    def fake_emnist(root, train, download, split):
        calls.append((root, train, download, split))
        mnist_writer(
            tmp_path / "cache" / "EMNIST" / "raw",
            prefix=f"emnist-{split}-",
            test_stem="test",
            num_classes=26,
            n_train=260,
            label_offset=1,
        )

    monkeypatch.setattr(tvd, "EMNIST", fake_emnist)
    monkeypatch.setenv("GRAPHFORGE_DATA", str(tmp_path / "cache"))
    data = EmnistLetters().load(root=None, download=True, seed=0)
    assert calls == [(str(tmp_path / "cache"), True, True, "letters")]
    assert data.sizes() == {"train": 234, "val": 26, "test": 20}
    # files are there now: a second load does not download again
    EmnistLetters().load(root=tmp_path / "cache", download=True, seed=0)
    assert len(calls) == 1


def test_download_into_missing_root_creates_it(tmp_path, monkeypatch, mnist_writer):
    import torchvision.datasets as tvd

    def fake_mnist(root, train, download):
        mnist_writer(tmp_path / "new" / "MNIST" / "raw")

    monkeypatch.setattr(tvd, "MNIST", fake_mnist)
    data = Mnist(val_fraction=0.25).load(root=tmp_path / "new", download=True, seed=0)
    assert len(data.test) == 20


def test_download_failure_is_a_data_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(tvd, "KMNIST", offline)
    with pytest.raises(DataError, match="kmnist: download into .* failed .*--data-root"):
        Kmnist().load(root=tmp_path, download=True, seed=0)


def test_every_variant_is_registered():
    names = {cls.variant.name for cls in mnist.DATASETS}
    assert names == set(VARIANTS)
    assert {
        "mnist",
        "fashion-mnist",
        "kmnist",
        "emnist-letters",
        "emnist-balanced",
        "emnist-byclass",
        "emnist-bymerge",
        "emnist-digits",
        "emnist-mnist",
    } == names
