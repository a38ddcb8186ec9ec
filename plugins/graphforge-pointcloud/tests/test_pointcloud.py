import pytest
import torch
from graphforge_pointcloud import SHAPES, sample_shape

import graphforge
from graphforge.errors import ConfigError
from graphforge.testing import check_registered


def test_registered_through_the_entry_point():
    assert "shapes3d" in graphforge.list_datasets()
    assert "point_knn" in graphforge.list_converters()
    from graphforge.plugins import get_registry

    assert get_registry("converter").get("point_knn").plugin == "pointcloud"


@pytest.mark.parametrize("kind, name", [("dataset", "shapes3d"), ("converter", "point_knn")])
def test_contract(kind, name):
    check_registered(kind, name)


def test_shapes_are_seeded_and_sized():
    a = graphforge.get_dataset("shapes3d", points=64, per_class=20).load(root=None, download=False, seed=0)
    b = graphforge.get_dataset("shapes3d", points=64, per_class=20).load(root=None, download=False, seed=0)
    assert a.train.x.shape[1:] == (64, 3) and a.kind == "points"
    assert torch.equal(a.train.x, b.train.x)
    assert sum(a.sizes().values()) == 20 * len(SHAPES)


def test_each_cloud_gets_its_own_graph():
    conv = graphforge.get_converter("point_knn", k=5)
    spec = graphforge.InputSpec("points", (40, 3))
    g = conv.build(spec)(torch.stack([sample_shape("torus", 40, torch.Generator().manual_seed(i)) for i in range(3)]))
    assert g.num_graphs == 3 and g.x.shape == (120, 4)
    assert torch.equal(g.edge_index[0] // 40, g.edge_index[1] // 40)
    assert torch.equal(torch.bincount(g.edge_index[1]), torch.full((120,), 5))


def test_bad_options():
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        graphforge.get_converter("point_knn", k=0)
    with pytest.raises(ConfigError, match="per_class must be"):
        graphforge.get_dataset("shapes3d", per_class=2)
    with pytest.raises(ConfigError, match="takes \\['points'\\] input, but the dataset gives images"):
        graphforge.run("point_knn", "sage", dataset="digits")


def test_trains_end_to_end(tmp_path):
    r = graphforge.run("point_knn", "sage", dataset="shapes3d", epochs=10, lr=3e-3, batch_size=16, seed=0,
                       out=str(tmp_path / "r"), options={"points": 64, "per_class": 50, "k": 8, "hidden": 32, "layers": 2})
    assert r.metrics["test_accuracy"] > 0.35  # 6 classes: chance is 0.17 (measured: 0.47 after 10 short epochs)
