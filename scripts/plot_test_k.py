"""Plot the k that finished ``dyn_knn`` runs give each test image: a histogram per run, and the
mean k per class.

    python scripts/plot_test_k.py RUN_DIR [RUN_DIR ...] --out k.png [--label NAME ...] [--data-root DIR]

Each run's trained encoder and k head rebuild the graphs of the run's own test split (as
``graphforge graph --from-run``); the script prints each class's mean k per run and writes
the figure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def test_k(run_dir: Path, data_root: str | None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``(k per test image, label per test image, class names)`` of a finished run."""
    from graphforge.api import load_run
    from graphforge.graphs.build import build_graph

    trained = load_run(run_dir)
    graph = build_graph(trained.config.converter, trained.config.dataset, from_run=run_dir, split="test",
                        data_root=data_root)
    if not hasattr(graph, "k"):
        raise SystemExit(f"{run_dir}: its converter reports no k per graph (not a dyn_knn run?)")
    return graph.k.long(), graph.graph_y.long(), list(trained.class_names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--label", action="append", default=[], help="one legend label per run (default: the run's name)")
    parser.add_argument("--data-root", default=None, help="where the run's dataset is, if not where it was trained")
    args = parser.parse_args(argv)
    if args.label and len(args.label) != len(args.runs):
        parser.error("give one --label per run, or none")
    labels = args.label or [r.name for r in args.runs]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist_ax, class_ax) = plt.subplots(1, 2, figsize=(13, 4.2))
    results = [test_k(run, args.data_root) for run in args.runs]
    lo = min(int(k.min()) for k, _, _ in results)
    hi = max(int(k.max()) for k, _, _ in results)
    width = 0.8 / len(results)
    names = results[0][2]
    print("mean k per class:", ", ".join(labels))
    class_means = []  # per run: each class's mean k, formatted for the printed table
    for i, ((k, y, _), label) in enumerate(zip(results, labels)):
        counts = torch.bincount(k - lo, minlength=hi - lo + 1)
        hist_ax.bar(torch.arange(lo, hi + 1) + (i - (len(results) - 1) / 2) * width, counts, width=width,
                    label=f"{label}: mean {k.double().mean():.2f}, std {k.double().std(unbiased=False):.2f}")
        per_class = torch.stack([k[y == c].double().mean() for c in range(len(names))])
        class_ax.plot(range(len(names)), per_class, marker="o", label=label)
        class_means.append([f"{v:.2f}" for v in per_class.tolist()])
    for c, name in enumerate(names):
        print(f"  {name:>12}: " + "  ".join(means[c] for means in class_means))
    hist_ax.set(xlabel="k per test image", ylabel="test images", title=f"k on the {len(results[0][0]):,} test images")
    hist_ax.legend(fontsize=8)
    class_ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    class_ax.set(ylabel="mean k", title="mean k per class (test)")
    class_ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
