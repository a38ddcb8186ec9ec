"""The docs stay true: every hook is documented, README examples run, Quickstart matches CI."""

import inspect
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import graphforge.plugins as gf_plugins
from graphforge import hookspecs

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PLUGIN_GUIDE = (ROOT / "docs" / "plugins.md").read_text()
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = re.search(r"\n#{1,3} ", text[start + len(heading):])
    return text[start: start + len(heading) + (following.start() if following else len(text))]


def _fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    assert re.search(rf"^### `{hook}\(", PLUGIN_GUIDE, flags=re.M), f"docs/plugins.md lacks a section for {hook}"
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert doc and len(doc.splitlines()) == 1, f"{hook} needs a one-line docstring"
    assert hook in README, f"README does not mention {hook}"


def test_hooks_are_the_expected_five():
    assert sorted(HOOKS) == ["register_commands", "register_converters", "register_datasets", "register_embedders",
                             "register_models"]


def test_quickstart_has_two_commands_and_ci_runs_the_second():
    block = _fenced(_section(README, "## Quickstart"), "bash")[0]
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1].strip() in [line.strip() for line in ci.splitlines()], ".ci/run must run the README's test command"


def test_readme_new_modality_example_runs(tmp_path, monkeypatch):
    code = _fenced(_section(README, "### A new modality in about 15 lines"), "python")[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 20
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 32)
    rows = []
    for label, make in enumerate((lambda p: np.sin(2 * np.pi * 3 * t + p),
                                  lambda p: np.sign(np.sin(2 * np.pi * 3 * t + p)),
                                  lambda p: rng.normal(size=32))):
        for _ in range(60):
            rows.append([*(make(rng.uniform(0, 6.3)) + rng.normal(0, 0.2, 32)), label])
    pd.DataFrame(rows, columns=[f"t{i}" for i in range(32)] + ["label"]).to_csv(tmp_path / "windows.csv", index=False)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    try:
        exec(compile(code, "README.md", "exec"), namespace)
        assert namespace["result"].metrics["test_accuracy"] > 0.6  # 3 classes
    finally:
        gf_plugins.unregister_plugin("series")
