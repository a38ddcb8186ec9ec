"""graphforge.neighbors.KNNClassifier and exact_knn_search: scikit-learn parity, exact ties,
zero distances, sweeps, sparse input, errors."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from graphforge.errors import ConfigError, DataError
from graphforge.neighbors import KNNClassifier, KNNIndex, SearchStats, exact_knn_search, neighbor_weights

SK_METRIC = {"euclidean": "euclidean", "cosine": "cosine", "cityblock": "manhattan"}


def _problem(seed=0, n=600, m=200, d=24, classes=5):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((m, d)).astype(np.float32)
    y = rng.integers(0, classes, n)
    return x, q, y


def _tied_rows(sk_dist, rtol=1e-6):
    """Queries whose k-th and (k+1)-th neighbour distances are (near) equal: a tie decides."""
    kth, nxt = sk_dist[:, -2], sk_dist[:, -1]
    return np.isclose(kth, nxt, rtol=rtol, atol=1e-9)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "cityblock"])
@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_search_matches_sklearn_brute(metric, backend):
    x, q, _ = _problem(seed=1)
    k = 7
    dist, idx = exact_knn_search(x, q, k, metric, backend=backend)
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric=SK_METRIC[metric]).fit(x)
    sk_dist, sk_idx = nn.kneighbors(q)
    ok = ~_tied_rows(sk_dist)
    assert ok.mean() > 0.95
    # Same neighbour sets (order inside near-equal distances aside) and same distances.
    for row in np.flatnonzero(ok):
        assert set(idx[row].tolist()) == set(sk_idx[row, :k].tolist())
    np.testing.assert_allclose(dist.numpy(), sk_dist[:, :k], rtol=1e-5, atol=1e-5)
    assert bool((dist[:, 1:] >= dist[:, :-1]).all()), "distances must be sorted ascending"


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "cityblock"])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_classifier_predictions_match_sklearn(metric, weights):
    x, q, y = _problem(seed=2)
    k = 5
    ours = KNNClassifier(k=k, metric=metric, weights=weights).fit(x, y)
    sk = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric=SK_METRIC[metric], weights=weights).fit(x, y)
    sk_dist, _ = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric=SK_METRIC[metric]).fit(x).kneighbors(q)
    ok = ~_tied_rows(sk_dist)
    pred = ours.predict(q)
    np.testing.assert_array_equal(pred[ok], sk.predict(q)[ok])
    # scikit-learn computes cosine distances in float32, graphforge re-ranks in float64.
    np.testing.assert_allclose(ours.predict_proba(q).numpy()[ok], sk.predict_proba(q)[ok], atol=1e-5)
    y_q = np.random.default_rng(9).integers(0, 5, len(q))
    assert ours.score(q, y_q) == pytest.approx(sk.score(q, y_q), abs=(~ok).sum() / len(q) + 1e-12)


def test_distance_ties_break_by_training_index():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [3.0, 3.0]], dtype=np.float32)
    q = np.zeros((1, 2), dtype=np.float32)
    dist, idx = exact_knn_search(x, q, 3)
    assert idx.tolist() == [[0, 1, 2]]
    assert dist.tolist() == [[1.0, 1.0, 1.0]]
    # With the candidate pass narrower than the tie, the certificate falls back and stays exact.
    stats = SearchStats()
    many = np.repeat(x[:4], 20, axis=0)  # 80 rows, all at distance 1
    d2, i2 = exact_knn_search(many, q, 5, margin=1, stats=stats)
    assert i2.tolist() == [[0, 1, 2, 3, 4]]
    assert stats.fallback_queries == 1


def _reference(x, q, k, metric):
    """float64 brute force, ties by index (np.lexsort is stable)."""
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "euclidean":
        d = np.sqrt(((q64[:, None, :] - x64[None]) ** 2).sum(-1))
    elif metric == "cityblock":
        d = np.abs(q64[:, None, :] - x64[None]).sum(-1)
    else:
        xn = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        qn = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
        d = 1.0 - qn @ xn.T
    order = np.array([np.lexsort((np.arange(len(x)), row))[:k] for row in d])
    return np.take_along_axis(d, order, 1), order


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "cityblock"])
def test_exact_with_duplicate_rows_and_small_integer_data(metric):
    # Small integers make many exact distance ties, and duplicated rows tie at every
    # distance: the certificate must send these through the exact paths.
    rng = np.random.default_rng(7)
    base = rng.integers(1, 4, (60, 6)).astype(np.float32)
    x = np.concatenate([base, base[:30], base[:10]])
    q = rng.integers(1, 4, (40, 6)).astype(np.float32)
    for k in (1, 4, 11):
        dist, idx = exact_knn_search(x, q, k, metric)
        ref_d, ref_i = _reference(x, q, k, metric)
        np.testing.assert_allclose(dist.numpy(), ref_d, rtol=1e-12, atol=1e-12)
        if metric != "cosine":  # cosine's float64 rounding may split ties the reference keeps
            np.testing.assert_array_equal(idx.numpy(), ref_i)


def test_exact_match_gets_all_the_weight_with_distance_weights():
    x = np.array([[0.0], [1.0], [1.1]], dtype=np.float32)
    clf = KNNClassifier(k=3, weights="distance").fit(x, [0, 1, 1])
    assert clf.predict_proba(np.array([[0.0]], dtype=np.float32)).tolist() == [[1.0, 0.0]]
    assert clf.predict(np.array([[0.0]], dtype=np.float32)).tolist() == [0]


def test_vote_ties_go_to_the_smallest_class():
    x = np.array([[-1.0], [1.0]], dtype=np.float32)
    clf = KNNClassifier(k=2).fit(x, ["b", "a"])
    assert clf.predict(np.zeros((1, 1), dtype=np.float32)).tolist() == ["a"]


def test_sweep_equals_separate_runs():
    x, q, y = _problem(seed=3, n=400, m=150)
    ks = [1, 3, 5, 9, 50]
    clf = KNNClassifier(k=1).fit(x, y)
    swept = clf.predict_proba_sweep(q, ks)
    assert sorted(swept) == ks
    for k in ks:
        separate = KNNClassifier(k=k).fit(x, y).predict_proba(q)
        assert torch.equal(swept[k], separate), k


def test_neighbours_of_smaller_k_are_a_prefix():
    x, q, _ = _problem(seed=4)
    _, big = exact_knn_search(x, q, 20)
    _, small = exact_knn_search(x, q, 6)
    assert torch.equal(big[:, :6], small)


def test_large_blocks_and_small_batches_agree():
    x, q, _ = _problem(seed=5, n=1000, m=97)
    d1, i1 = exact_knn_search(x, q, 4)
    d2, i2 = exact_knn_search(torch.from_numpy(x), torch.from_numpy(q), 4, batch_size=10)
    assert torch.equal(i1, i2)
    assert torch.equal(d1, d2)


def test_clear_errors():
    x, q, y = _problem(n=20, m=5)
    with pytest.raises(ConfigError, match="k=21 is larger than the training set \\(20 samples\\)"):
        KNNClassifier(k=21).fit(x, y).predict(q)
    with pytest.raises(ConfigError, match="k must be an integer >= 1, got 0"):
        KNNClassifier(k=0)
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        exact_knn_search(x, q, -1)
    with pytest.raises(DataError, match="feature size mismatch: fitted on 24 features per sample, got 23"):
        KNNClassifier(k=3).fit(x, y).predict(q[:, :23])
    with pytest.raises(DataError, match="feature size mismatch"):
        exact_knn_search(x, q[:, :3], 2)
    bad = x.copy()
    bad[3, 4] = np.nan
    with pytest.raises(DataError, match="NaN"):
        KNNClassifier(k=3).fit(bad, y)
    with pytest.raises(ConfigError, match="unknown metric 'hamming'"):
        KNNClassifier(metric="hamming")
    with pytest.raises(ConfigError, match="weights must be one of uniform, distance"):
        KNNClassifier(weights="gaussian")
    with pytest.raises(DataError, match="one label per sample"):
        KNNClassifier(k=3).fit(x, y).score(q, y)
    with pytest.raises(ConfigError, match="not fitted"):
        KNNClassifier().predict(q)
    with pytest.raises(DataError, match="numeric array"):
        KNNClassifier(k=1).fit([["a", "b"]], [0])


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "chord", "cityblock", "linf", "sqeuclidean"])
def test_training_set_predicts_itself_with_distance_weights(metric):
    """A query equal to a training row is an exact match: it takes all the weight (scikit-learn's
    rule), so predicting the training set is perfect when no two equal rows disagree. Cosine used
    to give -2.2e-16 for [1, 1, 1] against itself, a weight of -4.5e15 and 0.80 on iris."""
    from sklearn.datasets import load_digits, load_iris

    for x, y in (load_iris(return_X_y=True), load_digits(return_X_y=True)):
        _, first = np.unique(x, axis=0, return_index=True)
        x, y = x[np.sort(first)], y[np.sort(first)]
        clf = KNNClassifier(k=5, metric=metric, weights="distance").fit(x, y)
        proba = clf.predict_proba(x)
        assert float(proba.min()) >= 0 and float(proba.max()) <= 1
        torch.testing.assert_close(proba.sum(1), torch.ones(len(x), dtype=torch.float64))
        assert clf.score(x, y) == 1.0


def test_cosine_distance_of_a_row_to_itself_is_zero_not_negative():
    dist, idx = KNNIndex([[1.0, 1.0, 1.0]], "cosine").search([[1.0, 1.0, 1.0]], 1)
    assert float(dist) == 0.0 and int(idx) == 0
    x = torch.randn(50, 7, dtype=torch.float64).float()
    dist, _ = KNNIndex(x, "cosine").search(x * 3, 5)
    assert float(dist.min()) >= 0.0 and float(dist.max()) <= 2.0


def test_weights_are_finite_for_tiny_and_zero_distances():
    d = torch.tensor([[0.0, 1e-320, 2.0], [1e-310, 3.0, 4.0], [1.0, 2.0, 4.0]], dtype=torch.float64)
    w = neighbor_weights(d, "distance")
    assert torch.isfinite(w).all() and float(w.min()) >= 0
    assert w[0].tolist() == [1.0, 1.0, 0.0]  # both exact matches share the vote
    assert w[1].tolist() == [1.0, 0.0, 0.0]  # 1 / 1e-310 overflows: an exact match
    torch.testing.assert_close(w[2], torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64))


def test_scipy_sparse_input_is_accepted():
    import scipy.sparse as sp

    x, q, y = _problem(n=80, m=20, d=10)
    x[x < 0.5] = 0
    q[q < 0.5] = 0
    dense = KNNClassifier(k=3).fit(x, y).predict(q)
    sparse = KNNClassifier(k=3).fit(sp.csr_matrix(x), y).predict(sp.csr_matrix(q))
    assert (dense == sparse).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "cityblock"])
def test_cuda_search_equals_cpu_search(metric):
    x, q, _ = _problem(seed=11, n=3000, m=300, d=40)
    d_cpu, i_cpu = exact_knn_search(x, q, 9, metric, device="cpu")
    d_gpu, i_gpu = exact_knn_search(x, q, 9, metric, device="cuda")
    assert torch.equal(i_cpu, i_gpu)
    torch.testing.assert_close(d_cpu, d_gpu)
