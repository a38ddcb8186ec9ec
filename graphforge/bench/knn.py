"""Benchmark of :func:`graphforge.ops.dense_batched_knn` against the ways people build
per-set KNN graphs today.

Methods (each skipped when its package is missing):

* ``graphforge`` -- the native op (or the reference when the extension is not built);
* ``cdist_topk_mask`` -- pure PyTorch ``cdist`` + ``topk(k_max)`` + a mask for the per-set
  k, as ViG and DGCNN do it;
* ``faiss_loop`` -- one FAISS ``IndexFlatL2`` per set, in a Python loop (FAISS takes one k
  per call);
* ``torch_cluster`` / ``pyg_lib`` -- ``knn_graph`` with ``k_max`` and the same mask.

Every figure is the median of ``repeats`` timed runs after ``warmup`` runs. The compute
floor is the Gram-matrix FLOPs (``2 * B * N^2 * D``) divided by the ``torch.mm`` speed
measured in the same run.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from graphforge.bench.timing import matmul_gflops, median_seconds
from graphforge.ops import dense_batched_knn, knn_backend

DEFAULT_B: tuple[int, ...] = (256, 1024, 4096)
DEFAULT_N: tuple[int, ...] = (16, 49, 196, 784)
DEFAULT_D: tuple[int, ...] = (32, 128, 256)
QUICK_B: tuple[int, ...] = (256,)
QUICK_N: tuple[int, ...] = (16, 49)
QUICK_D: tuple[int, ...] = (32,)
K_MODES: tuple[str, ...] = ("uniform", "per-set")
METHODS: tuple[str, ...] = ("graphforge", "cdist_topk_mask", "faiss_loop", "torch_cluster", "pyg_lib")


@dataclass(frozen=True)
class KnnCase:
    """One benchmark configuration."""

    B: int
    N: int
    D: int
    k_mode: str  # "uniform": every set k_max; "per-set": k ~ U[1, k_max] per set
    k_max: int

    @property
    def label(self) -> str:
        return f"{self.k_max}" if self.k_mode == "uniform" else f"U[1,{self.k_max}]"

    @property
    def gram_flops(self) -> float:
        return 2.0 * self.B * self.N * self.N * self.D


@dataclass
class KnnResult:
    """Timings of every method on one case (``None``: skipped; ``str``: why)."""

    case: KnnCase
    times_ms: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    floor_ms: float = 0.0

    def speedup(self, method: str = "cdist_topk_mask") -> float | None:
        base, ours = self.times_ms.get(method), self.times_ms.get("graphforge")
        return base / ours if base and ours else None

    def floor_ratio(self) -> float | None:
        ours = self.times_ms.get("graphforge")
        return ours / self.floor_ms if ours and self.floor_ms else None


# ------------------------------------------------------------------------------ methods


def _mask_k(idx: Tensor, val: Tensor, k: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Keeps the first k[b] of the k_max neighbours of every query of set b."""
    num_sets, _, kmax = idx.shape
    keep = torch.arange(kmax, device=idx.device) < k.clamp(max=n - 1).view(num_sets, 1, 1)
    keep = keep.expand(num_sets, n, kmax)
    src = (idx + (torch.arange(num_sets, device=idx.device) * n).view(-1, 1, 1)).masked_select(keep)
    dst = torch.arange(num_sets * n, device=idx.device).view(num_sets, n, 1).expand_as(keep).masked_select(keep)
    return torch.stack([src, dst]), val.masked_select(keep)


def cdist_topk_mask(x: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    """The usual pure-PyTorch way: a dense distance tensor, top-k_max, then a mask."""
    num_sets, n, _ = x.shape
    d = torch.cdist(x, x)
    d.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    kmax = min(int(k.max()), n - 1)
    val, idx = d.topk(kmax, dim=-1, largest=False)
    return _mask_k(idx, val, k, n)


def faiss_loop(x: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    """One exact FAISS index per set (FAISS takes one k per search)."""
    import faiss
    import numpy as np

    num_sets, n, dim = x.shape
    xs = x.detach().float().cpu().numpy()
    ks = k.clamp(max=n - 1).tolist()
    srcs, dsts, dists = [], [], []
    rows = np.arange(n)[:, None]
    for b in range(num_sets):
        kb = ks[b]
        if kb == 0:
            continue
        index = faiss.IndexFlatL2(dim)
        index.add(xs[b])
        dd, ii = index.search(xs[b], kb + 1)
        keep = ii != rows  # self-loops out by index; a row without itself keeps its first kb
        keep &= np.cumsum(keep, axis=1) <= kb
        srcs.append(ii[keep] + b * n)
        dsts.append(np.broadcast_to(rows + b * n, ii.shape)[keep])
        dists.append(np.sqrt(np.maximum(dd[keep], 0)))
    return torch.from_numpy(np.stack([np.concatenate(srcs), np.concatenate(dsts)])), torch.from_numpy(np.concatenate(dists))


def torch_cluster_knn(x: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    import torch_cluster

    num_sets, n, dim = x.shape
    kmax = min(int(k.max()), n - 1)
    batch = torch.arange(num_sets, device=x.device).repeat_interleave(n)
    flat = x.reshape(-1, dim)
    ei = torch_cluster.knn_graph(flat, kmax, batch, loop=False, flow="source_to_target")
    idx = (ei[0] - batch[ei[1]] * n).view(num_sets, n, kmax)
    val = (flat[ei[0]] - flat[ei[1]]).norm(dim=-1).view(num_sets, n, kmax)
    return _mask_k(idx, val, k, n)


def pyg_lib_knn(x: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    from torch_geometric.nn import knn_graph

    num_sets, n, dim = x.shape
    kmax = min(int(k.max()), n - 1)
    batch = torch.arange(num_sets, device=x.device).repeat_interleave(n)
    flat = x.reshape(-1, dim)
    ei = knn_graph(flat, kmax, batch, loop=False)
    order = torch.argsort(ei[1], stable=True)
    ei = ei[:, order]
    idx = (ei[0] - batch[ei[1]] * n).view(num_sets, n, kmax)
    val = (flat[ei[0]] - flat[ei[1]]).norm(dim=-1).view(num_sets, n, kmax)
    return _mask_k(idx, val, k, n)


def _graphforge(x: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    return dense_batched_knn(x, k)


def available_methods(device: torch.device) -> dict[str, Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]]:
    """The methods that can run here, by name."""
    methods: dict[str, Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]] = {
        "graphforge": _graphforge,
        "cdist_topk_mask": cdist_topk_mask,
    }
    if importlib.util.find_spec("faiss") is not None and device.type == "cpu":
        methods["faiss_loop"] = faiss_loop
    if importlib.util.find_spec("torch_cluster") is not None:
        methods["torch_cluster"] = torch_cluster_knn
    if importlib.util.find_spec("pyg_lib") is not None:
        methods["pyg_lib"] = pyg_lib_knn
    return methods


# ------------------------------------------------------------------------------ timing


def median_ms(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``fn`` in milliseconds over ``repeats`` runs."""
    return median_seconds(fn, repeats, warmup, device) * 1e3


def make_cases(
    batch_sizes: Iterable[int], set_sizes: Iterable[int], dims: Iterable[int], k_modes: Iterable[str], k_max: int
) -> list[KnnCase]:
    return [KnnCase(b, n, d, mode, k_max) for b in batch_sizes for n in set_sizes for d in dims for mode in k_modes]


def make_inputs(case: KnnCase, device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(case.B, case.N, case.D, generator=g).to(device)
    if case.k_mode == "uniform":
        k = torch.full((case.B,), case.k_max, dtype=torch.long)
    else:
        k = torch.randint(1, case.k_max + 1, (case.B,), generator=g)
    return x, k.to(device)


def run_knn_benchmark(
    cases: Sequence[KnnCase],
    *,
    device: str | torch.device = "cpu",
    methods: Sequence[str] | None = None,
    repeats: int = 10,
    warmup: int = 2,
    max_memory_gb: float = 8.0,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[KnnResult], float]:
    """Runs every case with every available method.

    Args:
        cases (Sequence[KnnCase]): the configurations.
        device (str or torch.device, optional): where to run. (default: ``"cpu"``)
        methods (Sequence[str], optional): subset of :data:`METHODS`; all available by default.
        repeats (int, optional): timed runs per figure (the median is reported). (default: 10)
        warmup (int, optional): untimed runs first. (default: 2)
        max_memory_gb (float, optional): skip the dense baselines when their ``[B, N, N]``
            distance tensor would be larger. (default: 8.0)
        progress (callable, optional): receives one line per measurement.

    Returns:
        (list[KnnResult], float): the results and the measured matmul GFLOP/s.
    """
    dev = torch.device(device)
    say = progress or (lambda _msg: None)
    avail = available_methods(dev)
    wanted = list(methods) if methods else list(METHODS)
    unknown = [m for m in wanted if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    say(f"backend: {knn_backend()}; device: {dev}; threads: {torch.get_num_threads()}")
    gflops = matmul_gflops(dev)
    say(f"torch.mm: {gflops:.1f} GFLOP/s")
    results = []
    for case in cases:
        x, k = make_inputs(case, dev)
        res = KnnResult(case, floor_ms=case.gram_flops / (gflops * 1e9) * 1e3)
        dense_gb = case.B * case.N * case.N * 4 * 3 / 1e9
        for name in wanted:
            if name not in avail:
                res.times_ms[name] = None
                res.notes[name] = "not installed"
                continue
            if name != "graphforge" and name != "faiss_loop" and dense_gb > max_memory_gb:
                res.times_ms[name] = None
                res.notes[name] = "memory"
                continue
            fn = avail[name]
            ms = median_ms(lambda fn=fn, x=x, k=k: fn(x, k), repeats, warmup, dev)
            res.times_ms[name] = ms
            say(f"B={case.B} N={case.N} D={case.D} k={case.label}: {name} {ms:.2f} ms")
        results.append(res)
        del x, k
    return results, gflops


# ----------------------------------------------------------------------------- output


def _fmt(v: float | None, spec: str = ".1f", note: str | None = None) -> str:
    if v is None:
        return f"-({note})" if note else "-"
    return format(v, spec)


def format_table(results: Sequence[KnnResult], gflops: float) -> str:
    """One text table: medians in ms, speedups against the dense baseline, floor ratios."""
    present = [m for m in METHODS if any(r.times_ms.get(m) is not None for r in results)]
    head = ["B", "N", "D", "k"] + [f"{m} ms" for m in present] + ["x vs cdist", "floor ms", "gf/floor"]
    rows = []
    for r in results:
        c = r.case
        row = [str(c.B), str(c.N), str(c.D), c.label]
        row += [_fmt(r.times_ms.get(m), ".1f", r.notes.get(m)) for m in present]
        sp = r.speedup()
        fr = r.floor_ratio()
        row += [_fmt(sp, ".1f") + ("x" if sp else ""), _fmt(r.floor_ms, ".1f"), _fmt(fr, ".2f")]
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = [
        f"batched KNN (l2, no self-loops), backend {knn_backend()}, medians; "
        f"compute floor = 2*B*N^2*D / torch.mm ({gflops:.1f} GFLOP/s)",
        "  ".join(h.rjust(w) for h, w in zip(head, widths)),
    ]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    clamped = sorted({r.case.N for r in results if r.case.k_max >= r.case.N})
    if clamped:
        lines.append(f"note: k is at most N - 1 (each set's other points), so in sets of {', '.join(map(str, clamped))} "
                     "points a larger k gives every other point")
    return "\n".join(lines)


def write_csv(results: Sequence[KnnResult], gflops: float, path: str | Path, device: str) -> None:
    """One row per (case, method)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["B", "N", "D", "k_mode", "k_max", "device", "method", "median_ms", "note",
                    "speedup_vs_cdist", "floor_ms", "ratio_to_floor", "matmul_gflops"])
        for r in results:
            c = r.case
            for m, ms in r.times_ms.items():
                ours = m == "graphforge"
                w.writerow([c.B, c.N, c.D, c.k_mode, c.k_max, device, m,
                            "" if ms is None else f"{ms:.4f}", r.notes.get(m, ""),
                            f"{r.speedup():.3f}" if ours and r.speedup() else "",
                            f"{r.floor_ms:.4f}", f"{r.floor_ratio():.3f}" if ours and r.floor_ratio() else "",
                            f"{gflops:.2f}"])
