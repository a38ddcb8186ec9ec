"""The SOM trainer: training reduces the error, maps unfold, seeds, schedules, bad options."""

import math
from itertools import pairwise

import pytest
import torch

from graphforge.errors import ConfigError, DataError
from graphforge.som import SelfOrganizingMap, neighborhood
from graphforge.som.som import decay_value


def _blobs(n_per=40, dim=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 4
    y = torch.arange(classes).repeat_interleave(n_per)
    return centres[y] + torch.randn(len(y), dim, generator=g), y


@pytest.fixture(scope="module")
def uniform2d():
    return torch.rand(1500, 2, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("mode", ["batch", "online"])
@pytest.mark.parametrize("topology", ["rect", "hex"])
@pytest.mark.parametrize("neighborhood_kind", ["gaussian", "bubble"])
def test_quantization_error_falls(mode, topology, neighborhood_kind):
    x, y = _blobs()
    som = SelfOrganizingMap(5, 6, topology=topology, neighborhood=neighborhood_kind, mode=mode, batch_size=32, seed=0)
    initial = som.initialize(x, torch.Generator().manual_seed(0))  # fit starts from this same map
    qe_initial = float((x - initial[torch.cdist(x, initial).argmin(1)]).norm(dim=1).mean())
    history = som.fit(x, epochs=10, y=y)
    qe = [h["quantization_error"] for h in history]
    assert len(history) == 10 and all(math.isfinite(v) for v in qe)
    assert qe[-1] < 0.9 * qe[0] and qe[-1] < 0.9 * qe_initial
    assert som.quantization_error(x) == pytest.approx(qe[-1], rel=1e-5)
    for row in history:
        assert 0.0 <= row["topographic_error"] <= 1.0 and 0.0 <= row["label_accuracy"] <= 1.0
    assert history[-1]["label_accuracy"] == 1.0  # three well-separated blobs


@pytest.mark.parametrize("mode", ["batch", "online"])
@pytest.mark.parametrize("topology", ["rect", "hex"])
def test_mexican_hat_trains_a_finite_clustering_map(mode, topology):
    """The signed kernel sharpens borders rather than minimising the quantization error
    (docs/som.md), but the map stays finite and still separates the classes."""
    x, y = _blobs()
    som = SelfOrganizingMap(5, 6, topology=topology, neighborhood="mexican_hat", mode=mode, batch_size=32, seed=0)
    history = som.fit(x, epochs=10, y=y)
    assert all(math.isfinite(h["quantization_error"]) for h in history)
    assert torch.isfinite(som.weights).all()
    assert history[-1]["label_accuracy"] >= 0.9


@pytest.mark.parametrize("mode", ["batch", "online"])
def test_quantization_error_falls_every_epoch_with_gaussian(mode):
    x, _ = _blobs()
    qe = [h["quantization_error"] for h in SelfOrganizingMap(6, 6, mode=mode, batch_size=16).fit(x, 10)]
    assert all(b <= a + 1e-4 for a, b in pairwise(qe)), qe


@pytest.mark.parametrize("mode", ["batch", "online"])
@pytest.mark.parametrize("topology", ["rect", "hex"])
@pytest.mark.parametrize("init", ["pca", "random"])
def test_map_unfolds_on_uniform_square(uniform2d, mode, topology, init):
    som = SelfOrganizingMap(8, 8, topology=topology, mode=mode, init=init, seed=1)
    som.fit(uniform2d, epochs=12)
    assert som.topographic_error(uniform2d) < 0.05
    # An unfolded 8x8 map spreads over the square: about 1/8 per cell, so neighbours are
    # close in input space and every neuron wins some samples.
    assert som.quantization_error(uniform2d) < 0.08
    assert float(som.edge_distances().max()) < 0.35
    assert int((som.hits(uniform2d) == 0).sum()) <= 2
    w = som.weights
    assert float(w.min()) > -0.05 and float(w.max()) < 1.05
    assert float(w[:, 0].max() - w[:, 0].min()) > 0.7 and float(w[:, 1].max() - w[:, 1].min()) > 0.7


def test_folded_random_map_has_large_topographic_error(uniform2d):
    """The measure can fail: a map with shuffled weights is not topology preserving."""
    som = SelfOrganizingMap(8, 8, seed=1)
    som.fit(uniform2d, epochs=12)
    som.weights = som.weights[torch.randperm(64, generator=torch.Generator().manual_seed(0))]
    assert som.topographic_error(uniform2d) > 0.5


@pytest.mark.parametrize("mode, init", [("batch", "pca"), ("batch", "random"), ("online", "pca"), ("online", "random")])
def test_same_seed_same_map(mode, init):
    x, y = _blobs()
    a = SelfOrganizingMap(4, 5, mode=mode, init=init, seed=7, batch_size=16)
    b = SelfOrganizingMap(4, 5, mode=mode, init=init, seed=7, batch_size=16)
    ha, hb = a.fit(x, 5, y), b.fit(x, 5, y)
    assert torch.equal(a.weights, b.weights)
    assert ha == hb
    if mode == "online" or init == "random":  # PCA-initialised batch training uses no randomness on small data
        c = SelfOrganizingMap(4, 5, mode=mode, init=init, seed=8, batch_size=16)
        c.fit(x, 5, y)
        assert not torch.equal(a.weights, c.weights)


def test_bmu_matches_brute_force_and_label_map_counts():
    x, y = _blobs(n_per=30)
    som = SelfOrganizingMap(4, 4, seed=0)
    history = som.fit(x, 5, y)
    assert torch.equal(som.bmu(x), torch.cdist(x.to(som.weights.dtype), som.weights).argmin(1))
    labels, counts = som.label_map(x, y)
    assert counts.shape == (16, 3) and int(counts.sum()) == len(x)
    assert torch.equal(counts.sum(1), som.hits(x))
    assert ((labels == -1) == (counts.sum(1) == 0)).all()
    majority_correct = float((labels[som.bmu(x)] == y).float().mean())
    assert history[-1]["label_accuracy"] == pytest.approx(majority_correct)
    assert majority_correct > 0.9  # well-separated blobs: every neuron is pure


def test_u_matrix_is_mean_neighbour_distance():
    x, _ = _blobs()
    som = SelfOrganizingMap(3, 4, seed=0)
    som.fit(x, 3)
    u = som.u_matrix()
    w = som.weights
    assert u.shape == (3, 4)
    corner = (torch.dist(w[0], w[1]) + torch.dist(w[0], w[4])) / 2  # 4-neighbour: right and below
    assert float(u[0, 0]) == pytest.approx(float(corner), rel=1e-5)


def test_neighbourhood_functions():
    d2 = torch.tensor([0.0, 1.0, 4.0, 9.0])
    g = neighborhood("gaussian", d2, 2.0)
    assert torch.allclose(g, torch.exp(-d2 / 8))
    assert neighborhood("bubble", d2, 2.0).tolist() == [1.0, 1.0, 1.0, 0.0]
    mh = neighborhood("mexican_hat", d2, 2.0)
    assert mh[0] == 1 and mh[2].abs() < 1e-6 and mh[3] < 0  # zero crossing at d = sigma


@pytest.mark.parametrize("decay", ["exponential", "linear"])
def test_schedules_go_from_start_to_end(decay):
    values = [decay_value(5.0, 0.5, t, 10, decay) for t in range(10)]
    assert values[0] == pytest.approx(5.0) and values[-1] == pytest.approx(0.5)
    assert all(b < a for a, b in pairwise(values))
    if decay == "linear":
        assert values[1] - values[0] == pytest.approx(values[2] - values[1])
    else:
        assert values[1] / values[0] == pytest.approx(values[2] / values[1])


def test_online_history_reports_decayed_rate_and_radius():
    x, _ = _blobs()
    h = SelfOrganizingMap(4, 4, mode="online", sigma=3.0, lr=0.5, decay="linear", batch_size=30).fit(x, 3)
    assert h[-1]["sigma"] == pytest.approx(0.5) and h[-1]["lr"] == pytest.approx(0.01)
    assert h[0]["sigma"] > h[1]["sigma"] > h[2]["sigma"]


@pytest.mark.parametrize("kwargs, match", [
    ({"rows": 0, "cols": 0}, "rows must be an integer >= 1"),
    ({"sigma": 0}, "sigma must be a number > 0"),
    ({"sigma": -1.5}, "sigma must be a number > 0"),
    ({"sigma": float("nan")}, "sigma"),
    ({"lr": 0}, "lr must be a number > 0"),
    ({"lr": 2.0}, r"lr must be in \(0, 1\]"),
    ({"neighborhood": "cone"}, "neighborhood must be one of gaussian, bubble, mexican_hat"),
    ({"decay": "step"}, "decay must be one of"),
    ({"mode": "sequential"}, "mode must be one of batch, online"),
    ({"init": "zeros"}, "init must be one of pca, random"),
    ({"batch_size": 0}, "batch_size"),
    ({"topology": "tri"}, "topology"),
])
def test_bad_options_are_clear_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SelfOrganizingMap(**kwargs)


def test_bad_data_and_use_before_fit():
    som = SelfOrganizingMap(3, 3)
    with pytest.raises(ConfigError, match="not trained yet"):
        som.bmu(torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="epochs"):
        som.fit(torch.zeros(5, 2), epochs=0)
    with pytest.raises(DataError, match="NaN"):
        som.fit(torch.full((5, 2), float("nan")), epochs=1)
    som.fit(torch.rand(10, 4), epochs=1)
    with pytest.raises(DataError, match="4 features per neuron"):
        som.bmu(torch.zeros(2, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x, y = _blobs()
    cpu = SelfOrganizingMap(5, 5, seed=0)
    gpu = SelfOrganizingMap(5, 5, seed=0, device="cuda")
    cpu.fit(x, 5, y)
    gpu.fit(x, 5, y)
    assert torch.allclose(cpu.weights, gpu.weights.cpu(), atol=1e-3)
    assert torch.equal(cpu.bmu(x), gpu.bmu(x).cpu())


def test_online_single_sample_step_is_kohonens_rule_for_the_bmu():
    """batch_size=1: the BMU moves lr of the way to the sample; a neighbour 1 - (1 - lr)^h."""
    som = SelfOrganizingMap(1, 3, sigma=1.0, neighborhood="gaussian", mode="online", batch_size=1, dtype="float32")
    w = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    x = torch.tensor([[0.0, 1.0]])
    h = neighborhood("gaussian", som._grid_sq, 1.0)
    updated = w.clone()
    som._step_towards(updated, x, torch.tensor([0]), h, 0.3)
    assert torch.allclose(updated[0], w[0] + 0.3 * (x[0] - w[0]))
    h01 = math.exp(-0.5)
    assert torch.allclose(updated[1], w[1] + (1 - 0.7**h01) * (x[0] - w[1]))


@pytest.mark.parametrize("n", [4, 40])  # fewer samples than neurons (gathered weights) and more (sums)
def test_batch_step_is_the_neighbourhood_weighted_mean(n):
    som = SelfOrganizingMap(2, 3, sigma=1.5, dtype="float32")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    w = torch.randn(6, 3, generator=g)
    bmus = torch.cdist(x, w).argmin(1)
    h = neighborhood("gaussian", som._grid_sq, 1.5)
    hs = h[:, bmus]  # [neurons, samples]
    expected = (hs @ x) / hs.sum(1, keepdim=True)
    som._step_towards(w, x, bmus, h, None)
    assert torch.allclose(w, expected, atol=1e-5)


def test_dtype_float64_by_default_float32_on_request_and_bad_values_refused():
    x, _ = _blobs(n_per=20)
    som = SelfOrganizingMap(3, 3, seed=0)
    som.fit(x, 3)
    assert som.dtype is torch.float64 and som.weights.dtype is torch.float64
    assert som.bmu(x).dtype is torch.long
    single = SelfOrganizingMap(3, 3, seed=0, dtype="float32")
    single.fit(x, 3)
    assert single.weights.dtype is torch.float32
    # the same map up to float32 rounding on well-separated blobs
    assert torch.equal(single.bmu(x), som.bmu(x))
    assert torch.allclose(single.weights.double(), som.weights, atol=1e-4)
    assert SelfOrganizingMap(2, 2, dtype=torch.float32).dtype is torch.float32
    for bad in ("float16", "double", 64, None):
        with pytest.raises(ConfigError, match="dtype must be one of float64, float32"):
            SelfOrganizingMap(2, 2, dtype=bad)


def test_float64_map_is_the_same_at_any_thread_count():
    """Rounding must not depend on how a matrix product splits its sums over threads."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3000, 196, generator=g)
    maps = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            som = SelfOrganizingMap(12, 12, seed=1)
            som.fit(x, 8, track=False)
            maps.append(som.weights)
    finally:
        torch.set_num_threads(before)
    # float32 drifts here by 0.2 between 1 and 2 threads (a neuron won by other samples);
    # float64 keeps the last-bit differences of the sums from growing
    assert (maps[0] - maps[1]).abs().max() < 1e-12


def test_state_dict_round_trip_keeps_the_map_dtype():
    x, _ = _blobs(n_per=10)
    som = SelfOrganizingMap(2, 3, seed=0)
    som.fit(x, 2)
    single = SelfOrganizingMap(2, 3, dtype="float32")
    single.load_state_dict(som.state_dict())
    assert single.weights.dtype is torch.float32
    again = SelfOrganizingMap(2, 3)
    again.load_state_dict(single.state_dict())
    assert again.weights.dtype is torch.float64 and torch.equal(again.bmu(x), som.bmu(x))
