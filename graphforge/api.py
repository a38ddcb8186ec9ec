"""The Python API. ``graphforge run`` and friends call exactly these functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from graphforge.checks import check_int
from graphforge.config import RunConfig
from graphforge.core.converter import Converter
from graphforge.core.data import InputSpec
from graphforge.core.dataset import Dataset
from graphforge.core.embedder import Embedder
from graphforge.core.model import GraphFitModel, Model
from graphforge.engine.families import ModelFamily, family_of
from graphforge.engine.rundir import BEST_CHECKPOINT, RunDirectory
from graphforge.engine.runner import Plan, RunResult, build_plugins, built_options, execute
from graphforge.errors import DataError, GraphforgeError
from graphforge.plugins import get_registry

__all__ = [
    "RunResult",
    "TrainedRun",
    "get_converter",
    "get_dataset",
    "get_embedder",
    "get_model",
    "list_converters",
    "list_datasets",
    "list_embedders",
    "list_models",
    "load_run",
    "run",
]


def list_datasets() -> list[str]:
    """Return the names of every registered dataset."""
    return get_registry("dataset").names()


def list_converters() -> list[str]:
    """Return the names of every registered converter."""
    return get_registry("converter").names()


def list_models() -> list[str]:
    """Return the names of every registered model."""
    return get_registry("model").names()


def list_embedders() -> list[str]:
    """Return the names of every registered embedder."""
    return get_registry("embedder").names()


def get_dataset(name: str, **options: Any) -> Dataset:
    """Build the dataset ``name`` with plugin options.

    Raises:
        graphforge.UnknownPluginError: If no plugin registered ``name`` (lists the valid ones).
        graphforge.ConfigError: If an option is unknown or invalid.
    """
    return get_registry("dataset").get(name).create(**options)


def get_converter(name: str, **options: Any) -> Converter:
    """Build the converter ``name`` with plugin options (see :func:`get_dataset`)."""
    return get_registry("converter").get(name).create(**options)


def get_model(name: str, **options: Any) -> Model:
    """Build the model ``name`` with plugin options (see :func:`get_dataset`)."""
    return get_registry("model").get(name).create(**options)


def get_embedder(name: str, **options: Any) -> Embedder:
    """Build the embedder ``name`` with plugin options (see :func:`get_dataset`).

    Example:
        >>> vgg = graphforge.get_embedder("vgg16", weights="vgg16.pth")  # doctest: +SKIP
        >>> from graphforge.embedding_cache import cached_embed  # doctest: +SKIP
        >>> vectors = cached_embed(vgg, images, device="cpu", batch_size=64)  # doctest: +SKIP
    """
    return get_registry("embedder").get(name).create(**options)


def run(
    converter: str | None = None,
    model: str | None = None,
    dataset: str | None = None,
    *,
    options: dict[str, Any] | None = None,
    resume: str | Path | None = None,
    progress: bool = False,
    **settings: Any,
) -> RunResult:
    """Train and evaluate ``model`` on ``dataset`` turned into graphs by ``converter``.

    This is what ``graphforge run`` calls, so the two give the same results for the
    same seed.

    Args:
        converter: Converter name (default ``"none"``: feed the samples as they are).
        model: Model name (default ``"mlp"``).
        dataset: Dataset name (default: the embedded ``"digits"``).
        options: Plugin options, as ``-o key=value`` on the CLI.
        resume: Continue the stopped run in this directory. Its own config is used; a
            converter, model, dataset, option or setting given here must be the run's own
            (``epochs`` may be more, and ``device``, ``threads``, ``plots``, ``data_root``
            and ``download`` may change).
        progress: Show progress bars on stderr.
        **settings: Any other :class:`graphforge.config.RunConfig` field
            (``epochs``, ``seed``, ``device``, ``out``, ``limit_train``, ...).

    Returns:
        :class:`RunResult` with ``metrics``, ``run_dir`` and ``history``.

    Example:
        >>> result = graphforge.run("none", "mlp", epochs=20, seed=0)  # doctest: +SKIP
        >>> result.metrics["test_accuracy"]  # doctest: +SKIP
        0.97...
    """
    plugins = {"converter": converter, "model": model, "dataset": dataset}
    config = RunConfig.from_dict(
        {**{name: value for name, value in plugins.items() if value is not None},
         "options": dict(options) if isinstance(options, dict) else ({} if options is None else options), **settings}
    )
    given = set(settings) | {name for name, value in plugins.items() if value is not None}
    return execute(config, resume=resume, progress=progress, given=given)


@dataclass
class TrainedRun:
    """A finished run loaded back from its run directory.

    Attributes:
        config: The run's configuration.
        net: The trained network (gradient models), in eval mode.
        model: The model plugin (fitted for fit models such as ``knn``; graph-fit models such
            as ``label_prop`` answer ``model.predict_proba()`` with the fitted graph's node
            probabilities).
        class_names: Class names in label order.
        spec: The samples the run was trained on (kind and shape of one sample).
    """

    config: RunConfig
    net: nn.Module | None
    model: Model
    class_names: list[str]
    spec: InputSpec | None = None
    _prefix: nn.Module | None = None
    _transductive: bool = False
    _family: ModelFamily | None = None

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Return class probabilities for raw samples ``x`` (same layout as the dataset's).

        Raises:
            graphforge.GraphforgeError: For a run on a dataset graph (transductive): its
                predictions exist only for the nodes of the graph it was trained on.
        """
        if self._transductive:
            hint = ("its node probabilities are model.predict_proba()" if isinstance(self.model, GraphFitModel)
                    else "its network (net) takes that whole graph")
            raise GraphforgeError(
                f"run of {self.config.converter!r} + {self.config.model!r} is transductive: it predicts the "
                f"nodes of one dataset graph, not new samples; {hint}"
            )
        x = self._check_samples(x)
        check_int(batch_size, "batch_size", minimum=1)
        family = self._family or family_of(self.model)
        return family.predict_proba(self.model, self.net, self._prefix, x, batch_size)

    def _check_samples(self, x: Any) -> torch.Tensor:
        """``x`` as a tensor of samples shaped like the training ones, or a one-line error."""
        if not isinstance(x, torch.Tensor):
            try:
                x = torch.as_tensor(np.asarray(x))
            except (TypeError, ValueError, RuntimeError):
                raise DataError(f"predict needs a tensor or array of samples, got {type(x).__name__}") from None
        if x.dtype == torch.bool or x.is_complex():
            raise DataError(f"predict needs real-valued samples, got {x.dtype}")
        if self.spec is not None and tuple(x.shape[1:]) != tuple(self.spec.shape):
            raise DataError(f"predict needs samples of shape [N, {', '.join(map(str, self.spec.shape))}] like the "
                            f"training data, got {list(x.shape)}")
        if x.dtype.is_floating_point and x.numel() and not bool(torch.isfinite(x).all()):
            raise DataError("predict: the samples contain NaN or infinite values")
        return x

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Return predicted labels for raw samples ``x``."""
        return self.predict_proba(x).argmax(-1)


def load_run(run_dir: str | Path) -> TrainedRun:
    """Load the best checkpoint of a run for prediction (on the CPU).

    Only runs of per-sample converters can predict new samples; a dataset-level
    (transductive) run loads its network, or its graph-fit model with the fitted node
    probabilities, for inspection (its ``predict`` raises a clear error).

    Raises:
        graphforge.DataError: If the directory or checkpoint is missing or corrupt.
    """
    rundir = RunDirectory.open(run_dir)
    config = RunConfig.from_dict(rundir.read_config())
    ckpt = rundir.load_checkpoint(BEST_CHECKPOINT)
    # Options the config leaves out take the values the run was trained with (defaults included),
    # when the checkpoint records them: a default changed since then does not change the network.
    plugins, options = build_plugins(config, built_options(ckpt))
    plan = Plan(config, plugins["dataset"], plugins["converter"], plugins["model"], options, torch.device("cpu"))
    family = family_of(plan.model)
    if family.name != ckpt["family"]:
        raise DataError(f"{rundir.file(BEST_CHECKPOINT)} holds a {ckpt['family']} model, but model "
                        f"{config.model!r} is a {family.name} model")
    net, prefix = family.restore(plan, ckpt["meta"], ckpt["state"])
    meta = ckpt["meta"]
    spec = InputSpec(meta["spec"]["kind"], tuple(meta["spec"]["shape"]))
    return TrainedRun(config, net, plan.model, list(meta["class_names"]), spec, prefix,
                      _transductive=family.transductive(plan), _family=family)
