"""Training options of the engine: augmentation, label smoothing, LR warm-up (per-step schedule)."""

import pytest
import torch

import graphforge
from graphforge.engine.augment import ImageAugment, make_augment, shift_pixels
from graphforge.engine.trainer import LRFactor
from graphforge.errors import ConfigError
from tests.helpers import interrupted_at


def _translate(img, dy, dx):
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = img[..., max(-dy, 0):h + min(-dy, 0),
                                                                          max(-dx, 0):w + min(-dx, 0)]
    return out


def test_shift_is_a_zero_padded_translation():
    x = torch.arange(1, 26, dtype=torch.uint8).reshape(1, 1, 5, 5).repeat(64, 1, 1, 1)
    out = ImageAugment(shift=1)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    shifts = set()
    for img in out:
        match = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if torch.equal(img, _translate(x[0], dy, dx))]
        assert len(match) == 1
        shifts.add(match[0])
    assert len(shifts) == 9  # every translation in [-1, 1]^2 occurs


def test_hflip_and_auto():
    assert shift_pixels(28, 28) == 2 and shift_pixels(8, 8) == 0 and shift_pixels(32, 32) == 2
    auto = make_augment("auto", "images", (1, 28, 28))
    assert auto.shift == 2 and not auto.hflip
    assert make_augment("auto", "images", (1, 8, 8)) is None  # too small: auto leaves digits alone
    assert make_augment("shift", "images", (1, 8, 8)).shift == 1
    assert make_augment("auto", "vectors", (64,)) is None
    assert make_augment("none", "images", (1, 28, 28)) is None
    assert make_augment("shift+hflip", "images", (3, 32, 32)).hflip
    x = torch.arange(4.0).reshape(1, 1, 1, 4).repeat(32, 1, 1, 1)
    out = ImageAugment(hflip=True)(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, x[0].flip(-1)) for o in out])
    assert 0 < int(flipped.sum()) < 32
    with pytest.raises(ConfigError, match="works on images only"):
        make_augment("shift", "vectors", (64,))
    with pytest.raises(ConfigError, match="augment must be"):
        make_augment("rotate", "images", (1, 8, 8))


def test_warmup_then_cosine():
    f = LRFactor("cosine", total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    assert LRFactor("none", 100, 0)(50) == 1.0
    step = LRFactor("step", 100, 0)
    assert step(49) == 1.0 and step(50) == pytest.approx(0.1) and step(75) == pytest.approx(0.01)


def test_run_with_training_options_resumes_exactly(tmp_path, monkeypatch):
    """Augmentation draws from the saved generator and the per-step schedule is saved: exact resume."""
    from graphforge.engine import tasks as engine_tasks

    settings = dict(epochs=3, patience=0, limit_train=300, limit_test=60, seed=1, augment="shift",
                    label_smoothing=0.1, warmup_epochs=0.5, options={"hidden": 16}, plots=False)
    straight = graphforge.run("none", "mlp", dataset="digits", out=str(tmp_path / "a"), **settings)
    assert straight.history[0]["lr"] < straight.history[1]["lr"]  # still warming up when epoch 1 starts
    with interrupted_at(monkeypatch, engine_tasks.InductiveTask, 3), pytest.raises(KeyboardInterrupt):
        graphforge.run("none", "mlp", dataset="digits", out=str(tmp_path / "b"), **settings)
    resumed = graphforge.run(resume=tmp_path / "b")
    assert [round(h["train_loss"], 6) for h in resumed.history] == [round(h["train_loss"], 6) for h in straight.history]
    with pytest.raises(ConfigError, match="label_smoothing"):
        graphforge.run("none", "mlp", label_smoothing=1.5, out=str(tmp_path / "c"))
