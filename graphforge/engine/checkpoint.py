"""The one layout of ``checkpoint.pt`` (best weights) and ``last.pt`` (training state).

Every checkpoint is a dict::

    {"format": 2, "family": "gradient" | "fit" | "graph_fit",
     "meta": {...},      # config, input spec, classes, version and built_options: what rebuilds the model
     "state": {...},     # the family's weights (see graphforge.engine.families)
     "epoch": int}       # the epoch the weights are from (1 for fitted models)

Checkpoints hold only tensors and plain data (dicts, lists, numbers, strings), and are read
with ``torch.load(..., weights_only=True)`` (:func:`safe_load`): a run directory received
from someone else cannot run code when it is loaded. A file that the safe load refuses is a
one-line error; graphforge never falls back to unpickling it.

``meta["built_options"]`` holds every option the dataset, converter and model were built
with, their defaults included (``graphforge.engine.runner.effective_options``):
:func:`graphforge.load_run` and ``--resume`` take every option that the run's
``config.yaml`` does not set from it, so a run still loads as it was trained after a later
version changes a default (an option edited into ``config.yaml`` still wins, and a
mismatch with the weights is a one-line error). Checkpoints without it
(written before it existed) are rebuilt from the config's options and today's defaults.

``last.pt`` of a gradient run adds ``"training"``: optimiser, schedule, early-stopping
state and random-number streams, for an exact ``--resume``. Checkpoints written before
this layout (format 1: ``{"net": ...}``, ``{"fit_state": ...}``, ``{"graph_fit_state": ...}``
next to the meta keys) are still read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphforge.errors import DataError
from graphforge.io import safe_load

CHECKPOINT_FORMAT = 2
FAMILIES: tuple[str, ...] = ("gradient", "fit", "graph_fit")
_META_KEYS = ("config", "spec", "out_spec", "num_classes", "class_names", "graphforge_version")

__all__ = ["CHECKPOINT_FORMAT", "FAMILIES", "load_weights", "make_checkpoint", "read_checkpoint", "safe_load"]


def make_checkpoint(family: str, meta: dict[str, Any], state: dict[str, Any], *, epoch: int = 1,
                    **extra: Any) -> dict[str, Any]:
    """Build a checkpoint dict in the current layout."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}")
    return {"format": CHECKPOINT_FORMAT, "family": family, "meta": meta, "state": state, "epoch": epoch, **extra}


def _upgrade(obj: dict[str, Any]) -> dict[str, Any]:
    """A format-1 checkpoint in the current layout."""
    meta = {key: obj[key] for key in _META_KEYS if key in obj}
    if "net" in obj:
        extra = {}
        if "optimizer" in obj:  # last.pt
            extra["training"] = {key: obj.get(key) for key in ("optimizer", "scheduler", "state", "rng", "generator")}
        return make_checkpoint("gradient", obj.get("meta", meta), {"net": obj["net"]}, epoch=obj.get("epoch", 0),
                               **extra)
    if "fit_state" in obj:
        return make_checkpoint("fit", meta, {"model": obj["fit_state"], "prefix": obj.get("prefix", {})})
    if "graph_fit_state" in obj:
        return make_checkpoint("graph_fit", meta, {"model": obj["graph_fit_state"]})
    raise DataError("unrecognised checkpoint layout")


def read_checkpoint(obj: Any, path: str | Path) -> dict[str, Any]:
    """Check a loaded checkpoint and return it in the current layout.

    Raises:
        DataError: Naming ``path`` if the object is not a graphforge checkpoint.
    """
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a graphforge checkpoint (it holds a {type(obj).__name__})")
    fmt = obj.get("format")
    try:
        if fmt is None:
            obj = _upgrade(obj)
        elif fmt != CHECKPOINT_FORMAT:
            raise DataError(f"checkpoint format {fmt!r}; this graphforge reads formats 1 and {CHECKPOINT_FORMAT}")
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    if obj.get("family") not in FAMILIES or not isinstance(obj.get("state"), dict) or not isinstance(obj.get("meta"), dict):
        raise DataError(f"{path} is not a graphforge checkpoint (family, meta or state missing)")
    return obj


def load_weights(module: Any, state: Any, path: str | Path, what: str = "weights") -> None:
    """``module.load_state_dict(state)``, with a one-line error when they do not fit.

    Raises:
        DataError: If the saved tensors do not match the module built from the run's
            configuration (the config was edited, or the file belongs to another run).
    """
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc).splitlines()[0]
                     if str(exc) else type(exc).__name__)
        raise DataError(f"the {what} in {path} do not match the model built from the run's config.yaml "
                        f"({first[:200]}); was the config edited, or does the checkpoint belong to another run?"
                        ) from None
