"""``graphforge bench``: the benchmark command group, and ``bench knn``.

Other benchmarks add themselves to the group with ``@bench.command(...)`` in this
module (or ``cli.commands["bench"].command(...)`` from a plugin); their bodies live in
``graphforge.bench.<name>``.
"""

from __future__ import annotations

from typing import Any

import click

from graphforge.hookspecs import hookimpl


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        items = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not items or any(v <= 0 for v in items):
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return items


def _seed_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        items = tuple(dict.fromkeys(int(v) for v in value.split(",") if v.strip()))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not items or any(v < 0 for v in items):
        raise click.BadParameter(f"expected seeds >= 0, got {value!r}")
    return items


class LazyGroup(click.Group):
    """A click group whose sub-commands named in ``lazy`` are imported only when used.

    ``graphforge --help`` lists ``bench`` without importing any benchmark (they import torch,
    FAISS and scikit-learn); ``graphforge bench X`` imports X's module.
    """

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})  # name -> ("module:attribute", one-line help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            import importlib

            module_name, _, attr = self.lazy[cmd_name][0].partition(":")
            self.add_command(getattr(importlib.import_module(module_name), attr), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The listing of ``bench --help``, from the one-line helps (imports nothing)."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy and name not in self.commands:
                rows.append((name, self.lazy[name][1]))
            else:
                command = self.commands.get(name)
                if command is not None and not command.hidden:
                    rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy={
    "knn-classifier": ("graphforge.bench.knn_classifier:knn_classifier_command",
                       "Exact kNN classifier against scikit-learn's brute force on the same data."),
    "som": ("graphforge.bench.som:som_command", "SOM training: graphforge's torch SOM against MiniSom."),
    "similarity": ("graphforge.bench.similarity:similarity_command",
                   "Dataset-scale similarity graph against the raw FAISS search it wraps."),
})
def bench() -> None:
    """Benchmarks of graphforge's kernels against the usual alternatives."""


def _bench_device(device: str) -> str:
    """``auto`` -> ``cuda`` where there is a GPU, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise click.ClickException("--device cuda: no CUDA device is available")
    return device


def _route_options(converter: str, model: str, options: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``-o KEY=VALUE`` options split between ``converter`` and ``model`` (unknown names are one-line errors)."""
    from graphforge.config import parse_option, route_options
    from graphforge.plugins import get_registry

    entries = {"converter": get_registry("converter").get(converter), "model": get_registry("model").get(model)}
    return route_options(dict(parse_option(o) for o in options), entries)


@bench.command("knn")
@click.option("-B", "--batch-sizes", callback=_int_list, help="Sets per batch, comma-separated [256,1024,4096].")
@click.option("-N", "--set-sizes", callback=_int_list, help="Points per set [16,49,196,784].")
@click.option("-D", "--dims", callback=_int_list, help="Feature dimensions [32,128,256].")
@click.option("--k-mode", "k_modes", type=click.Choice(["uniform", "per-set", "both"]), default="both",
              show_default=True, help="uniform: every set k_max; per-set: k ~ U[1, k_max] per set.")
@click.option("--k-max", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--method", "methods", multiple=True,
              type=click.Choice(["graphforge", "cdist_topk_mask", "faiss_loop", "torch_cluster", "pyg_lib"]),
              help="Restrict to these methods (repeatable); all available by default.")
@click.option("--repeats", type=click.IntRange(min=1), default=10, show_default=True, help="Timed runs per figure (median).")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads (default: torch's).")
@click.option("--max-memory-gb", type=click.FloatRange(min=0, min_open=True), default=8.0, show_default=True,
              help="Skip dense baselines whose [B, N, N] tensors would exceed this.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, writable=True), help="Also write the figures here.")
@click.option("--quick", is_flag=True, help="A small grid (B=256, N=16,49, D=32) for a smoke run.")
def bench_knn(
    batch_sizes: tuple[int, ...] | None,
    set_sizes: tuple[int, ...] | None,
    dims: tuple[int, ...] | None,
    k_modes: str,
    k_max: int,
    methods: tuple[str, ...],
    repeats: int,
    warmup: int,
    device: str,
    threads: int | None,
    max_memory_gb: float,
    csv_path: str | None,
    quick: bool,
) -> None:
    """Batched KNN with per-set k: graphforge vs cdist+topk+mask, FAISS, torch_cluster."""
    import torch

    from graphforge.bench import knn as knn_bench

    device = _bench_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    cases = knn_bench.make_cases(
        batch_sizes or (knn_bench.QUICK_B if quick else knn_bench.DEFAULT_B),
        set_sizes or (knn_bench.QUICK_N if quick else knn_bench.DEFAULT_N),
        dims or (knn_bench.QUICK_D if quick else knn_bench.DEFAULT_D),
        knn_bench.K_MODES if k_modes == "both" else (k_modes,),
        k_max,
    )
    try:
        results, gflops = knn_bench.run_knn_benchmark(
            cases, device=device, methods=methods or None, repeats=repeats, warmup=warmup,
            max_memory_gb=max_memory_gb, progress=lambda msg: click.echo(msg, err=True),
        )
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(knn_bench.format_table(results, gflops))
    if csv_path:
        knn_bench.write_csv(results, gflops, csv_path, device)
        click.echo(f"wrote {csv_path}", err=True)


@bench.command("train")
@click.option("--image-size", type=click.IntRange(min=2), default=28, show_default=True)
@click.option("--channels", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--classes", "num_classes", type=click.IntRange(min=2), default=26, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True, help="Timed steps (median).")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--backend", "backends", multiple=True, type=click.Choice(["native", "reference"]),
              help="KNN paths to measure (repeatable; default both).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="dyn_knn or sage option, e.g. -o k_max=12 -o hidden=128.")
@click.option("--contend", type=click.IntRange(min=0), default=None,
              help="Instead: time the Quickstart job idle and beside N busy processes (medians, ratio).")
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True, help="With --contend.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="With --contend.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="With --contend: the job's --threads.")
def bench_train(image_size: int, channels: int, batch_size: int, num_classes: int, steps: int, warmup: int,
                device: str, backends: tuple[str, ...], options: tuple[str, ...], contend: int | None,
                epochs: int, repeats: int, threads: int | None) -> None:
    """dyn_knn + sage training and inference images/s: native KNN op vs pure PyTorch.

    With --contend N: the Quickstart job (digits) run idle and beside N busy processes.
    """
    if contend is not None:
        import json

        from graphforge.bench import train as train_bench

        result = train_bench.run_contention_benchmark(contend, epochs=epochs, repeats=repeats, threads=threads)
        click.echo(f"Quickstart job, {epochs} epochs, median of {repeats}: idle train {result['idle_train_s']:.2f} s "
                   f"(wall {result['idle_wall_s']:.2f} s); beside {contend} busy process(es) train "
                   f"{result['busy_train_s']:.2f} s (wall {result['busy_wall_s']:.2f} s): "
                   f"{result['train_ratio']:.2f}x train, {result['wall_ratio']:.2f}x wall")
        click.echo(json.dumps(result))
        return
    from graphforge.bench import train as train_bench

    device = _bench_device(device)
    routed = _route_options("dyn_knn", "sage", options)
    results = train_bench.run_train_benchmark(
        image_size=image_size, channels=channels, batch_size=batch_size, num_classes=num_classes, steps=steps,
        warmup=warmup, device=device, backends=backends or train_bench.BACKENDS,
        converter_options=routed["converter"], model_options=routed["model"],
        progress=lambda msg: click.echo(msg, err=True),
    )
    click.echo(train_bench.format_table(results))


@bench.command("precision")
@click.option("--converter", default="none", show_default=True, help="Per-sample converter (none: a plain network).")
@click.option("--model", default="cnn", show_default=True, help="Model with a network.")
@click.option("--image-size", type=click.IntRange(min=2), default=28, show_default=True)
@click.option("--channels", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--classes", "num_classes", type=click.IntRange(min=2), default=10, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True, help="Timed steps (median).")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Converter or model option, e.g. -o convs_per_block=2.")
def bench_precision(converter: str, model: str, image_size: int, channels: int, batch_size: int, num_classes: int,
                    steps: int, warmup: int, device: str, options: tuple[str, ...]) -> None:
    """Training and inference images/s at fp32 against bf16 mixed precision (--precision bf16)."""
    from graphforge.bench import precision as precision_bench
    from graphforge.bench.results import machine_header

    device = _bench_device(device)
    routed = _route_options(converter, model, options)
    results = precision_bench.run_precision_benchmark(
        converter=converter, model=model, image_size=image_size, channels=channels, batch_size=batch_size,
        num_classes=num_classes, steps=steps, warmup=warmup, device=device,
        converter_options=routed["converter"], model_options=routed["model"],
        progress=lambda msg: click.echo(msg, err=True),
    )
    title = (f"{converter} + {model}, {channels}x{image_size}x{image_size} images, batch {batch_size}, "
             f"median of {steps} steps. {machine_header()}")
    click.echo(precision_bench.format_table(results, title))


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``graphforge bench`` (with ``bench knn``)."""
    cli.add_command(bench)


@bench.command("results")
@click.option("--data-root", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder holding FashionMNIST/raw and MNIST/raw (torchvision's layout).")
@click.option("--out", default="bench-results", show_default=True, type=click.Path(file_okay=False),
              help="Output folder: runs.csv (resumable), summary.csv, results.md.")
@click.option("--group", "groups", multiple=True, help="Experiment group (repeatable): fashion-10k, "
              "fashion-full, mnist-som, fashion-similarity; all by default.")
@click.option("--seeds", default="0,1,2", show_default=True, callback=_seed_list, help="Comma-separated seeds.")
@click.option("--quick", is_flag=True, help="Small subsets and few epochs: a smoke run in minutes, not a result.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="Train every network cell at this precision (bf16: mixed, see docs/precision.md).")
@click.option("--keep-runs", is_flag=True, help="Keep every run directory (with plots) under OUT/runs.")
@click.option("--only", "only", multiple=True, help="Run only cells whose name starts with this (repeatable), e.g. knn.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr (each cell, seed and epoch); warnings only.")
def bench_results(data_root: str, out: str, groups: tuple[str, ...], seeds: tuple[int, ...], quick: bool,
                  device: str, precision: str, keep_runs: bool, only: tuple[str, ...], quiet: bool) -> None:
    """Rerun every seed experiment on real Fashion-MNIST and MNIST into one table.

    Each cell runs once per seed through the same path as `graphforge run` and is recorded
    in OUT/runs.csv as it finishes, so an interrupted benchmark resumes where it stopped.
    OUT/results.md gives mean +- std over the seeds, the median test accuracy, the wall time
    and the exact command of every cell. Progress (each run as it starts and ends, and its
    epochs) goes to stderr. See docs/results.md.
    """
    from graphforge.bench.results import GROUPS, run_results
    from graphforge.cli.main import _setup_logging

    _setup_logging(quiet)

    summary, files = run_results(out, data_root, groups=groups or GROUPS, seeds=seeds, quick=quick, device=device,
                                 precision=precision, keep_runs=keep_runs, only=only)
    click.echo((files[-1]).read_text(encoding="utf-8"))
    for f in files:
        click.echo(f"wrote {f}", err=True)


@bench.command("startup")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Fresh processes per command.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
def bench_startup(repeats: int, as_json: bool) -> None:
    """CLI start-up: --help, --version, list, plugins against `python -c "import torch"`."""
    import json

    from graphforge.bench.startup import format_table, run_startup_benchmark

    rows = run_startup_benchmark(repeats)
    click.echo(json.dumps(rows) if as_json else format_table(rows))
