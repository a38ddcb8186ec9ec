"""Plugin discovery: built-ins, run-time registration, entry points, failures."""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import graphforge
import graphforge.plugins as gf_plugins
from graphforge.errors import PluginError
from tests.helpers import TestModelsPlugin

PLUGIN_SOURCE = textwrap.dedent(
    '''
    import graphforge
    from graphforge.builtin.models.mlp import MLP


    class TinyMLP(MLP):
        """A one-layer MLP shipped by a third-party package."""

        def __init__(self, hidden: int = 24):
            super().__init__(hidden=hidden, layers=1)


    @graphforge.hookimpl
    def register_models(register):
        register("tiny-mlp", TinyMLP)
    '''
)


def make_distribution(site: Path, module: str, dist: str, source: str, ep_name: str) -> None:
    """Lay out an installed distribution (module + dist-info) the way pip does."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text(f"[graphforge]\n{ep_name} = {module}\n")
    (info / "RECORD").write_text("")


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch, fresh_plugins):
    site = tmp_path / "site"
    make_distribution(site, "gf_tiny_plugin", "gf-tiny-plugin", PLUGIN_SOURCE, "tiny")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_builtins_come_through_the_hooks():
    builtin = [e for e in gf_plugins.iter_entries() if e.plugin.startswith("graphforge.builtin.")]
    assert {e.plugin for e in builtin} == {p for p in gf_plugins.DEFAULT_PLUGINS if ".commands." not in p}
    assert {"digits", "none", "dyn_knn", "mlp", "sage", "knn"} <= {e.name for e in builtin}


def test_plugin_registered_at_run_time_is_listed_and_runs(plugin_registered, tmp_path):
    assert "centroid" not in graphforge.list_models()
    plugin_registered(TestModelsPlugin(), "test-models")
    assert "centroid" in graphforge.list_models()
    entry = gf_plugins.get_registry("model").get("centroid")
    assert entry.plugin == "test-models"
    result = graphforge.run("none", "centroid", out=str(tmp_path / "r"))
    assert result.metrics["test_accuracy"] > 0.5


def test_unregistered_plugin_disappears(plugin_registered):
    name = plugin_registered(TestModelsPlugin(), "test-models")
    gf_plugins.unregister_plugin(name)
    assert "centroid" not in graphforge.list_models()
    gf_plugins.register_plugin(TestModelsPlugin(), name)  # the fixture unregisters it again


def test_two_plugins_claiming_one_name(plugin_registered):
    class Clash:
        @graphforge.hookimpl
        def register_models(self, register):
            register("mlp", object)

    plugin_registered(Clash(), "clashing-plugin")
    with pytest.raises(PluginError, match="'mlp' is claimed by two plugins: 'graphforge.builtin.models' and 'clashing-plugin'"):
        graphforge.list_models()


def test_entry_point_plugin_is_discovered(installed_plugin, tmp_path):
    assert "tiny-mlp" in graphforge.list_models()
    entry = gf_plugins.get_registry("model").get("tiny-mlp")
    assert entry.plugin == "tiny"
    info = {i.name: i for i in gf_plugins.plugin_infos()}["tiny"]
    assert (info.distribution, info.version, info.builtin) == ("gf-tiny-plugin", "0.3.0", False)
    assert gf_plugins.plugin_hooks("tiny") == ["register_models"]
    result = graphforge.run("none", "tiny-mlp", epochs=2, out=str(tmp_path / "r"))
    assert 0 <= result.metrics["test_accuracy"] <= 1


def test_load_plugins_env_restricts(installed_plugin, monkeypatch):
    monkeypatch.setenv("GRAPHFORGE_LOAD_PLUGINS", "")
    gf_plugins.reset()
    assert "tiny-mlp" not in graphforge.list_models()
    assert "mlp" in graphforge.list_models()  # built-ins always load
    monkeypatch.setenv("GRAPHFORGE_LOAD_PLUGINS", "gf-tiny-plugin")  # distribution name works too
    gf_plugins.reset()
    assert "tiny-mlp" in graphforge.list_models()


def test_plugin_that_fails_to_import_is_a_warning(tmp_path, monkeypatch, fresh_plugins):
    site = tmp_path / "site"
    make_distribution(site, "gf_broken_plugin", "gf-broken-plugin", "raise RuntimeError('boom')\n", "broken")
    monkeypatch.syspath_prepend(str(site))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        models = graphforge.list_models()
    assert "mlp" in models
    messages = [str(w.message) for w in caught if issubclass(w.category, gf_plugins.PluginWarning)]
    assert any("'broken'" in m and "boom" in m for m in messages), messages


def test_cli_sees_installed_plugin_in_a_fresh_process(installed_plugin, tmp_path):
    # GRAPHFORGE_LOAD_PLUGINS keeps other installed plugins (plugins/ packages) out of the listing
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(installed_plugin), str(Path.cwd())]),
               GRAPHFORGE_LOAD_PLUGINS="tiny")
    cmd = [sys.executable, "-m", "graphforge"]
    models = json.loads(subprocess.run(cmd + ["list", "models", "--json"], env=env, check=True,
                                       capture_output=True, text=True).stdout)
    assert {"name": "tiny-mlp", "plugin": "tiny"}.items() <= {k: v for r in models if r["name"] == "tiny-mlp" for k, v in r.items()}.items()
    plugins = json.loads(subprocess.run(cmd + ["plugins", "--json"], env=env, check=True,
                                        capture_output=True, text=True).stdout)
    assert [(p["name"], p["version"], p["provides"]) for p in plugins] == [("tiny", "0.3.0", {"models": ["tiny-mlp"]})]
    run = subprocess.run(cmd + ["run", "--model", "tiny-mlp", "--epochs", "2", "--json", "-q", "--out", str(tmp_path / "r")],
                         env=env, check=True, capture_output=True, text=True)
    assert "test_accuracy" in json.loads(run.stdout)
