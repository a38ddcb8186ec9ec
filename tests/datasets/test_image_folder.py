"""``image-folder`` from tiny PNG files made with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from graphforge.builtin.datasets.image_folder import ImageFolder, parse_size
from graphforge.errors import ConfigError, DataError

CLASSES = ("cat", "dog", "fox")


def make_images(folder: Path, n_per_class: int, size=(12, 10), classes=CLASSES) -> None:
    """Write ``n_per_class`` PNGs per class; class i has red channel 50 * (i + 1)."""
    for i, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for j in range(n_per_class):
            array = np.zeros((size[0], size[1], 3), np.uint8)
            array[..., 0] = 50 * (i + 1)
            array[..., 1] = j
            Image.fromarray(array).save(folder / name / f"{j}.png")


def test_class_folders_are_split_here(tmp_path, no_download):
    make_images(tmp_path, 10)
    data = ImageFolder(size=None).load(root=tmp_path, download=False, seed=0)
    assert data.class_names == list(CLASSES)
    assert data.sizes() == {"train": 24, "val": 3, "test": 3}
    assert data.train.x.dtype == torch.uint8 and data.train.x.shape[1:] == (3, 12, 10)
    for split in (data.train, data.val, data.test):
        red = split.x[:, 0, 0, 0].long()
        assert torch.equal(red, 50 * (split.y + 1))
    again = ImageFolder(size=None).load(root=tmp_path, download=False, seed=0)
    assert torch.equal(again.test.x, data.test.x)


def test_resize_and_grayscale(tmp_path):
    make_images(tmp_path, 10)
    data = ImageFolder(size="8x6", grayscale=True).load(root=tmp_path, download=False, seed=0)
    assert data.train.x.shape[1:] == (1, 8, 6)
    default = ImageFolder().load(root=tmp_path, download=False, seed=0)
    assert default.train.x.shape[1:] == (3, 32, 32)


def test_train_test_layout_with_val_carved(tmp_path):
    make_images(tmp_path / "train", 10)
    make_images(tmp_path / "test", 2)
    data = ImageFolder(size=None, val_fraction=0.2).load(root=tmp_path, download=False, seed=0)
    assert data.sizes() == {"train": 24, "val": 6, "test": 6}
    assert torch.equal(data.test.y, torch.tensor([0, 0, 1, 1, 2, 2]))


def test_train_val_test_layout(tmp_path):
    for part, n in (("train", 4), ("val", 2), ("test", 3)):
        make_images(tmp_path / part, n)
    data = ImageFolder(size=None).load(root=tmp_path, download=False, seed=0)
    assert data.sizes() == {"train": 12, "val": 6, "test": 9}


def test_class_sets_must_match(tmp_path):
    make_images(tmp_path / "train", 4)
    make_images(tmp_path / "test", 2, classes=("cat", "dog", "owl"))
    with pytest.raises(
        DataError, match=r"test differ from .*train: missing \['fox'\], extra \['owl'\]"
    ):
        ImageFolder().load(root=tmp_path, download=False, seed=0)


def test_corrupt_image_is_named(tmp_path):
    make_images(tmp_path, 10)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"cannot read image .*dog/broken\.png"):
        ImageFolder().load(root=tmp_path, download=False, seed=0)


def test_unequal_sizes_need_size_option(tmp_path):
    make_images(tmp_path, 10)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "cat" / "small.png")
    with pytest.raises(DataError, match="is 5x5 but .* set the size option"):
        ImageFolder(size=None).load(root=tmp_path, download=False, seed=0)


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="has no class sub-folders"):
        ImageFolder().load(root=tmp_path, download=False, seed=0)


def test_class_folder_without_images(tmp_path):
    make_images(tmp_path, 10)
    (tmp_path / "emu").mkdir()
    (tmp_path / "emu" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="class folder .*emu has no images"):
        ImageFolder().load(root=tmp_path, download=False, seed=0)


def test_too_few_images_to_stratify(tmp_path):
    make_images(tmp_path, 3)
    with pytest.raises(DataError, match="class 'cat' has only 3 samples.*at least 10"):
        ImageFolder().load(root=tmp_path, download=False, seed=0)


def test_single_class(tmp_path):
    make_images(tmp_path, 10, classes=("cat",))
    with pytest.raises(DataError, match="at least 2 classes"):
        ImageFolder().load(root=tmp_path, download=False, seed=0)


def test_root_required(tmp_path):
    with pytest.raises(DataError, match="--data-root DIR"):
        ImageFolder().load(root=None, download=True, seed=0)
    with pytest.raises(DataError, match="is not a directory"):
        ImageFolder().load(root=tmp_path / "missing", download=False, seed=0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (32, (32, 32)),
        ("28", (28, 28)),
        ("28x14", (28, 14)),
        ([5, 6], (5, 6)),
        (None, None),
        ("none", None),
    ],
)
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", [0, "-3", "axb", "3x4x5", True, "32x"])
def test_bad_size(value):
    with pytest.raises(ConfigError, match="size"):
        ImageFolder(size=value)


def test_bad_grayscale():
    with pytest.raises(ConfigError, match="grayscale must be true or false"):
        ImageFolder(grayscale="maybe")
    assert ImageFolder(grayscale="true").grayscale is True


def test_symbolic_links_out_of_the_data_folder_are_not_followed(tmp_path, caplog):
    import logging

    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    make_images(root, 4)
    make_images(elsewhere, 2, classes=("secret",))
    (root / "cat" / "leak.png").symlink_to(elsewhere / "secret" / "0.png")
    (root / "secret").symlink_to(elsewhere / "secret", target_is_directory=True)
    (root / "dog" / "inside.png").symlink_to(root / "dog" / "0.png")  # inside the folder: fine
    with caplog.at_level(logging.WARNING, logger="graphforge"):
        data = ImageFolder(val_fraction=0.0, test_fraction=0.25).load(root=root, download=False, seed=0)
    assert list(data.class_names) == list(CLASSES)
    assert len(data.train) + len(data.test) == 13  # 4 + 5 + 4: the in-folder link counts, the others do not
    assert "skipped 2 symbolic link(s) that point outside" in caplog.text
