"""One run, start to finish: the single code path behind ``graphforge run`` and
:func:`graphforge.run`.

Order matters for the promise that a bad input leaves nothing behind: every
option, plugin name and the data itself are checked before the run directory
is created.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from graphforge._version import __version__
from graphforge.config import RunConfig, route_options
from graphforge.core.converter import Converter
from graphforge.core.data import (
    SPLIT_NAMES,
    DataSplits,
    InputSpec,
    check_graph_splits,
    graph_split_nodes,
)
from graphforge.core.dataset import Dataset
from graphforge.core.model import FitModel, GraphFitModel, Model
from graphforge.core.splits import stratified_subset
from graphforge.engine import plots
from graphforge.engine.metrics import accuracy, report_text, summarize
from graphforge.engine.network import GraphforgeNet, Normalizer
from graphforge.engine.rundir import BEST_CHECKPOINT, RunDirectory, default_run_path
from graphforge.engine.runtime import resolve_device, seed_everything
from graphforge.engine.tasks import (
    InductiveTask,
    SampledTransductiveTask,
    Task,
    TransductiveTask,
    iterate_batches,
)
from graphforge.engine.trainer import Trainer, evaluate_split
from graphforge.errors import ConfigError, GraphforgeError
from graphforge.io import write_json, write_text
from graphforge.plugins import get_registry

log = logging.getLogger("graphforge")


#: Training defaults when each epoch is one optimiser step over a whole dataset graph
#: (PyG's node-classification examples use the same lr and epochs).
FULL_GRAPH_DEFAULTS: dict[str, Any] = {"lr": 1e-2, "epochs": 200, "patience": 20}
#: Training defaults for mini-batch training (epochs: the model's ``default_epochs``).
MINI_BATCH_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "patience": 10}


@dataclass
class RunResult:
    """What a run returns.

    Attributes:
        metrics: Final metrics (``test_accuracy``, ``val_accuracy``, ``train_seconds``, ...).
        run_dir: The run directory.
        history: One dict per epoch.
        config: The resolved configuration.
    """

    metrics: dict[str, Any]
    run_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    config: RunConfig | None = None


@dataclass
class Plan:
    """The checked, instantiated parts of a run."""

    config: RunConfig
    dataset: Dataset
    converter: Converter
    model: Model
    options: dict[str, dict[str, Any]]
    device: torch.device


def build_plugins(config: RunConfig) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Build the run's dataset, converter and model from their names and routed options.

    Returns:
        ``({"dataset": ..., "converter": ..., "model": ...}, options by role)``.
    """
    entries = {
        "dataset": get_registry("dataset").get(config.dataset),
        "converter": get_registry("converter").get(config.converter),
        "model": get_registry("model").get(config.model),
    }
    options = route_options(config.options, entries)
    instances = {role: entries[role].create(**options[role]) for role in entries}
    expected = {"dataset": Dataset, "converter": Converter, "model": Model}
    for role, obj in instances.items():
        if not isinstance(obj, expected[role]):
            raise GraphforgeError(
                f"{role} plugin {entries[role].name!r} (from {entries[role].plugin!r}) built a "
                f"{type(obj).__name__}, not a graphforge.{expected[role].__name__}"
            )
    return instances, options


def plan_run(config: RunConfig) -> Plan:
    """Check the config and build the plugins (nothing is written yet)."""
    config.validate()
    instances, options = build_plugins(config)
    device = resolve_device(config.device)
    return Plan(config, instances["dataset"], instances["converter"], instances["model"], options, device)


def load_data(plan: Plan) -> DataSplits:
    """Load the dataset and apply ``--limit-train`` / ``--limit-test``."""
    cfg = plan.config
    root = Path(cfg.data_root).expanduser() if cfg.data_root else None
    data = plan.dataset.load(root=root, download=cfg.download, seed=cfg.seed)
    if not isinstance(data, DataSplits):
        raise GraphforgeError(f"dataset {cfg.dataset!r} returned {type(data).__name__}, not DataSplits")
    if len(data.train) == 0:
        raise ConfigError(f"dataset {cfg.dataset!r} has an empty training split")
    if cfg.limit_train:
        data.train = data.train.subset(stratified_subset(data.train.y, cfg.limit_train, cfg.seed))
    if cfg.limit_test:
        data.val = data.val.subset(stratified_subset(data.val.y, cfg.limit_test, cfg.seed + 1)) if len(data.val) else data.val
        data.test = data.test.subset(stratified_subset(data.test.y, cfg.limit_test, cfg.seed + 2)) if len(data.test) else data.test
    return data


def _check_pipeline(plan: Plan, spec: InputSpec) -> InputSpec:
    plan.converter.check_input(spec)
    out_spec = plan.converter.output_spec(spec)
    if isinstance(plan.model, GraphFitModel) and plan.converter.level != "dataset":
        raise ConfigError(
            f"model {plan.config.model!r} is computed from one graph over the whole dataset; use a dataset "
            f"converter (such as 'similarity'), not {plan.config.converter!r}, which makes one input per sample"
        )
    plan.model.check_input(out_spec)
    if isinstance(plan.model, FitModel) and plan.converter.level != "sample":
        raise ConfigError(f"model {plan.config.model!r} is fitted on sample features; use a per-sample converter")
    return out_spec


def build_network(plan: Plan, data: DataSplits, out_spec: InputSpec, normalize: bool = True) -> nn.Module:
    """Build the trainable network for a gradient model."""
    if plan.converter.level == "dataset":
        return plan.model.build(out_spec, data.num_classes)
    normalizer = Normalizer.fit(data.train, data.kind, enabled=normalize)
    converter = plan.converter.build(data.spec)
    model = plan.model.build(out_spec, data.num_classes)
    return GraphforgeNet(normalizer, converter, model)


def _meta(plan: Plan, data: DataSplits, spec: InputSpec, out_spec: InputSpec) -> dict[str, Any]:
    return {
        "config": plan.config.to_dict(),
        "spec": {"kind": spec.kind, "shape": list(spec.shape)},
        "out_spec": {"kind": out_spec.kind, "shape": list(out_spec.shape)},
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "graphforge_version": __version__,
    }


def _environment(device: torch.device) -> dict[str, Any]:
    return {
        "graphforge_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


@torch.no_grad()
def sample_features(prefix: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Run ``prefix`` (normaliser + converter) over ``x`` in batches; return flat ``[N, D]`` features."""
    prefix.eval()
    chunks = [prefix(x[idx].to(device)).reshape(len(idx), -1).float().cpu() for idx in iterate_batches(len(x), batch_size, shuffle=False)]
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)


def _finish(
    plan: Plan,
    rundir: RunDirectory,
    data: DataSplits,
    results: dict[str, dict[str, Any]],
    history: list[dict[str, Any]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    cfg = plan.config
    summaries = {s: summarize(r["pred"], r["y"], data.num_classes, data.class_names) for s, r in results.items()}
    test, val = summaries["test"], summaries["val"]
    metrics = {
        "test_accuracy": test["accuracy"],
        "test_macro_f1": test["macro_f1"],
        "val_accuracy": val["accuracy"],
        "val_macro_f1": val["macro_f1"],
        **extra,
        "dataset": cfg.dataset,
        "converter": cfg.converter,
        "model": cfg.model,
        "seed": cfg.seed,
        "device": str(plan.device),
        "num_train": len(data.train),
        "num_val": len(data.val),
        "num_test": len(data.test),
        "num_classes": data.num_classes,
        "run_dir": str(rundir.path),
    }
    write_json(rundir.file("classification_report.json"), {s: v["report"] for s, v in summaries.items()})
    write_text(rundir.file("classification_report.txt"), report_text(test["report"]))
    write_json(rundir.file("confusion_matrix.json"), {s: v["confusion"] for s, v in summaries.items()})
    if cfg.plots:
        title = f"{cfg.converter} + {cfg.model} on {cfg.dataset}"
        plots.plot_confusion_matrix(test["confusion"], data.class_names, rundir.plot_path("confusion_matrix.png"),
                                    f"{title}: test accuracy {test['accuracy']:.4f}")
        if history:
            plots.plot_learning_curves(history, rundir.plot_path("learning_curves.png"), title)
        for plugin in (plan.converter, plan.model):
            plugin.write_plots(history, rundir.plots_dir())
    metrics.update(plan.converter.report(rundir) or {})
    rundir.write_metrics(metrics)
    return metrics


def _run_fit(
    plan: Plan, data: DataSplits, rundir: RunDirectory, spec: InputSpec, out_spec: InputSpec
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    model: FitModel = plan.model  # type: ignore[assignment]
    prefix = nn.Sequential(Normalizer.fit(data.train, data.kind), plan.converter.build(spec)).to(plan.device)
    start = time.perf_counter()
    feats = {s: sample_features(prefix, getattr(data, s).x, plan.device) for s in ("train", "val", "test")}
    model.fit(feats["train"], data.train.y, data.num_classes)
    train_seconds = time.perf_counter() - start
    results = {}
    # A model may skip scoring its own training split (kNN: that is an N x N search).
    splits = ("train", "val", "test") if model.score_train else ("val", "test")
    for s in splits:
        proba = model.predict_proba(feats[s]) if len(feats[s]) else torch.zeros(0, data.num_classes)
        results[s] = {"pred": proba.argmax(1).cpu(), "y": getattr(data, s).y}
    state = {"fit_state": model.state_dict(), "prefix": prefix.state_dict(), **_meta(plan, data, spec, out_spec)}
    history, extra = _record_fit(rundir, results, train_seconds, state)
    # Optional model-specific results (e.g. a k sweep): merged into metrics.json.
    extra.update(model.report(feats, {s: getattr(data, s).y for s in SPLIT_NAMES}, rundir) or {})
    return {"val": results["val"], "test": results["test"]}, history, extra


def _record_fit(rundir: RunDirectory, results: dict[str, dict[str, Any]], train_seconds: float,
                state: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """History, checkpoint and figures of a model fitted in one step (no epochs)."""
    acc = {s: accuracy(r["pred"], r["y"]) for s, r in results.items()}
    history = [{"epoch": 1, "train_accuracy": acc.get("train"), "val_accuracy": acc["val"], "seconds": train_seconds}]
    rundir.write_history(history)
    rundir.save(BEST_CHECKPOINT, state)
    return history, {"train_seconds": train_seconds, "train_accuracy": acc.get("train"), "epochs": 1, "best_epoch": 1}


def _run_graph_fit(
    plan: Plan, data: DataSplits, rundir: RunDirectory, graph: Any, spec: InputSpec, out_spec: InputSpec
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    model: GraphFitModel = plan.model  # type: ignore[assignment]
    mapped = check_graph_splits(graph)
    graph = graph.to(plan.device)
    start = time.perf_counter()
    proba = model.fit_predict(graph, data.num_classes)
    train_seconds = time.perf_counter() - start
    expected = (int(graph.num_nodes), data.num_classes)
    if not isinstance(proba, torch.Tensor) or tuple(proba.shape) != expected:
        raise GraphforgeError(
            f"model {plan.config.model!r}: fit_predict returned {tuple(getattr(proba, 'shape', ()))}, "
            f"expected [num_nodes, num_classes] = {list(expected)}"
        )
    pred = proba.argmax(1).cpu()
    results = {}
    for s in SPLIT_NAMES:
        nodes, y = graph_split_nodes(graph, s, mapped)
        results[s] = {"pred": pred[nodes.cpu()], "y": y.cpu()}
    state = {"graph_fit_state": model.state_dict(), **_meta(plan, data, spec, out_spec)}
    history, extra = _record_fit(rundir, results, train_seconds, state)
    # Optional model-specific results: merged into metrics.json.
    extra.update(model.report(graph, proba, rundir) or {})
    return {"val": results["val"], "test": results["test"]}, history, extra


def execute(config: RunConfig, *, resume: str | Path | None = None, progress: bool = False) -> RunResult:
    """Run (or resume) one experiment and write its run directory.

    Args:
        config: The run configuration.
        resume: A run directory to continue; its saved config is used, except ``epochs``
            when ``config.epochs`` is set.
        progress: Show progress bars on stderr.

    Returns:
        The final metrics, history and run directory.
    """
    rundir: RunDirectory | None = None
    if resume is not None:
        rundir = RunDirectory.open(resume)
        saved = RunConfig.from_dict(rundir.read_config())
        if config.epochs is not None:
            saved.epochs = config.epochs
        saved.device = config.device if config.device != "auto" else saved.device
        config = saved
    plan = plan_run(config)
    cfg = plan.config
    seed_everything(cfg.seed)
    data = load_data(plan)
    spec = data.spec
    out_spec = _check_pipeline(plan, spec)
    plan.converter.check_data(data)
    plan.model.check_data(data)
    plan.converter.fit(data)

    is_fit = isinstance(plan.model, FitModel)
    is_graph_fit = isinstance(plan.model, GraphFitModel)
    graph = None
    if plan.converter.level == "dataset":
        graph = plan.converter.convert(data)
    fanout = plan.model.neighbor_sampling(graph.num_nodes) if graph is not None and not (is_fit or is_graph_fit) else None
    full_graph = graph is not None and not (is_fit or is_graph_fit) and fanout is None
    defaults = FULL_GRAPH_DEFAULTS if full_graph else {**MINI_BATCH_DEFAULTS, "epochs": plan.model.default_epochs}
    cfg.epochs = epochs = cfg.epochs or defaults["epochs"]
    cfg.lr = cfg.lr if cfg.lr is not None else defaults["lr"]
    cfg.patience = cfg.patience if cfg.patience is not None else defaults["patience"]
    net = None if is_fit or is_graph_fit else build_network(plan, data, out_spec).to(plan.device)
    if is_graph_fit:
        check_graph_splits(graph)  # a graph without splits is refused before the run directory exists

    if rundir is None:
        rundir = RunDirectory.create(cfg.out or default_run_path(cfg.converter, cfg.model))
    cfg.out = str(rundir.path)
    resolved = {**cfg.to_dict(), "plugin_options": plan.options, "environment": _environment(plan.device)}
    rundir.write_config(cfg.to_dict())
    write_json(rundir.file("resolved.json"), resolved)
    rundir.write_status("running", started=time.strftime("%Y-%m-%dT%H:%M:%S"), **_environment(plan.device))
    log.info("run directory: %s", rundir.path)
    log.info("data: %s  %s  train %d / val %d / test %d, %d classes", cfg.dataset, tuple(spec.shape),
             len(data.train), len(data.val), len(data.test), data.num_classes)

    try:
        if is_fit:
            results, history, extra = _run_fit(plan, data, rundir, spec, out_spec)
        elif is_graph_fit:
            results, history, extra = _run_graph_fit(plan, data, rundir, graph, spec, out_spec)
        else:
            assert net is not None
            log.info("network: %d parameters on %s", sum(p.numel() for p in net.parameters()), plan.device)
            generator = torch.Generator().manual_seed(cfg.seed)
            task: Task
            if fanout is not None:
                log.info("neighbour-sampled training on %d nodes: fanout %s, batch size %d",
                         graph.num_nodes, fanout, cfg.batch_size)
                task = SampledTransductiveTask(net, graph, fanout, cfg.batch_size, plan.device, generator,
                                               progress, seed=cfg.seed)
            elif graph is not None:
                log.info("full-batch training on the whole graph (%d nodes)", graph.num_nodes)
                task = TransductiveTask(net, graph, plan.device)
            else:
                task = InductiveTask(net, data, cfg.batch_size, plan.device, generator, progress)
            trainer = Trainer(
                task, rundir, epochs=epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                lr_schedule=cfg.lr_schedule, patience=cfg.patience,
                meta=_meta(plan, data, spec, out_spec), generator=generator,
            )
            if resume is not None:
                trainer.resume()
                log.info("resumed at epoch %d of %d", trainer.state.epoch, epochs)
            start = time.perf_counter()
            state = trainer.fit()
            train_seconds = sum(h.get("seconds", 0.0) for h in state.history)
            history = state.history
            results = {s: evaluate_split(task, s) for s in ("val", "test")}
            extra = {
                "train_seconds": train_seconds,
                "session_seconds": time.perf_counter() - start,
                "train_accuracy": history[-1]["train_accuracy"] if history else None,
                "epochs": state.epoch,
                "best_epoch": state.best_epoch,
                "stopped_early": state.stopped_early,
                "num_parameters": sum(p.numel() for p in net.parameters()),
            }
        metrics = _finish(plan, rundir, data, results, history, extra)
    except KeyboardInterrupt:
        rundir.write_status("interrupted")
        raise
    except BaseException as exc:
        rundir.write_status("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    rundir.write_status("completed", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    log.info("test accuracy %.4f  (val %.4f)  -> %s", metrics["test_accuracy"], metrics["val_accuracy"], rundir.path)
    return RunResult(metrics=metrics, run_dir=rundir.path, history=history, config=cfg)
