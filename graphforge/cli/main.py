"""``graphforge``: the click command group.

Commands call the Python API (:mod:`graphforge.api`); user mistakes become
one-line errors with a non-zero exit code, never tracebacks. Results go to
stdout, progress and logs to stderr.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from graphforge._version import __version__
from graphforge.errors import GraphforgeError

_KIND_OF_LISTING = {"datasets": "dataset", "converters": "converter", "models": "model", "embedders": "embedder"}


class GraphforgeGroup(click.Group):
    """A click group that turns :class:`GraphforgeError` into clean CLI errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GraphforgeError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt as exc:
            from graphforge.engine.runner import Terminated

            click.echo("Interrupted (the run directory records it; continue with graphforge run --resume DIR)", err=True)
            ctx.exit(143 if isinstance(exc, Terminated) else 130)


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    click.echo(f"Warning: {message}", err=True)


class _StderrHandler(logging.Handler):
    """Log records to whatever ``sys.stderr`` is at the time (click swaps it in tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("graphforge")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


@click.group(cls=GraphforgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="graphforge")
def cli() -> None:
    """graphforge: turn any data into graphs, then learn on them."""
    warnings.showwarning = _show_warning


# --------------------------------------------------------------------------- run
@cli.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML/JSON file of run options (command-line options win).")
@click.option("--dataset", default="digits", show_default=True, help="Dataset plugin name.")
@click.option("--converter", default="none", show_default=True, help="Converter plugin name.")
@click.option("--model", default="mlp", show_default=True, help="Model plugin name.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Plugin option (repeatable); prefix as model.KEY when several plugins take KEY.")
@click.option("--metric", help="Shortcut for -o converter.metric=METRIC (similarity, dyn_knn).")
@click.option("--threshold", type=float, help="Shortcut for -o converter.threshold=T (similarity graphs).")
@click.option("--data-root", type=click.Path(path_type=Path), help="Directory or file holding the dataset.")
@click.option("--download/--no-download", default=False, help="Fetch missing dataset files (needs internet).")
@click.option("--epochs", type=click.IntRange(min=1),
              help="Training epochs [the model's default; 200 for full-graph training].")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="Peak AdamW learning rate [the model's default (3e-3 sage, cnn) or 1e-3 mini-batch; 1e-2 full-graph training].")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=1e-4, show_default=True)
@click.option("--lr-schedule", type=click.Choice(["cosine", "step", "none"]), default="cosine", show_default=True)
@click.option("--warmup-epochs", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Linear LR warm-up over this many (fractional) epochs.")
@click.option("--label-smoothing", type=click.FloatRange(min=0, max=1, max_open=True), default=0.0, show_default=True)
@click.option("--augment", default="auto", show_default=True,
              help="Image training augmentation: auto (random 2-px shift of images >= 14x14), none, shift, hflip, shift+hflip.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16: mixed-precision training (autocast; fp32 weights). Faster on GPUs with bf16 and CPUs with avx512_bf16/AMX.")
@click.option("--patience", type=click.IntRange(min=0),
              help="Early-stopping patience in epochs, 0: off [10 mini-batch; 20 full-graph training].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (default: runs/<timestamp>-<converter>-<model>).")
@click.option("--limit-train", type=click.IntRange(min=1), help="Use a stratified subset of N training samples.")
@click.option("--limit-test", type=click.IntRange(min=1), help="Use at most N validation and N test samples.")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path),
              help="Continue a stopped run from its directory with its own settings (--epochs may extend it; "
                   "--device, --threads, --plots, --data-root may change; other options must match the run's).")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Draw the run's plots.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads [the CPUs this process may use: affinity and cgroup quota].")
@click.option("--sync-batchnorm/--no-sync-batchnorm", default=False,
              help="Under torchrun on GPUs: BatchNorm statistics over every rank.")
@click.option("--nproc", type=click.IntRange(min=1), default=None,
              help="Train on N local processes: relaunches this command under torch's launcher (torchrun).")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as one JSON object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.pass_context
def run(ctx: click.Context, config_file: Path | None, options: tuple[str, ...], resume: Path | None,
        metric: str | None, threshold: float | None, as_json: bool, quiet: bool, nproc: int | None,
        **params: Any) -> None:
    """Train and evaluate MODEL on DATASET turned into graphs by CONVERTER.

    \b
    Examples:
      graphforge run --converter none --model mlp
      graphforge run --converter none --model mlp -o hidden=128 --epochs 20 --json
      graphforge run --converter similarity --model gcn --metric cosine --threshold 0.8
    """
    from graphforge.api import run as api_run
    from graphforge.config import load_config_file, parse_option
    from graphforge.engine.distributed import current

    _setup_logging(quiet)
    settings: dict[str, Any] = load_config_file(config_file) if config_file else {}
    file_options = settings.pop("options", None) or {}
    if not isinstance(file_options, dict):
        raise click.BadParameter("'options' in the config file must be a mapping", param_hint="--config")
    for name, value in params.items():
        source = ctx.get_parameter_source(name)
        if resume is not None and source is ParameterSource.DEFAULT:
            continue  # a resumed run keeps its own settings: only what is given may change (or conflict)
        if name not in settings or source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            settings[name] = value
    for key in ("data_root", "out"):
        if settings.get(key) is not None:
            settings[key] = str(settings[key])
    merged = dict(file_options)
    merged.update(parse_option(o) for o in options)
    for key, value in (("metric", metric), ("threshold", threshold)):
        if value is not None:
            merged[f"converter.{key}"] = value
    if nproc is not None:
        _relaunch(nproc, settings, merged, resume)
    result = api_run(options=merged, resume=resume, progress=sys.stderr.isatty() and not quiet, **settings)
    if not current().main:  # under torchrun only rank 0 answers
        return
    if as_json:
        click.echo(json.dumps(result.metrics))
    else:
        m = result.metrics

        def num(value: Any) -> str:
            return "-" if value is None else f"{value:.4f}"

        click.echo(
            f"test accuracy {num(m['test_accuracy'])}  val accuracy {num(m['val_accuracy'])}  "
            f"macro-F1 {num(m['test_macro_f1'])}  train {m['train_seconds']:.1f}s  -> {result.run_dir}"
        )


def _relaunch(nproc: int, settings: dict[str, Any], options: dict[str, Any], resume: Path | None) -> None:
    """Check the run as a single process would, then run this very command again as ``nproc``
    processes under torch's launcher and exit with its code."""
    from graphforge.config import RunConfig
    from graphforge.engine.distributed import launch, launched_by_torchrun
    from graphforge.engine.runner import check_run

    if launched_by_torchrun():
        raise click.UsageError("--nproc starts torchrun itself; do not combine it with torchrun")
    check_run(RunConfig.from_dict({**settings, "options": options}), resume=resume,  # a bad option: one error
              given=set(settings) if resume is not None else None)
    args = sys.argv[1:]
    cut = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        cut.append(a)
    click.echo(f"launching {nproc} processes: torchrun --standalone --nproc-per-node={nproc} -m graphforge "
               f"{' '.join(cut)}", err=True)
    sys.exit(launch(nproc, ["-m", "graphforge", *cut]))


# -------------------------------------------------------------------------- list
def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def _entry_dict(entry: Any) -> dict[str, Any]:
    opts = entry.options()
    return {
        "name": entry.name,
        "kind": entry.kind,
        "plugin": entry.plugin,
        "description": entry.describe(),
        "options": {k: _jsonable(v) for k, v in opts.items() if v is not inspect.Parameter.empty},
        "required_options": sorted(k for k, v in opts.items() if v is inspect.Parameter.empty),
    }


@cli.command("list")
@click.argument("what", type=click.Choice(sorted(_KIND_OF_LISTING)))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(what: str, as_json: bool) -> None:
    """List the registered datasets, converters, models or embedders."""
    from graphforge.plugins import get_registry

    registry = get_registry(_KIND_OF_LISTING[what])
    if as_json:  # options and defaults: this imports each class
        click.echo(json.dumps([_entry_dict(e) for e in registry], indent=2))
        return
    entries = [{"name": e.name, "plugin": e.plugin, "description": e.describe()} for e in registry]
    width = max([len(e["name"]) for e in entries] + [4])
    pwidth = max([len(e["plugin"]) for e in entries] + [6])
    click.echo(f"{'name':<{width}}  {'plugin':<{pwidth}}  description")
    for e in entries:
        click.echo(f"{e['name']:<{width}}  {e['plugin']:<{pwidth}}  {e['description']}")


# ----------------------------------------------------------------------- plugins
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
def plugins(as_json: bool, show_all: bool) -> None:
    """List loaded plugins with their version, hooks and what they provide."""
    from graphforge.plugins import iter_entries, plugin_hooks, plugin_infos

    provided: dict[str, dict[str, list[str]]] = {}
    for entry in iter_entries():
        provided.setdefault(entry.plugin, {}).setdefault(f"{entry.kind}s", []).append(entry.name)
    rows = [
        {
            "name": info.name,
            "builtin": info.builtin,
            "distribution": info.distribution,
            "version": info.version or (__version__ if info.builtin else None),
            "hooks": plugin_hooks(info.name),
            "provides": provided.get(info.name, {}),
        }
        for info in plugin_infos()
        if show_all or not info.builtin
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no third-party plugins installed (graphforge plugins --all shows the built-ins)")
        return
    for r in rows:
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(r["provides"].items())) or "-"
        click.echo(f"{r['name']} {r['version'] or ''}  hooks: {', '.join(r['hooks'])}  provides: {what}")


# --------------------------------------------------------------------------- main
_commands_loaded = False


def load_plugin_commands() -> click.Group:
    """Let plugins add commands (``register_commands`` hook); returns the group."""
    global _commands_loaded
    if not _commands_loaded:
        from graphforge.plugins import get_plugin_manager

        get_plugin_manager().hook.register_commands(cli=cli)
        _commands_loaded = True
    return cli


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``graphforge`` script."""
    warnings.showwarning = _show_warning
    try:
        group = load_plugin_commands()
    except GraphforgeError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    return group.main(args=argv, prog_name="graphforge")


if __name__ == "__main__":  # pragma: no cover
    main()
