"""``graphforge graph``: build, save, inspect and draw graphs without training; ``graph stats FILE``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from graphforge.hookspecs import hookimpl

_FORMATS = ("pt", "csv", "parquet", "npz", "graphml", "gexf")


@click.group("graph", invoke_without_command=True)
@click.option("--converter", help="Converter plugin whose graph(s) to build (similarity, som, dyn_knn, ...).")
@click.option("--dataset", default="digits", show_default=True, help="Dataset plugin name.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Dataset or converter option (repeatable), as for graphforge run.")
@click.option("--data-root", type=click.Path(path_type=Path), help="Directory or file holding the dataset.")
@click.option("--download/--no-download", default=False, help="Fetch missing dataset files (needs internet).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of splits and limits.")
@click.option("--limit-train", type=click.IntRange(min=1), help="Keep a stratified subset of training samples.")
@click.option("--limit-test", type=click.IntRange(min=1), help="Keep at most this many val / test samples.")
@click.option("--from-run", type=click.Path(path_type=Path, file_okay=False),
              help="A finished run of a per-sample converter (dyn_knn): its trained encoder and k head build the graphs.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True,
              help="Per-sample converters: whose samples become graphs.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write the graph here.")
@click.option("--format", "fmt", type=click.Choice(_FORMATS), help="File format [from the --out suffix].")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--draw", type=click.Path(path_type=Path, dir_okay=False), help="Also draw the graph(s) into this PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics (and files written) as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.pass_context
def graph(ctx: click.Context, converter: str | None, dataset: str, options: tuple[str, ...], data_root: Path | None,
          download: bool, seed: int, limit_train: int | None, limit_test: int | None, from_run: Path | None,
          split: str, out: Path | None, fmt: str | None, force: bool, draw: Path | None, as_json: bool,
          quiet: bool) -> None:
    """Build a converter's graph(s) without training; print their statistics, save and draw them.

    \b
    Examples:
      graphforge graph --converter similarity -o metric=cosine -o k=10 --out graph.pt
      graphforge graph --converter similarity --dataset embeddings --data-root emb.parquet --out g.csv
      graphforge graph --from-run runs/RUN --split test --out images.pt --draw images.png
      graphforge graph stats graph.pt
    """
    if ctx.invoked_subcommand is not None:
        return
    if converter is None and from_run is None:
        raise click.UsageError("give --converter NAME (or --from-run RUN_DIR), or a sub-command such as stats")
    import logging

    from graphforge.config import parse_option
    from graphforge.graphs import build_graph, format_stats, graph_stats, save_graph

    logging.getLogger("graphforge").setLevel(logging.WARNING if quiet else logging.INFO)
    from graphforge.graphs.io import _targets, format_of

    if out is not None:  # refuse before any work is done
        fmt = format_of(out, fmt)
        existing = [str(p) for p in _targets(out, fmt) if p.exists()]
        if existing and not force:
            raise click.ClickException(f"{', '.join(existing)} already exist(s); pass --force to replace")
    built = build_graph(converter or "", dataset, options=dict(parse_option(o) for o in options),
                        data_root=data_root, seed=seed, limit_train=limit_train, limit_test=limit_test,
                        download=download, from_run=from_run, split=split)
    stats = graph_stats(built)
    files = [str(p) for p in save_graph(built, out, fmt, force=force)] if out is not None else []
    if draw is not None:
        files.append(str(_draw(built, draw, dataset, data_root, seed, limit_train, limit_test, from_run, split)))
    if as_json:
        click.echo(json.dumps({"stats": stats, "files": files}))
        return
    click.echo(format_stats(stats))
    for f in files:
        click.echo(f"wrote {f}", err=True)


def _draw(built: Any, path: Path, dataset: str, data_root: Path | None, seed: int, limit_train: int | None,
          limit_test: int | None, from_run: Path | None, split: str) -> Path:
    from graphforge.graphs import draw_graph

    images = None
    if getattr(built, "batch", None) is not None:  # per-image graphs are drawn over their images
        from graphforge.api import load_run
        from graphforge.config import RunConfig
        from graphforge.engine.runner import load_data, plan_run

        if from_run is not None:
            cfg = load_run(from_run).config
            cfg.data_root = str(data_root) if data_root else cfg.data_root
            cfg.limit_train, cfg.limit_test = limit_train or cfg.limit_train, limit_test or cfg.limit_test
        else:
            cfg = RunConfig(dataset=dataset, data_root=str(data_root) if data_root else None, seed=seed,
                            limit_train=limit_train, limit_test=limit_test)
        images = getattr(load_data(plan_run(cfg)), split).x
    return draw_graph(built, path, images=images)


@graph.command("stats")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(_FORMATS), help="File format [from the suffix].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def graph_stats_cmd(file: Path, fmt: str | None, as_json: bool) -> None:
    """Statistics of a graph file written by graphforge graph (or any file in one of its formats)."""
    from graphforge.graphs import format_stats, graph_stats, load_graph

    stats = graph_stats(load_graph(file, fmt))
    click.echo(json.dumps(stats) if as_json else format_stats(stats))


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``graphforge graph``."""
    cli.add_command(graph)
