"""dyn_knn: the learned-k KNN converter (with the sage model)."""

import pytest
import torch
from torch import nn

import graphforge
from graphforge.builtin.converters.dyn_knn import DynKNN
from graphforge.core.data import InputSpec
from graphforge.errors import ConfigError

DIGITS = InputSpec("images", (1, 8, 8))
EMNIST = InputSpec("images", (1, 28, 28))


def make_net(spec=DIGITS, num_classes=10, **options):
    conv = graphforge.get_converter("dyn_knn", **options)
    model = graphforge.get_model("sage", hidden=32, layers=2)
    return nn.Sequential(conv.build(spec), model.build(conv.output_spec(spec), num_classes))


@pytest.mark.parametrize("spec, nodes", [(DIGITS, 16), (EMNIST, 49), (InputSpec("images", (3, 32, 32)), 64),
                                         (InputSpec("images", (3, 13, 17)), 48)])
def test_graph_shapes(spec, nodes):
    torch.manual_seed(0)
    conv = DynKNN(k_min=2, k_max=8)
    module = conv.build(spec).eval()
    x = torch.rand(5, *spec.shape)
    g = module(x)
    assert g.num_graphs == 5
    assert g.x.shape == (5 * nodes, conv.output_spec(spec).shape[0])
    assert g.edge_index.dtype == torch.long and g.edge_index.shape[0] == 2
    # each node has exactly its image's k neighbours, all inside its own image, no self-loops
    deg = torch.bincount(g.edge_index[1], minlength=5 * nodes)
    assert torch.equal(deg, g.k.repeat_interleave(nodes))
    assert torch.equal(g.edge_index[0] // nodes, g.edge_index[1] // nodes)
    assert not (g.edge_index[0] == g.edge_index[1]).any()


def test_k_stays_within_bounds_in_train_and_eval():
    torch.manual_seed(0)
    module = DynKNN(k_min=3, k_max=9).build(EMNIST)
    for mode in (True, False):
        module.train(mode)
        g = module(torch.randn(16, *EMNIST.shape) * 5)
        assert int(g.k.min()) >= 3 and int(g.k.max()) <= 9


def test_k_max_is_clamped_to_available_nodes():
    module = DynKNN(k_min=2, k_max=40).build(DIGITS).eval()  # 16 nodes -> at most 15 neighbours
    g = module(torch.rand(3, *DIGITS.shape))
    assert int(g.k.max()) <= 15


@pytest.mark.parametrize("k_per", ["image", "node"])
def test_k_head_receives_gradient_from_the_classification_loss(k_per):
    torch.manual_seed(0)
    net = make_net(k_per=k_per).train()
    x, y = torch.rand(32, *DIGITS.shape), torch.randint(0, 10, (32,))
    nn.functional.cross_entropy(net(x), y).backward()
    head = net[0].k_head
    grads = [p.grad for p in head.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("k_per", ["image", "node"])
def test_training_graph_forward_equals_the_inference_graph(k_per):
    """Straight-through: the hard mask in training is the graph used at inference."""
    torch.manual_seed(0)
    module = DynKNN(k_min=2, k_max=10, k_per=k_per).build(EMNIST)
    module.eval()  # freeze BatchNorm statistics so both passes see the same features
    x = torch.rand(4, *EMNIST.shape)
    ref = module(x)
    module.train()
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    g = module(x)
    kept = g.edge_weight.detach() > 0.5
    assert torch.equal(g.edge_index[:, kept], ref.edge_index)
    assert torch.equal(g.k, ref.k)


def test_fixed_k_mode():
    module = DynKNN(learn_k=False, k=5).build(EMNIST)
    assert module.k_head is None
    g = module.train()(torch.rand(3, *EMNIST.shape))
    assert torch.equal(g.k, torch.full((3,), 5))
    assert getattr(g, "edge_weight", None) is None  # unweighted: every edge counts fully


@pytest.mark.parametrize("learn_k", [True, False])
def test_edge_dropout_zeroes_a_share_of_the_training_edges_only(learn_k):
    torch.manual_seed(0)
    options = {} if learn_k else {"learn_k": False, "k": 8}
    module = DynKNN(edge_dropout=0.3, **options).build(EMNIST)
    x = torch.rand(64, *EMNIST.shape)
    assert getattr(module.eval()(x), "edge_weight", None) is None  # evaluation graphs keep every edge
    g = module.train()(x)
    w = g.edge_weight.detach()
    assert torch.allclose(w, w.round())  # 0 or 1 (the straight-through sum leaves 1 - 1e-7)
    w = w.round()
    k_listed = module.k_max if learn_k else 8  # neighbours listed per node, nearest first
    rank = torch.arange(w.numel()) % k_listed
    in_graph = rank < g.k[g.edge_index[1] // module.num_nodes]  # those within the image's k
    assert not w[~in_graph].any()
    assert w[rank == 0].all()  # a node's nearest always stays: no node is left without neighbours
    assert 0.27 < float((w[in_graph & (rank > 0)] == 0).float().mean()) < 0.33
    if learn_k:  # the dropped edges still pass the k head its gradient through the kept ones
        head = graphforge.get_model("sage", hidden=16, layers=1).build(DynKNN().output_spec(EMNIST), 10)
        nn.functional.cross_entropy(head(g), torch.randint(0, 10, (64,))).backward()
        assert sum(float(p.grad.abs().sum()) for p in module.k_head.parameters()) > 0


def test_k_penalty_is_an_aux_loss():
    module = DynKNN(k_penalty=0.5).build(DIGITS).train()
    module(torch.rand(4, *DIGITS.shape))
    aux = module.graphforge_aux_loss()
    assert aux is not None and 0 < float(aux.detach()) <= 0.5
    assert module.graphforge_aux_loss() is None  # consumed once per forward


def test_epoch_metrics_report_k_histogram():
    module = DynKNN(k_min=2, k_max=6).build(DIGITS).train()
    module(torch.rand(10, *DIGITS.shape))
    stats = module.graphforge_epoch_metrics()
    assert sum(stats["k_hist"].values()) == 10
    assert set(stats["k_hist"]) == {str(k) for k in range(2, 7)}
    assert 2 <= stats["mean_k"] <= 6
    assert module.graphforge_epoch_metrics() == {}  # reset after reading


@pytest.mark.parametrize(
    "options, message",
    [({"k_min": 8, "k_max": 4}, "k_min \\(8\\) must not exceed k_max \\(4\\)"),
     ({"k_min": 0}, "k_min must be an integer >= 1"),
     ({"metric": "hamming"}, "unknown metric .hamming."),
     ({"tau": 0}, "tau must be > 0"),
     ({"channels": []}, "channels must be"),
     ({"dynamic": "yes"}, "dynamic must be true or false"),
     ({"stage_k": -1}, "stage_k must be an integer >= 0"),
     ({"k_per": "edge"}, "k_per must be image or node"),
     ({"k_per": "node", "learn_k": False}, "k_per=node needs learn_k=true"),
     ({"k_per": "node", "k_input": "mean+max"}, "k_input applies to k_per=image"),
     ({"k_holdout": 0.6}, "k_holdout must be <= 0.5"),
     ({"k_holdout": -0.1}, "k_holdout must be >= 0"),
     ({"k_holdout": 0.1, "learn_k": False}, "k_holdout needs learn_k=true"),
     ({"edge_dropout": 1.0}, "edge_dropout must be < 1, got 1.0"),
     ({"edge_dropout": -0.1}, "edge_dropout must be >= 0"),
     ({"bogus": 1}, "no option 'bogus'")],
)
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        graphforge.get_converter("dyn_knn", **options)


def test_images_too_small_for_the_encoder():
    conv = DynKNN(k_min=4)
    with pytest.raises(ConfigError, match="images of 2x2 give only 4 graph nodes"):
        conv.check_input(InputSpec("images", (1, 2, 2)))
    with pytest.raises(ConfigError, match="takes \\['images'\\] input"):
        conv.check_input(InputSpec("vectors", (16,)))


def test_overfits_64_images():
    torch.manual_seed(0)
    net = make_net()
    x, y = torch.rand(64, *DIGITS.shape), torch.arange(64) % 10
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        assert float((net(x).argmax(1) == y).float().mean()) == 1.0


def test_same_seed_same_run_and_reload(tmp_path):
    from graphforge.api import load_run
    from graphforge.plugins import get_registry

    settings = dict(epochs=2, limit_train=200, limit_test=60, seed=4, options={"hidden": 16, "layers": 1})
    a = graphforge.run("dyn_knn", "sage", out=str(tmp_path / "a"), **settings)
    b = graphforge.run("dyn_knn", "sage", out=str(tmp_path / "b"), **settings)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert a.metrics["test_accuracy"] == b.metrics["test_accuracy"]
    assert "mean_k" in a.history[0] and "k_hist" in a.history[0]
    assert (tmp_path / "a" / "plots" / "k_distribution.png").is_file()
    assert "mean_k" in (tmp_path / "a" / "history.csv").read_text().splitlines()[0]
    data = get_registry("dataset").get("digits").create().load(root=None, download=False, seed=4)
    first = load_run(tmp_path / "a").predict(data.test.x)
    second = load_run(tmp_path / "a").predict(data.test.x)
    assert torch.equal(first, second)


def test_colour_image_folder_end_to_end(tmp_path):
    """Any image dataset works: colour PNGs of odd size through the image-folder dataset."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("red", "green", "blue")):
        folder = tmp_path / "images" / name
        folder.mkdir(parents=True)
        for i in range(20):
            img = rng.integers(0, 90, (14, 10, 3), dtype=np.uint8)
            img[..., c] += 150
            Image.fromarray(img).save(folder / f"{i}.png")
    r = graphforge.run("dyn_knn", "sage", dataset="image-folder", data_root=str(tmp_path / "images"), epochs=6,
                       batch_size=8, seed=0, out=str(tmp_path / "run"),
                       options={"size": "14x10", "channels": [8, 16], "hidden": 16, "layers": 1})
    assert r.metrics["num_classes"] == 3
    assert r.metrics["test_accuracy"] > 0.6


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("learn_k, k_per", [(True, "image"), (False, "image"), (True, "node")])
@pytest.mark.parametrize("block", ["plain", "grapher"])
def test_dense_sage_path_equals_the_edge_list_path(learn_k, k_per, block, dynamic):
    """dyn_knn graphs carry nodes_per_graph: sage aggregates with one batched matmul, same result
    (and the same k-head gradient), whether the graph is built once or rebuilt per layer."""
    torch.manual_seed(0)
    conv = DynKNN(learn_k=learn_k, k_max=10, dynamic=dynamic, k_per=k_per)
    module = conv.build(EMNIST).train()
    model = graphforge.get_model("sage", hidden=32, layers=3, block=block).build(conv.output_spec(EMNIST), 10)
    x = torch.rand(6, *EMNIST.shape)
    outs, grads = [], []
    for dense in (True, False):
        module.zero_grad()
        model.zero_grad()
        torch.manual_seed(1)
        g = module(x)
        assert g.nodes_per_graph == 49
        if not dense:
            del g.nodes_per_graph
        out = model(g)
        out.square().sum().backward()
        outs.append(out.detach())
        if learn_k:
            grads.append(torch.cat([p.grad.flatten() for p in module.k_head.parameters()]))
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    if learn_k:
        assert torch.allclose(grads[0], grads[1], atol=1e-5) and float(grads[0].abs().sum()) > 0


def test_encoder_depth_and_k_head_input_options():
    module = DynKNN(channels=[8, 16, 32], convs_per_block=2, k_input="mean+max").build(EMNIST)
    convs = [m for m in module.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16, 32, 32]
    assert module.k_head[0].in_features == 64
    g = module.train()(torch.rand(3, *EMNIST.shape))
    assert g.x.shape == (3 * 49, 34)
    with pytest.raises(ConfigError, match="k_input must be"):
        graphforge.get_converter("dyn_knn", k_input="median")


class _RecordingSAGE(nn.Module):
    """Wraps a sage layer and records the input and dense adjacency of each call (dyn_knn
    graphs take the dense path; an edge-list call would fail: the wrapper has no forward)."""

    def __init__(self, conv, seen):
        super().__init__()
        self.conv, self.seen = conv, seen

    def forward_dense(self, h, adj):
        self.seen.append((h.detach().clone(), adj.detach().clone()))
        return self.conv.forward_dense(h, adj)


@pytest.mark.parametrize("block", ["plain", "grapher"])
def test_dynamic_graph_is_rebuilt_from_each_layers_features(block):
    from graphforge.nn.conv import dense_adjacency
    from graphforge.ops import dense_batched_knn

    torch.manual_seed(0)
    conv = DynKNN(k_max=10, dynamic=True)
    module = conv.build(EMNIST).eval()
    model = graphforge.get_model("sage", hidden=32, layers=3, block=block).build(conv.output_spec(EMNIST), 10).eval()
    seen: list = []
    layers = model.convs if block == "plain" else [blk.conv for blk in model.blocks]
    for i, layer in enumerate(layers):
        wrapped = _RecordingSAGE(layer, seen)
        if block == "plain":
            model.convs[i] = wrapped
        else:
            model.blocks[i].conv = wrapped
    g = module(torch.rand(4, *EMNIST.shape))
    model(g)
    assert len(seen) == 3
    first = dense_adjacency(g.edge_index, None, 4, 49)
    assert torch.equal(seen[0][1], first)  # the first layer gets the encoder's graph
    for h, adj in seen[1:]:
        if block == "grapher":
            continue  # the grapher block's conv sees fc_in(h); its graph is built from h itself
        ei, _ = dense_batched_knn(h.view(4, 49, -1), g.k)
        assert torch.equal(adj, dense_adjacency(ei, None, 4, 49))  # each image's own k, on this layer's features
        assert not torch.equal(adj, first)
    static = DynKNN(k_max=10).build(EMNIST).eval()
    assert getattr(static(torch.rand(2, *EMNIST.shape)), "regraph", None) is None


def test_dynamic_graph_end_to_end_on_digits(tmp_path):
    r = graphforge.run(converter="dyn_knn", model="sage", epochs=2, limit_train=200, limit_test=100,
                       options={"dynamic": True}, out=tmp_path / "run", plots=False)
    assert r.metrics["test_accuracy"] > 0.3


def test_stage_graph_block_mixes_each_images_knn_neighbours():
    from graphforge.nn.grapher import MapGraphBlock

    module = DynKNN(channels=[8, 16, 32], stage_k=4).build(EMNIST)
    blocks = [m for m in module.encoder.modules() if isinstance(m, MapGraphBlock)]
    assert len(blocks) == 1 and blocks[0].fc_in[0].in_features == 16  # before the last pooling: 14 x 14 x 16
    block = blocks[0].eval()
    fmap = torch.rand(3, 16, 14, 14)
    out = block(fmap)
    assert out.shape == fmap.shape
    # Each image's block output depends on that image only, and on its k nearest positions
    # wherever they are: a far corner made a near copy of (0, 0) moves (0, 0), in image 0 alone.
    changed = fmap.clone()
    changed[0, :, 13, 13] = fmap[0, :, 0, 0] + 1e-3
    moved = (block(changed) - out).abs().amax(dim=1).detach()  # [B, H, W]
    assert float(moved[1:].max()) == 0 and float(moved[0, 0, 0]) > 1e-4
    g = module.train()(torch.rand(2, *EMNIST.shape))
    assert g.x.shape == (2 * 49, 34)
    assert not [m for m in DynKNN(channels=[8, 16, 32]).build(EMNIST).modules() if isinstance(m, MapGraphBlock)]


def test_stage_graph_block_end_to_end_on_digits(tmp_path):
    r = graphforge.run(converter="dyn_knn", model="sage", epochs=4, limit_train=200, limit_test=100,
                       options={"stage_k": 4}, out=tmp_path / "run", plots=False)
    assert r.metrics["test_accuracy"] > 0.3  # 4 epochs of 200 digits: 0.40 (chance 0.10)


def test_per_node_k_gives_each_node_its_own_neighbours():
    """k_per=node: each node of the inference graph has exactly its own round(k) nearest
    (a node's in-degree is its k), within its image; an image's k is its nodes' mean."""
    from graphforge.ops import dense_batched_knn

    torch.manual_seed(0)
    module = DynKNN(k_min=2, k_max=12, k_per="node").build(EMNIST).eval()
    with torch.no_grad():  # a head whose k varies between nodes
        module.k_head[0].weight.normal_(0, 1.0)
        module.k_head[-1].weight.normal_(0, 1.0)
    x = torch.rand(5, *EMNIST.shape)
    g = module(x)
    with torch.no_grad():
        fmap = module.encoder(x)
        k_cont, node_k = module.predict_k(fmap)
    assert node_k.shape == (5, 49) and int(node_k.min()) >= 2 and int(node_k.max()) <= 12
    assert node_k.float().std(1).min() > 0  # the k really differs between nodes of an image
    deg = torch.bincount(g.edge_index[1], minlength=5 * 49)
    assert torch.equal(deg, node_k.reshape(-1))
    assert torch.equal(g.edge_index[0] // 49, g.edge_index[1] // 49)
    assert torch.equal(g.k, node_k.float().mean(1).round().long())
    # each node's neighbours are its nearest: the full search at k_max, cut at the node's k
    nodes = g.x.view(5, 49, -1)
    full, _ = dense_batched_knn(nodes, 12)
    order = torch.argsort(full[1], stable=True)
    src, dst = full[0][order], full[1][order]
    rank = torch.arange(dst.numel()) - (torch.cumsum(torch.bincount(dst, minlength=245), 0)
                                        - torch.bincount(dst, minlength=245))[dst]
    keep = rank < node_k.reshape(-1)[dst]
    want = {(int(a), int(b)) for a, b in zip(src[keep], dst[keep])}
    assert {(int(a), int(b)) for a, b in g.edge_index.t()} == want
    stats = module.graphforge_split_metrics()
    assert stats["node_k_std"] == pytest.approx(float(node_k.double().std(unbiased=False)))
    assert sum(stats["k_hist"].values()) == 5


def test_per_node_k_end_to_end_on_digits(tmp_path):
    r = graphforge.run(converter="dyn_knn", model="sage", epochs=2, limit_train=200, limit_test=100,
                       options={"k_per": "node", "dynamic": True}, out=tmp_path / "run", plots=False)
    assert r.metrics["test_accuracy"] > 0.3 and r.metrics["test_node_k_std"] >= 0


def _holdout_task(**options):
    from graphforge.core.data import DataSplits, Split
    from graphforge.engine.tasks import InductiveTask

    torch.manual_seed(0)
    conv = graphforge.get_converter("dyn_knn", **options)
    model = graphforge.get_model("sage", hidden=32, layers=2, dropout=0.0)  # a deterministic forward
    net = nn.Sequential(conv.build(DIGITS), model.build(conv.output_spec(DIGITS), 10))
    x, y = torch.rand(100, *DIGITS.shape), torch.arange(100) % 10
    data = DataSplits(Split(x, y), Split(x[:10], y[:10]), Split(x[:10], y[:10]), num_classes=10, kind="images")
    return InductiveTask(net, data, 16, torch.device("cpu"), torch.Generator().manual_seed(0))


def test_k_holdout_sets_images_aside_and_trains_only_the_k_head_on_them(tmp_path, monkeypatch):
    task = _holdout_task(k_holdout=0.2)
    head = task.net[0].k_head
    assert task.holdout_params == list(head.parameters())
    assert len(task.holdout_idx) == 20 and len(task.train_idx) == 80 and task.steps_per_epoch == 5
    assert not set(task.holdout_idx.tolist()) & set(task.train_idx.tolist())
    # Record which images every forward pass sees and what the head's gradient is at each step.
    seen, head_grads = [], []
    forward = task.net.forward
    monkeypatch.setattr(task.net, "forward", lambda x: seen.append(x.clone()) or forward(x))
    opt = torch.optim.SGD(task.net.parameters(), lr=0.0)  # nothing moves: gradients can be compared
    original_step = opt.step
    opt.step = lambda *a, **k: head_grads.append([p.grad.clone() for p in head.parameters()]) or original_step()
    task.train_epoch(opt, 1)
    module = task.net[0]
    assert module._k_n == 80 and sum(module.graphforge_epoch_metrics()["k_hist"].values()) == 80  # not the held-out
    assert not module.graphforge_holdout_pass and not module._eval_k
    split_x = task.data.train.x
    train_rows = {int(i) for i in task.train_idx}
    held_rows = {int(i) for i in task.holdout_idx}

    def rows(batch):
        return {int(i) for i in range(len(split_x)) if any(torch.equal(split_x[i], b) for b in batch)}

    assert len(seen) == 10  # a training batch, then a held-out batch, five times
    for step in range(5):
        assert rows(seen[2 * step]) <= train_rows and rows(seen[2 * step + 1]) <= held_rows
    # The head's gradient at each step is the held-out batch's loss gradient, not the training batch's.
    task.net.train()
    x_held = seen[1]
    y_held = torch.stack([task.data.train.y[next(iter(rows(x_held[j:j + 1])))] for j in range(len(x_held))])
    want = torch.autograd.grad(nn.functional.cross_entropy(forward(x_held), y_held), list(head.parameters()))
    for got, expected in zip(head_grads[0], want):
        assert torch.allclose(got, expected, atol=1e-6)
    # The other parameters keep the training batch's gradient (the head's is replaced, not added).
    others = [p for n, p in task.net.named_parameters() if not n.startswith("0.k_head")]
    assert all(p.grad is not None for p in others)


def test_k_holdout_runs_and_resumes_exactly(tmp_path, monkeypatch):
    import json

    from graphforge.engine import tasks as engine_tasks
    from tests.helpers import interrupted_at

    settings = dict(epochs=3, limit_train=200, limit_test=60, seed=2, patience=0, plots=False,
                    options={"hidden": 16, "layers": 1, "k_holdout": 0.25})
    straight = graphforge.run("dyn_knn", "sage", out=str(tmp_path / "straight"), **settings)
    assert straight.metrics["test_accuracy"] > 0.2 and "mean_k" in straight.history[-1]
    with interrupted_at(monkeypatch, engine_tasks.InductiveTask, 3), pytest.raises(KeyboardInterrupt):
        graphforge.run("dyn_knn", "sage", out=str(tmp_path / "stopped"), **settings)
    assert json.loads((tmp_path / "stopped" / "run.json").read_text())["status"] == "interrupted"
    resumed = graphforge.run(resume=tmp_path / "stopped")
    assert [round(h["train_loss"], 6) for h in resumed.history] == [round(h["train_loss"], 6)
                                                                      for h in straight.history]
    assert resumed.metrics["test_accuracy"] == straight.metrics["test_accuracy"]


def test_holdout_shares_must_agree_and_leave_both_parts():
    from graphforge.engine.tasks import holdout_spec, split_holdout

    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    a.graphforge_holdout = lambda: (0.1, list(a.parameters()))
    b.graphforge_holdout = lambda: (0.2, list(b.parameters()))
    with pytest.raises(ConfigError, match="different held-out shares"):
        holdout_spec(nn.Sequential(a, b))
    assert holdout_spec(nn.Sequential(a))[0] == 0.1 and holdout_spec(nn.Linear(2, 2)) == (0.0, [])
    with pytest.raises(ConfigError, match="leaves 0 held out"):
        split_holdout(3, 0.1, torch.Generator().manual_seed(0))


def test_k_holdout_on_too_few_images_is_refused_before_the_run_directory(tmp_path):
    with pytest.raises(ConfigError, match="of 2 training images .dyn_knn's k_holdout. leaves 0 held out"):
        graphforge.run("dyn_knn", "sage", epochs=1, limit_train=2, limit_test=20, out=tmp_path / "r",
                       options={"k_holdout": 0.1})
    assert not (tmp_path / "r").exists()


def test_k_holdout_is_refused_under_torchrun():
    from types import SimpleNamespace

    from graphforge.engine.tasks import InductiveTask

    task = _holdout_task(k_holdout=0.2)
    with pytest.raises(ConfigError, match="not supported under torchrun"):
        InductiveTask(task.net, task.data, 16, torch.device("cpu"), torch.Generator().manual_seed(0),
                      dist=SimpleNamespace(active=True, world_size=2))


def test_plot_test_k_script_reads_each_test_images_k(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "plot_test_k.py"
    spec = importlib.util.spec_from_file_location("plot_test_k", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    r = graphforge.run("dyn_knn", "sage", epochs=1, limit_train=200, limit_test=100, out=tmp_path / "run",
                       plots=False, options={"hidden": 16, "layers": 1})
    k, y, names = script.test_k(tmp_path / "run", None)
    assert len(k) == len(y) == 100 and names[0] == "0"
    assert float(k.double().mean()) == pytest.approx(r.metrics["test_mean_k"])
    assert script.main([str(tmp_path / "run"), "--out", str(tmp_path / "k.png")]) == 0
    assert (tmp_path / "k.png").is_file() and "mean k per class" in capsys.readouterr().out


def test_k_is_the_fixed_k_only():
    """``k`` is the k of ``learn_k=false``; with a learned k it is refused, not silently unused."""
    with pytest.raises(ConfigError, match=r"k=100 is the fixed k of learn_k=false; a learned k ranges over k_min..k_max \(2..16\)"):
        graphforge.get_converter("dyn_knn", k=100)
    assert DynKNN(learn_k=False).k == 8 and DynKNN(learn_k=False, k=5).k == 5 and DynKNN().k is None
    with pytest.raises(ConfigError, match="k must be an integer >= 1, got 0"):
        graphforge.get_converter("dyn_knn", learn_k=False, k=0)
    # checkpoints of earlier versions recorded k=8 with a learned k too: they still load
    assert DynKNN.upgrade_options({"k": 8, "learn_k": True}) == {"learn_k": True}
    assert DynKNN.upgrade_options({"k": 8}) == {}
    assert DynKNN.upgrade_options({"k": 4, "learn_k": False}) == {"k": 4, "learn_k": False}


def test_checkpoints_record_the_k_the_graph_was_built_with(tmp_path):
    """``k`` defaults to None (the converter decides): the checkpoint records the k it used."""
    recorded = {}
    for name, options in (("fixed", {"learn_k": False}), ("learned", {})):
        run = graphforge.run("dyn_knn", "sage", epochs=1, limit_train=60, limit_test=20, plots=False,
                             out=str(tmp_path / name), options={"channels": [8, 16], **options})
        meta = torch.load(run.run_dir / "checkpoint.pt", weights_only=True)["meta"]
        recorded[name] = meta["built_options"]["converter"]["k"]
    assert recorded == {"fixed": 8, "learned": None}
