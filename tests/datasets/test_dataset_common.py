"""Shared helpers: data roots, option parsing and guarded stratified splits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from graphforge.builtin.datasets._common import (
    default_data_dir,
    parse_bool,
    resolve_root,
    stratified_parts,
)
from graphforge.errors import ConfigError, DataError


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("GRAPHFORGE_DATA", raising=False)
    assert default_data_dir() == Path.home() / ".cache" / "graphforge" / "datasets"
    monkeypatch.setenv("GRAPHFORGE_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path


def test_resolve_root(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHFORGE_DATA", str(tmp_path / "cache"))
    assert resolve_root("x", None, download=True) == tmp_path / "cache"
    assert (tmp_path / "cache").is_dir()
    assert resolve_root("x", str(tmp_path), download=False) == tmp_path
    with pytest.raises(DataError, match="x: no data given; pass --data-root DIR .* or --download"):
        resolve_root("x", None, download=False)


@pytest.mark.parametrize(
    ("text", "value"), [("yes", True), ("False", False), (1, True), ("0", False)]
)
def test_parse_bool(text, value):
    assert parse_bool("flag", text) is value


def test_parse_bool_rejects_other_text():
    with pytest.raises(ConfigError, match="flag must be true or false"):
        parse_bool("flag", "perhaps")


def test_stratified_parts_minimum_class_size():
    y = torch.tensor([0] * 10 + [1] * 9)
    with pytest.raises(DataError, match="class 'b' has only 9 samples.*at least 10"):
        stratified_parts("x", y, [0.8, 0.1, 0.1], 0, ["a", "b"])
    parts = stratified_parts("x", y, [0.5, 0.5], 0)
    assert [len(p) for p in parts] == [10, 9]
    # a zero fraction needs no samples
    assert len(stratified_parts("x", y, [0.8, 0.0, 0.2], 0)[1]) == 0
