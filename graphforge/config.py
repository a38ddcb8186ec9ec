"""Run configuration: the options shared by the CLI, config files and the Python API."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from graphforge.checks import check_device, check_float, check_int  # noqa: F401  (re-exported)
from graphforge.errors import ConfigError
from graphforge.registry import Entry

LR_SCHEDULES = ("cosine", "step", "none")
_PLUGIN_PREFIXES = ("dataset", "converter", "model")


@dataclass
class RunConfig:
    """Everything that defines a run.

    Attributes:
        dataset: Dataset plugin name.
        converter: Converter plugin name (``none`` feeds samples to the model as they are).
        model: Model plugin name.
        options: Plugin options, as given by ``-o key=value``. A key goes to the one
            plugin (dataset, converter or model) that takes it; prefix it as
            ``model.key`` when more than one does.
        data_root: Directory or file with the dataset's files.
        download: Whether the dataset may fetch missing files.
        epochs: Training epochs (default: the model's own default for mini-batch
            training; 200 for full-graph training on a dataset graph).
        batch_size: Mini-batch size.
        lr: Peak learning rate of AdamW (default: the model's ``default_lr`` or 1e-3 for
            mini-batch training, 1e-2 for full-graph training, where each epoch is one
            optimiser step).
        weight_decay: AdamW weight decay.
        lr_schedule: ``cosine``, ``step`` (x0.1 at 50 % and 75 % of training) or ``none``;
            advanced after every optimiser step.
        warmup_epochs: Linear LR warm-up over this many (possibly fractional) epochs.
        label_smoothing: Label smoothing of the training cross-entropy (0: none).
        augment: Training-batch augmentation of image datasets: ``auto`` (random
            translation by up to 2 px on 28x28 and 32x32 images; nothing for images
            under 14x14, such as 8x8 digits, or for other kinds), ``none``, ``shift``, ``hflip`` or ``shift+hflip`` (a flip is
            wrong for digits and letters; see :mod:`graphforge.engine.augment`).
        precision: ``fp32`` (default) or ``bf16``: mixed-precision network training and
            evaluation (forward passes under ``torch.autocast``; weights, optimiser and loss
            in fp32). Faster on GPUs from compute capability 8.0 and CPUs with ``avx512_bf16``
            or AMX; see :mod:`graphforge.engine.precision`. Models without a network ignore it.
        patience: Stop after this many epochs without a better validation score
            (0 disables early stopping; default: 10 for mini-batch training, 20 for
            full-graph training).
        seed: Seed for splits, initialisation and shuffling.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        out: Run directory (default ``runs/<timestamp>-<converter>-<model>``).
        limit_train: Keep a seeded stratified subset of this many training samples.
        limit_test: Keep at most this many validation and test samples (stratified).
        plots: Draw the run's plots (confusion matrix, learning curves, plugin plots).
        threads: CPU threads for torch and the native kernels (default: the CPUs this
            process may use: affinity mask and cgroup quota; see docs/threads.md).
        sync_batchnorm: Under torchrun on GPUs, BatchNorm statistics across all ranks
            (``torch.nn.SyncBatchNorm``); see docs/distributed.md.
    """

    dataset: str = "digits"
    converter: str = "none"
    model: str = "mlp"
    options: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    download: bool = False
    epochs: int | None = None
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    augment: str = "auto"
    precision: str = "fp32"
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    out: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    plots: bool = True
    threads: int | None = None
    sync_batchnorm: bool = False

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first impossible value."""
        for name in ("dataset", "converter", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name} must be a plugin name, got {value!r}")
        check_int(self.epochs, "epochs", minimum=1, optional=True)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_int(self.patience, "patience", minimum=0, optional=True)
        check_int(self.seed, "seed", minimum=0)
        check_int(self.limit_train, "limit_train", minimum=1, optional=True)
        check_int(self.limit_test, "limit_test", minimum=1, optional=True)
        check_int(self.threads, "threads", minimum=1, optional=True)
        check_float(self.lr, "lr", minimum=0.0, exclusive_minimum=True, optional=True)
        check_float(self.weight_decay, "weight_decay", minimum=0.0)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        check_float(self.warmup_epochs, "warmup_epochs", minimum=0.0)
        check_float(self.label_smoothing, "label_smoothing", minimum=0.0)
        if self.label_smoothing >= 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        from graphforge.engine.augment import parse_augment

        parse_augment(self.augment)
        from graphforge.engine.precision import check_precision

        check_precision(self.precision)
        if not isinstance(self.options, dict):
            raise ConfigError(f"options must be a mapping, got {type(self.options).__name__}")
        for name in ("data_root", "out"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, Path)):
                raise ConfigError(f"{name} must be a path, got {type(value).__name__} {value!r}")
        for name in ("download", "plots", "sync_batchnorm"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        check_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain data (for YAML)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build a config from plain data, rejecting unknown keys."""
        if not isinstance(data, dict):
            raise ConfigError(f"a run config must be a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}"
            )
        return cls(**data)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON run-config file into a dict (keys as in :class:`RunConfig`).

    Dashes in keys are accepted (``limit-train``) and turned into underscores.
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {p} is a directory") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not UTF-8 text (a binary file?)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML/JSON: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of options")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def parse_option(text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` option; the value is read as YAML (``8``, ``false``, ``[1, 2]``).

    Raises:
        ConfigError: If there is no ``=`` or the key is empty.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"option {text!r} is not of the form key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    return key, value


def route_options(options: dict[str, Any], entries: dict[str, Entry]) -> dict[str, dict[str, Any]]:
    """Send each plugin option to the plugin that takes it.

    Args:
        options: ``{key: value}``; keys may be prefixed ``dataset.``, ``converter.`` or ``model.``.
        entries: The run's plugins by role: ``{"dataset": ..., "converter": ..., "model": ...}``.

    Returns:
        ``{"dataset": {...}, "converter": {...}, "model": {...}}``.

    Raises:
        ConfigError: If a key is taken by none of the plugins, or by more than one
            and has no prefix.
    """
    routed: dict[str, dict[str, Any]] = {role: {} for role in entries}
    for key, value in options.items():
        role, dot, name = key.partition(".")
        if dot and role in _PLUGIN_PREFIXES:
            if role not in entries:
                raise ConfigError(f"option {key!r}: no {role} in this run")
            routed[role][name] = value
            continue
        takers = [r for r, e in entries.items() if key in e.options()]
        if len(takers) > 1:
            choices = " or ".join(f"{r}.{key}" for r in takers)
            raise ConfigError(f"option {key!r} is taken by several plugins; write {choices}")
        if not takers:
            open_ = [r for r, e in entries.items() if e.accepts_any_option()]
            if len(open_) == 1:
                routed[open_[0]][key] = value
                continue
            valid = "; ".join(
                f"{r} {e.name!r}: {', '.join(sorted(e.options())) or '(none)'}"
                for r, e in entries.items()
            )
            raise ConfigError(f"no plugin in this run takes option {key!r}. Valid options: {valid}")
        routed[takers[0]][key] = value
    return routed
