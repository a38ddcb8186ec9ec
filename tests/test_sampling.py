"""Neighbour sampling: the pure-PyTorch sampler against a brute-force reference,
the loader's mini-batches, and sampled training through the engine."""

from __future__ import annotations

import logging

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.sampler import NodeSamplerInput

import graphforge
from graphforge.builtin.models.gnn import GAT, GIN, SAGE
from graphforge.core.data import DataSplits, InputSpec, Split
from graphforge.engine import sampling
from graphforge.engine import tasks as engine_tasks
from graphforge.engine.sampling import (
    UniformNeighborSampler,
    _choose_offsets,
    check_fanout,
    default_fanout,
    make_neighbor_loader,
)
from graphforge.engine.tasks import SampledTransductiveTask
from graphforge.errors import ConfigError, DataError
from tests.helpers import interrupted_at


def random_graph(num_nodes: int = 60, num_edges: int = 500, seed: int = 0, features: int = 4) -> Data:
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=g)
    return Data(x=torch.randn(num_nodes, features, generator=g), edge_index=edge_index,
                edge_weight=torch.rand(num_edges, generator=g), num_nodes=num_nodes)


def incoming(graph: Data) -> dict[int, list[int]]:
    """Brute-force reference: edge ids entering each node."""
    out: dict[int, list[int]] = {v: [] for v in range(graph.num_nodes)}
    for e, v in enumerate(graph.edge_index[1].tolist()):
        out[v].append(e)
    return out


def sample(graph: Data, fanout: list[int], seeds: list[int], seed: int = 0):
    sampler = UniformNeighborSampler(graph, fanout, generator=torch.Generator().manual_seed(seed))
    return sampler.sample_from_nodes(NodeSamplerInput(None, torch.tensor(seeds)))


@pytest.mark.parametrize("fanout", [[3, 2], [1, 1, 1], [5, -1], [-1, -1]])
def test_sampled_subgraph_matches_the_graph(fanout):
    graph = random_graph()
    into = incoming(graph)
    seeds = [7, 3, 41, 0, 19]
    out = sample(graph, fanout, seeds)
    node, row, col, edge = out.node.tolist(), out.row.tolist(), out.col.tolist(), out.edge.tolist()
    assert node[: len(seeds)] == seeds, "seeds come first, in order"
    assert len(set(node)) == len(node)
    assert out.batch is None
    assert out.num_sampled_nodes[0] == len(seeds) and sum(out.num_sampled_nodes) == len(node)
    assert len(out.num_sampled_nodes) == len(fanout) + 1 and len(out.num_sampled_edges) == len(fanout)
    assert sum(out.num_sampled_edges) == len(edge) == len(row) == len(col) == len(set(edge))
    src, dst = graph.edge_index.tolist()
    for r, c, e in zip(row, col, edge):  # row -> col is the original edge source -> target
        assert (node[r], node[c]) == (src[e], dst[e])

    node_start = [0]
    for n in out.num_sampled_nodes:
        node_start.append(node_start[-1] + n)
    edge_start = 0
    for hop, (k, n_edges) in enumerate(zip(fanout, out.num_sampled_edges)):
        hop_nodes = set(range(node_start[hop], node_start[hop + 1]))
        hop_edges = range(edge_start, edge_start + n_edges)
        edge_start += n_edges
        for local in hop_nodes:  # each node of the previous hop got min(degree, k) of its in-edges
            mine = [edge[i] for i in hop_edges if col[i] == local]
            true = into[node[local]]
            assert set(mine) <= set(true)
            assert len(mine) == (len(true) if k == -1 else min(len(true), k))
        assert {col[i] for i in hop_edges} <= hop_nodes
        # the hop's new nodes are exactly the sources not seen before
        seen = set(node[: node_start[hop + 1]])
        assert set(node[node_start[hop + 1] : node_start[hop + 2]]) == {src[edge[i]] for i in hop_edges} - seen


@pytest.mark.parametrize("k", [-1, 1000])
def test_full_fanout_gives_the_exact_neighbourhood(k):
    graph = random_graph(num_nodes=80, num_edges=300, seed=1)
    into = incoming(graph)
    seeds = [5, 60, 12]
    out = sample(graph, [k, k], seeds)
    # brute force: every in-edge of the seeds, then every in-edge of their new neighbours
    hop1 = [e for s in seeds for e in into[s]]
    first = sorted({graph.edge_index[0, e].item() for e in hop1} - set(seeds))
    hop2 = [e for v in first for e in into[v]]
    n1 = out.num_sampled_edges[0]
    assert sorted(out.edge[:n1].tolist()) == sorted(hop1)
    assert sorted(out.edge[n1:].tolist()) == sorted(hop2)
    assert out.node[3 : 3 + out.num_sampled_nodes[1]].tolist() == first


def test_same_generator_seed_same_sample():
    graph = random_graph()
    a, b, c = (sample(graph, [3, 2], [1, 2, 3, 4], seed=s) for s in (0, 0, 1))
    for field in ("node", "row", "col", "edge"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.edge, c.edge)


def test_offsets_are_distinct_and_uniform():
    picks = _choose_offsets(torch.full((20_000,), 10), 3, torch.Generator().manual_seed(0))
    assert picks.shape == (20_000, 3)
    assert int((picks.sort(1).values.diff(dim=1) == 0).sum()) == 0, "no offset twice in a row"
    freq = torch.bincount(picks.view(-1), minlength=10).float() / 20_000
    assert torch.allclose(freq, torch.full((10,), 0.3), atol=0.02)
    assert int(picks.min()) >= 0 and int(picks.max()) <= 9


def test_loader_batches_carry_features_edge_weights_and_ids():
    graph = random_graph()
    graph.y = torch.arange(graph.num_nodes) % 3
    seeds = torch.tensor([4, 9, 30, 31, 50, 2, 17])
    loader = make_neighbor_loader(graph, [4, 3], seeds, batch_size=3, shuffle=False,
                                  generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert [b.batch_size for b in batches] == [3, 3, 1]
    assert torch.equal(torch.cat([b.n_id[: b.batch_size] for b in batches]), seeds)
    for b in batches:
        assert torch.equal(b.x, graph.x[b.n_id]) and torch.equal(b.y, graph.y[b.n_id])
        assert torch.equal(b.edge_weight, graph.edge_weight[b.e_id])
        assert torch.equal(b.n_id[b.edge_index], graph.edge_index[:, b.e_id])


def test_shuffled_loader_is_reproducible_from_the_generator_state():
    graph = random_graph()
    gen = torch.Generator().manual_seed(3)
    loader = make_neighbor_loader(graph, [2, 2], torch.arange(40), batch_size=8, shuffle=True, generator=gen)
    state = gen.get_state()
    first = [b.e_id for b in loader]
    gen.set_state(state)
    again = [b.e_id for b in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(torch.cat([b.n_id[: b.batch_size] for b in loader]), torch.arange(40))


def test_pyg_neighbor_loader_is_used_when_its_kernels_exist(monkeypatch):
    from torch_geometric.loader import NeighborLoader, NodeLoader

    graph = random_graph()
    plain = make_neighbor_loader(graph, [2, 2], torch.arange(10), batch_size=4)
    assert type(plain) is NodeLoader and isinstance(plain.node_sampler, UniformNeighborSampler)
    monkeypatch.setattr(sampling, "pyg_sampling_available", lambda: True)
    with pytest.warns(UserWarning, match="pyg-lib"):
        train = make_neighbor_loader(graph, [2, 2], torch.arange(10), batch_size=4, shuffle=True,
                                     generator=torch.Generator())
    evaluation = make_neighbor_loader(graph, [2, 2], torch.arange(10), batch_size=8, share_with=train)
    assert type(train) is NeighborLoader and evaluation.node_sampler is train.node_sampler
    if not sampling.torch_geometric.typing.WITH_PYG_LIB and not sampling.torch_geometric.typing.WITH_TORCH_SPARSE:
        with pytest.raises(ImportError, match="requires either 'pyg-lib' or 'torch-sparse'"):
            next(iter(train))  # why graphforge ships its own sampler


@pytest.mark.parametrize("bad", [[], [0], [3, -2], [2.5], "5", [True], None])
def test_bad_fanouts_are_config_errors(bad):
    with pytest.raises(ConfigError, match="num_neighbors"):
        check_fanout(bad)


def test_model_option_num_neighbors():
    assert SAGE(layers=2).neighbor_sampling(1_000) is None, "auto stays full-batch on small graphs"
    assert SAGE(layers=2).neighbor_sampling(300_000) == [15, 10]
    assert SAGE(layers=4).neighbor_sampling(300_000) == default_fanout(4) == [15, 10, 5, 5]
    assert SAGE(layers=2, num_neighbors="full").neighbor_sampling(10**7) is None
    assert GAT(layers=2, num_neighbors=[5, -1]).neighbor_sampling(10) == [5, -1]
    assert graphforge.Model().neighbor_sampling(10**7) is None
    with pytest.raises(ConfigError, match="one entry per layer"):
        SAGE(layers=3, num_neighbors=[5, 5])
    with pytest.raises(ConfigError, match="num_neighbors"):
        GIN(num_neighbors="sometimes")
    with pytest.raises(ConfigError, match="num_neighbors"):
        SAGE(layers=1, num_neighbors=[0])


@pytest.mark.parametrize("model", [SAGE(layers=2, hidden=16), GIN(layers=2, hidden=16),
                                   GAT(layers=2, hidden=16, heads=2)], ids=["sage", "gin", "gat"])
def test_full_neighbourhood_sampling_equals_full_batch(model):
    graph = random_graph(num_nodes=120, num_edges=600, seed=2, features=5)
    graph.y = torch.randint(0, 3, (120,))
    masks = torch.randint(0, 3, (120,))
    graph.train_mask, graph.val_mask, graph.test_mask = (masks == 0), (masks == 1), (masks == 2)
    torch.manual_seed(0)
    net = model.build(InputSpec("graph", (5,)), 3).eval()
    full = engine_tasks.TransductiveTask(net, graph.clone(), torch.device("cpu"))
    sampled = SampledTransductiveTask(net, graph.clone(), [-1, -1], 16, torch.device("cpu"),
                                      torch.Generator().manual_seed(0))
    for split in ("train", "val", "test"):
        (a, ya), (b, yb) = full.predict(split), sampled.predict(split)
        assert torch.equal(ya, yb)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_sampled_predictions_are_deterministic_and_mapped_graphs_refused():
    graph = random_graph(num_nodes=100, num_edges=800)
    graph.y = torch.randint(0, 2, (100,))
    graph.train_mask = graph.val_mask = graph.test_mask = torch.ones(100, dtype=torch.bool)
    net = SAGE(layers=2, hidden=8).build(InputSpec("graph", (4,)), 2)
    task = SampledTransductiveTask(net, graph, [2, 2], 10, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.equal(task.predict("val")[0], task.predict("val")[0])
    mapped = Data(x=torch.randn(5, 4), edge_index=torch.tensor([[0, 1], [1, 2]]))
    for s in ("train", "val", "test"):
        mapped[f"{s}_index"], mapped[f"{s}_y"] = torch.tensor([0, 1]), torch.tensor([0, 1])
    with pytest.raises(DataError, match="num_neighbors=full"):
        SampledTransductiveTask(net, mapped, [2, 2], 10, torch.device("cpu"), torch.Generator())


# --- through the engine -----------------------------------------------------------------
class TwoClusters(graphforge.Dataset):
    """400 noisy 8-d points from two classes (a linear model alone gets ~75 %)."""

    needs_files = False

    def load(self, *, root, download, seed):
        g = torch.Generator().manual_seed(0)
        y = torch.arange(400) % 2
        x = torch.randn(400, 8, generator=g) + 0.4 * (2 * y.float() - 1).unsqueeze(1)
        parts = [slice(0, 280), slice(280, 340), slice(340, 400)]
        train, val, test = (Split(x[p], y[p]) for p in parts)
        return DataSplits(train, val, test, num_classes=2, kind="vectors")


class ClassGraph(graphforge.Converter):
    """Each sample gets 6 in-edges, 90 % of them from its own class (test only: uses the labels)."""

    level = "dataset"

    def output_spec(self, spec):
        return InputSpec("graph", (spec.num_features,))

    def convert(self, data):
        x = torch.cat([data.train.x, data.val.x, data.test.x])
        y = torch.cat([data.train.y, data.val.y, data.test.y])
        n, g = len(y), torch.Generator().manual_seed(1)
        dst = torch.arange(n).repeat_interleave(6)
        same = torch.rand(len(dst), generator=g) < 0.9
        by_class = [torch.nonzero(y == c).view(-1) for c in (0, 1)]
        src = torch.empty_like(dst)
        for c in (0, 1):
            for want_same, pool_class in ((True, c), (False, 1 - c)):
                sel = (y[dst] == c) & (same == want_same)
                pool = by_class[pool_class]
                src[sel] = pool[torch.randint(0, len(pool), (int(sel.sum()),), generator=g)]
        masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
        for m, (a, b) in zip(masks, ((0, 280), (280, 340), (340, 400))):
            m[a:b] = True
        return Data(x=x, edge_index=torch.stack([src, dst]), y=y,
                    train_mask=masks[0], val_mask=masks[1], test_mask=masks[2])


class ClusterPlugin:
    @graphforge.hookimpl
    def register_datasets(self, register):
        register("two-clusters", TwoClusters)

    @graphforge.hookimpl
    def register_converters(self, register):
        register("class-graph", ClassGraph)


RUN = {"dataset": "two-clusters", "seed": 0, "epochs": 6, "lr": 0.01, "batch_size": 32, "patience": 0}


def test_sampled_training_through_the_engine(tmp_path, plugin_registered, caplog):
    plugin_registered(ClusterPlugin(), "cluster-plugin")
    with caplog.at_level(logging.INFO, logger="graphforge"):
        r = graphforge.run("class-graph", "sage", out=str(tmp_path / "s"),
                           options={"num_neighbors": [5, 5], "layers": 2, "hidden": 16}, **RUN)
    assert "neighbour-sampled training on 400 nodes: fanout [5, 5], batch size 32" in caplog.text
    assert r.metrics["test_accuracy"] >= 0.9
    assert r.history[-1]["train_accuracy"] >= 0.9


def test_auto_stays_full_batch_on_small_graphs(tmp_path, plugin_registered, caplog):
    plugin_registered(ClusterPlugin(), "cluster-plugin")
    with caplog.at_level(logging.INFO, logger="graphforge"):
        graphforge.run("class-graph", "sage", out=str(tmp_path / "f"), options={"layers": 2, "hidden": 16},
                       **dict(RUN, epochs=1))
    assert "full-batch training on the whole graph (400 nodes)" in caplog.text
    assert "neighbour-sampled" not in caplog.text


def test_bad_fanout_option_leaves_nothing_behind(tmp_path, plugin_registered):
    plugin_registered(ClusterPlugin(), "cluster-plugin")
    with pytest.raises(ConfigError, match="one entry per layer"):
        graphforge.run("class-graph", "sage", out=str(tmp_path / "x"), options={"num_neighbors": [5], "layers": 2},
                       **RUN)
    assert not (tmp_path / "x").exists()


def test_sampled_run_resumes_exactly(tmp_path, plugin_registered, monkeypatch):
    plugin_registered(ClusterPlugin(), "cluster-plugin")
    settings = dict(RUN, epochs=4, options={"num_neighbors": [3, 3], "layers": 2, "hidden": 8})
    straight = graphforge.run("class-graph", "sage", out=str(tmp_path / "straight"), **settings)
    with interrupted_at(monkeypatch, SampledTransductiveTask, 3), pytest.raises(KeyboardInterrupt):
        graphforge.run("class-graph", "sage", out=str(tmp_path / "stopped"), **settings)
    resumed = graphforge.run(resume=tmp_path / "stopped")
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert resumed.metrics["test_accuracy"] == straight.metrics["test_accuracy"]
