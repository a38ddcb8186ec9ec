import pytest

import graphforge
from graphforge.errors import ConfigError
from graphforge.testing import SAMPLE_SPECS, check_registered, synthetic_input


def test_registered_through_the_entry_point():
    from graphforge.plugins import get_registry

    assert get_registry("model").get("dgcnn").plugin == "edgeconv"


def test_contract():
    check_registered("model", "dgcnn")


def test_dynamic_graph_is_rebuilt_in_feature_space(monkeypatch):
    import graphforge_edgeconv.model as m

    calls = []
    real = m.batched_knn

    def spy(x, ptr, k):
        calls.append((tuple(x.shape), k))
        return real(x, ptr, k)

    monkeypatch.setattr(m, "batched_knn", spy)
    net = graphforge.get_model("dgcnn", k=3, hidden=8, layers=3).build(SAMPLE_SPECS["graphs"], 4)
    net(synthetic_input(SAMPLE_SPECS["graphs"]))
    assert calls == [((26, 8), 3), ((26, 8), 3)]  # layers 2 and 3, on 8-wide features
    calls.clear()
    graphforge.get_model("dgcnn", dynamic=False).build(SAMPLE_SPECS["graphs"], 4)(synthetic_input(SAMPLE_SPECS["graphs"]))
    assert calls == []


def test_bad_options():
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        graphforge.get_model("dgcnn", k=0)
    with pytest.raises(ConfigError, match="takes \\['graphs'\\] input, but gets images"):
        graphforge.run("none", "dgcnn")


def test_trains_on_image_graphs(tmp_path):
    r = graphforge.run("dyn_knn", "dgcnn", epochs=5, batch_size=32, limit_train=400, limit_test=100, seed=0,
                       out=str(tmp_path / "r"), options={"model.k": 6, "hidden": 32, "emb": 64, "layers": 2})
    assert r.metrics["test_accuracy"] > 0.5  # 10 classes (measured: 0.73)
