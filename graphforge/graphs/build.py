"""Build any converter's graphs without training: :func:`build_graph`, behind ``graphforge graph``.

The same code path as a run: the dataset plugin loads the splits (``--limit-train`` /
``--limit-test`` take the same seeded subsets), the converter is built from its plugin
options, fitted on the training split (``Converter.fit``), and then

* a **dataset** converter (``similarity``, ``som``, third-party ones) returns its one graph
  over the dataset, exactly the graph a run would train on;
* a **per-sample** converter (``dyn_knn``, third-party ones) turns the samples of one split
  into graphs — with the trained encoder and k head of a finished run (``from_run``), or a
  freshly built converter (e.g. ``dyn_knn -o learn_k=false -o k=8``) — returned as one
  disjoint-union ``Data`` with ``batch`` (which graph each node belongs to), ``graph_y``
  (each graph's label) and the converter's own per-graph tensors (``dyn_knn``: ``k``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from graphforge.errors import ConfigError, GraphforgeError

SPLITS = ("train", "val", "test")


def _load(dataset: str, converter: str, options: dict[str, Any], *, data_root: str | None, seed: int,
          limit_train: int | None, limit_test: int | None, download: bool) -> tuple[Any, Any]:
    """The dataset's splits and the converter, built as a run builds them (options go to
    whichever of the two takes them)."""
    from graphforge.config import RunConfig, route_options
    from graphforge.engine.runner import Plan, load_data
    from graphforge.engine.runtime import resolve_device
    from graphforge.plugins import get_registry

    config = RunConfig(dataset=dataset, converter=converter, model="mlp", data_root=data_root, seed=seed,
                       limit_train=limit_train, limit_test=limit_test, download=download, options=dict(options))
    config.validate()
    entries = {"dataset": get_registry("dataset").get(dataset), "converter": get_registry("converter").get(converter)}
    routed = route_options(dict(options), entries)
    plugins = {role: entries[role].create(**routed[role]) for role in entries}
    plan = Plan(config, plugins["dataset"], plugins["converter"], None, routed, resolve_device("auto"))  # type: ignore[arg-type]
    return load_data(plan), plugins["converter"]


def build_graph(
    converter: str,
    dataset: str = "digits",
    *,
    options: dict[str, Any] | None = None,
    data_root: str | Path | None = None,
    seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
    download: bool = False,
    from_run: str | Path | None = None,
    split: str = "test",
    batch_size: int = 256,
) -> Any:
    """Build ``converter``'s graph(s) over ``dataset`` (see the module docstring).

    Args:
        converter: Converter plugin name.
        dataset: Dataset plugin name.
        options: Dataset and converter options (as ``-o``).
        data_root, seed, limit_train, limit_test, download: As for :func:`graphforge.run`.
        from_run: A finished run of a per-sample converter: its trained converter (for
            ``dyn_knn``: encoder and k head) builds the graphs; the run's dataset and
            options are used unless given.
        split: Which split's samples a per-sample converter turns into graphs.
        batch_size: Samples per forward pass of a per-sample converter.

    Returns:
        A PyG ``Data``.

    Raises:
        ConfigError: For a bad name, option or split, or a converter that cannot run here.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    options = dict(options or {})
    root = str(data_root) if data_root is not None else None
    if from_run is not None:
        return _from_run(Path(from_run), split, batch_size, root, limit_train, limit_test, dataset, options)
    data, conv = _load(dataset, converter, options, data_root=root, seed=seed, limit_train=limit_train,
                          limit_test=limit_test, download=download)
    conv.check_input(data.spec)
    conv.check_data(data)
    conv.fit(data)
    if conv.level == "dataset":
        graph = conv.convert(data)
        graph.graphforge_converter = converter
        return graph
    from graphforge.engine.network import Normalizer

    module = torch.nn.Sequential(Normalizer.fit(data.train, data.kind), conv.build(data.spec))
    return _per_sample_graphs(module, getattr(data, split), batch_size)


def _from_run(run_dir: Path, split: str, batch_size: int, data_root: str | None, limit_train: int | None,
              limit_test: int | None, dataset: str, options: dict[str, Any]) -> Any:
    from graphforge.api import load_run

    trained = load_run(run_dir)
    net = trained.net
    if net is None or trained._transductive or not hasattr(net, "converter"):
        raise ConfigError(f"--from-run needs a finished run of a per-sample converter with a trained network; "
                          f"{run_dir} is a {trained.config.converter} + {trained.config.model} run")
    from graphforge.engine.runner import load_data, plan_run

    cfg = trained.config
    if dataset not in ("digits", cfg.dataset) or options:
        raise ConfigError("--from-run takes the run's own dataset and options; give only --data-root, "
                          "--limit-train / --limit-test and --split")
    cfg.data_root = data_root or cfg.data_root
    cfg.limit_train = limit_train if limit_train is not None else cfg.limit_train
    cfg.limit_test = limit_test if limit_test is not None else cfg.limit_test
    plan = plan_run(cfg)
    kind = plan.converter.output_spec(trained.spec).kind if trained.spec is not None else "graphs"
    if kind != "graphs":  # before any data is loaded
        raise ConfigError(f"--from-run builds the graphs of a per-sample graph converter (such as dyn_knn); {run_dir} "
                          f"is a {cfg.converter} + {cfg.model} run, whose converter gives {kind}, not graphs")
    data = load_data(plan)  # the run's own splits
    module = torch.nn.Sequential(net.normalizer, net.converter)
    graph = _per_sample_graphs(module, getattr(data, split), batch_size)
    graph.graphforge_converter = cfg.converter
    return graph


@torch.no_grad()
def _per_sample_graphs(module: torch.nn.Module, part: Any, batch_size: int) -> Any:
    """Run a per-sample converter over ``part``'s samples; one disjoint-union ``Data``."""
    from torch_geometric.data import Batch, Data

    module.eval()
    pieces = []
    for start in range(0, len(part), batch_size):
        out = module(part.x[start:start + batch_size])
        if isinstance(out, Batch):
            pieces.append(out)
        elif isinstance(out, Data):
            pieces.append(Batch.from_data_list([out]))
        else:
            raise GraphforgeError(f"the converter returned {type(out).__name__} for a batch of samples, not graphs; "
                                  "graphforge graph builds the graphs of graph converters only")
    if not pieces:
        raise ConfigError("the split has no samples to turn into graphs")
    nodes = [int(p.num_nodes) for p in pieces]
    offsets = torch.tensor([0, *nodes]).cumsum(0)
    graph_offsets = torch.tensor([0, *[int(p.num_graphs) for p in pieces]]).cumsum(0)
    attrs: dict[str, Any] = {
        "x": torch.cat([p.x.float() for p in pieces]),
        "edge_index": torch.cat([p.edge_index + offsets[i] for i, p in enumerate(pieces)], 1),
        "batch": torch.cat([p.batch + graph_offsets[i] for i, p in enumerate(pieces)]),
        "graph_y": part.y.clone(),
    }
    weights = [getattr(p, "edge_weight", None) for p in pieces]
    if all(isinstance(w, torch.Tensor) for w in weights):
        attrs["edge_weight"] = torch.cat(weights)  # type: ignore[arg-type]
    k = [getattr(p, "k", None) for p in pieces]
    if all(isinstance(v, torch.Tensor) for v in k):
        attrs["k"] = torch.cat(k)  # type: ignore[arg-type]
    pos = getattr(module[-1], "pos", None) if isinstance(module, torch.nn.Sequential) else None
    if isinstance(pos, torch.Tensor):
        attrs["node_pos"] = pos.detach().cpu().clone()  # one set of positions, shared by every graph
    return Data(num_nodes=int(offsets[-1]), **attrs)
