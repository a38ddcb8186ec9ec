"""``label_prop``: label spreading (Zhou et al., 2004) over one dataset graph.

The graph baseline that learns nothing: the training labels spread along the
edges of a dataset graph (e.g. from ``similarity``) and every node takes the class
that reaches it most strongly. Comparing a GNN with it shows what the GNN adds
beyond the graph's homophily.

    graphforge run --converter similarity --model label_prop -o alpha=0.9

Example:
    >>> from graphforge.builtin.models.label_prop import label_spreading
    >>> scores = label_spreading(edge_index, seeds, num_nodes=n, alpha=0.9)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from graphforge.checks import check_int
from graphforge.core.model import GraphFitModel
from graphforge.errors import ConfigError, DataError


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(f"alpha must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


def _check_tol(tol: Any) -> float | None:
    if tol is None:
        return None
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0 or math.isinf(tol):
        raise ConfigError(f"tol must be a number >= 0 (or None: always run every iteration), got {tol!r}")
    return float(tol)


def spreading_matrix(
    edge_index: torch.Tensor, edge_weight: torch.Tensor | None, num_nodes: int, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Return ``S = D^-1/2 W D^-1/2`` as a sparse CSR matrix ``[num_nodes, num_nodes]``.

    ``W`` reads the edges as undirected: ``W = (A + A^T) / 2``, where ``A[i, j]`` sums the
    weights of the edges ``j -> i``. A graph that stores both directions of every edge
    (as similarity graphs do) is thus used as it is, and a one-way edge (a kNN graph's)
    counts at half weight in both directions. Duplicate edges add up; self-loops are
    dropped (``W_ii = 0``, as in Zhou et al.). ``D`` is the diagonal of ``W``'s row sums;
    a node without edges has an empty row.

    Args:
        edge_index (Tensor): ``[2, E]`` int64, PyG's source-to-target convention.
        edge_weight (Tensor, optional): ``[E]`` (or ``[E, 1]``) non-negative weights;
            ``None`` gives every edge weight 1.
        num_nodes (int): Number of nodes.
        dtype (torch.dtype, optional): Value type of ``S``. (default: ``torch.float64``)

    Raises:
        DataError: On malformed edges, or negative, NaN or infinite weights.
    """
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise DataError(f"edge_index must be [2, E], got shape {tuple(edge_index.shape)}")
    edge_index = edge_index.long()
    device = edge_index.device
    num_edges = edge_index.shape[1]
    if num_edges and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise DataError(f"edge_index refers to nodes outside 0..{num_nodes - 1}")
    if edge_weight is None:
        w = torch.ones(num_edges, dtype=dtype, device=device)
    else:
        if edge_weight.numel() != num_edges:
            raise DataError(f"edge_weight has {edge_weight.numel()} values for {num_edges} edges")
        w = edge_weight.reshape(-1).to(device=device, dtype=dtype)
        if num_edges and not bool(torch.isfinite(w).all()):
            raise DataError("edge_weight contains NaN or infinite values")
        if num_edges and float(w.min()) < 0:
            raise DataError(
                f"label_prop needs non-negative edge weights, but the smallest is {float(w.min()):.4g}; "
                "build the graph with weights >= 0 (for the similarity converter: a threshold above 0, "
                "-o weight=gaussian, or -o weight=none for unweighted edges)"
            )
    keep = edge_index[0] != edge_index[1]
    src, dst, w = edge_index[0, keep], edge_index[1, keep], w[keep]
    rows = torch.cat([dst, src])
    cols = torch.cat([src, dst])
    vals = torch.cat([w, w]) * 0.5
    degree = torch.zeros(num_nodes, dtype=dtype, device=device).index_add_(0, rows, vals)
    inv_sqrt = degree.pow(-0.5).masked_fill_(degree == 0, 0.0)
    vals = inv_sqrt[rows] * vals * inv_sqrt[cols]
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (num_nodes, num_nodes), check_invariants=False)
    with warnings.catch_warnings():  # CSR is "beta" in torch, but its mat-mul is the fast, deterministic one
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return coo.coalesce().to_sparse_csr()


def label_spreading(
    edge_index: torch.Tensor,
    seeds: torch.Tensor,
    num_nodes: int | None = None,
    edge_weight: torch.Tensor | None = None,
    alpha: float = 0.9,
    iterations: int = 50,
    tol: float | None = None,
) -> tuple[torch.Tensor, int]:
    """Iterate ``F <- alpha S F + (1 - alpha) Y`` from ``F = Y``.

    The raw scores of Zhou et al.'s label spreading: ``Y`` holds the seed labels and
    ``S`` is :func:`spreading_matrix`. Memory grows with the edges (one sparse matrix)
    plus two ``[num_nodes, C]`` score matrices; nothing is ``N x N``.

    Args:
        edge_index (Tensor): ``[2, E]`` int64.
        seeds (Tensor): ``Y``, ``[num_nodes, C]``: one-hot rows (or label counts) of the
            labelled nodes, zero rows elsewhere.
        num_nodes (int, optional): Number of nodes. (default: ``seeds.shape[0]``)
        edge_weight (Tensor, optional): Non-negative weights ``[E]``. (default: all 1)
        alpha (float, optional): Weight of the neighbours against the seeds, in (0, 1).
            (default: ``0.9``)
        iterations (int, optional): Most iterations. (default: ``50``)
        tol (float, optional): Stop early once no score changes by more than ``tol`` in
            an iteration. (default: ``None``, always run ``iterations``)

    Returns:
        ``(F, iterations_run)``: scores ``[num_nodes, C]`` in ``float64``, non-negative;
        a node no seed reaches has a zero row.
    """
    alpha = _check_alpha(alpha)
    iterations = check_int(iterations, "iterations", minimum=1)
    tol = _check_tol(tol)
    n = seeds.shape[0] if num_nodes is None else int(num_nodes)
    if seeds.dim() != 2 or seeds.shape[0] != n:
        raise DataError(f"seeds must be [num_nodes={n}, num_classes], got shape {tuple(seeds.shape)}")
    s = spreading_matrix(edge_index, edge_weight, n).to(seeds.device)
    restart = (1 - alpha) * seeds.double()
    scores = seeds.double()
    done = 0
    for done in range(1, iterations + 1):  # noqa: B007 (read after the loop)
        updated = torch.addmm(restart, s, scores, alpha=alpha)
        change = float((updated - scores).abs().max()) if tol is not None and scores.numel() else None
        scores = updated
        if change is not None and change <= tol:
            break
    return scores, done


class LabelPropagation(GraphFitModel):
    """Label spreading over a dataset graph (Zhou et al., 2004); nothing is trained.

    ``F <- alpha S F + (1 - alpha) Y`` with ``S = D^-1/2 W D^-1/2`` (see
    :func:`spreading_matrix` for how edges become ``W``: undirected, self-loops dropped,
    negative weights refused) and ``Y`` the one-hot training labels (zero rows for the
    other nodes; with samples mapped onto nodes, a node's row counts its training
    samples' labels). Training nodes are not clamped: their own label is one input
    among their neighbours', so ``train_accuracy`` can be below 1.

    Each node's scores are normalised to a probability distribution. A node no training
    label reaches (an isolated node, or a component without training nodes) gets the
    class prior of the training labels, so it predicts the most frequent class.

    Args:
        alpha (float, optional): Weight of the neighbours against the node's own label,
            in (0, 1); larger spreads further. (default: ``0.9``)
        iterations (int, optional): Number of iterations (at most, with ``tol``).
            (default: ``50``)
        tol (float, optional): Stop once no score changes by more than ``tol``.
            (default: ``None``, run every iteration)
    """

    name = "label_prop"

    def __init__(self, alpha: float = 0.9, iterations: int = 50, tol: float | None = None) -> None:
        self.alpha = _check_alpha(alpha)
        self.iterations = check_int(iterations, "iterations", minimum=1)
        self.tol = _check_tol(tol)
        self._proba: torch.Tensor | None = None
        self._iterations_run = 0
        self._unreached = 0

    def fit_predict(self, graph: Any, num_classes: int) -> torch.Tensor:
        """Spread the training labels of ``graph``; return probabilities ``[num_nodes, num_classes]`` (float32)."""
        num_nodes = int(graph.num_nodes)
        nodes, labels = self.training_labels(graph)
        if len(labels) == 0:
            raise DataError("label_prop needs training labels, but the graph's training split is empty")
        if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise DataError(f"training labels must be in 0..{num_classes - 1}")
        device = graph.edge_index.device
        nodes, labels = nodes.to(device), labels.to(device)
        seeds = torch.zeros(num_nodes, num_classes, dtype=torch.float64, device=device)
        seeds.index_put_((nodes, labels), torch.ones(len(nodes), dtype=torch.float64, device=device), accumulate=True)
        scores, self._iterations_run = label_spreading(
            graph.edge_index, seeds, num_nodes, getattr(graph, "edge_weight", None),
            self.alpha, self.iterations, self.tol,
        )
        total = scores.sum(1, keepdim=True)
        reached = total > 0
        prior = torch.bincount(labels, minlength=num_classes).double()
        proba = torch.where(reached, scores / torch.where(reached, total, 1.0), prior / prior.sum())
        self._unreached = int((~reached).sum())
        self._proba = proba.float().cpu()
        return self._proba

    def predict_proba(self) -> torch.Tensor:
        """Return the node probabilities of the last :meth:`fit_predict` (or of the loaded state)."""
        if self._proba is None:
            raise ConfigError("label_prop has not been fitted; call fit_predict(graph, num_classes) first")
        return self._proba

    def report(self, graph: Any, proba: torch.Tensor, rundir: Any) -> dict[str, Any]:
        """Add how many iterations ran and how many nodes no training label reached."""
        return {"label_prop_iterations": self._iterations_run, "label_prop_unreached_nodes": self._unreached}

    def state_dict(self) -> dict:
        """Return the node probabilities and the options they were computed with."""
        return {"proba": self._proba, "alpha": self.alpha, "iterations": self.iterations, "tol": self.tol,
                "iterations_run": self._iterations_run, "unreached": self._unreached}

    def load_state_dict(self, state: dict) -> None:
        """Restore the node probabilities of a fitted model."""
        self._proba = state["proba"]
        self._iterations_run = int(state.get("iterations_run", 0))
        self._unreached = int(state.get("unreached", 0))
