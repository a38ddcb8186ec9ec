"""Score distributions of a dataset's embeddings: the guide to a similarity graph's threshold.

For each metric, scores are computed on pairs of rows ``i < j``: every pair when there
are at most ``max_pairs`` of them, else ``max_pairs`` distinct pairs drawn uniformly
(seeded). Scores are what a user writes as a threshold: the similarity for ``cosine``
and ``ip``, the distance for the other metrics.

Two samples are drawn:

* **all nodes** (no labels): the pairs a threshold graph over the whole dataset would
  test, so a threshold for a target mean degree comes from them
  (:func:`threshold_for_degree`);
* **labelled nodes** (the training split): split into same-class and different-class
  pairs, the box plots that show how well a metric separates the classes. Only
  training labels are used, so a threshold chosen by looking at them does not leak
  the validation or test labels into the model selection.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from graphforge.checks import check_int
from graphforge.errors import ConfigError, DataError
from graphforge.neighbors import as_float_matrix, pair_distances
from graphforge.similarity.graph import (
    GRAPH_METRICS,
    check_graph_options,
    graph_choice_options,
    is_similarity,
    score_from_distance,
)

log = logging.getLogger("graphforge")

#: Default number of pairs sampled per distribution.
DEFAULT_MAX_PAIRS = 200_000
#: Statistics of :func:`summarize_scores`, in table order.
SUMMARY_KEYS: tuple[str, ...] = ("count", "mean", "std", "min", "q25", "median", "q75", "max")
#: Groups of a :class:`ScoreDistribution`, in table order.
GROUPS: tuple[str, ...] = ("all", "same_class", "different_class")
#: Rows gathered at once (elements per side) when scoring pairs.
_GATHER_ELEMENTS = 1 << 24


def _pair_of_index(k: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Map linear indices of the row-major upper triangle (``i < j``) of an ``m x m`` matrix to ``(i, j)``."""
    k = k.astype(np.int64)
    b = 2 * m - 1
    i = np.floor((b - np.sqrt(np.maximum(float(b) * b - 8.0 * k, 0.0))) / 2).astype(np.int64)
    i = np.clip(i, 0, m - 2)

    def offset(r: np.ndarray) -> np.ndarray:
        return r * (2 * m - r - 1) // 2

    # Float rounding can put i one row off either way; fix it exactly in integers.
    for _ in range(2):
        i = np.where(offset(i) > k, i - 1, i)
        i = np.where(offset(i + 1) <= k, i + 1, i)
    j = k - offset(i) + i + 1
    return i, j


def sample_pairs(num_nodes: int, max_pairs: int = DEFAULT_MAX_PAIRS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Pairs of nodes ``i < j``: all of them, or ``max_pairs`` distinct ones drawn uniformly.

    Args:
        num_nodes (int): Number of nodes ``M``.
        max_pairs (int, optional): Largest number of pairs returned. (default: ``200_000``)
        seed (int, optional): Seed of the sample (the same seed gives the same pairs).

    Returns:
        ``(i, j, exhaustive)``: int64 ``[P]`` tensors sorted by ``(i, j)``, and whether they
        are all ``M (M - 1) / 2`` pairs.
    """
    m = check_int(num_nodes, "num_nodes", minimum=0)
    max_pairs = check_int(max_pairs, "max_pairs", minimum=1)
    total = m * (m - 1) // 2
    if total <= max_pairs:
        i, j = torch.triu_indices(m, m, offset=1) if m > 1 else torch.zeros(2, 0, dtype=torch.long)
        return i, j, True
    rng = np.random.default_rng(seed)
    k = np.sort(rng.choice(total, size=max_pairs, replace=False))
    i, j = _pair_of_index(k, m)
    return torch.from_numpy(i), torch.from_numpy(j), False


def pair_scores(emb: torch.Tensor, i: torch.Tensor, j: torch.Tensor, metric: str) -> torch.Tensor:
    """float64 scores of the row pairs ``(emb[i], emb[j])``: similarity for ``cosine`` / ``ip``, else distance."""
    metric = check_graph_options(metric, "knn", 1, None, "similarity", "auto")
    out = torch.empty(len(i), dtype=torch.float64)
    step = max(1, _GATHER_ELEMENTS // max(1, emb.shape[1]))
    for s in range(0, len(i), step):
        out[s : s + step] = pair_distances(emb[i[s : s + step]], emb[j[s : s + step]], metric)
    return score_from_distance(metric, out)


def summarize_scores(scores: torch.Tensor) -> dict[str, float | int | None]:
    """Count, mean, standard deviation, min, quartiles and max of ``scores`` (``None`` when empty)."""
    s = scores.double()
    if len(s) == 0:
        return {"count": 0, **{k: None for k in SUMMARY_KEYS[1:]}}
    q = np.quantile(s.numpy(), [0.25, 0.5, 0.75])  # torch.quantile refuses inputs over 16 M values
    return {
        "count": len(s),
        "mean": float(s.mean()),
        "std": float(s.std(unbiased=False)),
        "min": float(s.min()),
        "q25": float(q[0]),
        "median": float(q[1]),
        "q75": float(q[2]),
        "max": float(s.max()),
    }


def threshold_for_degree(metric: str, scores: torch.Tensor, num_nodes: int, target_degree: float) -> float:
    """The threshold whose threshold graph has mean degree ``target_degree``, estimated from ``scores``.

    In a threshold graph over ``M`` nodes, the mean degree is the fraction of all
    pairs that pass the threshold times ``M - 1``. This returns the matching quantile
    of ``scores`` (pairs sampled uniformly over all nodes): an upper quantile for
    similarities (edges where score ``>= t``) and a lower one for distances
    (``<= t``), halfway between two consecutive distinct sampled scores. Where tied
    scores straddle the quantile (quantised data, ``linf``), all of them pass or none,
    whichever gives the nearer degree.

    Args:
        metric (str): The scores' metric.
        scores (Tensor): Scores of uniformly sampled pairs (see :func:`pair_scores`).
        num_nodes (int): ``M``, the number of nodes of the graph.
        target_degree (float): Wanted mean degree, ``0 <= target < M - 1``.

    Raises:
        ConfigError: If the target is out of range or there are no scores.
    """
    return _threshold_from_sorted(torch.sort(scores.double()).values, is_similarity(metric), num_nodes,
                                  target_degree)


def _threshold_from_sorted(ascending: torch.Tensor, similar: bool, num_nodes: int, target_degree: float) -> float:
    m = check_int(num_nodes, "num_nodes", minimum=2)
    if isinstance(target_degree, bool) or not isinstance(target_degree, (int, float)) or not math.isfinite(target_degree):
        raise ConfigError(f"target degree must be a number, got {target_degree!r}")
    if target_degree < 0 or target_degree >= m - 1:
        raise ConfigError(
            f"target degree {target_degree} is impossible for {m} nodes: it must be >= 0 and smaller than "
            f"the number of other nodes ({m - 1})")
    n = len(ascending)
    if n == 0:
        raise ConfigError("no pair scores to estimate a threshold from")
    # Work on distance-like values (an edge where value <= t): similarities are negated.
    vals = (-ascending).flip(0) if similar else ascending
    passing = round(target_degree / (m - 1) * n)  # sampled pairs that should pass
    if passing == 0:
        t = float(vals[0]) - 1e-9 * max(1.0, abs(float(vals[0])))
    elif passing >= n:
        t = float(vals[-1])
    else:
        v = vals[passing - 1]
        lo = int(torch.searchsorted(vals, v, right=False))
        hi = int(torch.searchsorted(vals, v, right=True))
        # Ties (quantised data, linf) may straddle the quantile: let all of them pass or none,
        # whichever count is nearer; the threshold sits halfway to the next distinct value.
        if hi - passing <= passing - lo:
            t = float((v + vals[hi]) / 2) if hi < n else float(v)
        else:
            t = float((vals[lo - 1] + v) / 2) if lo > 0 else float(v) - 1e-9 * max(1.0, abs(float(v)))
    return -t if similar else t


def expected_degree(metric: str, scores: torch.Tensor, num_nodes: int, threshold: float) -> float:
    """The mean degree a threshold graph over ``num_nodes`` nodes would have, estimated from sampled ``scores``."""
    if len(scores) == 0:
        return 0.0
    passing = scores >= threshold if is_similarity(metric) else scores <= threshold
    return float(passing.double().mean()) * (num_nodes - 1)


@dataclass
class ScoreDistribution:
    """Sampled pair scores of one metric.

    Attributes:
        metric: Canonical metric name.
        all: float64 scores of pairs over all nodes (for degree targets).
        same_class: Scores of labelled pairs of the same class.
        different_class: Scores of labelled pairs of different classes.
        num_nodes: Number of nodes ``M``.
        exhaustive: Whether ``all`` holds every pair.
        labelled_exhaustive: Whether the labelled groups hold every labelled pair.
    """

    metric: str
    all: torch.Tensor
    same_class: torch.Tensor
    different_class: torch.Tensor
    num_nodes: int
    exhaustive: bool
    labelled_exhaustive: bool
    _sorted: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """``"similarity"`` (an edge needs score ``>= t``) or ``"distance"`` (``<= t``)."""
        return "similarity" if is_similarity(self.metric) else "distance"

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        """:func:`summarize_scores` of each group (``all``, ``same_class``, ``different_class``)."""
        return {g: summarize_scores(getattr(self, g)) for g in GROUPS}

    def threshold_for_degree(self, target_degree: float) -> float:
        """See :func:`threshold_for_degree` (estimated from the all-nodes sample)."""
        if self._sorted is None:
            self._sorted = torch.sort(self.all.double()).values
        return _threshold_from_sorted(self._sorted, is_similarity(self.metric), self.num_nodes, target_degree)

    def expected_degree(self, threshold: float) -> float:
        """See :func:`expected_degree` (estimated from the all-nodes sample)."""
        return expected_degree(self.metric, self.all, self.num_nodes, threshold)


def score_distributions(
    emb: Any,
    labels: torch.Tensor | None = None,
    labelled: torch.Tensor | None = None,
    *,
    metrics: Sequence[str] = GRAPH_METRICS,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    seed: int = 0,
) -> dict[str, ScoreDistribution]:
    """Pair-score distributions of ``emb`` for each metric (the same pairs for every metric).

    Args:
        emb (array ``[M, D]``): Embeddings, one row per node.
        labels (Tensor, optional): int ``[M]`` classes (needed for the class groups).
        labelled (Tensor, optional): bool ``[M]``: nodes whose labels may be used (e.g. the
            training split); all nodes when ``None``.
        metrics (sequence of str, optional): Metrics. (default: all six)
        max_pairs (int, optional): Pairs per sample. (default: ``200_000``)
        seed (int, optional): Seed of the pair samples.

    Returns:
        ``{metric: ScoreDistribution}`` keyed by canonical metric name.

    Raises:
        ConfigError: For an unknown metric or a bad ``max_pairs``.
        DataError: For embeddings that are not 2-D finite numbers, or labels of the wrong length.
    """
    names = [check_graph_options(m, "knn", 1, None, "similarity", "auto") for m in metrics]
    if not names:
        raise ConfigError("no metric given")
    x = as_float_matrix(emb, "embeddings")
    m = len(x)
    if m < 2:
        raise DataError(f"score distributions need at least 2 samples, got {m}")
    i_all, j_all, exhaustive = sample_pairs(m, max_pairs, seed)
    empty = torch.zeros(0, dtype=torch.long)
    i_lab, j_lab, lab_exhaustive, same = empty, empty, True, torch.zeros(0, dtype=torch.bool)
    if labels is not None:
        y = torch.as_tensor(labels).view(-1)
        if len(y) != m:
            raise DataError(f"{len(y)} labels for {m} embeddings")
        nodes = torch.arange(m) if labelled is None else torch.nonzero(torch.as_tensor(labelled).view(-1)).view(-1)
        a, b, lab_exhaustive = sample_pairs(len(nodes), max_pairs, seed + 1)
        i_lab, j_lab = nodes[a], nodes[b]
        same = y[i_lab] == y[j_lab]
    out = {}
    for name in dict.fromkeys(names):
        all_scores = pair_scores(x, i_all, j_all, name)
        lab_scores = pair_scores(x, i_lab, j_lab, name)
        out[name] = ScoreDistribution(name, all_scores, lab_scores[same], lab_scores[~same], m, exhaustive,
                                      lab_exhaustive)
    return out


# --------------------------------------------------------------------------- a dataset's scores
#: Mean degrees whose thresholds ``scores.json`` lists (those below ``M - 1``).
DEGREE_LADDER: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100)
#: Converter options that make no sense for score distributions (they pick one graph).
@dataclass
class DatasetScores:
    """Score distributions of a dataset's embeddings, with what produced them.

    Attributes:
        distributions: ``{metric: ScoreDistribution}``.
        settings: Dataset, options, seed, pairs, limits (as given).
        num_nodes: All samples (train, val and test): the nodes of a similarity graph.
        num_labelled: Training samples, whose labels form the class groups.
        target_degree: The mean degree a threshold was estimated for, or ``None``.
    """

    distributions: dict[str, ScoreDistribution]
    settings: dict[str, Any]
    num_nodes: int
    num_labelled: int
    target_degree: float | None = None

    def thresholds(self) -> dict[str, float]:
        """The target-degree threshold of each metric (empty without a target)."""
        if self.target_degree is None:
            return {}
        return {m: d.threshold_for_degree(self.target_degree) for m, d in self.distributions.items()}

    def degree_ladder(self) -> list[int]:
        """The degrees of :data:`DEGREE_LADDER` possible for this many nodes."""
        return [d for d in DEGREE_LADDER if d < self.num_nodes - 1]

    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain data (``scores.json``)."""
        thresholds = self.thresholds()
        first = next(iter(self.distributions.values()))
        metrics = {}
        for name, dist in self.distributions.items():
            metrics[name] = {
                "score": dist.kind,
                "edge_if": ">= threshold" if dist.kind == "similarity" else "<= threshold",
                "groups": dist.summary(),
                "threshold_for_target_degree": thresholds.get(name),
                "expected_mean_degree": dist.expected_degree(thresholds[name]) if name in thresholds else None,
                "thresholds_by_mean_degree": {str(d): dist.threshold_for_degree(d) for d in self.degree_ladder()},
            }
        return {
            **self.settings,
            "nodes": self.num_nodes,
            "labelled_nodes": self.num_labelled,
            "labels_from": "training split",
            "all_pairs_exhaustive": first.exhaustive,
            "labelled_pairs_exhaustive": first.labelled_exhaustive,
            "target_degree": self.target_degree,
            "metrics": metrics,
        }


def dataset_scores(
    dataset: str = "digits",
    *,
    data_root: str | None = None,
    options: dict[str, Any] | None = None,
    metrics: Sequence[str] = GRAPH_METRICS,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    target_degree: float | None = None,
    seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> DatasetScores:
    """Load a dataset, embed it as the ``similarity`` converter does, and sample its pair scores.

    The nodes are all samples (train, val, test), as in the similarity graph; the class
    groups use the training labels only (see the module docs).

    Args:
        dataset: Dataset plugin name.
        data_root: Its file or directory.
        options: Dataset options and the ``similarity`` converter's embedding options
            (``embedder``, ``embedder_options``, ``cache``, ...).
        metrics, max_pairs, seed: See :func:`score_distributions` (``seed`` also seeds the
            dataset's split and limits, as in a run).
        target_degree: Estimate each metric's threshold for this mean degree.
        limit_train, limit_test: As ``--limit-train`` / ``--limit-test`` of a run.

    Raises:
        ConfigError: For an unknown metric (checked before any data is loaded), a bad
            option, a graph option (metric, threshold, ...) in ``options``, or an impossible
            target degree.
    """
    from graphforge.config import RunConfig
    from graphforge.engine.runner import load_data, plan_run

    metrics = [check_graph_options(m, "knn", 1, None, "similarity", "auto") for m in metrics]  # before any loading
    if not metrics:
        raise ConfigError("no metric given")
    options = dict(options or {})
    graph_only = graph_choice_options(options)
    if graph_only:
        raise ConfigError(f"option(s) {', '.join(graph_only)} choose one graph; score distributions cover every "
                          "metric and threshold (use --metric to restrict the metrics)")
    config = RunConfig.from_dict({"dataset": dataset, "converter": "similarity", "model": "mlp", "options": options,
                                  "data_root": data_root, "seed": seed, "limit_train": limit_train,
                                  "limit_test": limit_test})
    plan = plan_run(config)
    if plan.options["model"]:
        raise ConfigError(f"option(s) {', '.join(plan.options['model'])} are model options; score distributions "
                          "take dataset and embedding options only")
    data = load_data(plan)
    plan.converter.check_input(data.spec)
    emb = plan.converter.embed(data)
    labels = torch.cat([data.train.y, data.val.y, data.test.y])
    labelled = torch.arange(len(labels)) < len(data.train)
    distributions = score_distributions(emb, labels, labelled, metrics=metrics, max_pairs=max_pairs, seed=seed)
    settings = {"dataset": dataset, "data_root": data_root, "options": options, "seed": seed, "pairs": max_pairs,
                "limit_train": limit_train, "limit_test": limit_test}
    result = DatasetScores(distributions, settings, len(labels), len(data.train), target_degree)
    for name, t in result.thresholds().items():  # an impossible target fails here, before anything is written
        got = distributions[name].expected_degree(t)
        if target_degree is not None and abs(got - target_degree) > max(0.5, 0.1 * target_degree):
            log.warning("%s: tied scores (few distinct values) make mean degree %g unreachable; threshold %.6g "
                        "gives about %.2f", name, target_degree, t, got)
    return result


def write_scores(result: DatasetScores, out: Any) -> list[Any]:
    """Write ``scores.json``, ``scores.csv`` and ``plots/score_boxplots.png`` into ``out`` (atomically).

    Returns:
        The paths written.
    """
    import csv
    import io
    from pathlib import Path

    from graphforge.io import write_json, write_text
    from graphforge.similarity.plots import plot_score_boxplots

    out = Path(out)
    data = result.to_dict()
    write_json(out / "scores.json", data)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["metric", "score", "group", *SUMMARY_KEYS])
    for name, entry in data["metrics"].items():
        for group, stats in entry["groups"].items():
            writer.writerow([name, entry["score"], group, *("" if stats[k] is None else stats[k] for k in SUMMARY_KEYS)])
    write_text(out / "scores.csv", buf.getvalue())
    title = (f"pair scores on {data['dataset']}: {data['labelled_nodes']} training samples "
             f"(labels), {data['nodes']} nodes")
    plot = plot_score_boxplots(result.distributions, out / "plots" / "score_boxplots.png", title,
                               result.thresholds(), result.target_degree)
    return [out / "scores.json", out / "scores.csv", plot]


def scores_table(result: DatasetScores) -> str:
    """A readable text summary: statistics per metric and group, then thresholds by mean degree."""
    data = result.to_dict()
    head = ["metric", "score", "group", "pairs", "mean", "std", "min", "q25", "median", "q75", "max"]
    body = []
    for name, entry in data["metrics"].items():
        for group, stats in entry["groups"].items():
            cells = [f"{stats[k]:.4g}" if stats[k] is not None else "-" for k in SUMMARY_KEYS[1:]]
            body.append([name, entry["score"], group.replace("_", " "), str(stats["count"]), *cells])
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in [head, *body]]
    ladder = result.degree_ladder()
    if result.target_degree is not None and result.target_degree not in ladder:
        ladder = sorted({*ladder, result.target_degree})
    if ladder:
        lines.append("")
        head2 = ["threshold for mean degree", *(f"{d:g}" for d in ladder)]
        body2 = []
        for name, dist in result.distributions.items():
            rule = ">=" if dist.kind == "similarity" else "<="
            body2.append([f"{name} ({rule} t)", *(f"{dist.threshold_for_degree(d):.4g}" for d in ladder)])
        widths2 = [max(len(r[i]) for r in [head2, *body2]) for i in range(len(head2))]
        lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths2)))
                  for r in [head2, *body2]]
    return "\n".join(lines) + "\n"
