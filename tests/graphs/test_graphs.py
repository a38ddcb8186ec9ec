"""graphforge.graphs and ``graphforge graph``: build, save / load in every format, stats, pictures, errors."""

from __future__ import annotations

import json

import networkx as nx
import pytest
import torch
from click.testing import CliRunner
from torch_geometric.data import Data

import graphforge
import graphforge.graphs.io as gio
from graphforge.cli.main import cli, load_plugin_commands
from graphforge.errors import ConfigError, DataError
from graphforge.graphs import FORMATS, build_graph, draw_graph, graph_stats, load_graph, save_graph


@pytest.fixture(scope="module")
def sim_graph():
    return build_graph("similarity", options={"metric": "cosine", "k": 5}, limit_train=200, limit_test=40)


def _small_graph() -> Data:
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4, 2], [1, 0, 2, 1, 4, 3, 0]])
    return Data(edge_index=edge_index, num_nodes=6, x=torch.arange(12.0).reshape(6, 2),
                edge_weight=torch.tensor([0.5, 0.5, 1.0, 1.0, 0.25, 0.25, 2.0]), y=torch.tensor([0, 0, 1, 1, 1, 0]),
                train_mask=torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.bool),
                val_mask=torch.tensor([0, 0, 0, 1, 0, 0], dtype=torch.bool),
                test_mask=torch.tensor([0, 0, 0, 0, 1, 1], dtype=torch.bool))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips(fmt, sim_graph, tmp_path, monkeypatch):
    monkeypatch.setattr(gio, "_BLOCK_EDGES", 1000)  # several streamed blocks
    path = tmp_path / f"graph.{fmt}"
    written = save_graph(sim_graph, path)
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    back = load_graph(path)
    assert back.num_nodes == sim_graph.num_nodes

    def edges(g):
        ei = g.edge_index.long()
        order = torch.argsort(ei[1] * g.num_nodes + ei[0])
        w = getattr(g, "edge_weight", None)
        return ei[:, order], (w[order] if w is not None else None)

    (e1, w1), (e2, w2) = edges(sim_graph), edges(back)
    assert torch.equal(e1, e2)
    torch.testing.assert_close(w2.float(), w1.float(), rtol=1e-6, atol=1e-7)
    assert torch.equal(back.y.long(), sim_graph.y.long())
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(back, f"{split}_mask"), getattr(sim_graph, f"{split}_mask"))
    if fmt in ("pt", "npz", "parquet"):
        torch.testing.assert_close(back.x.float(), sim_graph.x.float())
    assert not list(tmp_path.glob(".*.tmp"))


def test_pt_files_load_with_weights_only(sim_graph, tmp_path):
    save_graph(sim_graph, tmp_path / "g.pt")
    raw = torch.load(tmp_path / "g.pt", weights_only=True)
    assert raw["format"] == "graphforge-graph" and torch.equal(raw["tensors"]["edge_index"], sim_graph.edge_index)
    import scipy.sparse

    save_graph(sim_graph, tmp_path / "g.npz")
    adj = scipy.sparse.load_npz(tmp_path / "g.npz")
    assert adj.shape == (sim_graph.num_nodes,) * 2 and adj.nnz == sim_graph.edge_index.shape[1]


def test_stats_agree_with_networkx():
    g = _small_graph()
    stats = graph_stats(g)
    nxg = nx.DiGraph()
    nxg.add_nodes_from(range(6))
    nxg.add_edges_from(g.edge_index.t().tolist())
    assert stats["nodes"] == 6 and stats["edges"] == 7 and not stats["symmetric"]
    in_deg = [d for _, d in nxg.in_degree()]
    assert stats["degree_max"] == max(in_deg) and stats["degree_mean"] == pytest.approx(sum(in_deg) / 6)
    assert stats["out_degree_max"] == max(d for _, d in nxg.out_degree())
    assert stats["components"] == nx.number_weakly_connected_components(nxg) == 3
    assert stats["isolated_nodes"] == len(list(nx.isolates(nxg))) == 1
    assert stats["largest_component_share"] == pytest.approx(3 / 6)
    sym = graph_stats(Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=3))
    assert sym["symmetric"] and sym["isolated_nodes"] == 1 and sym["self_loops"] == 0


def test_homophily_by_hand():
    """Edges 0-1 (0,0) 1-0, 1-2 (0,1) 2-1, 3-4 (1,1) 4-3, 2->0 (1,0): 4 of 7 join equal labels."""
    stats = graph_stats(_small_graph())
    assert stats["edge_homophily"] == pytest.approx(4 / 7)
    # endpoints per class: class 0 appears at 7 endpoints, class 1 at 7: sum p^2 = 1/2
    assert stats["adjusted_homophily"] == pytest.approx((4 / 7 - 0.5) / 0.5)
    # edges into the training nodes 0, 1, 2: 0->1, 1->0 (equal), 1->2, 2->1, 2->0 (unequal)
    assert stats["train_edges"] == 5 and stats["train_edge_homophily"] == pytest.approx(2 / 5)
    assert stats["test_edges"] == 1 and stats["test_edge_homophily"] == pytest.approx(1.0)  # 3->4; node 5 isolated
    loops = Data(edge_index=torch.tensor([[0, 1], [0, 0]]), num_nodes=2, y=torch.tensor([0, -1]))
    assert graph_stats(loops)["edge_homophily"] is None  # a self-loop and an unlabelled end: nothing to count


def test_from_run_of_a_run_without_graphs_is_refused_before_loading_data(tmp_path, monkeypatch):
    run = graphforge.run("none", "mlp", epochs=1, out=str(tmp_path / "mlp"), plots=False, limit_train=100)
    import graphforge.engine.runner as runner

    monkeypatch.setattr(runner, "load_data", lambda plan: pytest.fail("data loaded before the refusal"))
    with pytest.raises(ConfigError, match="is a none [+] mlp run, whose converter gives images, not graphs"):
        build_graph("", from_run=run.run_dir)


def test_per_image_graphs_from_a_trained_run(tmp_path):
    run = graphforge.run("dyn_knn", "sage", epochs=1, out=str(tmp_path / "dk"), plots=False, limit_train=200,
                         limit_test=40)
    graphs = build_graph("", from_run=run.run_dir, split="test")
    stats = graph_stats(graphs)
    assert stats["graphs"] == 40 and stats["nodes_per_graph_mean"] == 16
    assert sum(stats["k_hist"].values()) == 40
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert stats["k_mean"] == pytest.approx(metrics["test_mean_k"])  # the run's own test-set k
    fixed = build_graph("dyn_knn", options={"learn_k": False, "k": 3}, limit_train=100, limit_test=20)
    assert graph_stats(fixed)["edges_per_graph_mean"] == 16 * 3
    png = draw_graph(graphs, tmp_path / "graphs.png", images=_test_images(run))
    assert png.stat().st_size > 5000


def _test_images(run):
    from graphforge.engine.runner import load_data, plan_run

    return load_data(plan_run(run.config)).test.x


def test_pictures_of_dataset_and_som_graphs(sim_graph, tmp_path):
    assert draw_graph(sim_graph, tmp_path / "layout.png").stat().st_size > 5000
    som = build_graph("som", limit_train=200, limit_test=40, options={"rows": 4, "cols": 5, "epochs": 3})
    assert draw_graph(som, tmp_path / "som.png").stat().st_size > 5000


def test_runs_record_their_dataset_graph_statistics(tmp_path):
    r = graphforge.run("similarity", "label_prop", out=str(tmp_path / "lp"), plots=False, limit_train=200)
    assert 0.5 < r.metrics["graph_edge_homophily"] <= 1 and r.metrics["graph_stats"]["components"] >= 1


def test_errors(sim_graph, tmp_path):
    with pytest.raises(ConfigError, match="unknown graph format 'xml'"):
        save_graph(sim_graph, tmp_path / "g.xml", "xml")
    with pytest.raises(ConfigError, match="cannot tell the graph format"):
        save_graph(sim_graph, tmp_path / "g.bin")
    save_graph(sim_graph, tmp_path / "g.pt")
    with pytest.raises(ConfigError, match="already exist"):
        save_graph(sim_graph, tmp_path / "g.pt")
    save_graph(sim_graph, tmp_path / "g.pt", force=True)
    with pytest.raises(ConfigError, match="cannot write"):
        save_graph(sim_graph, "/proc/graphforge-no/g.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a graph")
    with pytest.raises(DataError, match="cannot read"):
        load_graph(tmp_path / "bad.pt")
    with pytest.raises(DataError, match="does not exist"):
        load_graph(tmp_path / "missing.csv")
    (tmp_path / "e.csv").write_text("src,dst\n0,5\n")
    (tmp_path / "e.csv.nodes.csv").write_text("node\n0\n1\n")
    with pytest.raises(DataError, match="node indices in 0..1"):
        load_graph(tmp_path / "e.csv")
    with pytest.raises(DataError, match="no data given"):
        build_graph("similarity", dataset="mnist")


def _write_pt(path, num_nodes, edge_index):
    torch.save({"format": gio.GRAPH_FILE_FORMAT, "version": 1, "num_nodes": num_nodes,
                "tensors": {"edge_index": edge_index}}, path)


def test_malformed_graph_files_name_the_problem(tmp_path):
    (tmp_path / "cols.csv").write_text("a,b,c\n0,1,2\n")
    (tmp_path / "dst.csv").write_text("src,c\n0,1\n")
    (tmp_path / "rand.npz").write_bytes(bytes(range(256)))
    (tmp_path / "zipish.npz").write_bytes(b"PK\x03\x04 not really a zip")
    _write_pt(tmp_path / "neg.pt", -5, torch.tensor([[0], [1]]))
    _write_pt(tmp_path / "neg_no_edges.pt", -5, torch.zeros(2, 0, dtype=torch.long))
    _write_pt(tmp_path / "text.pt", "x", torch.tensor([[0], [1]]))
    cases = [
        ("cols.csv", " is missing column(s) src, dst: a graph's edge table has columns src,dst[,weight]; found a,b,c"),
        ("dst.csv", " is missing column(s) dst: a graph's edge table has columns src,dst[,weight]; found src,c"),
        ("rand.npz", " is not a valid .npz (zip) file"),
        ("zipish.npz", " is not a valid .npz (zip) file"),
        ("neg.pt", ": num_nodes must be an integer >= 0, got -5"),
        ("neg_no_edges.pt", ": num_nodes must be an integer >= 0, got -5"),
        ("text.pt", ": num_nodes must be an integer >= 0, got 'x'"),
    ]
    for name, message in cases:
        with pytest.raises(DataError) as info:
            load_graph(tmp_path / name)
        assert str(info.value) == f"{tmp_path / name}{message}", name
    load_plugin_commands()
    res = CliRunner().invoke(cli, ["graph", "stats", str(tmp_path / "cols.csv")])
    assert res.exit_code == 1 and res.output.strip().splitlines() == [
        f"Error: {tmp_path / 'cols.csv'}{cases[0][1]}"], res.output


def test_cli(tmp_path):
    load_plugin_commands()
    runner = CliRunner()
    out = tmp_path / "g.csv"
    res = runner.invoke(cli, ["graph", "--converter", "similarity", "-o", "k=4", "--limit-train", "150",
                              "--limit-test", "30", "--out", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["stats"]["nodes"] == 210 and str(out) in payload["files"]
    again = runner.invoke(cli, ["graph", "--converter", "similarity", "--out", str(out)])
    assert again.exit_code == 1 and "already exist" in again.output and "--force" in again.output
    stats = runner.invoke(cli, ["graph", "stats", str(out)])
    assert stats.exit_code == 0 and "nodes 210" in stats.stdout and "edge homophily" in stats.stdout
    bad = runner.invoke(cli, ["graph"])
    assert bad.exit_code == 2 and "give --converter" in bad.output
