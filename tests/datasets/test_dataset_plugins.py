"""Contract tests over every built-in dataset, registered through the plugin hooks."""

from __future__ import annotations

import inspect

import pytest

from graphforge.core.dataset import Dataset
from graphforge.errors import DataError
from graphforge.plugins import get_registry

BUILTIN = {
    "digits",
    "mnist",
    "fashion-mnist",
    "kmnist",
    "emnist-letters",
    "emnist-balanced",
    "emnist-byclass",
    "emnist-bymerge",
    "emnist-digits",
    "emnist-mnist",
    "cifar10",
    "image-folder",
    "embeddings",
}


def builtin_entries():
    registry = get_registry("dataset")
    return [registry.get(name) for name in sorted(BUILTIN)]


def test_all_builtin_datasets_are_registered_by_builtin_plugins():
    registry = get_registry("dataset")
    assert set(registry.names()) >= BUILTIN
    for entry in builtin_entries():
        assert entry.plugin == "graphforge.builtin.datasets"
        assert entry.describe()


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_creates_with_defaults_and_options_have_defaults(name):
    entry = get_registry("dataset").get(name)
    dataset = entry.create()
    assert isinstance(dataset, Dataset)
    assert all(d is not inspect.Parameter.empty for d in entry.options().values())
    assert repr(dataset).startswith(f"{type(dataset).__name__}(") and "val_fraction=0.1" in repr(
        dataset
    )


@pytest.mark.parametrize("name", sorted(BUILTIN - {"digits"}))
def test_file_datasets_without_data_say_how_to_get_it(name, no_download):
    dataset = get_registry("dataset").get(name).create()
    assert type(dataset).needs_files is True
    with pytest.raises(DataError) as err:
        dataset.load(root=None, download=False, seed=0)
    message = str(err.value)
    assert message.startswith(f"{name}: ") and "--data-root" in message and "\n" not in message
    assert no_download == []


def test_val_fraction_is_an_option_everywhere():
    for entry in builtin_entries():
        assert entry.options()["val_fraction"] == 0.1
