"""The ``cnn`` baseline: any image size and channel count, clear errors, digits through the engine."""

import pytest
import torch

import graphforge
from graphforge.builtin.models.cnn import CNN
from graphforge.core.data import InputSpec
from graphforge.errors import ConfigError


@pytest.mark.parametrize(
    ("shape", "pools"),
    [((3, 13, 17), 2), ((1, 8, 8), 1), ((1, 28, 28), 2), ((3, 32, 32), 2), ((5, 3, 40), 0), ((2, 6, 6), 1)],
)
def test_forward_on_any_image_size_and_channel_count(shape, pools):
    net = CNN(channels=[8, 16]).build(InputSpec("images", shape), num_classes=7)
    assert net.pooled_blocks == pools
    out = net(torch.randn(4, *shape))
    assert out.shape == (4, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_depth_width_kernel_options():
    net = CNN(channels=[4, 8, 16], kernel_size=5, convs_per_block=2, dropout=0.0).build(InputSpec("images", (1, 28, 28)), 3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 4, 8, 8, 16, 16]
    assert all(c.kernel_size == (5, 5) for c in convs)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 3)


@pytest.mark.parametrize(("shape", "side", "width"), [((1, 28, 28), 7, 32), ((1, 8, 8), 8, 8), ((5, 3, 40), 3, 32)])
def test_stage_k_adds_one_graph_block_before_the_last_pooling(shape, side, width):
    from graphforge.nn.grapher import MapGraphBlock

    net = CNN(channels=[8, 16, 32], stage_k=4).build(InputSpec("images", shape), num_classes=5)
    layers = list(net.features)
    blocks = [i for i, m in enumerate(layers) if isinstance(m, MapGraphBlock)]
    assert len(blocks) == 1 and layers[blocks[0]].k == 4 and layers[blocks[0]].fc_in[0].in_features == width
    pools = [i for i, m in enumerate(layers) if isinstance(m, torch.nn.MaxPool2d)]
    assert blocks[0] == (pools[-1] - 1 if pools else len(layers) - 1)  # right before the last pooling, if any
    seen = []
    layers[blocks[0]].register_forward_hook(lambda mod, inp, out: seen.append(tuple(out.shape[2:])))
    out = net(torch.randn(3, *shape))
    assert out.shape == (3, 5) and seen[0][0] == side
    out.sum().backward()
    assert all(p.grad is not None for p in layers[blocks[0]].parameters())
    # Without the option the network has no graph block (and needs no torch-geometric).
    plain = CNN(channels=[8, 16, 32]).build(InputSpec("images", shape), num_classes=5)
    assert not [m for m in plain.modules() if isinstance(m, MapGraphBlock)]


def test_stage_k_block_mixes_each_images_nearest_positions():
    # The block changes a position's output through its nearest positions in channel space,
    # within its own image only.
    net = CNN(channels=[8], stage_k=2).build(InputSpec("images", (1, 5, 5)), num_classes=2).eval()
    block = net.features[-1]
    fmap = torch.rand(2, 8, 5, 5)
    changed = fmap.clone()
    changed[0, :, 4, 4] = fmap[0, :, 0, 0] + 1e-3  # a far corner made a near copy of (0, 0)
    moved = (block(changed) - block(fmap)).abs().amax(dim=1).detach()
    assert float(moved[1].max()) == 0 and float(moved[0, 0, 0]) > 1e-4


def test_clear_errors():
    with pytest.raises(ConfigError, match="at least 3x3 pixels, got 2x9"):
        CNN().build(InputSpec("images", (1, 2, 9)), 10)
    with pytest.raises(ConfigError, match="kernel_size must be an odd integer"):
        CNN(kernel_size=4)
    with pytest.raises(ConfigError, match="channels must be"):
        CNN(channels=[])
    with pytest.raises(ConfigError, match="dropout"):
        CNN(dropout=1.0)
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="stage_k must be an integer >= 0"):
            CNN(stage_k=bad)


def test_cnn_needs_images(tmp_path):
    with pytest.raises(ConfigError, match="model 'cnn' takes \\['images'\\] input"):
        CNN().check_input(InputSpec("vectors", (64,)))


def test_cnn_on_digits_beats_chance_widely(tmp_path):
    r = graphforge.run("none", "cnn", seed=0, epochs=4, lr=3e-3, limit_train=800, out=str(tmp_path / "cnn"),
                       options={"channels": [16, 32]})
    assert r.metrics["test_accuracy"] > 0.85  # chance is 0.1
    assert r.metrics["num_parameters"] > 0
    assert (tmp_path / "cnn" / "plots" / "learning_curves.png").is_file()
