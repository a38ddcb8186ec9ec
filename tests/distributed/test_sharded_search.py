"""Sharded dataset-scale search on torch.distributed (gloo, 2 processes on localhost): the
merged kNN lists, range results and similarity graphs equal the single-process ones exactly."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from graphforge.neighbors import KNNIndex
from graphforge.neighbors.sharded import ShardedIndex, shard_bounds, sharded_similarity_graph
from graphforge.similarity import similarity_graph

WORLD = 2
CASES = [("cosine", "knn", True), ("euclidean", "knn", False), ("cityblock", "mutual", True),
         ("linf", "knn", True), ("euclidean", "threshold", True), ("cosine", "threshold", True), ("ip", "knn", True)]


def _points() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.round(torch.randn(157, 5, generator=g) * 2) / 2  # coarse: many exact ties
    x[7] = x[3]  # a duplicate row
    x[11] = 0  # a zero row
    return x


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import datetime

    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    torch.set_num_threads(1)
    try:
        x = _points()
        start, stop = shard_bounds(len(x), WORLD)[rank]
        index = ShardedIndex(x[start:stop], start, "euclidean")
        d, i = index.search(x[start:stop], 6, block=17)  # small blocks: several broadcasts per owner
        qi, ri, rd = index.range_search(x[start:stop], 1.5, block=23)
        graphs = {}
        for metric, mode, symmetric in CASES:
            threshold = {"euclidean": 1.2, "cosine": 0.8}.get(metric) if mode == "threshold" else None
            graphs[(metric, mode, symmetric)] = sharded_similarity_graph(
                x[start:stop], start, metric=metric, mode=mode, k=4, threshold=threshold, symmetric=symmetric,
                block=19)
        torch.save({"knn": (d, i), "range": (qi + start, ri, rd), "graphs": graphs}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded")
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, str(out))) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    for p in procs:
        if p.is_alive():
            p.kill()
            pytest.fail("a worker hung")
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_sharded_knn_equals_one_process(results):
    x = _points()
    d, i = KNNIndex(x, "euclidean").search(x, 6)
    got_d = torch.cat([r["knn"][0] for r in results])
    got_i = torch.cat([r["knn"][1] for r in results])
    assert torch.equal(got_i, i) and torch.equal(got_d, d)


def test_sharded_range_search_equals_one_process(results):
    x = _points()
    qi, ri, rd = KNNIndex(x, "euclidean").range_search(x, 1.5)
    got = [torch.cat([r["range"][j] for r in results]) for j in range(3)]
    assert torch.equal(got[0], qi) and torch.equal(got[1], ri) and torch.equal(got[2], rd)


@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_sharded_similarity_graph_equals_one_process(results, case):
    metric, mode, symmetric = case
    threshold = {"euclidean": 1.2, "cosine": 0.8}.get(metric) if mode == "threshold" else None
    ref = similarity_graph(_points(), metric=metric, mode=mode, k=4, threshold=threshold, symmetric=symmetric,
                           weight="none")
    parts = [r["graphs"][case] for r in results]
    edge_index = torch.cat([p["edge_index"] for p in parts], 1)
    assert torch.equal(edge_index, ref.edge_index), case
    torch.testing.assert_close(torch.cat([p["score"] for p in parts]), ref.score, rtol=0, atol=0)
