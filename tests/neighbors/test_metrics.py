"""graphforge.neighbors.metrics: one vocabulary of metrics, used by every part of graphforge."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from graphforge.errors import ConfigError
from graphforge.neighbors import METRIC_ALIASES, Metric, canonical_metric, get_metric, list_metrics

SCIPY_NAME = {"euclidean": "euclidean", "sqeuclidean": "sqeuclidean", "cosine": "cosine",
              "cityblock": "cityblock", "linf": "chebyshev"}
ALIASES = {"l2": "euclidean", "euclidean": "euclidean", "l1": "cityblock", "manhattan": "cityblock",
           "cityblock": "cityblock", "linf": "linf", "chebyshev": "linf", "cosine": "cosine", "chord": "chord",
           "ip": "ip", "inner_product": "ip", "dot": "ip", "sqeuclidean": "sqeuclidean", "max": "linf"}


def test_every_alias_resolves_to_one_metric_object():
    for alias, name in ALIASES.items():
        found = get_metric(alias)
        assert isinstance(found, Metric) and found.name == name
        assert get_metric(alias.upper()) is found
        assert canonical_metric(alias) == name
        assert METRIC_ALIASES[alias] == name
    assert get_metric(get_metric("l2")) is get_metric("euclidean")
    assert {m.name for m in list_metrics()} == set(METRIC_ALIASES.values())


def test_unknown_or_unsupported_metric_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"unknown metric 'hamming'; choose one of: euclidean, .*\(aliases: "):
        get_metric("hamming")
    with pytest.raises(ConfigError, match="metric 'chord' is not supported here; choose one of: euclidean, cosine"):
        get_metric("chord", ("euclidean", "cosine"))


@pytest.mark.parametrize("name", sorted(SCIPY_NAME))
def test_exact_distances_match_scipy(name):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((9, 6)), rng.standard_normal((7, 6))
    ours = get_metric(name).pairwise(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(ours, cdist(a, b, SCIPY_NAME[name]), rtol=1e-12, atol=1e-12)


def test_chord_and_ip_and_zero_rows():
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[6.0, 8.0], [0.0, 2.0]], dtype=torch.float64)
    chord = get_metric("chord").pairwise(a, b)
    assert float(chord[0, 0]) == 0.0  # same direction
    assert float(chord[1, 1]) == pytest.approx(1.0)  # the zero row stays at the origin
    torch.testing.assert_close(get_metric("ip").pairwise(a, b), -(a @ b.T))
    cos = get_metric("cosine").pairwise(a, b)
    assert float(cos[1, 0]) == 1.0  # a zero vector has similarity 0 to everything (scikit-learn)


def test_every_distance_is_clamped_to_its_range():
    same = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    for name in ("cosine", "chord", "euclidean", "cityblock", "linf", "sqeuclidean"):
        m = get_metric(name)
        d = m.pairwise(same, same)
        assert float(d) == 0.0, name
        assert m.lower <= float(d) <= m.upper
    opposite = get_metric("cosine").pairwise(same, -same)
    assert float(opposite) == 2.0
    sim = get_metric("cosine").score(get_metric("cosine").pairwise(same, same * 7))
    assert float(sim) == 1.0  # never 1.0000000000000002


def test_scores_and_radii_are_inverse():
    for m in list_metrics():
        d = torch.tensor([0.25, 1.5], dtype=torch.float64)
        s = m.score(d)
        assert m.passes(s, float(m.score(torch.tensor(1.5, dtype=torch.float64)))).all()
        assert m.radius(float(s[0])) == pytest.approx(0.25)
    assert get_metric("cosine").similarity and get_metric("ip").similarity
    assert not get_metric("ip").nonnegative and get_metric("chord").nonnegative
    assert math.isinf(get_metric("ip").lower)


def test_the_same_names_work_in_every_part_of_graphforge():
    """``-o metric=euclidean`` used to work for similarity and fail for dyn_knn (which said l2)."""
    import graphforge
    from graphforge.neighbors import KNNClassifier, KNNIndex
    from graphforge.ops import batched_knn
    from graphforge.similarity import similarity_graph
    from graphforge.similarity.scores import score_distributions
    from graphforge.som import SelfOrganizingMap

    x = torch.randn(40, 5)
    y = torch.arange(40) % 3
    for alias in ("l2", "euclidean", "l1", "manhattan", "cityblock", "chebyshev", "linf", "cosine", "ip"):
        name = canonical_metric(alias)
        ei, dist = batched_knn(x, None, 3, metric=alias)
        ei_c, dist_c = batched_knn(x, None, 3, metric=name)
        assert torch.equal(ei, ei_c) and torch.equal(dist, dist_c)
        assert graphforge.get_converter("dyn_knn", metric=alias).metric == name
        assert KNNIndex(x, alias).metric == name
        assert KNNClassifier(3, metric=alias).fit(x, y).metric == name
        assert graphforge.get_model("knn", metric=alias).metric == name
        graph = similarity_graph(x, metric=alias, mode="knn", k=3)
        assert graph.stats["metric"] == name
        assert list(score_distributions(x, y, torch.ones(40, dtype=torch.bool), metrics=[alias])) == [name]
        som = SelfOrganizingMap(3, 3, metric=alias, seed=0)
        som.fit(x, epochs=2)
        assert som.metric == name and math.isfinite(som.quantization_error(x))
    with pytest.raises(ConfigError, match="not supported by batched_knn"):
        batched_knn(x, None, 3, metric="chord")
    with pytest.raises(ConfigError, match="metric 'chord' is not supported by dyn_knn"):
        graphforge.get_converter("dyn_knn", metric="chord")


def test_som_metric_picks_the_nearest_unit_in_that_metric():
    from graphforge.som import SelfOrganizingMap

    x = torch.randn(200, 6)
    for name in ("cityblock", "linf", "cosine"):
        som = SelfOrganizingMap(4, 4, metric=name, seed=1)
        som.fit(x, epochs=3)
        brute = get_metric(name).pairwise(x.double(), som.weights.double()).argmin(1)
        assert torch.equal(som.bmu(x).cpu(), brute)


def test_importing_neighbors_loads_no_engine_plugin_config_or_cli_code():
    code = (
        "import sys\n"
        "import graphforge.neighbors as n\n"
        "from graphforge.neighbors import KNNIndex, KNNClassifier, exact_knn_search, get_metric\n"
        "KNNClassifier(3).fit([[0.0], [1.0], [2.0]], [0, 1, 1]).predict([[1.4]])\n"
        "layers = ('engine', 'plugins', 'config', 'cli', 'builtin', 'registry', 'api', 'core', 'hookspecs',\n"
        "          'similarity', 'som', 'bench')\n"
        "bad = sorted(m for m in sys.modules if m.startswith('graphforge.') and m.split('.')[1] in layers)\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
