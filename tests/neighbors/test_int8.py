"""The int8 candidate pass: grid detection, residual bounds, and answers identical to the fp32 pass.

Both paths run on any CPU (``GRAPHFORGE_KNN_INT8=on`` forces the int8 one where the CPU has
no VNNI: slower there, same answer), so every test here runs everywhere.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from graphforge.errors import ConfigError
from graphforge.neighbors import KNNClassifier, KNNIndex, SearchStats, int8, search
from graphforge.neighbors.int8 import GRID_TOLERANCE, Int8Database, detect_grid, int8_setting
from tests.real_data import real_data


def _bytes_images(n: int, d: int, seed: int, levels: int = 256) -> torch.Tensor:
    """Byte-valued rows scaled to [0, 1], smooth-ish so that neighbours are meaningful."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, levels, (max(1, n // 8), d), generator=g)
    rows = base[torch.randint(0, len(base), (n,), generator=g)]
    noise = torch.randint(-12, 13, (n, d), generator=g)
    return (rows + noise).clamp(0, levels - 1).float() / (levels - 1)


def _search(mode: str, x, q, k: int, metric: str = "euclidean", monkeypatch=None):
    monkeypatch.setenv(int8.INT8_ENV, mode)
    stats = SearchStats()
    d, i = KNNIndex(x, metric).search(q, k, stats=stats)
    return d, i, stats


def test_detects_the_grid_of_scaled_and_normalised_bytes():
    x = _bytes_images(500, 64, 0)
    grid = detect_grid(x)
    assert grid is not None and grid.low == 0.0 and grid.step == pytest.approx(1 / 255, rel=1e-6)
    z = (x - 0.2861) / 0.353  # one mean and std for every pixel: still a grid
    grid = detect_grid(z)
    assert grid is not None and grid.step == pytest.approx(1 / (255 * 0.353), rel=1e-5)
    assert Int8Database(z, grid).on_grid


@pytest.mark.parametrize(
    "x",
    [
        torch.rand(300, 20, generator=torch.Generator().manual_seed(1)),  # continuous values
        torch.full((10, 4), 0.5),  # one value
        torch.arange(600, dtype=torch.float32).reshape(30, 20),  # 600 levels
        torch.tensor([[0.0, 1.0, 1000.0]]),  # 3 values, but 1000 steps apart
        torch.empty(0, 5),
    ],
)
def test_no_grid(x):
    assert detect_grid(x) is None


def test_residuals_bound_the_distance_from_the_grid():
    x = _bytes_images(200, 30, 2)
    grid = detect_grid(x)
    db = Int8Database(x, grid)
    assert db.residual < 1e-3 * grid.step and db.on_grid
    levels, sq, res = db.quantize(x + 0.1 * grid.step)  # off the grid by a tenth of a step
    exact = (x + 0.1 * grid.step).double() - (grid.low + grid.step * (levels.double() + 128))
    assert torch.all(res >= exact.norm(dim=1))
    assert torch.all(res > GRID_TOLERANCE * grid.step)
    assert torch.equal(sq, levels.long().square().sum(1))
    far = db.quantize(torch.full((1, 30), 5.0))[2]  # outside the grid's range: clamped, large residual
    assert float(far[0]) > 1.0


@pytest.mark.parametrize("k", [1, 5, 40])
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
def test_same_answer_as_the_fp32_pass(monkeypatch, k, metric):
    x = _bytes_images(3000, 49, 3)
    q = _bytes_images(400, 49, 4)
    d0, i0, s0 = _search("off", x, q, k, metric, monkeypatch)
    d1, i1, s1 = _search("on", x, q, k, metric, monkeypatch)
    assert s0.int8_queries == 0 and s1.int8_queries > 0.9 * len(q)
    assert torch.equal(d0, d1) and torch.equal(i0, i1)


def test_exact_ties_and_duplicate_rows(monkeypatch):
    # Few levels and repeated rows: many exactly equal distances; ties go to the lower row.
    base = _bytes_images(50, 16, 5, levels=4)
    x = torch.cat([base, base, base])
    q = torch.cat([base[:20], _bytes_images(30, 16, 6, levels=4)])
    for k in (1, 3, 7, 60):
        d0, i0, _ = _search("off", x, q, k, "euclidean", monkeypatch)
        d1, i1, _ = _search("on", x, q, k, "euclidean", monkeypatch)
        assert torch.equal(d0, d1) and torch.equal(i0, i1)


def test_off_grid_queries_take_the_fp32_pass(monkeypatch):
    x = _bytes_images(1000, 25, 7)
    q = _bytes_images(60, 25, 8)
    q[:10] += 0.003  # not on the grid
    q[10:12] = 3.0  # outside its range
    d0, i0, _ = _search("off", x, q, 5, "euclidean", monkeypatch)
    d1, i1, s1 = _search("on", x, q, 5, "euclidean", monkeypatch)
    assert s1.int8_queries == 48
    assert torch.equal(d0, d1) and torch.equal(i0, i1)


def test_several_database_blocks(monkeypatch):
    monkeypatch.setattr(search, "DB_BLOCK_ROWS", 700)
    x = _bytes_images(2500, 36, 9)
    q = _bytes_images(90, 36, 10)
    d0, i0, _ = _search("off", x, q, 9, "euclidean", monkeypatch)
    d1, i1, s1 = _search("on", x, q, 9, "euclidean", monkeypatch)
    assert s1.int8_queries == len(q)
    assert torch.equal(d0, d1) and torch.equal(i0, i1)


def test_data_off_the_grid_keeps_the_fp32_pass(monkeypatch):
    x = torch.rand(500, 10, generator=torch.Generator().manual_seed(11))
    d0, i0, _ = _search("off", x, x[:50], 4, "euclidean", monkeypatch)
    d1, i1, s1 = _search("on", x, x[:50], 4, "euclidean", monkeypatch)
    assert s1.int8_queries == 0 and torch.equal(d0, d1) and torch.equal(i0, i1)


def test_only_euclidean_metrics_use_it(monkeypatch):
    x = _bytes_images(300, 12, 12)
    for metric in ("cosine", "cityblock", "ip"):
        _, _, stats = _search("on", x, x[:20], 3, metric, monkeypatch)
        assert stats.int8_queries == 0


def test_auto_follows_the_cpu_and_the_database_size(monkeypatch):
    x = _bytes_images(int8.AUTO_MIN_ROWS, 8, 13)
    monkeypatch.setattr(search, "cpu_int8_features", lambda: frozenset())
    assert _search("auto", x, x[:10], 2, "euclidean", monkeypatch)[2].int8_queries == 0
    monkeypatch.setattr(search, "cpu_int8_features", lambda: frozenset({"avx512_vnni"}))
    assert _search("auto", x, x[:10], 2, "euclidean", monkeypatch)[2].int8_queries == 10
    assert _search("auto", x[:100], x[:10], 2, "euclidean", monkeypatch)[2].int8_queries == 0  # too small


def test_bad_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(int8.INT8_ENV, "fast")
    with pytest.raises(ConfigError, match="GRAPHFORGE_KNN_INT8='fast' is not one of: auto, on, off"):
        int8_setting()


def test_cpu_features_are_a_subset_of_the_known_flags():
    assert int8.cpu_int8_features() <= {"avx512_vnni", "avx_vnni", "amx_int8"}


def test_real_mnist_predictions_identical(monkeypatch):
    raw = real_data("MNIST") / "MNIST" / "raw"

    def images(name: str) -> np.ndarray:
        with gzip.open(raw / name) as f:
            return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255.0

    def labels(name: str) -> np.ndarray:
        with gzip.open(raw / name) as f:
            return np.frombuffer(f.read(), np.uint8, offset=8)

    x, y = images("train-images-idx3-ubyte.gz")[:3000], labels("train-labels-idx1-ubyte.gz")[:3000]
    xt = images("t10k-images-idx3-ubyte.gz")[:500]
    preds = {}
    for mode in ("off", "on"):
        monkeypatch.setenv(int8.INT8_ENV, mode)
        preds[mode] = KNNClassifier(k=3).fit(x, y).predict(xt)
    assert np.array_equal(preds["off"], preds["on"])


def test_the_fp32_copy_is_built_only_when_a_query_needs_it(monkeypatch):
    monkeypatch.setenv(int8.INT8_ENV, "on")
    x = _bytes_images(1500, 30, 12)
    index = KNNIndex(x, "euclidean")
    stats = SearchStats()
    index.search(_bytes_images(40, 30, 13), 5, stats=stats)
    assert stats.int8_queries == 40
    assert index._prep._gemm_db is None  # the int8 pass answered every query
    off_grid = _bytes_images(5, 30, 14) + 0.003
    d1, i1 = index.search(off_grid, 5)
    assert index._prep._gemm_db is not None and index._prep.db is None  # built once, replacing the centred copy
    monkeypatch.setenv(int8.INT8_ENV, "off")
    d0, i0 = KNNIndex(x, "euclidean").search(off_grid, 5)
    assert torch.equal(d0, d1) and torch.equal(i0, i1)
