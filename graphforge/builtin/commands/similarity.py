"""``graphforge scores`` and ``graphforge sweep``: choose and sweep similarity graphs.

``scores`` shows the pair-score distributions of a dataset's embeddings for each
metric (what a threshold should be); ``sweep`` trains models on similarity graphs over
a grid of metrics, thresholds or k, and seeds. The work is done by
:mod:`graphforge.similarity.scores` and :mod:`graphforge.similarity.sweep`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click

from graphforge.hookspecs import hookimpl
from graphforge.similarity.options import GRAPH_METRICS, MODES


def _default_out(kind: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = Path("runs") / f"{stamp}-{kind}", 2
    while path.exists():
        path, n = Path("runs") / f"{stamp}-{kind}-{n}", n + 1
    return path


def _parse_options(options: tuple[str, ...]) -> dict[str, Any]:
    from graphforge.config import parse_option

    return dict(parse_option(o) for o in options)


#: Metric names are checked where they are used (graphforge.neighbors.metrics), so every
#: alias works here too (l2, l1, manhattan, chebyshev, ...).
_metric_choice = click.STRING
_METRIC_NAMES = ", ".join(GRAPH_METRICS)


@click.command("scores")
@click.option("--dataset", default="digits", show_default=True, help="Dataset plugin name.")
@click.option("--data-root", type=click.Path(path_type=Path), help="Directory or file holding the dataset.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Dataset option or embedding option of the similarity converter (embedder, "
                   "embedder_options, cache, ...); repeatable.")
@click.option("--metric", "metrics", multiple=True, type=_metric_choice,
              help=f"Metric to study (repeatable; default: all six: {_METRIC_NAMES}; aliases such as l2, l1 work).")
@click.option("--pairs", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="Pairs per sample: every pair when there are no more, else a uniform sample of distinct pairs.")
@click.option("--target-degree", type=click.FloatRange(min=0), help="Estimate each metric's threshold for this mean degree.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the pair sample and of the dataset's split and limits.")
@click.option("--limit-train", type=click.IntRange(min=1), help="As for run: a stratified subset of N training samples.")
@click.option("--limit-test", type=click.IntRange(min=1), help="As for run: at most N validation and N test samples.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (default: runs/<timestamp>-scores).")
@click.option("--json", "as_json", is_flag=True, help="Print scores.json on stdout (logs go to stderr).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def scores(dataset: str, data_root: Path | None, options: tuple[str, ...], metrics: tuple[str, ...], pairs: int,
           target_degree: float | None, seed: int, limit_train: int | None, limit_test: int | None, out: Path | None,
           as_json: bool, quiet: bool) -> None:
    """Pair-score distributions of a dataset's embeddings, to choose similarity-graph thresholds.

    Scores are similarities for cosine and ip (an edge needs score >= t) and distances
    for the other metrics (score <= t). The nodes are all samples, as in the graph; the
    same-class / different-class groups use the training split's labels only, so a
    threshold read off the box plots does not peek at validation or test labels.
    --target-degree estimates the threshold giving that mean degree over all nodes.

    Writes OUT/scores.json (everything, with thresholds for mean degrees 1 to 100),
    OUT/scores.csv (the summary) and OUT/plots/score_boxplots.png.

    \b
    Examples:
      graphforge scores --target-degree 10
      graphforge scores --dataset embeddings --data-root emb.csv --metric cosine --metric euclidean
    """
    from graphforge.cli.main import _setup_logging
    from graphforge.similarity.scores import dataset_scores, scores_table, write_scores

    _setup_logging(quiet)
    result = dataset_scores(
        dataset, data_root=str(data_root) if data_root is not None else None, options=_parse_options(options),
        metrics=metrics or GRAPH_METRICS, max_pairs=pairs, target_degree=target_degree, seed=seed,
        limit_train=limit_train, limit_test=limit_test)
    out = out or _default_out("scores")
    files = write_scores(result, out)
    logging.getLogger("graphforge").info("wrote %s", ", ".join(str(f) for f in files))
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "out": str(out)}))
        return
    click.echo(scores_table(result), nl=False)
    click.echo(f"-> {out}")


@click.command("sweep")
@click.option("--dataset", default="digits", show_default=True, help="Dataset plugin name.")
@click.option("--data-root", type=click.Path(path_type=Path), help="Directory or file holding the dataset.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Plugin option passed to every run (repeatable).")
@click.option("--metric", "metrics", multiple=True, type=_metric_choice,
              help=f"Metric (repeatable) [default: cosine]: {_METRIC_NAMES} or an alias (l2, l1, ...).")
@click.option("--threshold", "thresholds", multiple=True, type=float,
              help="Threshold (repeatable): similarity >= t for cosine / ip, distance <= t for the others.")
@click.option("--k", "ks", multiple=True, type=click.IntRange(min=1), help="Neighbours per node (repeatable).")
@click.option("--degree", "degrees", multiple=True, type=click.FloatRange(min=0, min_open=True),
              help="Mean degree of a threshold graph (repeatable): each row's threshold is set for it "
                   "(-o degree of the similarity converter), so one grid fits every metric.")
@click.option("--mode", type=click.Choice(MODES),
              help="threshold (the default with --threshold or --degree), knn (the default with --k) or mutual.")
@click.option("--seed", "seeds", multiple=True, type=click.IntRange(min=0), help="Seed (repeatable) [default: 0].")
@click.option("--seeds", "num_seeds", type=click.IntRange(min=1), help="Seeds 0 .. N-1 (instead of --seed).")
@click.option("--model", "models", multiple=True, help="Model (repeatable) [default: gcn and mlp].")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs [as for run: 200 for full-graph training].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak AdamW learning rate [as for run: 1e-2].")
@click.option("--patience", type=click.IntRange(min=0), help="Early-stopping patience in epochs, 0: off [as for run: 20].")
@click.option("--limit-train", type=click.IntRange(min=1), help="Use a stratified subset of N training samples.")
@click.option("--limit-test", type=click.IntRange(min=1), help="Use at most N validation and N test samples.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Sweep directory (default: runs/<timestamp>-sweep); give an existing one to resume it.")
@click.option("--keep-runs/--no-keep-runs", default=False, show_default=True,
              help="Keep each run's directory under OUT/runs (failed runs' are always kept).")
@click.option("--retry-failed", is_flag=True, help="Run failed rows again (they are skipped on resume otherwise).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Also show each run's own log.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def sweep(dataset: str, data_root: Path | None, options: tuple[str, ...], metrics: tuple[str, ...],
          thresholds: tuple[float, ...], ks: tuple[int, ...], degrees: tuple[float, ...], mode: str | None,
          seeds: tuple[int, ...],
          num_seeds: int | None, models: tuple[str, ...], epochs: int | None, lr: float | None, patience: int | None,
          limit_train: int | None, limit_test: int | None, device: str, out: Path | None, keep_runs: bool,
          retry_failed: bool, as_json: bool, verbose: bool, quiet: bool) -> None:
    """Train models on similarity graphs: metric x (threshold, k or mean degree) x seed x model.

    Each row is one ordinary run (the similarity converter) and is appended to
    OUT/results.csv as soon as it ends. Run the same command again with the same --out
    to resume a stopped sweep: rows already there are skipped (failed ones too, unless
    --retry-failed) and new grid values are added; the dataset and options must match
    OUT/sweep.json. The end writes OUT/summary.csv, OUT/summary.md (mean ± std over
    seeds) and OUT/plots/sweep.png.

    \b
    Examples:
      graphforge sweep --metric cosine --threshold 0.8 --threshold 0.9 --seeds 3
      graphforge sweep --metric euclidean --k 5 --k 10 --mode mutual --model gcn --out runs/knn
      graphforge sweep --metric cosine --metric euclidean --degree 5 --degree 10 --degree 20
    """
    from graphforge.cli.main import _setup_logging
    from graphforge.similarity.sweep import describe_best, run_sweep, summary_table

    given = [f"--{name}" for name, values in (("threshold", thresholds), ("k", ks), ("degree", degrees)) if values]
    if len(given) > 1:
        raise click.UsageError(f"give --threshold, --k or --degree values, not {' and '.join(given)}")
    if not given:
        raise click.UsageError("give the --threshold values, the --k values or the --degree values to sweep")
    if seeds and num_seeds:
        raise click.UsageError("give --seed values or --seeds N, not both")
    _setup_logging(quiet)
    root = logging.getLogger("graphforge")
    level = root.level
    # The sweep reports one line per row; each run's own log only with --verbose.
    logging.getLogger("graphforge.sweep").setLevel(logging.WARNING if quiet else logging.INFO)
    if not verbose:
        root.setLevel(logging.WARNING)
    out = out or _default_out("sweep")
    try:
        result = run_sweep(
            out, metrics=metrics or ("cosine",), mode=mode, thresholds=thresholds, ks=ks, degrees=degrees,
            seeds=seeds or tuple(range(num_seeds or 1)), models=models or ("gcn", "mlp"), dataset=dataset,
            data_root=data_root, options=_parse_options(options), epochs=epochs, lr=lr, patience=patience,
            limit_train=limit_train, limit_test=limit_test, device=device, keep_runs=keep_runs,
            retry_failed=retry_failed)
    finally:
        root.setLevel(level)
    failed_rows = [r for r in result.rows if r.get("status") == "failed"]
    if result.rows and len(failed_rows) == len(result.rows):
        raise click.ClickException(f"every row of the sweep failed ({len(failed_rows)}); the first: "
                                   f"{failed_rows[0].get('error', '')} -> {result.out}/results.csv")
    if as_json:
        click.echo(json.dumps({"out": str(result.out), "rows": len(result.rows), "ran": result.ran,
                               "skipped": result.skipped, "failed": result.failed, "best": result.best,
                               "summary": result.summary}))
        return
    click.echo(summary_table(result.summary), nl=False)
    click.echo(describe_best(result.best))
    click.echo(f"{len(result.rows)} rows ({result.ran} run now, {result.skipped} already done, "
               f"{result.failed} failed) -> {result.out}")
    if failed_rows:
        click.echo(f"Warning: {len(failed_rows)} of {len(result.rows)} rows failed (see the error column of "
                   f"{result.out}/results.csv; --retry-failed runs them again)", err=True)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``graphforge scores`` and ``graphforge sweep``."""
    cli.add_command(scores)
    cli.add_command(sweep)
