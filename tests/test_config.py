import pytest

from graphforge.config import RunConfig, load_config_file, parse_option, route_options
from graphforge.errors import ConfigError
from graphforge.registry import Entry


class A:
    def __init__(self, k: int = 1, shared: int = 0) -> None: ...


class B:
    def __init__(self, hidden: int = 8, shared: int = 0) -> None: ...


ENTRIES = {"converter": Entry("converter", "a", A, "p"), "model": Entry("model", "b", B, "p")}


@pytest.mark.parametrize(
    "text, expected",
    [("k=8", ("k", 8)), ("learn_k=false", ("learn_k", False)), ("hidden=[64, 32]", ("hidden", [64, 32])),
     ("name=cosine", ("name", "cosine")), ("lr=1e-3", ("lr", 1e-3)), ("x=", ("x", ""))],
)
def test_parse_option(text, expected):
    assert parse_option(text) == expected


@pytest.mark.parametrize("text", ["k", "=3", ""])
def test_parse_option_rejects_malformed(text):
    with pytest.raises(ConfigError, match="key=value"):
        parse_option(text)


def test_route_options_by_name_and_prefix():
    routed = route_options({"k": 3, "hidden": 16, "model.shared": 1}, ENTRIES)
    assert routed == {"converter": {"k": 3}, "model": {"hidden": 16, "shared": 1}}


def test_route_options_ambiguous_needs_prefix():
    with pytest.raises(ConfigError, match="converter.shared or model.shared"):
        route_options({"shared": 1}, ENTRIES)


def test_route_options_unknown_lists_valid():
    with pytest.raises(ConfigError, match="no plugin in this run takes option 'nope'.*hidden"):
        route_options({"nope": 1}, ENTRIES)


@pytest.mark.parametrize(
    "field, value, message",
    [("epochs", 0, "epochs must be an integer >= 1"), ("batch_size", -1, "batch_size"),
     ("lr", 0, "lr must be > 0"), ("lr_schedule", "warp", "lr_schedule must be one of"),
     ("device", "tpu", "device must be"), ("limit_train", 0, "limit_train"), ("patience", -1, "patience"),
     ("epochs", True, "epochs must be an integer")],
)
def test_validate_rejects_impossible_values(field, value, message):
    cfg = RunConfig(**{field: value})
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown config key.*epoch"):
        RunConfig.from_dict({"epoch": 3})


def test_load_config_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: mlp\nlimit-train: 100\noptions:\n  hidden: 32\n")
    assert load_config_file(f) == {"model": "mlp", "limit_train": 100, "options": {"hidden": 32}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")


def test_shipped_configs_are_valid():
    """Every file in configs/ names real plugins and options (checked without data)."""
    from pathlib import Path

    from graphforge.engine.runner import plan_run

    files = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))
    assert files
    for f in files:
        settings = load_config_file(f)
        plan = plan_run(RunConfig.from_dict(settings))
        assert plan.converter is not None and plan.model is not None, f
