"""One run, start to finish: the single code path behind ``graphforge run`` and
:func:`graphforge.run`.

Order matters for the promise that a bad input leaves nothing behind: every
option, plugin name and the data itself are checked before the run directory
is created.
"""

from __future__ import annotations

import dataclasses
import errno
import inspect
import logging
import platform
import signal
import threading
import time
import warnings
from collections.abc import Collection
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from graphforge._version import __version__
from graphforge.config import RunConfig, route_options
from graphforge.core.converter import Converter
from graphforge.core.data import DataSplits, InputSpec
from graphforge.core.dataset import Dataset
from graphforge.core.model import Model
from graphforge.core.splits import stratified_subset
from graphforge.engine.families import (  # noqa: F401  (build_network, sample_features: re-exported)
    FULL_GRAPH_DEFAULTS,
    MINI_BATCH_DEFAULTS,
    GradientFamily,
    Job,
    family_of,
    sample_features,
)
from graphforge.engine.metrics import report_text, summarize
from graphforge.engine.rundir import HISTORY_JSON, LAST_CHECKPOINT, STATUS_FILE, RunDirectory, default_run_path
from graphforge.engine.runtime import resolve_device, seed_everything
from graphforge.engine.threads import ThreadPolicy, available_cpus
from graphforge.errors import ConfigError, DataError, GraphforgeError, OutputError
from graphforge.io import cannot_write, write_json, write_text
from graphforge.plugins import get_registry

log = logging.getLogger("graphforge")


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
    #: A resumed run's ``last.pt``, read once while planning; the trainer takes it (and
    #: clears it, so the run does not hold a second copy of its weights while it trains).
    resume_from: dict[str, Any] | None = None


def _plain(value: Any) -> Any:
    """``value`` as plain data (tuples as lists), or ``_NOT_PLAIN`` if it is not JSON-like."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = {k: _plain(v) for k, v in value.items()}
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items.values()) else items
    return _NOT_PLAIN


_NOT_PLAIN = object()


def _entries(config: RunConfig) -> dict[str, Any]:
    return {
        "dataset": get_registry("dataset").get(config.dataset),
        "converter": get_registry("converter").get(config.converter),
        "model": get_registry("model").get(config.model),
    }


def effective_options(config: RunConfig, options: dict[str, dict[str, Any]],
                      instances: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every option each plugin of a run was built with: its defaults, overridden by ``options``.

    A checkpoint keeps these, so a run loads with the settings it was trained with even after a
    later version changes a default. Defaults that are not plain data (JSON-like) are left out.
    An option whose default is ``None`` ("the plugin decides", e.g. the k of a kNN graph) is
    recorded as the value the built plugin (``instances``) settled on, when it keeps it in an
    attribute of the option's name.
    """
    out: dict[str, dict[str, Any]] = {}
    for role, entry in _entries(config).items():
        defaults = {}
        built = (instances or {}).get(role)
        for name, default in entry.options().items():
            if default is None and built is not None and getattr(built, name, None) is not None:
                default = getattr(built, name)
            value = _plain(default) if default is not inspect.Parameter.empty else _NOT_PLAIN
            if value is not _NOT_PLAIN:
                defaults[name] = value
        out[role] = {**defaults, **options.get(role, {})}
    return out


def _as_read_today(entry: Any, values: dict[str, Any]) -> dict[str, Any]:
    """A recorded run's options for one plugin (its checkpoint's, under its config's), as this
    version reads them: a plugin class may define ``upgrade_options(options) -> options`` for
    options an earlier version recorded that it now refuses (e.g. one the earlier version ignored)."""
    upgrade = getattr(entry.factory, "upgrade_options", None)
    return upgrade(dict(values)) if callable(upgrade) else values


def build_plugins(config: RunConfig, pinned: dict[str, dict[str, Any]] | None = None,
                  ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Build the run's dataset, converter and model from their names and routed options.

    Args:
        config: The run's config.
        pinned: Options by role under the routed ones (a checkpoint's :func:`effective_options`):
            the config's own options still win, but every option it leaves out takes the value
            the run was trained with, not today's default.

    Returns:
        ``({"dataset": ..., "converter": ..., "model": ...}, options by role)``.
    """
    entries = _entries(config)
    options = route_options(config.options, entries)
    if pinned:
        options = {role: _as_read_today(entries[role], {**(pinned.get(role) or {}), **options[role]}) for role in entries}
    instances = {role: entries[role].create(**options[role]) for role in entries}
    expected = {"dataset": Dataset, "converter": Converter, "model": Model}
    for role, obj in instances.items():
        if not isinstance(obj, expected[role]):
            raise GraphforgeError(
                f"{role} plugin {entries[role].name!r} (from {entries[role].plugin!r}) built a "
                f"{type(obj).__name__}, not a graphforge.{expected[role].__name__}"
            )
    return instances, options


def built_options(checkpoint: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The :func:`effective_options` a checkpoint records (``meta["built_options"]``), if any."""
    meta = checkpoint.get("meta")
    options = meta.get("built_options") if isinstance(meta, dict) else None
    return options if isinstance(options, dict) else None


#: Fields a resumed run takes from ``config`` when they are given (not their defaults): they
#: change how it runs, not what it trains. ``epochs`` may grow; every other field stays the run's.
RESUME_RUNTIME_FIELDS = ("device", "threads", "plots", "download", "data_root")


def _last_checkpoint(rundir: RunDirectory) -> dict[str, Any] | None:
    """A resumed run's ``last.pt``, or ``None`` if it has none."""
    if not rundir.file(LAST_CHECKPOINT).is_file():
        return None
    return rundir.load_checkpoint(LAST_CHECKPOINT)


def _own_option(key: str, own: dict[str, Any], pinned: dict[str, dict[str, Any]] | None) -> Any:
    """The value a run was built with for option ``key`` (its config's, else its checkpoint's)."""
    if key in own:
        return own[key]
    role, dot, name = key.partition(".")
    for r, values in (pinned or {}).items():
        if isinstance(values, dict) and (name in values if dot and r == role else not dot and key in values):
            return values[name if dot else key]
    return _NOT_PLAIN


def resumed_config(config: RunConfig, rundir: RunDirectory, last: dict[str, Any] | None = None,
                   given: Collection[str] | None = None) -> RunConfig:
    """The config a resumed run continues with: its own ``config.yaml``, with the
    :data:`RESUME_RUNTIME_FIELDS` and the ``epochs`` that ``config`` gives.

    Every other field given must be the run's own value.

    Args:
        config: The config asked for now.
        rundir: The run to resume.
        last: Its ``last.pt`` (the epochs it finished, the options it was built with).
        given: The fields the caller set (the CLI's command-line options, the keywords of
            :func:`graphforge.run`); ``None``: those that differ from their defaults.

    Raises:
        ConfigError: For a field that would change what the run trains, an ``out`` other than
            the run directory, or fewer ``epochs`` than the run has finished.
    """
    config.validate()
    saved = RunConfig.from_dict(rundir.read_config())
    defaults = RunConfig()
    hint = "--resume continues a run as it was configured; start a new run (--out) to change it"
    if config.out is not None and Path(config.out).resolve() != rundir.path.resolve():
        raise ConfigError(f"--out {config.out} cannot be combined with --resume: the run stays in {rundir.path}")

    def is_given(name: str) -> bool:
        return name in given if given is not None else getattr(config, name) != getattr(defaults, name)

    for f in dataclasses.fields(RunConfig):
        name, asked, own = f.name, getattr(config, f.name), getattr(saved, f.name)
        if name in ("epochs", "out"):
            continue
        if name in RESUME_RUNTIME_FIELDS:
            if is_given(name):
                setattr(saved, name, asked)
        elif name == "options" and isinstance(asked, dict) and isinstance(own, dict):
            pinned = built_options(last) if last is not None else None
            for key, value in asked.items():
                was = _own_option(key, own, pinned)
                if was != value:
                    its = "the run does not set it" if was is _NOT_PLAIN else f"the run's is {was!r}"
                    raise ConfigError(f"-o {key}={value!r} differs from the run it resumes ({its}): {hint}")
        elif is_given(name) and asked != own:
            raise ConfigError(f"--{name.replace('_', '-')} {asked!r} differs from the run's {name} {own!r}: {hint}")
    done = int(last.get("epoch") or 0) if last is not None else 0
    if config.epochs is not None:
        if config.epochs < done:
            raise ConfigError(f"--epochs {config.epochs} is fewer than the {done} epochs {rundir.path} has finished; "
                              f"give --epochs {done} or more (without it, the run's own {saved.epochs})")
        saved.epochs = config.epochs
    return saved


def _check_resumable(plan: Plan, rundir: RunDirectory, last: dict[str, Any] | None) -> None:
    """Refuse to resume a trained run whose ``last.pt`` is gone: it would start again from
    epoch 1 and overwrite its checkpoint and metrics (only a run stopped before its first
    epoch ended has none)."""
    if last is not None or not isinstance(family_of(plan.model), GradientFamily):
        return
    completed = rundir.read_status().get("status") == "completed"
    if completed or rundir.file(HISTORY_JSON).is_file():
        raise DataError(f"cannot resume {rundir.path}: {rundir.file(LAST_CHECKPOINT)} is missing, but the run "
                        f"{'completed' if completed else f'has finished epochs ({HISTORY_JSON})'}; resuming would "
                        "train it again from epoch 1 over its results. Restore last.pt, or start a new run")


def _plan_for(config: RunConfig, rundir: RunDirectory | None, given: Collection[str] | None = None) -> Plan:
    """:func:`plan_run` for a new run, or for resuming the run in ``rundir`` (:func:`resumed_config`)."""
    if rundir is None:
        return plan_run(config)
    last = _last_checkpoint(rundir)
    plan = plan_run(resumed_config(config, rundir, last, given), built_options(last) if last is not None else None)
    _check_resumable(plan, rundir, last)
    plan.resume_from = last
    return plan


def check_run(config: RunConfig, *, resume: str | Path | None = None, given: Collection[str] | None = None) -> Plan:
    """Check a run as :func:`execute` does before it loads the data, writing and locking nothing:
    a launcher that starts the run in other processes (``--nproc``) calls it first, so that a
    bad option is one error, before any launch.

    Raises:
        GraphforgeError: For the first problem found.
    """
    rundir = None
    if resume is not None:
        rundir = RunDirectory.open(resume)
        rundir.check_writable()
    return _plan_for(config, rundir, given)


def plan_run(config: RunConfig, pinned: dict[str, dict[str, Any]] | None = None) -> Plan:
    """Check the config and build the plugins (nothing is written yet); ``pinned`` as in :func:`build_plugins`."""
    config.validate()
    instances, options = build_plugins(config, pinned)
    device = resolve_device(config.device)
    from graphforge.engine.precision import prepare_precision

    prepare_precision(config.precision, device)  # before anything is written
    if config.precision != "fp32" and not isinstance(family_of(instances["model"]), GradientFamily):
        warnings.warn(f"--precision {config.precision} has no effect on {config.model!r}: it is fitted, with no "
                      "network to train (metrics.json records precision null)", stacklevel=2)
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
        from graphforge.engine.distributed import current

        classes = int(torch.unique(torch.as_tensor(data.train.y)).numel())
        data.train = data.train.subset(stratified_subset(data.train.y, cfg.limit_train, cfg.seed))
        missing = classes - int(torch.unique(torch.as_tensor(data.train.y)).numel())
        if missing and current().main:
            warnings.warn(f"--limit-train {cfg.limit_train} leaves {missing} of the {classes} classes without a training "
                          "sample: the model cannot learn them", stacklevel=2)
    if cfg.limit_test:
        data.val = data.val.subset(stratified_subset(data.val.y, cfg.limit_test, cfg.seed + 1)) if len(data.val) else data.val
        data.test = data.test.subset(stratified_subset(data.test.y, cfg.limit_test, cfg.seed + 2)) if len(data.test) else data.test
    return data


def _check_pipeline(plan: Plan, spec: InputSpec) -> InputSpec:
    plan.converter.check_input(spec)
    out_spec = plan.converter.output_spec(spec)
    family_of(plan.model).check_pipeline(plan)
    plan.model.check_input(out_spec)
    return out_spec


#: Builds the trainable network of a gradient run (see :class:`GradientFamily`).
build_network = GradientFamily.build_network


def _meta(plan: Plan, data: DataSplits, spec: InputSpec, out_spec: InputSpec) -> dict[str, Any]:
    return {
        "config": plan.config.to_dict(),
        "spec": {"kind": spec.kind, "shape": list(spec.shape)},
        "out_spec": {"kind": out_spec.kind, "shape": list(out_spec.shape)},
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "graphforge_version": __version__,
        "built_options": effective_options(plan.config, plan.options,
                                           {"dataset": plan.dataset, "converter": plan.converter, "model": plan.model}),
    }


def _environment(device: torch.device) -> dict[str, Any]:
    return {
        "graphforge_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


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
        "precision": cfg.precision if isinstance(family_of(plan.model), GradientFamily) else None,
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
        from graphforge.engine import plots  # matplotlib: only when a run draws

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


def _create_run_directory(cfg: RunConfig, info: Any, held: ExitStack) -> RunDirectory:
    """Rank 0 creates (and locks) the run directory and tells the others where it is."""
    from graphforge.engine import distributed

    outcome: dict[str, str] = {}
    if info.main:
        try:
            made = RunDirectory.create(cfg.out or default_run_path(cfg.converter, cfg.model))
            held.enter_context(made.lock())
            outcome["path"] = str(made.path)
        except GraphforgeError as exc:
            outcome["error"] = str(exc)
            if not info.active:
                raise
    outcome = distributed.broadcast_object(outcome, info)
    if "error" in outcome:
        raise ConfigError(outcome["error"])
    return RunDirectory(outcome["path"])


def _graph_metrics(graph: Any) -> dict[str, Any]:
    """What makes the run's dataset graph good or bad (:func:`graphforge.graphs.graph_stats`):
    ``graph_stats`` in full, edge and adjusted homophily also at the top level."""
    from graphforge.graphs.stats import graph_stats

    stats = graph_stats(graph)
    return {"graph_stats": stats, "graph_edge_homophily": stats.get("edge_homophily"),
            "graph_adjusted_homophily": stats.get("adjusted_homophily")}


#: ``errno`` values of an :class:`OSError` that mean a file could not be written.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


class Terminated(KeyboardInterrupt):
    """The run got SIGTERM (recorded as ``interrupted``, like Ctrl-C; ``--resume`` continues it)."""


class _SigtermScope:
    """While active, the first SIGTERM raises :class:`Terminated`; any later one, or one after
    :meth:`defer`, is ignored, so the run can still record how it ended (under torchrun the
    agent sends SIGTERM to the other ranks as soon as one fails)."""

    def __init__(self) -> None:
        self.deferred = False

    def defer(self) -> None:
        """From now on a SIGTERM is ignored until the scope ends."""
        self.deferred = True

    def handler(self, signum: int, frame: Any) -> None:
        if not self.deferred:
            self.deferred = True
            raise Terminated(f"signal {signum}")


@contextmanager
def _terminate_as_interrupt() -> Any:
    """Turn SIGTERM into :class:`Terminated` while the block runs (main thread only); yields
    the :class:`_SigtermScope`."""
    scope = _SigtermScope()
    if threading.current_thread() is not threading.main_thread():
        yield scope
        return
    previous = signal.signal(signal.SIGTERM, scope.handler)
    try:
        yield scope
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(config: RunConfig, *, resume: str | Path | None = None, progress: bool = False,
            given: Collection[str] | None = None) -> RunResult:
    """Run (or resume) one experiment and write its run directory.

    Args:
        config: The run configuration.
        resume: A run directory to continue; its saved config is used, except ``epochs``
            (never fewer than it has finished) and the :data:`RESUME_RUNTIME_FIELDS` that
            ``config`` sets; any other field given that differs from the run's is an error.
        progress: Show progress bars on stderr.
        given: With ``resume``: the fields the caller set (see :func:`resumed_config`).

    Returns:
        The final metrics, history and run directory.
    """
    from graphforge.engine import distributed

    info = distributed.setup(config.device)
    with ExitStack() as held:
        rundir: RunDirectory | None = None
        if resume is not None:
            rundir = RunDirectory.open(resume)
            if info.main:
                rundir.check_writable()
                held.enter_context(rundir.lock())
        plan = _plan_for(config, rundir, given)
        cfg = plan.config
        threads = ThreadPolicy(cfg.threads)
        cpus = available_cpus()
        if info.main and cfg.threads is not None and cfg.threads > cpus:
            warnings.warn(f"--threads {cfg.threads} exceeds the {cpus} CPU(s) this process may use: the extra threads "
                          f"only wait for each other and make the run slower (leave --threads out to use {cpus})",
                          stacklevel=2)
        threads.apply()
        seed_everything(cfg.seed + info.rank)  # per-rank streams (dropout, augmentation); rank 0 = a plain run
        if not info.main:
            logging.getLogger("graphforge").setLevel(logging.WARNING)
        data = load_data(plan)
        spec = data.spec
        out_spec = _check_pipeline(plan, spec)
        plan.converter.check_data(data)
        plan.model.check_data(data)
        plan.converter.fit(data)

        family = family_of(plan.model)
        graph = plan.converter.convert(data) if plan.converter.level == "dataset" else None
        job = Job(plan, data, spec, out_spec, graph=graph, meta=_meta(plan, data, spec, out_spec), dist=info,
                  threads=threads)
        family.prepare(job)  # defaults and the network: still before anything is written

        if rundir is None:
            rundir = _create_run_directory(cfg, info, held)
        cfg.out = str(rundir.path)
        job.meta["config"] = cfg.to_dict()
        environment = {**_environment(plan.device), "world_size": info.world_size, "backend": info.backend or None,
                       "ranks": list(range(info.world_size))}
        if info.main:
            resolved = {**cfg.to_dict(), "plugin_options": plan.options, "environment": environment}
            rundir.write_config(cfg.to_dict())
            write_json(rundir.file("resolved.json"), resolved)
            now = time.strftime("%Y-%m-%dT%H:%M:%S")
            previous = rundir.read_status()
            times = {"started": previous.get("started", now)}
            if resume is not None:
                times["resumed"] = [*previous.get("resumed", []), now]
            rundir.write_status("running", **times, **environment)
        log.info("run directory: %s", rundir.path)
        log.info("data: %s  %s  train %d / val %d / test %d, %d classes", cfg.dataset, tuple(spec.shape),
                 len(data.train), len(data.val), len(data.test), data.num_classes)

        # How the run ended is written with SIGTERM held back: a SIGTERM that arrives while
        # the failure of another rank is being handled must not stop rank 0 before it has
        # marked the run (the status stays "running" only if the process is SIGKILLed).
        ended: BaseException | None = None
        with _terminate_as_interrupt() as sigterm:
            try:
                try:
                    try:
                        results, history, extra = family.train(job, rundir, resume=resume is not None,
                                                               progress=progress and info.main)
                    except RuntimeError as exc:
                        raise distributed.translate_failure(exc, info) from None
                    if graph is not None:
                        extra.update(_graph_metrics(graph))
                    metrics = _finish(plan, rundir, data, results, history, extra) if info.main else None
                    metrics = distributed.broadcast_object(metrics, info)
                except BaseException as exc:
                    ended = exc
                finally:
                    sigterm.defer()
            except Terminated as late:  # the one SIGTERM came just as the run ended
                ended = ended or late
            if (isinstance(ended, OSError) and not isinstance(ended, GraphforgeError)
                    and ended.errno in _WRITE_ERRNOS):  # a plugin's own file write (plots)
                ended = cannot_write(ended.filename or rundir.path, ended)
            if info.main:
                try:
                    if isinstance(ended, KeyboardInterrupt):
                        rundir.write_status("interrupted",
                                            signal="SIGTERM" if isinstance(ended, Terminated) else "SIGINT")
                    elif ended is not None:
                        rundir.write_status("failed", error=f"{type(ended).__name__}: {ended}")
                    else:
                        rundir.write_status("completed", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
                except OutputError as exc:
                    if ended is None:
                        ended = exc
                    else:  # best effort: the error that ended the run is the one to report
                        log.warning("%s could not be updated to say how the run ended (%s)",
                                    rundir.file(STATUS_FILE), exc.strerror or exc)
        if ended is not None:
            raise ended
        val = metrics["val_accuracy"]
        log.info("test accuracy %.4f  (val %s)  -> %s", metrics["test_accuracy"],
                 "-" if val is None else f"{val:.4f}", rundir.path)
    return RunResult(metrics=metrics, run_dir=rundir.path, history=history, config=cfg)
