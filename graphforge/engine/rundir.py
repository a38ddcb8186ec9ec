"""The run directory: config, history, metrics, checkpoints and plots of one run.

Every file is written atomically (temporary file + rename). The directory is
only created once the run's inputs have been validated, so a bad option never
leaves a half-made run behind.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from graphforge.errors import ConfigError, DataError
from graphforge.io import remove_stale_temporaries, save_torch, write_json, write_text, write_yaml

log = logging.getLogger("graphforge")

CONFIG_FILE = "config.yaml"
STATUS_FILE = "run.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
METRICS_FILE = "metrics.json"
BEST_CHECKPOINT = "checkpoint.pt"
LAST_CHECKPOINT = "last.pt"
PLOTS_DIR = "plots"


def default_run_path(converter: str, model: str, base: str | Path = "runs") -> Path:
    """Return ``runs/<timestamp>-<converter>-<model>``, suffixed if it already exists.

    Plugin names become one path component: anything but letters, digits, ``_``, ``-``
    and ``+`` is replaced, so a name can never reach outside ``base``.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    converter, model = _path_safe(converter), _path_safe(model)
    path = Path(base) / f"{stamp}-{converter}-{model}"
    n = 2
    while path.exists():
        path = Path(base) / f"{stamp}-{converter}-{model}-{n}"
        n += 1
    return path


def _path_safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-+" else "_" for ch in str(name)) or "_"


def _only_skeleton(p: Path) -> bool:
    """Whether ``p`` holds nothing but what :meth:`RunDirectory.create` makes before the run's
    first file (an empty ``plots/``, the lock, temporaries): a run killed that early is rerun."""
    for entry in p.iterdir():
        if entry.name == PLOTS_DIR and entry.is_dir() and not any(entry.iterdir()):
            continue
        if entry.name in (".graphforge.lock", ".graphforge-write-test") or (entry.name.startswith(".")
                                                                            and entry.name.endswith(".tmp")):
            continue
        return False
    return True


class RunDirectory:
    """Reads and writes the files of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path) -> RunDirectory:
        """Create a new, empty run directory.

        Raises:
            ConfigError: If ``path`` exists and is not empty (use ``--resume`` to continue a run).
        """
        p = Path(path)
        if p.exists() and (not p.is_dir() or not _only_skeleton(p)):
            raise ConfigError(f"run directory {p} already exists and is not empty; choose another --out or --resume it")
        try:
            p.mkdir(parents=True, exist_ok=True)
            (p / PLOTS_DIR).mkdir(exist_ok=True)
            probe = p / ".graphforge-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"cannot create run directory {p}: {exc.strerror or exc}; choose another --out") from None
        return cls(p)

    @classmethod
    def open(cls, path: str | Path) -> RunDirectory:
        """Open an existing run directory (for resume or reload).

        Raises:
            DataError: If it is not a graphforge run directory.
        """
        p = Path(path)
        if not (p / CONFIG_FILE).is_file():
            raise DataError(f"{p} is not a graphforge run directory (no {CONFIG_FILE})")
        return cls(p)

    def lock(self) -> Any:
        """Hold an exclusive lock on the directory (a context manager): a second process
        resuming or writing the same run gets a one-line error naming the holder's pid.
        Temporary files left by a process killed mid-write are removed once it is held."""
        from contextlib import contextmanager

        from graphforge.io import directory_lock

        @contextmanager
        def held() -> Any:
            with directory_lock(self.path, "run directory"):
                removed = remove_stale_temporaries(self.path)
                if removed:
                    log.info("removed %d temporary file(s) left by an interrupted write", len(removed))
                yield self

        return held()

    def check_writable(self) -> None:
        """Raise a one-line error if the directory cannot be written (read-only filesystem, permissions).

        Raises:
            ConfigError: Naming the directory and the reason.
        """
        probe = self.path / ".graphforge-write-test"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"cannot write to run directory {self.path}: {exc.strerror or exc}") from None

    def file(self, name: str) -> Path:
        """Return the path of a file inside the run directory."""
        return self.path / name

    def plots_dir(self) -> Path:
        """Return the ``plots/`` folder (created if missing)."""
        (self.path / PLOTS_DIR).mkdir(exist_ok=True)
        return self.path / PLOTS_DIR

    def plot_path(self, name: str) -> Path:
        """Return the path of a plot inside ``plots/``."""
        return self.plots_dir() / name

    # --- writing -----------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        """Write the resolved config."""
        write_yaml(self.file(CONFIG_FILE), config)

    def write_status(self, status: str, **info: Any) -> None:
        """Write ``run.json`` with the run's status (running, completed, failed, interrupted)."""
        current = self.read_status()
        current.update(info)
        current["status"] = status
        current["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        write_json(self.file(STATUS_FILE), current)

    def write_history(self, history: list[dict[str, Any]]) -> None:
        """Write the per-epoch history as JSON (everything) and CSV (scalars)."""
        write_json(self.file(HISTORY_JSON), history)
        columns: list[str] = []
        for row in history:
            for key, value in row.items():
                if key not in columns and isinstance(value, (int, float, str)) and not isinstance(value, bool):
                    columns.append(key)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        write_text(self.file(HISTORY_CSV), buf.getvalue())

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """Write the final metrics."""
        write_json(self.file(METRICS_FILE), metrics)

    def save(self, name: str, obj: Any) -> None:
        """Save a torch object (checkpoint) atomically."""
        save_torch(self.file(name), obj)

    # --- reading -----------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        """Return the saved config.

        Raises:
            DataError: If ``config.yaml`` is unreadable or not a mapping.
        """
        f = self.file(CONFIG_FILE)
        try:
            data = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise DataError(f"{f} is unreadable ({type(exc).__name__}); the run directory is damaged") from None
        if not isinstance(data, dict):
            raise DataError(f"{f} does not hold a run configuration; the run directory is damaged")
        return data

    def read_status(self) -> dict[str, Any]:
        """Return ``run.json`` (empty when missing; a damaged one is replaced, with a warning)."""
        import json

        f = self.file(STATUS_FILE)
        if not f.is_file():
            return {}
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("%s is damaged (%s); its status is rewritten", f, type(exc).__name__)
            return {}
        return data

    def load_checkpoint(self, name: str) -> dict[str, Any]:
        """Load a checkpoint file in the current layout (see :mod:`graphforge.engine.checkpoint`).

        Raises:
            DataError: If it is missing, unreadable or not a graphforge checkpoint.
        """
        from graphforge.engine.checkpoint import read_checkpoint

        return read_checkpoint(self.load(name), self.file(name))

    def load(self, name: str) -> Any:
        """Load a checkpoint file safely (see :func:`graphforge.io.safe_load`).

        Raises:
            DataError: If it is missing, unreadable, or holds anything but tensors and plain data.
        """
        from graphforge.io import safe_load

        f = self.file(name)
        if not f.is_file():
            raise DataError(f"{f} is missing; the run has no checkpoint to load")
        return safe_load(f)
