"""The embedded ``digits`` dataset."""

from __future__ import annotations

import pytest
import torch

from graphforge.builtin.datasets.digits import Digits
from graphforge.errors import ConfigError


@pytest.fixture(scope="module")
def splits():
    return Digits().load(root=None, download=False, seed=0)


def test_shapes_and_dtypes(splits):
    assert splits.kind == "images"
    assert splits.name == "digits"
    assert splits.num_classes == 10
    assert splits.class_names == [str(i) for i in range(10)]
    for split in (splits.train, splits.val, splits.test):
        assert split.x.dtype == torch.float32
        assert split.x.shape[1:] == (1, 8, 8)
        assert split.y.dtype == torch.int64
    assert float(splits.train.x.min()) >= 0.0 and float(splits.train.x.max()) == 1.0


def test_split_sizes_are_80_10_10(splits):
    sizes = splits.sizes()
    assert sum(sizes.values()) == 1797
    assert 170 <= sizes["val"] <= 180 and 170 <= sizes["test"] <= 180


def test_every_split_is_stratified(splits):
    for split in (splits.train, splits.val, splits.test):
        counts = torch.bincount(split.y, minlength=10).float()
        share = counts / counts.sum()
        assert (share - 0.1).abs().max() < 0.02


def test_splits_partition_the_whole_dataset(splits):
    from sklearn.datasets import load_digits

    def rows(x, y):
        pixels = (x.reshape(len(x), -1) * 16).round().to(torch.int64)
        pairs = zip(pixels.tolist(), y.tolist(), strict=True)
        return sorted((*p, int(label)) for p, label in pairs)

    bunch = load_digits()
    expected = rows(torch.from_numpy(bunch.images) / 16, torch.from_numpy(bunch.target))
    got = rows(
        torch.cat([splits.train.x, splits.val.x, splits.test.x]),
        torch.cat([splits.train.y, splits.val.y, splits.test.y]),
    )
    assert got == expected


def test_same_seed_same_split_other_seed_differs(splits):
    again = Digits().load(root=None, download=False, seed=0)
    other = Digits().load(root=None, download=False, seed=1)
    assert torch.equal(again.test.x, splits.test.x)
    assert torch.equal(again.train.y, splits.train.y)
    assert not torch.equal(other.test.x, splits.test.x)


def test_fractions_are_options():
    data = Digits(val_fraction=0.2, test_fraction=0.3).load(root=None, download=False, seed=0)
    sizes = data.sizes()
    assert abs(sizes["val"] / 1797 - 0.2) < 0.01
    assert abs(sizes["test"] / 1797 - 0.3) < 0.01


def test_ignores_root_and_download(tmp_path):
    data = Digits().load(root=tmp_path / "nowhere", download=True, seed=0)
    assert len(data.train) > 0
    assert not (tmp_path / "nowhere").exists()
    assert Digits.needs_files is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"val_fraction": -0.1},
        {"test_fraction": 1.0},
        {"val_fraction": 0.6, "test_fraction": 0.5},
        {"val_fraction": "lots"},
    ],
)
def test_bad_fractions_are_config_errors(kwargs):
    with pytest.raises(ConfigError, match="fraction"):
        Digits(**kwargs)
