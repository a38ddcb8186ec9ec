"""Embedders: pixels, torchvision backbones and their weights, the embedding cache."""

import json
import logging
import os
import pickle
import re
import urllib.error
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch.nn import functional as F
from torchvision.models import resnet18, resnet34

import graphforge
from graphforge import ConfigError, DataError, InputSpec, PluginError
from graphforge.builtin.embedders.backbones import IMAGENET_MEAN, IMAGENET_STD
from graphforge.cli.main import cli
from graphforge.embedding_cache import cached_embed, default_cache_dir, embedding_key
from graphforge.testing import check_registered

CPU = torch.device("cpu")
SIZE = 32


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 1, 12, 12), generator=g, dtype=torch.uint8)


def reference_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """resnet18's penultimate features computed by hand, as the embedder should."""
    x = images.float().div(255).expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    model.fc = torch.nn.Identity()
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture
def seeded_resnet18():
    torch.manual_seed(3)
    return resnet18()


@pytest.fixture
def weights_file(tmp_path, seeded_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(seeded_resnet18.state_dict(), path)
    return path


# ---------------------------------------------------------------------- pixels
def test_pixels_flattens_and_scales_uint8(images):
    emb = graphforge.get_embedder("pixels")
    out = emb.embed(images, CPU, 3)
    assert out.dtype == torch.float32 and out.shape == (4, 144)
    assert torch.equal(out, images.reshape(4, -1).float() / 255)
    assert emb.output_dim(InputSpec("images", (1, 12, 12))) == 144


def test_pixels_takes_vectors_without_aliasing_them():
    x = torch.rand(5, 7)
    out = graphforge.get_embedder("pixels").embed(x, CPU, 2)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    unit = graphforge.get_embedder("pixels", normalize=True).embed(x, CPU, 2)
    assert torch.allclose(unit.norm(dim=1), torch.ones(5))


# ------------------------------------------------------------------- backbones
def test_weights_must_be_chosen_explicitly():
    with pytest.raises(ConfigError, match="needs weights") as info:
        graphforge.get_embedder("resnet18")
    assert "imagenet" in str(info.value) and "random" in str(info.value)


@pytest.mark.parametrize("options, message", [
    ({"weights": "/no/such/file.pth"}, "/no/such/file.pth"),
    ({"weights": "random", "layer": "fc9"}, "layer must be one of"),
    ({"weights": "random", "image_size": 8}, "image_size must be an integer >= 32"),
    ({"weights": "random", "bogus": 1}, "no option 'bogus'"),
])
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        graphforge.get_embedder("resnet18", **options)


def test_local_weights_give_that_models_penultimate_features(images, weights_file, seeded_resnet18):
    emb = graphforge.get_embedder("resnet18", weights=str(weights_file), image_size=SIZE)
    out = emb.embed(images, CPU, 3)
    assert out.shape == (4, 512) == (4, emb.output_dim(InputSpec("images", (1, 12, 12))))
    assert torch.allclose(out, reference_features(seeded_resnet18, images), atol=1e-5)
    random = graphforge.get_embedder("resnet18", weights="random", image_size=SIZE).embed(images, CPU, 3)
    assert not torch.allclose(out, random)


def test_random_weights_are_seeded(images):
    def embed(seed):
        return graphforge.get_embedder("resnet18", weights="random", image_size=SIZE, seed=seed).embed(images, CPU, 4)

    assert torch.equal(embed(0), embed(0))
    assert not torch.allclose(embed(0), embed(1))


def test_pooled_layer_and_grey_or_rgb_images(images):
    emb = graphforge.get_embedder("vgg11", weights="random", image_size=SIZE, layer="pooled")
    assert emb.output_dim(InputSpec("images", (3, 12, 12))) == 512
    rgb = images.expand(-1, 3, -1, -1)
    assert torch.equal(emb.embed(images, CPU, 4), emb.embed(rgb, CPU, 4))  # grey repeated to 3 channels
    with pytest.raises(ConfigError, match="1 or 3 channels"):
        emb.check_input(InputSpec("images", (2, 12, 12)))
    with pytest.raises(ConfigError, match="takes \\['images'\\] input"):
        emb.check_input(InputSpec("vectors", (12,)))


@pytest.mark.parametrize("wrap", [
    lambda sd: {f"module.{k}": v for k, v in sd.items()},
    lambda sd: {"state_dict": sd, "epoch": 3},
    lambda sd: {"model": {f"_orig_mod.{k}": v for k, v in sd.items()}, "optimizer": {}},
    lambda sd: {k: v for k, v in sd.items() if not k.startswith("fc.")},  # a headless backbone
], ids=["module-prefix", "state_dict-entry", "model-entry-compiled", "no-head"])
def test_checkpoint_layouts_load(tmp_path, images, seeded_resnet18, wrap):
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(seeded_resnet18.state_dict()), path)
    out = graphforge.get_embedder("resnet18", weights=str(path), image_size=SIZE).embed(images, CPU, 4)
    assert torch.allclose(out, reference_features(seeded_resnet18, images), atol=1e-5)


def test_fine_tuned_head_of_another_size_is_ignored(tmp_path, images, seeded_resnet18):
    seeded_resnet18.fc = torch.nn.Linear(512, 4)  # fine-tuned on 4 classes
    path = tmp_path / "finetuned.pt"
    torch.save(seeded_resnet18.state_dict(), path)
    out = graphforge.get_embedder("resnet18", weights=str(path), image_size=SIZE).embed(images, CPU, 4)
    assert torch.allclose(out, reference_features(seeded_resnet18, images), atol=1e-5)


def test_wrong_architecture_is_a_data_error(tmp_path, images):
    path = tmp_path / "resnet34.pth"
    torch.save(resnet34().state_dict(), path)
    emb = graphforge.get_embedder("resnet18", weights=str(path), image_size=SIZE)
    with pytest.raises(DataError, match="unexpected keys \\(first: layer1.2") as info:
        emb.embed(images, CPU, 4)
    assert str(path) in str(info.value)
    vgg = graphforge.get_embedder("vgg11", weights=str(path), image_size=SIZE)
    with pytest.raises(DataError, match="missing keys \\(first: features.0.weight"):
        vgg.embed(images, CPU, 4)


def test_shape_mismatch_is_a_data_error(tmp_path, images, seeded_resnet18):
    state = seeded_resnet18.state_dict()
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(DataError, match="does not fit resnet18: .*size mismatch.*conv1.weight"):
        graphforge.get_embedder("resnet18", weights=str(path), image_size=SIZE).embed(images, CPU, 4)


@pytest.mark.parametrize("content, message", [
    (b"this is not a checkpoint", "cannot read weights file .*: it is damaged or not a torch file"),
    (b"", "cannot read weights file .*: not a complete weights file"),
    ("model", r"cannot read weights file .*: it holds a Python object \(torch\.nn\..*a whole pickled model is not"),
    (None, "holds no state dict"),
])
def test_unreadable_weights_are_data_errors(tmp_path, images, content, message):
    path = tmp_path / "bad.pth"
    if content is None:
        torch.save([1, 2, 3], path)
    elif content == "model":
        torch.save(torch.nn.Linear(2, 2), path)  # a whole pickled module: refused, never unpickled
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        graphforge.get_embedder("resnet18", weights=str(path), image_size=SIZE).embed(images, CPU, 4)
    assert str(path) in str(info.value) and "\n" not in str(info.value) and "weights_only" not in str(info.value)


def test_imagenet_weights_come_from_the_torch_hub_cache(tmp_path, monkeypatch, images, seeded_resnet18):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(seeded_resnet18.state_dict(), checkpoints / "resnet18-f37072fd.pth")
    emb = graphforge.get_embedder("resnet18", weights="imagenet", image_size=SIZE)
    assert emb.cache_key()["options"]["weights"] == {"torchvision": "ResNet18_Weights.IMAGENET1K_V1"}
    out = emb.embed(images, CPU, 4)
    assert torch.allclose(out, reference_features(seeded_resnet18, images), atol=1e-5)


def test_offline_without_cached_imagenet_weights_says_what_to_do(tmp_path, monkeypatch, images):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    emb = graphforge.get_embedder("resnet50", weights="default", image_size=SIZE)
    with pytest.raises(DataError, match="cannot download resnet50 weights ResNet50_Weights.IMAGENET1K_V2") as info:
        emb.embed(images, CPU, 4)
    message = str(info.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth") in message
    assert "weights=/path/to/file.pth" in message


def _no_download(url, *args, **kwargs):
    raise urllib.error.URLError("network is unreachable (test)")


def test_cache_key_names_weights_by_content(tmp_path, weights_file):
    copy = tmp_path / "copy.pth"
    copy.write_bytes(weights_file.read_bytes())

    def key(path, **options):
        return graphforge.get_embedder("resnet18", weights=str(path), **options).cache_key()

    assert key(weights_file) == key(copy)  # moving a file keeps its cache
    assert key(weights_file) == key(weights_file, batch_size=7)  # batch size does not change vectors
    assert key(weights_file) != key(weights_file, image_size=64)
    copy.write_bytes(weights_file.read_bytes() + b"\0")
    assert key(weights_file) != key(copy)


# ----------------------------------------------------------------------- cache
class CountingPixels(graphforge.Embedder):
    """Pixels that count how often they are computed."""

    inputs = frozenset({"images", "vectors"})

    def __init__(self, scale: float = 1.0):
        self.scale = scale
        self._calls = 0

    def output_dim(self, spec):
        return spec.num_features

    def embed(self, x, device, batch_size):
        self._calls += 1
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        return x.reshape(len(x), -1) * self.scale


def test_cache_hit_skips_the_embedder(tmp_path, images, caplog):
    emb = CountingPixels()
    with caplog.at_level(logging.INFO, logger="graphforge"):
        first = cached_embed(emb, images, device="cpu", batch_size=2, cache_dir=tmp_path)
        second = cached_embed(emb, images, device="cpu", batch_size=2, cache_dir=tmp_path)
    assert emb._calls == 1 and torch.equal(first, second) and second.dtype == torch.float32
    assert [p.name for p in tmp_path.iterdir()] == [f"{embedding_key(emb, images)}.pt"]
    assert "cache miss" in caplog.text and "cache hit" in caplog.text


def test_different_data_or_options_make_different_keys(images):
    key = embedding_key(CountingPixels(), images)
    changed = images.clone()
    changed[0, 0, 0, 0] ^= 1
    assert embedding_key(CountingPixels(), changed) != key
    assert embedding_key(CountingPixels(), images.float()) != key  # same values, other dtype
    assert embedding_key(CountingPixels(), images.reshape(4, 1, 6, 24)) != key  # same bytes, other shape
    assert embedding_key(CountingPixels(scale=2.0), images) != key
    assert embedding_key(CountingPixels(), images.transpose(2, 3).contiguous().transpose(2, 3)) == key
    assert embedding_key(CountingPixels(), images.to(torch.bfloat16)) != key  # no numpy twin, still hashed
    assert embedding_key(graphforge.get_embedder("pixels"), images) != embedding_key(
        graphforge.get_embedder("pixels", normalize=True), images)


def test_corrupt_cache_file_is_recomputed(tmp_path, images, caplog):
    emb = CountingPixels()
    expected = cached_embed(emb, images, device="cpu", batch_size=2, cache_dir=tmp_path)
    path = tmp_path / f"{embedding_key(emb, images)}.pt"
    good = torch.load(path, weights_only=True)
    planted = {**good, "embeddings": torch.zeros_like(good["embeddings"])}  # right key and shape, wrong content
    moved = {**good, "key": "0" * 64}  # another key's file copied here
    bad_files = (b"garbage", torch.zeros(len(images), 2), planted, moved)
    for bad in bad_files:
        if isinstance(bad, bytes):
            path.write_bytes(bad)
        else:
            torch.save(bad, path)  # readable, but not these embeddings
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="graphforge"):
            out = cached_embed(emb, images, device="cpu", batch_size=2, cache_dir=tmp_path)
        assert torch.equal(out, expected) and "unusable" in caplog.text
    assert emb._calls == 1 + len(bad_files)
    assert torch.equal(torch.load(path, weights_only=True)["embeddings"], expected)  # rewritten


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (os.getpid, ())  # harmless, and never called: the cache refuses it


def test_unsafe_or_garbage_cache_file_is_a_one_line_warning(tmp_path, images, caplog, recwarn):
    emb = CountingPixels()
    expected = cached_embed(emb, images, device="cpu", batch_size=2, cache_dir=tmp_path)
    path = tmp_path / f"{embedding_key(emb, images)}.pt"
    evil = tmp_path / "evil.pt"
    torch.save({"x": _RunsCodeWhenUnpickled()}, evil)
    cases = ((bytes(range(256)) * 2, "it is damaged or not a torch file"),
             (pickle.dumps(_RunsCodeWhenUnpickled(), protocol=4), "it is damaged or not a torch file"),
             (evil.read_bytes(), f"it holds a Python object ({os.getpid.__module__}.getpid) besides tensors"),
             (b"", "not a complete cache file (truncated or empty)"))
    for content, message in cases:
        path.write_bytes(content)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="graphforge"):
            out = cached_embed(emb, images, device="cpu", batch_size=2, cache_dir=tmp_path)
        assert torch.equal(out, expected)
        (record,) = caplog.records
        text = record.getMessage()
        assert "\n" not in text and "weights_only" not in text and "trusted source" not in text, text
        assert text.startswith(f"embedding cache file {path} is unusable ({message}"), text
        assert text.count(str(path)) == 1, text
        assert message in text and text.endswith("; recomputing"), text
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


def test_cache_can_be_off_and_defaults_to_graphforge_cache(tmp_path, monkeypatch, images):
    monkeypatch.setenv("GRAPHFORGE_CACHE", str(tmp_path / "gfcache"))
    assert default_cache_dir() == tmp_path / "gfcache" / "embeddings"
    emb = CountingPixels()
    cached_embed(emb, images, device="cpu", batch_size=2, cache=False)
    assert not (tmp_path / "gfcache").exists()
    cached_embed(emb, images, device="cpu", batch_size=2)
    cached_embed(emb, images, device="cpu", batch_size=2)
    assert emb._calls == 2 and len(list((tmp_path / "gfcache" / "embeddings").iterdir())) == 1
    monkeypatch.delenv("GRAPHFORGE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "graphforge" / "embeddings"


def test_unwritable_cache_is_a_warning(tmp_path, images, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="graphforge"):
        out = cached_embed(CountingPixels(), images, device="cpu", batch_size=2, cache_dir=blocker / "sub")
    assert out.shape == (4, 144) and "could not write" in caplog.text


def test_full_disk_while_caching_is_a_warning(tmp_path, images, caplog, monkeypatch):
    def full_disk(path, obj):
        raise RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos 1024 vs 854")

    monkeypatch.setattr("graphforge.embedding_cache.save_torch", full_disk)
    with caplog.at_level(logging.WARNING, logger="graphforge"):
        out = cached_embed(CountingPixels(), images, device="cpu", batch_size=2, cache_dir=tmp_path)
    assert out.shape == (4, 144) and "could not write" in caplog.text


def test_embedder_returning_wrong_rows_is_a_plugin_error(tmp_path, images):
    class Broken(CountingPixels):
        def embed(self, x, device, batch_size):
            return super().embed(x, device, batch_size)[:-1]

    with pytest.raises(PluginError, match="returned \\(3, 144\\) for 4 samples"):
        cached_embed(Broken(), images, device="cpu", batch_size=2, cache_dir=tmp_path)


# ------------------------------------------------------------ plugins and CLI
class EmbedderPlugin:
    @graphforge.hookimpl
    def register_embedders(self, register):
        register("counting", CountingPixels)
        register("wrong-dim", WrongDim)


class WrongDim(CountingPixels):
    """Claims one dimension more than it makes."""

    def output_dim(self, spec):
        return spec.num_features + 1


def test_third_party_embedders_register_and_face_the_contract(plugin_registered):
    plugin_registered(EmbedderPlugin(), "test-embedders")
    assert {"counting", "wrong-dim", "pixels", "resnet18"} <= set(graphforge.list_embedders())
    check_registered("embedder", "counting")
    with pytest.raises(AssertionError, match="embed gave \\(3, 144\\) for images, expected \\(3, 145\\)"):
        check_registered("embedder", "wrong-dim")


def test_cli_lists_embedders_and_their_hook():
    runner = CliRunner()
    rows = json.loads(runner.invoke(cli, ["list", "embedders", "--json"], catch_exceptions=False).stdout)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == set(graphforge.list_embedders())
    assert by_name["vgg16"]["kind"] == "embedder" and by_name["vgg16"]["options"]["layer"] == "penultimate"
    assert "vgg16" in runner.invoke(cli, ["list", "embedders"]).stdout
    plugins = json.loads(runner.invoke(cli, ["plugins", "--all", "--json"]).stdout)
    backbones = {p["name"]: p for p in plugins}["graphforge.builtin.embedders"]
    assert backbones["hooks"] == ["register_embedders"] and "resnet18" in backbones["provides"]["embedders"]


def test_docs_example_embedder_passes_the_contract(plugin_registered):
    text = (Path(__file__).resolve().parents[2] / "docs" / "embedders.md").read_text()
    code = re.search(r"## Writing an embedder.*?```python\n(.*?)```", text, flags=re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/embedders.md", "exec"), namespace)  # noqa: S102 (the docs example must run)
    plugin = type("DocsPlugin", (), {"register_embedders": staticmethod(namespace["register_embedders"])})()
    plugin_registered(plugin, "docs-embedder")
    check_registered("embedder", "colour-histogram")
    out = graphforge.get_embedder("colour-histogram", bins=4).embed(torch.zeros(2, 3, 5, 5), CPU, 8)
    assert out.shape == (2, 12) and torch.equal(out[:, 0], torch.ones(2))


def test_trained_embedder_gives_a_runs_penultimate_features(tmp_path):
    """``-o embedder=trained``: a similarity graph over the features a cnn learnt."""
    import graphforge
    from graphforge.builtin.embedders.trained import Trained

    cnn = graphforge.run("none", "cnn", "digits", epochs=2, out=str(tmp_path / "cnn"), plots=False)
    emb = Trained(run=str(cnn.run_dir))
    data = graphforge.get_dataset("digits").load(root=None, download=False, seed=0)
    out = emb.embed(data.test.x, torch.device("cpu"), 64)
    assert out.shape == (len(data.test), emb.output_dim(data.spec)) and out.dtype == torch.float32
    assert torch.allclose(emb.embed(data.test.x.float() / 255 if data.test.x.dtype == torch.uint8
                                    else data.test.x, torch.device("cpu"), 7), out, atol=1e-5)
    key = emb.cache_key()
    assert len(key["checkpoint_sha256"]) == 64
    graph = graphforge.run("similarity", "label_prop", "digits", out=str(tmp_path / "graph"), plots=False,
                           options={"embedder": "trained", "embedder_options": {"run": str(cnn.run_dir)}})
    assert graph.metrics["test_accuracy"] > 0.8


def test_trained_embedder_errors(tmp_path):
    from graphforge.builtin.embedders.trained import Trained
    from graphforge.errors import ConfigError, DataError

    with pytest.raises(ConfigError, match="needs the run directory"):
        Trained()
    with pytest.raises(DataError):
        Trained(run=str(tmp_path / "missing")).cache_key()
