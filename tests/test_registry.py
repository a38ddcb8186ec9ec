import pytest

import graphforge
from graphforge.errors import ConfigError, PluginError, UnknownPluginError
from graphforge.registry import Entry, Registry


class Thing:
    """A thing with options."""

    def __init__(self, size: int = 3, mode: str = "a") -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size


def test_duplicate_name_names_both_plugins():
    reg = Registry("model")
    reg.add(Entry("model", "x", Thing, "plugin-one"))
    with pytest.raises(PluginError, match="plugin-one.*plugin-two"):
        reg.add(Entry("model", "x", Thing, "plugin-two"))


def test_unknown_name_lists_valid_ones():
    reg = Registry("model")
    reg.add(Entry("model", "alpha", Thing, "p"))
    reg.add(Entry("model", "beta", Thing, "p"))
    with pytest.raises(UnknownPluginError, match="unknown model 'gamma'; choose one of: alpha, beta"):
        reg.get("gamma")


def test_unknown_option_lists_valid_options():
    entry = Entry("model", "thing", Thing, "p")
    with pytest.raises(ConfigError, match="no option 'colour'.*mode, size"):
        entry.create(colour="red")


def test_factory_value_error_becomes_config_error():
    entry = Entry("model", "thing", Thing, "p")
    with pytest.raises(ConfigError, match="model 'thing': size must be >= 1"):
        entry.create(size=0)


def test_describe_falls_back_to_docstring():
    assert Entry("model", "thing", Thing, "p").describe() == "A thing with options."


def test_api_unknown_names():
    with pytest.raises(UnknownPluginError, match="unknown model 'nope'.*mlp"):
        graphforge.get_model("nope")
    with pytest.raises(UnknownPluginError, match="unknown dataset"):
        graphforge.get_dataset("nope")
    with pytest.raises(UnknownPluginError, match="unknown converter 'nope'.*none"):
        graphforge.get_converter("nope")


def test_api_lists_builtins():
    assert "digits" in graphforge.list_datasets()
    assert "none" in graphforge.list_converters()
    assert "mlp" in graphforge.list_models()
    model = graphforge.get_model("mlp", hidden=32, layers=1)
    assert isinstance(model, graphforge.Model)
