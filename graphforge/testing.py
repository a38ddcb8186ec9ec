"""Contract checks every graphforge plugin must pass — built-in or third-party.

Plugin authors run them in their own test suite::

    import pytest
    from graphforge.testing import check_registered

    @pytest.mark.parametrize("kind, name", [("model", "my-model")])
    def test_contract(kind, name):
        check_registered(kind, name)

Each check builds the plugin with its default options, runs a forward pass on
small synthetic input of every kind it accepts, checks the output shapes,
that gradients flow, that a state-dict round trip gives identical outputs, and
that bad options and unsupported inputs raise clear graphforge errors. Embedders
are checked for ``[N, output_dim]`` float32 output that is finite and deterministic.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from graphforge.core.converter import Converter
from graphforge.core.data import GRAPH_KINDS, DataSplits, InputSpec, Split
from graphforge.core.dataset import Dataset
from graphforge.core.embedder import Embedder
from graphforge.core.model import FitModel, GraphFitModel, Model
from graphforge.errors import ConfigError, DataError, GraphforgeError
from graphforge.plugins import get_registry
from graphforge.registry import Entry

NUM_CLASSES = 3
#: Synthetic sample shapes used for each input kind.
SAMPLE_SPECS: dict[str, InputSpec] = {
    "images": InputSpec("images", (1, 12, 12)),
    "vectors": InputSpec("vectors", (16,)),
    "graphs": InputSpec("graphs", (8,)),
    "graph": InputSpec("graph", (8,)),
}


def _specs_for(obj: Any) -> dict[str, InputSpec]:
    """The built-in sample specs plus the plugin's own ``example_shapes``."""
    own = {k: InputSpec(k, tuple(v)) for k, v in getattr(obj, "example_shapes", {}).items()}
    return {**SAMPLE_SPECS, **own}


def _spec(specs: dict[str, InputSpec], kind: str, label: str) -> InputSpec:
    assert kind in specs, (
        f"{label} accepts input kind {kind!r}, which graphforge does not know; declare "
        f"example_shapes = {{{kind!r}: (...)}} on the class so the contract can build a sample"
    )
    return specs[kind]


def synthetic_splits(kind: str = "images", per_class: int = 8, seed: int = 0,
                     shape: tuple[int, ...] | None = None) -> DataSplits:
    """Return a tiny, learnable dataset of ``kind`` (``shape`` is one sample's shape)."""
    g = torch.Generator().manual_seed(seed)
    shape = tuple(shape) if shape is not None else SAMPLE_SPECS[kind].shape
    n = per_class * NUM_CLASSES
    y = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    x = torch.rand((n, *shape), generator=g) * 0.5
    x = x + y.view(-1, *([1] * len(shape))).float() * 0.25  # classes are separable
    perm = torch.randperm(n, generator=g)
    x, y = x[perm], y[perm]
    cut1, cut2 = n // 2, (3 * n) // 4
    return DataSplits(Split(x[:cut1], y[:cut1]), Split(x[cut1:cut2], y[cut1:cut2]), Split(x[cut2:], y[cut2:]),
                      NUM_CLASSES, kind, name="synthetic")


def synthetic_input(spec: InputSpec, batch: int = 4, seed: int = 0) -> Any:
    """Return a batch of synthetic input for ``spec`` (a tensor, a PyG ``Batch`` or ``Data``)."""
    from torch_geometric.data import Batch, Data

    g = torch.Generator().manual_seed(seed)
    if spec.kind not in GRAPH_KINDS:  # images, vectors and plugin sample kinds
        return torch.rand((batch, *spec.shape), generator=g)
    if spec.kind == "graphs":
        graphs = []
        for i in range(batch):
            n = 5 + i
            src = torch.arange(n).repeat(2)
            dst = torch.cat([(torch.arange(n) + 1) % n, (torch.arange(n) - 1) % n])
            graphs.append(Data(x=torch.rand((n, spec.shape[0]), generator=g), edge_index=torch.stack([src, dst]),
                               edge_weight=torch.ones(2 * n)))
        return Batch.from_data_list(graphs)
    n = 3 * batch
    idx = torch.arange(n)
    edge_index = torch.stack([idx, (idx + 1) % n])
    masks = [idx % 3 == r for r in range(3)]
    return Data(x=torch.rand((n, spec.shape[0]), generator=g), edge_index=torch.cat([edge_index, edge_index.flip(0)], 1),
                y=idx % NUM_CLASSES, train_mask=masks[0], val_mask=masks[1], test_mask=masks[2])


def _default_instance(entry: Entry) -> Any:
    required = [k for k, v in entry.options().items() if v is inspect.Parameter.empty]
    assert not required, f"{entry.kind} {entry.name!r} has required options {required}; give every option a default"
    return entry.create()


def _check_bad_option(entry: Entry) -> None:
    if entry.accepts_any_option():
        return
    try:
        entry.create(definitely_not_an_option=1)
    except ConfigError as exc:
        assert "definitely_not_an_option" in str(exc)
    else:  # pragma: no cover - the failure path is the point
        raise AssertionError(f"{entry.kind} {entry.name!r} accepted an unknown option")


def check_registration(entry: Entry) -> Any:
    """The entry has a name, a description and builds with default options."""
    assert entry.name and entry.name == entry.name.strip(), f"bad name {entry.name!r}"
    assert entry.describe(), f"{entry.kind} {entry.name!r} has no description (pass one to register or add a docstring)"
    obj = _default_instance(entry)
    base = {"dataset": Dataset, "converter": Converter, "model": Model}[entry.kind]
    assert isinstance(obj, base), f"{entry.name!r} builds a {type(obj).__name__}, not a {base.__name__}"
    repr(obj)
    _check_bad_option(entry)
    return obj


def _check_unsupported_kinds(obj: Converter | Model | Embedder, label: str) -> None:
    for kind, spec in SAMPLE_SPECS.items():
        if kind not in obj.inputs:
            try:
                obj.check_input(spec)
            except ConfigError:
                continue
            raise AssertionError(f"{label} accepted unsupported input kind {kind!r}")


def _outputs_equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return all(torch.equal(a[k], b[k]) for k in a.keys() if isinstance(a[k], torch.Tensor))


def check_converter(entry: Entry) -> None:
    """Forward pass, output shapes, save/reload, and input checks of a converter."""
    conv: Converter = check_registration(entry)
    label = f"converter {entry.name!r}"
    _check_unsupported_kinds(conv, label)
    specs = _specs_for(conv)
    for kind in sorted(set(conv.inputs) - set(GRAPH_KINDS)):
        spec = _spec(specs, kind, label)
        conv.check_input(spec)
        out_spec = conv.output_spec(spec)
        assert isinstance(out_spec, InputSpec), f"{label}.output_spec must return an InputSpec"
        if conv.level == "dataset":
            data = synthetic_splits(kind, shape=spec.shape)
            graph = conv.convert(data)
            splits = ("train", "val", "test")
            mapped = all(getattr(graph, f"{s}_index", None) is not None for s in splits)
            needed = [f"{s}_{a}" for s in splits for a in ("index", "y")] if mapped else ["y", *[f"{s}_mask" for s in splits]]
            for attr in ("x", "edge_index", *needed):
                assert getattr(graph, attr, None) is not None, f"{label}: graph lacks {attr}"
            if mapped:
                for s in splits:
                    index = getattr(graph, f"{s}_index")
                    assert len(index) == len(getattr(data, s)), f"{label}: {s}_index must give one node per sample"
                    assert int(index.min()) >= 0 and int(index.max()) < graph.num_nodes, f"{label}: {s}_index out of range"
            _check_edge_index(graph.edge_index, graph.num_nodes, label)
            continue
        module = conv.build(spec)
        assert isinstance(module, nn.Module), f"{label}.build must return an nn.Module"
        module.eval()
        x = synthetic_input(spec)
        with torch.no_grad():
            out = module(x)
        if out_spec.kind not in GRAPH_KINDS:
            assert isinstance(out, torch.Tensor) and tuple(out.shape) == (len(x), *out_spec.shape), (
                f"{label}: output shape {getattr(out, 'shape', None)} does not match its output_spec {out_spec}")
        elif out_spec.kind == "graphs":
            assert out.num_graphs == len(x), f"{label}: {out.num_graphs} graphs for {len(x)} samples"
            assert out.x.shape[1] == out_spec.num_features, f"{label}: node features differ from output_spec"
            _check_edge_index(out.edge_index, out.num_nodes, label)
        clone = conv.build(spec)
        clone.load_state_dict(module.state_dict())
        clone.eval()
        with torch.no_grad():
            assert _outputs_equal(out, clone(x)), f"{label}: state-dict round trip changed the output"


def _check_edge_index(edge_index: torch.Tensor, num_nodes: int, label: str) -> None:
    assert edge_index.dtype == torch.long and edge_index.dim() == 2 and edge_index.shape[0] == 2, (
        f"{label}: edge_index must be int64 [2, E], got {edge_index.dtype} {tuple(edge_index.shape)}")
    if edge_index.numel():
        assert int(edge_index.min()) >= 0 and int(edge_index.max()) < num_nodes, f"{label}: edge_index out of range"


def check_model(entry: Entry) -> None:
    """Forward pass, gradients, save/reload and input checks of a model."""
    model: Model = check_registration(entry)
    label = f"model {entry.name!r}"
    _check_unsupported_kinds(model, label)
    assert model.inputs, f"{label} accepts no input kind"
    specs = _specs_for(model)
    for kind in sorted(model.inputs):
        spec = _spec(specs, kind, label)
        model.check_input(spec)
        if isinstance(model, GraphFitModel):
            assert kind == "graph", f"{label} is a GraphFitModel, so it takes one dataset graph, not {kind!r}"
            _check_graph_fit_model(entry, spec, label)
            continue
        if isinstance(model, FitModel):
            if kind in GRAPH_KINDS:
                continue
            data = synthetic_splits(kind, shape=spec.shape)
            fitted = _default_instance(entry)
            fitted.fit(data.train.x.reshape(len(data.train), -1), data.train.y, NUM_CLASSES)
            proba = fitted.predict_proba(data.test.x.reshape(len(data.test), -1))
            assert tuple(proba.shape) == (len(data.test), NUM_CLASSES), f"{label}: predict_proba shape {tuple(proba.shape)}"
            assert torch.allclose(proba.sum(1), torch.ones(len(data.test)), atol=1e-5), f"{label}: rows must sum to 1"
            reloaded = _default_instance(entry)
            reloaded.load_state_dict(fitted.state_dict())
            assert torch.equal(reloaded.predict_proba(data.test.x.reshape(len(data.test), -1)), proba)
            continue
        torch.manual_seed(0)
        net = model.build(spec, NUM_CLASSES)
        assert isinstance(net, nn.Module), f"{label}.build must return an nn.Module"
        x = synthetic_input(spec)
        net.train()
        logits = net(x)
        rows = int(x.num_nodes) if kind == "graph" else (x.num_graphs if kind == "graphs" else len(x))
        assert tuple(logits.shape) == (rows, NUM_CLASSES), f"{label}: logits shape {tuple(logits.shape)} for {kind}"
        logits.float().sum().backward()
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        assert grads and any(g is not None and torch.count_nonzero(g) > 0 for g in grads), f"{label}: no gradient"
        net.eval()
        clone = model.build(spec, NUM_CLASSES)
        clone.load_state_dict(net.state_dict())
        clone.eval()
        with torch.no_grad():
            assert torch.equal(net(x), clone(x)), f"{label}: state-dict round trip changed the output"


def _check_graph_fit_model(entry: Entry, spec: InputSpec, label: str) -> None:
    """fit_predict on a synthetic graph: shape, distributions, training labels only, reload."""
    graph = synthetic_input(spec)
    graph.edge_weight = torch.rand(graph.edge_index.shape[1], generator=torch.Generator().manual_seed(1)) + 0.1
    fitted = _default_instance(entry)
    proba = fitted.fit_predict(graph, NUM_CLASSES)
    n = int(graph.num_nodes)
    assert isinstance(proba, torch.Tensor) and tuple(proba.shape) == (n, NUM_CLASSES), (
        f"{label}: fit_predict shape {tuple(getattr(proba, 'shape', ()))}, expected {(n, NUM_CLASSES)}")
    assert bool(torch.isfinite(proba).all()) and bool((proba >= 0).all()), f"{label}: probabilities must be finite and >= 0"
    assert torch.allclose(proba.sum(1).double(), torch.ones(n, dtype=torch.float64), atol=1e-5), f"{label}: rows must sum to 1"
    hidden = graph.clone()
    hidden.y = torch.where(hidden.train_mask, hidden.y, (hidden.y + 1) % NUM_CLASSES)
    again = _default_instance(entry).fit_predict(hidden, NUM_CLASSES)
    assert torch.equal(again, proba), f"{label}: fit_predict must use only the training labels (and be deterministic)"
    reloaded = _default_instance(entry)
    reloaded.load_state_dict(fitted.state_dict())
    assert torch.equal(reloaded.predict_proba(), proba), f"{label}: state-dict round trip changed the output"


def check_dataset(entry: Entry, root: Any = None) -> None:
    """A dataset loads deterministically (or, needing files, fails clearly without them)."""
    ds: Dataset = check_registration(entry)
    label = f"dataset {entry.name!r}"
    if ds.needs_files and root is None:
        try:
            ds.load(root=None, download=False, seed=0)
        except DataError as exc:
            assert "--data-root" in str(exc) or "data root" in str(exc).lower(), f"{label}: unhelpful error {exc}"
            return
        raise AssertionError(f"{label} needs files but loaded without any")
    a = ds.load(root=root, download=False, seed=0)
    b = _default_instance(entry).load(root=root, download=False, seed=0)
    assert isinstance(a, DataSplits), f"{label}.load must return DataSplits"
    assert all(len(getattr(a, s)) > 0 for s in ("train", "val", "test")), f"{label}: an empty split {a.sizes()}"
    assert torch.equal(a.test.y, b.test.y) and torch.equal(a.train.x, b.train.x), f"{label}: same seed, different data"


def check_embedder(entry: Entry) -> None:
    """Registration, output shape / dtype / determinism and input checks of an embedder.

    The embedder is built with its class's ``contract_options`` (e.g. ``weights="random"``
    and a small ``image_size`` for CNN backbones, whose ``weights`` has no default).
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="graphforge-contract-") as workdir:
        _check_embedder(entry, Path(workdir))


def _check_embedder(entry: Entry, workdir: Path) -> None:
    label = f"embedder {entry.name!r}"
    assert entry.name and entry.name == entry.name.strip(), f"bad name {entry.name!r}"
    assert entry.describe(), f"{label} has no description (pass one to register or add a docstring)"
    setup = getattr(entry.factory, "contract_setup", None)
    options = dict(setup(workdir) if setup is not None else getattr(entry.factory, "contract_options", {}) or {})
    required = [k for k, v in entry.options().items() if v is inspect.Parameter.empty and k not in options]
    assert not required, f"{label} has required options {required}; give them defaults or contract_options"
    emb = entry.create(**options)
    assert isinstance(emb, Embedder), f"{entry.name!r} builds a {type(emb).__name__}, not an Embedder"
    repr(emb)
    _check_bad_option(entry)
    assert emb.inputs, f"{label} accepts no input kind"
    _check_unsupported_kinds(emb, label)
    key = emb.cache_key()
    json.dumps(key, sort_keys=True)  # the cache hashes it as JSON
    twin = entry.create(**options)
    assert twin.cache_key() == key, f"{label}: two instances with the same options have different cache keys"
    specs = _specs_for(emb)
    cpu = torch.device("cpu")
    for kind in sorted(set(emb.inputs) - set(GRAPH_KINDS)):
        spec = _spec(specs, kind, label)
        emb.check_input(spec)
        dim = emb.output_dim(spec)
        assert isinstance(dim, int) and dim > 0, f"{label}.output_dim must be a positive int, got {dim!r}"
        x = synthetic_input(spec, batch=3)
        if kind == "images":  # datasets give uint8 0..255 or float 0..1: both must agree
            x = (x * 255).round().to(torch.uint8)
        out = emb.embed(x, cpu, 2)  # batches of 2 over 3 samples: a partial last batch
        assert isinstance(out, torch.Tensor) and tuple(out.shape) == (len(x), dim), (
            f"{label}: embed gave {tuple(getattr(out, 'shape', ()))} for {kind}, expected {(len(x), dim)}")
        assert out.dtype == torch.float32 and out.device == cpu, f"{label}: embed must return float32 on the CPU"
        assert bool(torch.isfinite(out).all()), f"{label}: non-finite embeddings"
        assert torch.equal(twin.embed(x, cpu, 2), out), f"{label}: same options and input, different embeddings"
        if kind == "images":
            scaled = emb.embed(x.float() / 255, cpu, 2)
            assert torch.allclose(scaled, out, rtol=1e-4, atol=1e-5), f"{label}: uint8 and [0, 1] float images differ"


_CHECKS = {"dataset": check_dataset, "converter": check_converter, "model": check_model, "embedder": check_embedder}


def check_registered(kind: str, name: str) -> None:
    """Run the contract checks of one registered plugin object.

    Args:
        kind: ``"dataset"``, ``"converter"``, ``"model"`` or ``"embedder"``.
        name: The registered name.

    Raises:
        AssertionError: Naming the broken part of the contract.
        GraphforgeError: If the name is not registered.
    """
    if kind not in _CHECKS:
        raise GraphforgeError(f"kind must be one of {', '.join(_CHECKS)}, got {kind!r}")
    _CHECKS[kind](get_registry(kind).get(name))
