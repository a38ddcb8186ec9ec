"""``graphforge bench similarity``: building a dataset-scale kNN graph vs the raw FAISS search.

Both sides use the same FAISS index with the same settings (flat, or IVF with the same
list count, training sample and ``nprobe``), on the same data, in the same process:

* **raw FAISS**: build the index, ``index.search(x, k + 1)`` — neighbour lists only;
* **graphforge**: :func:`graphforge.similarity.similarity_graph` — the same search,
  plus float64 re-scoring of every found pair, dropping each node itself,
  symmetrising, de-duplicating and sorting into a PyG ``edge_index``, and edge weights.

The ratio of the two times is graphforge's overhead (target: at most 1.2x). Peak
memory is the largest resident set size seen while each side ran, above what the
process held before it (the data itself). The recall of the approximate index is
measured afterwards, outside the timings, on a sample of nodes against an exact
search.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from typing import Any

import click
import numpy as np
import torch

from graphforge.neighbors import IndexParams, KNNIndex, ivf_training_sample, knn_recall
from graphforge.similarity.graph import similarity_graph

DATA_KINDS = ("clustered", "gaussian")


def make_embeddings(n: int, dim: int, kind: str = "clustered", seed: int = 0) -> torch.Tensor:
    """Synthetic float32 embeddings ``[n, dim]``.

    ``clustered``: a mixture of ``sqrt(n)`` Gaussian clusters (centres ~ N(0, 1), spread 0.5),
    the shape real embeddings tend to have; ``gaussian``: one isotropic Gaussian, the hardest
    case for approximate indexes.
    """
    g = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        return torch.randn(n, dim, generator=g)
    centres = torch.randn(max(1, int(n**0.5)), dim, generator=g)
    which = torch.randint(0, len(centres), (n,), generator=g)
    return centres[which].add_(torch.randn(n, dim, generator=g), alpha=0.5)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Largest resident set size seen while the block runs (sampled every 10 ms), minus the start."""

    def __init__(self) -> None:
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self) -> PeakMemory:  # noqa: PYI034
        gc.collect()
        self.start = self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def extra_mib(self) -> float:
        """Peak above the start, in MiB."""
        return (self.peak - self.start) / 2**20


def _raw_faiss(x: torch.Tensor, metric: str, k: int, params: IndexParams) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: build the same FAISS index and search every row's ``k + 1`` nearest."""
    import faiss

    data = np.ascontiguousarray(x.numpy())
    if metric == "cosine":
        data = data.copy()
        faiss.normalize_L2(data)
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    dim, n = data.shape[1], data.shape[0]
    if params.index == "flat":
        index = faiss.IndexFlat(dim, faiss_metric)
    elif params.index == "ivf":
        nlist = params.resolved_nlist(n)
        index = faiss.IndexIVFFlat(faiss.IndexFlat(dim, faiss_metric), dim, nlist, faiss_metric)
        index.cp.seed = params.seed
        index.train(ivf_training_sample(data, nlist, params.seed))  # the sample graphforge trains on
        index.nprobe = params.resolved_nprobe(nlist)
    else:
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss_metric)
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.resolved_ef_search(k + 1)
    index.add(data)
    return index.search(data, k + 1)


def run_similarity_benchmark(
    n: int = 1_000_000,
    dim: int = 128,
    k: int = 10,
    metric: str = "euclidean",
    index: str = "ivf",
    nlist: int | None = None,
    nprobe: int | None = None,
    data: str = "clustered",
    recall_sample: int = 1000,
    seed: int = 0,
    progress: Any = None,
) -> dict[str, Any]:
    """Time raw FAISS against graphforge's graph build on the same data and index.

    Returns:
        A dict of settings and figures (seconds, peak MiB, ratio, recall, edges).
    """
    say = progress or (lambda msg: None)
    say(f"making {n:,} x {dim} {data} embeddings")
    x = make_embeddings(n, dim, data, seed)
    params = IndexParams(index=index, nlist=nlist, nprobe=nprobe, seed=seed)
    out: dict[str, Any] = {"n": n, "dim": dim, "k": k, "metric": metric, "index": index, "data": data,
                           "threads": torch.get_num_threads()}
    if index == "ivf":
        out["nlist"] = params.resolved_nlist(n)
        out["nprobe"] = params.resolved_nprobe(out["nlist"])

    say("raw FAISS: build + search ...")
    with PeakMemory() as mem:
        start = time.perf_counter()
        _, raw_idx = _raw_faiss(x, metric, k, params)
        out["faiss_seconds"] = time.perf_counter() - start
    out["faiss_peak_mib"] = mem.extra_mib
    say(f"raw FAISS: {out['faiss_seconds']:.1f} s")

    say("graphforge similarity_graph: build + search + edges ...")
    with PeakMemory() as mem:
        start = time.perf_counter()
        graph = similarity_graph(x, metric=metric, mode="knn", k=k, index=params, recall_sample=0, seed=seed)
        out["graphforge_seconds"] = time.perf_counter() - start
    out["graphforge_peak_mib"] = mem.extra_mib
    out["edges"] = graph.stats["edges"]
    out["ratio"] = out["graphforge_seconds"] / out["faiss_seconds"]
    say(f"graphforge: {out['graphforge_seconds']:.1f} s")
    del graph
    gc.collect()

    if recall_sample and index != "flat":
        say(f"recall on {recall_sample} nodes against an exact search ...")
        rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:recall_sample]
        exact = KNNIndex(x, metric, backend="torch").search(x[rows], k + 1)[1]
        out["recall"] = knn_recall(torch.from_numpy(raw_idx)[rows], exact)
    out["input_mib"] = x.numel() * 4 / 2**20
    return out


def format_table(r: dict[str, Any]) -> str:
    """A readable summary of :func:`run_similarity_benchmark`'s result."""
    lines = [
        f"kNN graph: {r['n']:,} x {r['dim']} ({r['data']}), k={r['k']}, {r['metric']}, index {r['index']}"
        + (f" (nlist {r['nlist']}, nprobe {r['nprobe']})" if r["index"] == "ivf" else "")
        + f", {r['threads']} threads",
        f"{'':<22}{'seconds':>10}{'peak MiB':>12}",
        f"{'raw FAISS search':<22}{r['faiss_seconds']:>10.1f}{r['faiss_peak_mib']:>12.0f}",
        f"{'graphforge graph':<22}{r['graphforge_seconds']:>10.1f}{r['graphforge_peak_mib']:>12.0f}",
        (f"overhead: {r['ratio']:.2f}x the raw FAISS search (target <= 1.2x); {r['edges']:,} edges; "
         f"input {r['input_mib']:.0f} MiB"),
    ]
    if "recall" in r:
        lines.append(f"recall@{r['k'] + 1} of the index (both sides use it): {r['recall']:.4f}")
    return "\n".join(lines)


# --- sharded across processes (torch.distributed, gloo, one thread each) ---------------------
def _shard_worker(rank: int, world: int, port: int, n: int, dim: int, k: int, metric: str, data: str, seed: int,
                  queue: Any) -> None:
    import datetime
    import os
    import resource

    import torch.distributed as dist

    from graphforge.neighbors.sharded import shard_bounds, sharded_similarity_graph

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=600))
    try:
        start, stop = shard_bounds(n, world)[rank]
        x = make_embeddings(n, dim, data, seed)[start:stop].clone()  # this rank keeps only its shard
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        dist.barrier()
        t0 = time.perf_counter()
        part = sharded_similarity_graph(x, start, metric=metric, mode="knn", k=k)
        dist.barrier()
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        queue.put({"rank": rank, "seconds": seconds, "peak_mib": peak / 1024, "extra_mib": (peak - base) / 1024,
                   "edges": int(part["edge_index"].shape[1])})
    finally:
        dist.destroy_process_group()


def _run_shards(world: int, n: int, dim: int, k: int, metric: str, data: str, seed: int) -> list[dict[str, Any]]:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_shard_worker, args=(r, world, port, n, dim, k, metric, data, seed, queue))
             for r in range(world)]
    import queue as queue_module

    for proc in procs:
        proc.start()
    rows: list[dict[str, Any]] = []
    try:
        while len(rows) < world:
            try:
                rows.append(queue.get(timeout=1.0))
            except queue_module.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise click.ClickException(f"a benchmark process failed (exit code {dead[0]})") from None
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    return sorted(rows, key=lambda r: r["rank"])


def run_sharded_benchmark(n: int = 50_000, dim: int = 128, k: int = 10, metric: str = "euclidean",
                          shards: int = 2, data: str = "clustered", seed: int = 0,
                          progress: Any = None) -> dict[str, Any]:
    """The exact kNN graph of ``n`` rows in one process and sharded over ``shards`` processes
    (one thread each, gloo on localhost): time, peak memory per rank, scaling efficiency."""
    say = progress or (lambda msg: None)
    out: dict[str, Any] = {"n": n, "dim": dim, "k": k, "metric": metric, "data": data, "shards": shards}
    for world in dict.fromkeys((1, shards)):
        say(f"{world} process(es) ...")
        rows = _run_shards(world, n, dim, k, metric, data, seed)
        out[f"p{world}"] = {"seconds": max(r["seconds"] for r in rows), "ranks": rows,
                            "edges": sum(r["edges"] for r in rows)}
        say(f"{world} process(es): {out[f'p{world}']['seconds']:.1f} s")
    one, many = out["p1"]["seconds"], out[f"p{shards}"]["seconds"]
    out["speedup"] = one / many
    out["efficiency"] = one / (shards * many)
    out["same_edges"] = out["p1"]["edges"] == out[f"p{shards}"]["edges"]
    return out


def format_sharded(r: dict[str, Any]) -> str:
    """A readable summary of :func:`run_sharded_benchmark`'s result."""
    lines = [f"exact kNN graph: {r['n']:,} x {r['dim']} ({r['data']}), k={r['k']}, {r['metric']}; one thread per process",
             "| processes | seconds | peak MiB per rank (extra for the search) | edges |", "|---|---|---|---|"]
    for world in dict.fromkeys((1, r["shards"])):
        p = r[f"p{world}"]
        mem = ", ".join(f"{x['peak_mib']:.0f} ({x['extra_mib']:.0f})" for x in p["ranks"])
        lines.append(f"| {world} | {p['seconds']:.1f} | {mem} | {p['edges']:,} |")
    lines.append(f"speed-up {r['speedup']:.2f}x with {r['shards']} processes, scaling efficiency "
                 f"{100 * r['efficiency']:.0f} %; same edges: {r['same_edges']}")
    return "\n".join(lines)


@click.command("similarity")
@click.option("-n", "--nodes", "n", type=click.IntRange(min=2), default=1_000_000, show_default=True)
@click.option("-d", "--dim", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--metric", type=click.Choice(["euclidean", "cosine"]), default="euclidean", show_default=True)
@click.option("--index", type=click.Choice(["flat", "ivf", "hnsw"]), default="ivf", show_default=True,
              help="flat is exact but takes O(n^2 d): ~70 min for 1M x 128 on 2 cores.")
@click.option("--nlist", type=click.IntRange(min=1), help="IVF lists (default 4 sqrt(n)).")
@click.option("--nprobe", type=click.IntRange(min=1), help="IVF lists probed per query (default 32).")
@click.option("--data", type=click.Choice(DATA_KINDS), default="clustered", show_default=True)
@click.option("--recall-sample", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--shards", type=click.IntRange(min=2), default=None,
              help="Instead: the exact graph in one process and sharded over this many (torch.distributed, gloo).")
def similarity_command(n: int, dim: int, k: int, metric: str, index: str, nlist: int | None, nprobe: int | None,
                       data: str, recall_sample: int, seed: int, as_json: bool, shards: int | None) -> None:
    """Dataset-scale kNN graph: graphforge's overhead over the raw FAISS search, time and peak memory.

    With --shards P: the exact graph built in one process and sharded over P processes.
    """
    import json

    if k >= n:
        raise click.BadParameter(f"k={k} must be smaller than the number of nodes ({n})", param_hint="-k")
    if shards is not None:
        result = run_sharded_benchmark(n, dim, k, metric, shards, data, seed,
                                       progress=lambda msg: click.echo(msg, err=True))
        click.echo(json.dumps(result) if as_json else format_sharded(result))
        return
    result = run_similarity_benchmark(n, dim, k, metric, index, nlist, nprobe, data, min(recall_sample, n), seed,
                                      progress=lambda msg: click.echo(msg, err=True))
    click.echo(json.dumps(result) if as_json else format_table(result))
