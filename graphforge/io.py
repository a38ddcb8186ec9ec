"""Atomic file writes (a reader never sees a half-written file) and safe torch-file reads
(tensors and plain data only: a file from elsewhere cannot run code when loaded)."""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import torch
import yaml

from graphforge.errors import DataError, OutputError


def _file_mode() -> int:
    # mkstemp creates 0600 files; give the final file the usual umask-based mode.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def cannot_write(path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """``exc``, raised while writing ``path``, as a one-line :class:`OutputError` naming both."""
    if isinstance(exc, OutputError):
        return exc
    error = OutputError(f"cannot write {path}: {exc.strerror or exc}")
    error.errno, error.strerror, error.filename = exc.errno, exc.strerror, os.fspath(path)
    return error


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file is removed if the block raises, so ``path`` is either the
    old file or the complete new one, never something in between.

    Raises:
        OutputError: For any :class:`OSError` while the file is written (a full disk, a
            read-only filesystem), naming ``path`` and the reason.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise cannot_write(target, exc) from None
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, _FILE_MODE)
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException as exc:
        with suppress(OSError):
            tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise cannot_write(target, exc) from None
        raise


def _write_text(path: str | os.PathLike[str], writer: Callable[[IO[str]], None]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        writer(fh)
        fh.flush()
        os.fsync(fh.fileno())


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    _write_text(path, lambda fh: fh.write(text))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    _write_text(path, lambda fh: (json.dump(obj, fh, indent=2, default=_json_default), fh.write("\n")))


def write_yaml(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as YAML atomically."""
    _write_text(path, lambda fh: yaml.safe_dump(obj, fh, sort_keys=False))


def save_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        out = _WriteRecorder(fh)
        try:
            torch.save(obj, out)
        except RuntimeError:  # torch reports a failed write (a full disk) as "unexpected pos ..."
            if out.error is None:
                raise
            raise out.error from None


class _WriteRecorder:
    """A binary file's ``write`` and ``flush`` that keep the :class:`OSError` a write raised."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.fh.flush()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


#: Name of the lock file inside a locked directory.
LOCK_FILE = ".graphforge.lock"


@contextmanager
def directory_lock(directory: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` for the life of the block (and of the process).

    The lock is ``flock`` on ``directory/.graphforge.lock``, which holds the owner's pid:
    a second process gets a one-line error naming it, and a lock left by a killed process
    never blocks (the kernel drops it with the process).

    Args:
        directory: The directory to lock (it must exist).
        what: What the directory is, for the message (``"run directory"``).

    Raises:
        ConfigError: If another live process holds the lock.
    """
    from graphforge.errors import ConfigError

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    path = Path(directory) / LOCK_FILE
    try:
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise ConfigError(f"{what} {Path(directory)} is in use by another graphforge process (pid {holder}); "
                              "wait for it to finish or choose another directory") from None
        fh.seek(0)
        fh.truncate()
        with suppress(OSError):  # the pid only names the holder: a full disk does not stop the lock
            os.write(fh.fileno(), str(os.getpid()).encode())
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files :func:`atomic_path` leaves when a process is killed
    mid-write (call it while holding :func:`directory_lock`); return what was removed."""
    removed = []
    for folder in (Path(directory), Path(directory) / "plots"):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                if tmp.is_file():
                    tmp.unlink(missing_ok=True)
                    removed.append(tmp)
    return removed


def _numpy_array_globals() -> list[Any]:
    """What numpy arrays in checkpoints of graphforge < 0.2 (the pickled RNG state) need:
    array reconstruction and dtypes, nothing that can run code."""
    import numpy as np

    multiarray = getattr(np, "_core", None) or np.core
    dtypes = [type(np.dtype(t)) for t in ("uint32", "int64", "float64", "float32", "uint8", "bool")]
    return [multiarray.multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]


def safe_load(path: str | os.PathLike[str], *, what: str = "checkpoint") -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only.

    Args:
        path: The file.
        what: What the file should be, for the message about a truncated one.

    Raises:
        DataError: If the file is unreadable, truncated, or references anything else (a
            pickled object, a function): it is refused, never unpickled. Its ``reason``
            attribute is the message without the path.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_numpy_array_globals()):
            warnings.simplefilter("ignore")  # torch warns, in several lines, about odd pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise _refused(f"refusing to load {path}", f"it holds a Python object ({found.group(1)}) besides tensors "
                           "and plain data, which could run code when unpickled; graphforge's files never do, so "
                           "the file is damaged or not from graphforge") from None
        raise _refused(f"cannot read {path}", "it is damaged or not a torch file") from None
    except Exception as exc:  # noqa: BLE001 (whatever a malformed file makes torch.load raise: IndexError, struct.error, ...)
        raise _refused(f"cannot read {path}", _load_failure(exc, what)) from None


def _refused(head: str, reason: str) -> DataError:
    error = DataError(f"{head}: {reason}")
    error.reason = reason
    return error


#: What torch says about a file that ends too soon (an empty or cut-off zip archive).
_INCOMPLETE = ("failed finding central directory", "unexpected EOF", "Ran out of input")


def _load_failure(exc: BaseException, what: str) -> str:
    """Why ``torch.load`` failed, in a few words: the system's reason, an incomplete file as such,
    else damage, with the exception's type and the first sentence of its message (torch
    appends a paragraph of advice)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    first = " ".join(str(exc).strip().split("\n")[0].split())
    if isinstance(exc, EOFError) or any(words in first for words in _INCOMPLETE):
        return f"not a complete {what} (truncated or empty)"
    first = first.split(". ")[0].rstrip(".")[:200]
    return f"it is damaged or not a torch file ({type(exc).__name__}{': ' + first if first else ''})"
