"""Model families: how the engine checks, trains, checkpoints, reloads and predicts each kind of model.

There are three, one strategy object each, chosen from the model's base class
(:func:`family_of`):

* :class:`GradientFamily` — :class:`~graphforge.Model`: a network trained by gradient
  descent, on per-sample inputs (mini-batches), one whole dataset graph (full batch) or
  a large graph (neighbour-sampled mini-batches);
* :class:`FitFamily` — :class:`~graphforge.FitModel`: fitted once on the features of a
  per-sample converter (``knn``);
* :class:`GraphFitFamily` — :class:`~graphforge.GraphFitModel`: computed once from one
  dataset graph (``label_prop``).

The runner (:mod:`graphforge.engine.runner`) and :func:`graphforge.load_run` call the
same methods whatever the family, so a new kind of model is one new class here rather
than a branch in every function.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from graphforge.core.data import SPLIT_NAMES, DataSplits, InputSpec, check_graph_splits, graph_split_nodes
from graphforge.core.model import FitModel, GraphFitModel, Model
from graphforge.engine.checkpoint import load_weights, make_checkpoint
from graphforge.engine.metrics import accuracy
from graphforge.engine.network import GraphforgeNet, Normalizer
from graphforge.engine.rundir import BEST_CHECKPOINT, RunDirectory
from graphforge.engine.tasks import iterate_batches, split_metrics
from graphforge.errors import ConfigError, GraphforgeError

if TYPE_CHECKING:
    from graphforge.engine.runner import Plan

log = logging.getLogger("graphforge")

#: Training defaults when each epoch is one optimiser step over a whole dataset graph
#: (PyG's node-classification examples use the same lr and epochs).
FULL_GRAPH_DEFAULTS: dict[str, Any] = {"lr": 1e-2, "epochs": 200, "patience": 20}
#: Training defaults for mini-batch training (epochs: the model's ``default_epochs``).
MINI_BATCH_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "patience": 10}

Results = dict[str, dict[str, Any]]


@dataclass
class Job:
    """One run's checked inputs, handed from the runner to its family.

    Attributes:
        plan: The checked plugins and config.
        data: The loaded splits.
        spec, out_spec: The dataset's and the converter's output specs.
        graph: The dataset converter's graph (``None`` for per-sample converters).
        meta: What the checkpoint needs to rebuild the model.
        net: The network of a gradient run (built before the run directory exists).
        fanout: Neighbour sampling per layer for a large dataset graph, or ``None``.
        dist: The distributed job (:data:`graphforge.engine.distributed.SINGLE` in one process).
        threads: The run's :class:`graphforge.engine.threads.ThreadPolicy` (re-applied every epoch).
    """

    plan: Plan
    data: DataSplits
    spec: InputSpec
    out_spec: InputSpec
    graph: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    net: nn.Module | None = None
    fanout: list[int] | None = None
    dist: Any = None
    threads: Any = None


@torch.no_grad()
def sample_features(prefix: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Run ``prefix`` (normaliser + converter) over ``x`` in batches; return flat ``[N, D]`` features."""
    prefix.eval()
    chunks = [prefix(x[idx].to(device)).reshape(len(idx), -1).float().cpu()
              for idx in iterate_batches(len(x), batch_size, shuffle=False)]
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)


class ModelFamily:
    """What the engine does with one kind of model (see the module docstring)."""

    #: The family's name, stored in every checkpoint.
    name: ClassVar[str] = ""

    def check_pipeline(self, plan: Plan) -> None:
        """Raise :class:`ConfigError` if this model cannot follow the run's converter."""

    def prepare(self, job: Job) -> None:
        """Resolve training defaults and build what must exist before the run directory
        (so a bad combination leaves nothing behind)."""
        _apply_defaults(job, {**MINI_BATCH_DEFAULTS, "epochs": job.plan.model.default_epochs})

    def train(self, job: Job, rundir: RunDirectory, *, resume: bool, progress: bool) -> tuple[Results, list, dict]:
        """Train or fit; return ``(val/test predictions, history, extra metrics)``."""
        raise NotImplementedError

    def restore(self, plan: Plan, meta: dict[str, Any], state: dict[str, Any]) -> tuple[nn.Module | None, nn.Module | None]:
        """Rebuild the trained model from a checkpoint's ``meta`` and ``state``; return ``(net, prefix)``."""
        raise NotImplementedError

    def predict_proba(self, model: Model, net: nn.Module | None, prefix: nn.Module | None, x: torch.Tensor,
                      batch_size: int) -> torch.Tensor:
        """Class probabilities of new raw samples ``x``."""
        raise NotImplementedError

    def transductive(self, plan: Plan) -> bool:
        """Whether a trained run predicts only the nodes of its own dataset graph."""
        return plan.converter.level == "dataset"


def _one_process_only(plan: Plan) -> None:
    """Fitted models run in one process: refuse them under torchrun with what to do instead."""
    from graphforge.engine.distributed import current

    if current().active:
        raise ConfigError(f"model {plan.config.model!r} is fitted in one step, in one process: run it without "
                          "torchrun (its search uses every core of the machine); for dataset-scale graphs across "
                          "processes see graphforge.neighbors.sharded")


def _apply_defaults(job: Job, defaults: dict[str, Any]) -> None:
    cfg = job.plan.config
    cfg.epochs = cfg.epochs or defaults["epochs"]
    cfg.lr = cfg.lr if cfg.lr is not None else defaults["lr"]
    cfg.patience = cfg.patience if cfg.patience is not None else defaults["patience"]


def _spec(meta: dict[str, Any], key: str) -> InputSpec:
    return InputSpec(meta[key]["kind"], tuple(meta[key]["shape"]))


class GradientFamily(ModelFamily):
    """A network trained by gradient descent (:class:`~graphforge.Model`)."""

    name = "gradient"

    def prepare(self, job: Job) -> None:
        """Neighbour sampling or not, the training defaults, and the network."""
        model, graph = job.plan.model, job.graph
        job.fanout = model.neighbor_sampling(graph.num_nodes) if graph is not None else None
        full_graph = graph is not None and job.fanout is None
        if job.dist is not None and job.dist.active and full_graph:
            raise ConfigError("full-batch training on one dataset graph runs in one process (every rank would take "
                              "the same step); launch it without torchrun, or train with neighbour sampling across "
                              "the ranks: -o num_neighbors=[15,10,5] (one entry per layer)")
        if job.plan.config.sync_batchnorm and (job.dist is None or job.dist.backend != "nccl"):
            raise ConfigError("--sync-batchnorm needs a distributed run on GPUs (NCCL); on CPUs every rank keeps "
                              "its own BatchNorm statistics and rank 0's are used for evaluation")
        defaults = FULL_GRAPH_DEFAULTS if full_graph else {**MINI_BATCH_DEFAULTS, "epochs": model.default_epochs}
        if not full_graph and getattr(model, "default_lr", None):  # a model's own mini-batch learning rate
            defaults = {**defaults, "lr": model.default_lr}
        _apply_defaults(job, defaults)
        try:
            job.net = self.build_network(job.plan, job.data, job.out_spec).to(job.plan.device)
        except (MemoryError, RuntimeError) as exc:
            text = str(exc)
            if not isinstance(exc, MemoryError) and "alloc" not in text.lower() and "out of memory" not in text.lower():
                raise
            raise ConfigError(f"cannot build the {job.plan.config.model!r} network: out of memory "
                              f"({' '.join(text.split())[:160] or 'MemoryError'}); use smaller options "
                              "(hidden, channels, layers)") from None

    @staticmethod
    def build_network(plan: Plan, data: DataSplits, out_spec: InputSpec, normalize: bool = True) -> nn.Module:
        """Build the trainable network: the model alone on a dataset graph, else
        normaliser + converter + model."""
        if plan.converter.level == "dataset":
            return plan.model.build(out_spec, data.num_classes)
        normalizer = Normalizer.fit(data.train, data.kind, enabled=normalize)
        converter = plan.converter.build(data.spec)
        model = plan.model.build(out_spec, data.num_classes)
        return GraphforgeNet(normalizer, converter, model)

    def train(self, job: Job, rundir: RunDirectory, *, resume: bool, progress: bool) -> tuple[Results, list, dict]:
        from graphforge.engine.distributed import wrap_ddp
        from graphforge.engine.tasks import (
            InductiveTask,
            SampledTransductiveTask,
            Task,
            TransductiveTask,
        )
        from graphforge.engine.trainer import Trainer, evaluate_split

        plan, cfg, net, graph, info = job.plan, job.plan.config, job.net, job.graph, job.dist
        assert net is not None
        log.info("network: %d parameters on %s", sum(p.numel() for p in net.parameters()), plan.device)
        generator = torch.Generator().manual_seed(cfg.seed)  # the same shuffling on every rank
        train_net = wrap_ddp(net, info, cfg.sync_batchnorm)
        task: Task
        if job.fanout is not None:
            log.info("neighbour-sampled training on %d nodes: fanout %s, batch size %d",
                     graph.num_nodes, job.fanout, cfg.batch_size)
            task = SampledTransductiveTask(net, graph, job.fanout, cfg.batch_size, plan.device, generator,
                                           progress, seed=cfg.seed, train_net=train_net, dist=info,
                                           label_smoothing=cfg.label_smoothing, precision=cfg.precision)
        elif graph is not None:
            log.info("full-batch training on the whole graph (%d nodes)", graph.num_nodes)
            task = TransductiveTask(net, graph, plan.device, label_smoothing=cfg.label_smoothing,
                                    precision=cfg.precision)
        else:
            from graphforge.engine.augment import make_augment

            augment = make_augment(cfg.augment, job.data.kind, tuple(job.spec.shape))
            if augment is not None:
                log.info("augmentation: %r", augment)
            task = InductiveTask(net, job.data, cfg.batch_size, plan.device, generator, progress,
                                 train_net=train_net, dist=info, augment=augment,
                                 label_smoothing=cfg.label_smoothing, precision=cfg.precision)
            if len(task.holdout_idx):
                log.info("%d of the %d training samples held out for %d parameters (trained on their loss only)",
                         len(task.holdout_idx), len(job.data.train), sum(p.numel() for p in task.holdout_params))
        trainer = Trainer(
            task, rundir, epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
            lr_schedule=cfg.lr_schedule, patience=cfg.patience, meta=job.meta, generator=generator, dist=info,
            warmup_epochs=cfg.warmup_epochs, threads=job.threads,
        )
        if resume:
            last, plan.resume_from = plan.resume_from, None
            trainer.resume(last)
            log.info("resumed at epoch %d of %d", trainer.state.epoch, cfg.epochs)
        start = time.perf_counter()
        state = trainer.fit()
        history = state.history
        results, measured = {}, {}
        from graphforge.engine.distributed import sync_buffers

        sync_buffers(net, info)  # every rank evaluates the same weights and statistics
        for split in ("val", "test"):
            split_metrics(net)  # forget what the modules counted before this split
            results[split] = evaluate_split(task, split)
            measured.update({f"{split}_{key}": value for key, value in split_metrics(net).items()})
        extra = {
            "train_seconds": sum(h.get("seconds", 0.0) for h in history),
            "session_seconds": time.perf_counter() - start,
            "train_accuracy": history[-1]["train_accuracy"] if history else None,
            "epochs": state.epoch,
            "best_epoch": state.best_epoch,
            "stopped_early": state.stopped_early,
            "num_parameters": sum(p.numel() for p in net.parameters()),
            **measured,
        }
        return results, history, extra

    def restore(self, plan: Plan, meta: dict[str, Any], state: dict[str, Any]) -> tuple[nn.Module | None, nn.Module | None]:
        spec, out_spec = _spec(meta, "spec"), _spec(meta, "out_spec")
        num_classes = int(meta["num_classes"])
        if plan.converter.level == "dataset":
            net = plan.model.build(out_spec, num_classes)
        else:
            net = GraphforgeNet(Normalizer.empty(spec), plan.converter.build(spec), plan.model.build(out_spec, num_classes))
        load_weights(net, state["net"], BEST_CHECKPOINT, "network weights")
        return net.eval(), None

    def predict_proba(self, model: Model, net: nn.Module | None, prefix: nn.Module | None, x: torch.Tensor,
                      batch_size: int) -> torch.Tensor:
        assert net is not None
        outs = [net(x[idx]).softmax(-1) for idx in iterate_batches(len(x), batch_size, shuffle=False)]
        return torch.cat(outs)


def _record_fit(rundir: RunDirectory, results: Results, train_seconds: float, meta: dict[str, Any], family: str,
                state: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """History, checkpoint and figures of a model fitted in one step (no epochs)."""
    acc = {s: accuracy(r["pred"], r["y"]) for s, r in results.items()}
    history = [{"epoch": 1, "train_accuracy": acc.get("train"), "val_accuracy": acc["val"], "seconds": train_seconds}]
    rundir.write_history(history)
    rundir.save(BEST_CHECKPOINT, make_checkpoint(family, meta, state))
    return history, {"train_seconds": train_seconds, "train_accuracy": acc.get("train"), "epochs": 1, "best_epoch": 1}


class FitFamily(ModelFamily):
    """A model fitted once on per-sample features (:class:`~graphforge.FitModel`)."""

    name = "fit"

    def check_pipeline(self, plan: Plan) -> None:
        if plan.converter.level != "sample":
            raise ConfigError(f"model {plan.config.model!r} is fitted on sample features; use a per-sample converter")
        _one_process_only(plan)

    def train(self, job: Job, rundir: RunDirectory, *, resume: bool, progress: bool) -> tuple[Results, list, dict]:
        plan, data = job.plan, job.data
        model: FitModel = plan.model  # type: ignore[assignment]
        prefix = nn.Sequential(Normalizer.fit(data.train, data.kind), plan.converter.build(job.spec)).to(plan.device)
        start = time.perf_counter()
        feats = {s: sample_features(prefix, getattr(data, s).x, plan.device) for s in SPLIT_NAMES}
        model.fit(feats["train"], data.train.y, data.num_classes)
        train_seconds = time.perf_counter() - start
        results = {}
        # A model may skip scoring its own training split (kNN: that is an N x N search).
        splits = SPLIT_NAMES if model.score_train else ("val", "test")
        for s in splits:
            proba = model.predict_proba(feats[s]) if len(feats[s]) else torch.zeros(0, data.num_classes)
            results[s] = {"pred": proba.argmax(1).cpu(), "y": getattr(data, s).y}
        state = {"model": model.state_dict(), "prefix": prefix.state_dict()}
        history, extra = _record_fit(rundir, results, train_seconds, job.meta, self.name, state)
        # Optional model-specific results (e.g. a k sweep): merged into metrics.json.
        extra.update(model.report(feats, {s: getattr(data, s).y for s in SPLIT_NAMES}, rundir) or {})
        return {"val": results["val"], "test": results["test"]}, history, extra

    def restore(self, plan: Plan, meta: dict[str, Any], state: dict[str, Any]) -> tuple[nn.Module | None, nn.Module | None]:
        spec = _spec(meta, "spec")
        prefix = nn.Sequential(Normalizer.empty(spec), plan.converter.build(spec))
        load_weights(prefix, state["prefix"], BEST_CHECKPOINT, "feature weights")
        load_weights(plan.model, state["model"], BEST_CHECKPOINT, "fitted model")
        return None, prefix.eval()

    def predict_proba(self, model: Model, net: nn.Module | None, prefix: nn.Module | None, x: torch.Tensor,
                      batch_size: int) -> torch.Tensor:
        assert prefix is not None
        return model.predict_proba(sample_features(prefix, x, torch.device("cpu"), batch_size))  # type: ignore[attr-defined]

    def transductive(self, plan: Plan) -> bool:
        return False


class GraphFitFamily(ModelFamily):
    """A model computed once from one dataset graph (:class:`~graphforge.GraphFitModel`)."""

    name = "graph_fit"

    def check_pipeline(self, plan: Plan) -> None:
        if plan.converter.level != "dataset":
            raise ConfigError(
                f"model {plan.config.model!r} is computed from one graph over the whole dataset; use a dataset "
                f"converter (such as 'similarity'), not {plan.config.converter!r}, which makes one input per sample"
            )
        _one_process_only(plan)

    def prepare(self, job: Job) -> None:
        super().prepare(job)
        check_graph_splits(job.graph)  # a graph without splits is refused before the run directory exists

    def train(self, job: Job, rundir: RunDirectory, *, resume: bool, progress: bool) -> tuple[Results, list, dict]:
        plan, data = job.plan, job.data
        model: GraphFitModel = plan.model  # type: ignore[assignment]
        mapped = check_graph_splits(job.graph)
        graph = job.graph.to(plan.device)
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
        history, extra = _record_fit(rundir, results, train_seconds, job.meta, self.name, {"model": model.state_dict()})
        # Optional model-specific results: merged into metrics.json.
        extra.update(model.report(graph, proba, rundir) or {})
        return {"val": results["val"], "test": results["test"]}, history, extra

    def restore(self, plan: Plan, meta: dict[str, Any], state: dict[str, Any]) -> tuple[nn.Module | None, nn.Module | None]:
        load_weights(plan.model, state["model"], BEST_CHECKPOINT, "fitted model")
        return None, None

    def transductive(self, plan: Plan) -> bool:
        return True


_FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (GradientFamily(), FitFamily(), GraphFitFamily())}


def family_of(model: Model) -> ModelFamily:
    """The family of a model plugin, from its base class."""
    if isinstance(model, GraphFitModel):
        return _FAMILIES["graph_fit"]
    if isinstance(model, FitModel):
        return _FAMILIES["fit"]
    return _FAMILIES["gradient"]


def family_named(name: str) -> ModelFamily:
    """The family stored in a checkpoint (``gradient``, ``fit`` or ``graph_fit``)."""
    return _FAMILIES[name]
