"""The ``som`` and ``som_select`` converters: contract, graph layout, runs on digits, reload, pictures."""

import csv
import json

import pytest
import torch

import graphforge
from graphforge.api import load_run
from graphforge.builtin.converters.som import SOM, SOMSelect
from graphforge.errors import ConfigError
from graphforge.plugins import get_registry
from graphforge.testing import check_registered, synthetic_splits

MAP_PICTURES = ("som_u_matrix.png", "som_class_map.png", "som_component_planes.png", "som_hit_map.png",
                "som_training.png")


@pytest.mark.parametrize("name", ["som", "som_select"])
def test_contract(name):
    check_registered("converter", name)


@pytest.fixture(scope="module")
def digits():
    return get_registry("dataset").get("digits").create().load(root=None, download=False, seed=0)


@pytest.mark.parametrize("topology, connectivity, undirected", [("rect", 4, 2 * 4 * 5 - 4 - 5),
                                                               ("rect", 8, 4 * 4 * 5 - 3 * 4 - 3 * 5 + 2),
                                                               ("hex", 4, 3 * 4 * 5 - 2 * 4 - 2 * 5 + 1)])
def test_som_graph_layout(topology, connectivity, undirected):
    data = synthetic_splits("images", per_class=10)
    conv = SOM(rows=4, cols=5, topology=topology, connectivity=connectivity, epochs=5, device="cpu")
    g = conv.convert(data)
    assert g.num_nodes == 20 and g.x.shape == (20, 144)
    assert g.edge_index.shape == (2, 2 * undirected)
    assert g.edge_weight.shape == (2 * undirected,)
    assert (g.edge_weight > 0).all() and (g.edge_weight <= 1).all()
    # Edge weights fall with the U-matrix distance between the two neurons' weights.
    dist = (g.x[g.edge_index[0]] - g.x[g.edge_index[1]]).norm(dim=1)
    assert torch.allclose(g.edge_weight, torch.exp(-dist / dist.mean()), atol=1e-5)
    assert int(g.hits.sum()) == len(data.train)
    for split in ("train", "val", "test"):
        s = getattr(data, split)
        index = g[f"{split}_index"]
        assert index.shape == (len(s),) and int(index.max()) < 20
        assert torch.equal(g[f"{split}_y"], s.y)
        assert torch.equal(g[f"{split}_mask"].nonzero().flatten(), index.unique())
    # Majority label of each neuron recomputed from the training samples' BMUs.
    for neuron in range(20):
        won = data.train.y[g.train_index == neuron]
        expected = -1 if len(won) == 0 else int(torch.bincount(won, minlength=3).argmax())
        assert int(g.neuron_label[neuron]) == expected


def test_selection_rules(digits):
    norm = SOMSelect(features=10, selection="norm", rows=6, cols=6, epochs=5, device="cpu")
    var = SOMSelect(features=10, selection="variance", rows=6, cols=6, epochs=5, device="cpu")
    norm.fit(digits)
    var.fit(digits)
    w = norm._som.weights  # same seed and options: the same map
    assert torch.equal(w, var._som.weights)
    # norm: weight columns mapped back to pixel scale ([0, 1]); variance: across neurons.
    raw = w * digits.train.x.std(unbiased=False) + digits.train.x.mean()
    expected_norm = raw.norm(dim=0).topk(10).indices.sort().values
    expected_var = w.var(0, unbiased=False).topk(10).indices.sort().values
    assert torch.equal(norm._selected, expected_norm)
    assert torch.equal(var._selected, expected_var)
    assert not torch.equal(norm._selected, var._selected)
    # The border pixels of the 8x8 digits are (almost) always blank: neither rule keeps them.
    border = {0, 7, 56, 63}
    assert not border & set(norm._selected.tolist()) and not border & set(var._selected.tolist())
    module = var.build(digits.spec)
    x = digits.test.x[:5]
    assert torch.equal(module(x), x.flatten(1)[:, expected_var])


def test_features_are_clamped_and_bad_options_are_clear():
    conv = SOMSelect(features=1000)
    assert conv.output_spec(graphforge.InputSpec("vectors", (16,))).shape == (16,)
    for kwargs, match in [({"rows": 0, "cols": 0}, "rows must be an integer >= 1"),
                          ({"sigma": 0}, "sigma must be a number > 0"), ({"sigma": -1}, "sigma"),
                          ({"features": 0}, "features must be an integer >= 1"),
                          ({"selection": "pca"}, "selection must be one of decorrelated, residual, between, variance, norm"),
                          ({"epochs": 0}, "SOM epochs"), ({"connectivity": 6}, "connectivity must be 4 or 8"),
                          ({"device": "tpu"}, "device must be"),
                          ({"dtype": "float16"}, "dtype must be one of float64, float32")]:
        with pytest.raises(ConfigError, match=match):
            SOMSelect(**kwargs)
    with pytest.raises(ConfigError, match="sigma must be a number > 0"):
        SOM(sigma=-0.5)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_som_dtype_option_reaches_the_map_and_the_graph_stays_float32(dtype):
    data = synthetic_splits("images", per_class=10)
    conv = SOM(rows=3, cols=3, epochs=2, device="cpu", dtype=dtype)
    g = conv.convert(data)
    assert conv._fitted().weights.dtype == getattr(torch, dtype)
    assert g.x.dtype is torch.float32 and g.x.data_ptr() != conv._fitted().weights.data_ptr()
    select = SOMSelect(features=5, rows=3, cols=3, epochs=2, device="cpu", dtype=dtype)
    select.fit(data)
    assert select.relevance("norm").dtype is torch.float32 and select.relevance("variance").dtype is torch.float32


def test_bad_options_leave_no_run_directory(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="fewer than 2 neurons"):
        graphforge.run("som", "sage", out=str(out), options={"rows": 1, "cols": 1})
    with pytest.raises(ConfigError, match="sigma"):
        graphforge.run("som_select", "knn", out=str(out), options={"sigma": 0, "k": 3})
    assert not out.exists()


def test_som_select_knn_on_digits_reloads_and_draws(tmp_path, digits):
    out = tmp_path / "sel"
    r = graphforge.run("som_select", "knn", seed=0, out=str(out),
                       options={"k": 3, "features": 32, "epochs": 10})
    assert r.metrics["test_accuracy"] > 0.9 and r.metrics["val_accuracy"] > 0.9
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["som_selected_features"]) == 32 and m["som_selection"] == "decorrelated"
    assert 0 < m["som_quantization_error"] and 0 <= m["som_topographic_error"] <= 1
    assert m["som_label_accuracy"] > 0.5
    with open(out / "som_history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(row["epoch"]) for row in rows] == list(range(1, 11))
    qe = [float(row["quantization_error"]) for row in rows]
    assert qe[-1] < qe[0]
    assert float(rows[-1]["quantization_error"]) == pytest.approx(m["som_quantization_error"])
    for name in (*MAP_PICTURES, "som_pixel_relevance.png"):
        assert (out / "plots" / name).stat().st_size > 1000, name
    # The checkpoint holds the selection: the reloaded run predicts exactly like the run.
    trained = load_run(out)
    assert torch.equal(trained._prefix[1].index, torch.tensor(m["som_selected_features"]))
    pred = trained.predict(digits.test.x)
    assert float((pred == digits.test.y).float().mean()) == pytest.approx(r.metrics["test_accuracy"], abs=1e-6)
    assert torch.equal(pred, load_run(out).predict(digits.test.x))
    # new checkpoints record the float64 map; those of earlier versions (no dtype) were float32 maps
    meta = torch.load(out / "checkpoint.pt", weights_only=True)["meta"]
    assert meta["built_options"]["converter"]["dtype"] == "float64"
    assert SOMSelect.upgrade_options({"rows": 20}) == {"rows": 20, "dtype": "float32"}
    assert SOM.upgrade_options({"dtype": "float64"}) == {"dtype": "float64"}


def test_som_gnn_on_digits_classifies_through_bmus(tmp_path):
    out = tmp_path / "gnn"
    r = graphforge.run("som", "sage", seed=0, epochs=40, lr=0.01, out=str(out),
                       options={"epochs": 8, "topology": "hex", "hidden": 32})
    assert r.metrics["test_accuracy"] > 0.6  # chance is 0.1; the map's own vote gets ~0.9
    assert r.metrics["som_bmu_test_accuracy"] > 0.6
    assert r.metrics["som_grid"] == "10x10 hex"
    for name in MAP_PICTURES:
        assert (out / "plots" / name).stat().st_size > 1000, name
    saved = torch.load(out / "som_map.pt")
    assert saved["weights"].shape == (100, 64) and int(saved["hits"].sum()) == r.metrics["num_train"]


def test_cli_runs_the_original_pipeline(tmp_path):
    from click.testing import CliRunner

    from graphforge.cli.main import cli, load_plugin_commands

    load_plugin_commands()
    res = CliRunner().invoke(cli, ["run", "--converter", "som_select", "--model", "knn", "-o", "k=3",
                                   "-o", "features=24", "-o", "selection=norm", "-o", "epochs=4", "-o", "rows=6",
                                   "--out", str(tmp_path / "cli"), "--json", "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout.strip().splitlines()[-1])
    assert metrics["som_selection"] == "norm" and len(metrics["som_selected_features"]) == 24
    assert metrics["som_epochs"] == 4 and metrics["som_grid"] == "6x20 rect"
    assert metrics["test_accuracy"] > 0.85
