"""On-disk cache of embeddings, keyed by the embedder's options and the data's content.

Computing CNN features for a dataset takes minutes; the same features are needed by
every run of a metric x threshold x seed sweep. :func:`cached_embed` stores them as
``<key>.pt`` where ``key`` is the SHA-256 of :meth:`graphforge.core.embedder.Embedder.cache_key`
(as canonical JSON) and of the input tensor's dtype, shape and bytes. Files live in
``cache_dir``, else ``$GRAPHFORGE_CACHE/embeddings``, else
``$XDG_CACHE_HOME/graphforge/embeddings`` (``~/.cache/graphforge/embeddings``). Deleting
the folder is always safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from graphforge.core.embedder import Embedder
from graphforge.errors import PluginError
from graphforge.io import safe_load, save_torch

log = logging.getLogger("graphforge")

CACHE_ENV = "GRAPHFORGE_CACHE"
_KEY_FORMAT = b"graphforge-embeddings-v1\0"
#: Layout of a cache file: {"format", "key", "embeddings", "sha256"}.
_FILE_FORMAT = 2


def default_cache_dir() -> Path:
    """Return where embeddings are cached when no ``cache_dir`` is given."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "embeddings"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "graphforge" / "embeddings"


def _update_with_tensor(digest: hashlib._Hash, x: torch.Tensor) -> None:
    data = x.detach().to("cpu").contiguous().reshape(-1)
    digest.update(f"{data.dtype}|{tuple(x.shape)}\0".encode())
    if data.numel():
        # Reinterpreting as bytes works for every dtype (bfloat16 has no numpy twin) without a copy.
        digest.update(memoryview(data.view(torch.uint8).numpy()))


def embedding_key(embedder: Embedder, x: torch.Tensor) -> str:
    """Return the hex SHA-256 naming the embeddings of ``x`` by ``embedder``."""
    digest = hashlib.sha256(_KEY_FORMAT)
    options = json.dumps(embedder.cache_key(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest.update(options.encode() + b"\0")
    _update_with_tensor(digest, x)
    return digest.hexdigest()


def _digest_of(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def _read(path: Path, rows: int, key: str) -> torch.Tensor | None:
    """The cached tensor, or ``None`` when there is none or it is unusable (logged).

    A cache file is trusted only when it loads safely (tensors and plain data), names the
    key it was written for (the embedder's options and the input's content) and its
    embeddings still match their own checksum, with ``rows`` finite float32 rows.
    """
    if not path.is_file():
        return None
    try:
        obj = safe_load(path, what="cache file")
        if not isinstance(obj, dict) or obj.get("format") != _FILE_FORMAT:
            raise ValueError("it is not a graphforge embedding cache file")
        out = obj.get("embeddings")
        if obj.get("key") != key:
            raise ValueError("it was written for other embeddings (key mismatch)")
        if not (isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.dim() == 2
                and out.shape[0] == rows):
            what = f"a {out.dtype} tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"it holds {what}, not [{rows}, D] float32")
        if obj.get("sha256") != _digest_of(out):
            raise ValueError("its embeddings do not match their checksum")
        if not bool(torch.isfinite(out).all()):
            raise ValueError("it holds NaN or infinite values")
    except Exception as exc:  # noqa: BLE001 (a broken cache file must never break a run)
        log.warning("embedding cache file %s is unusable (%s); recomputing", path, getattr(exc, "reason", None) or exc)
        return None
    return out


def cached_embed(
    embedder: Embedder,
    x: torch.Tensor,
    *,
    device: torch.device | str,
    batch_size: int,
    cache_dir: str | os.PathLike[str] | None = None,
    cache: bool = True,
) -> torch.Tensor:
    """Return ``embedder.embed(x, device, batch_size)``, read from or written to the cache.

    Args:
        embedder (Embedder): The embedder.
        x (torch.Tensor): The samples, as the dataset gives them.
        device (torch.device or str): Where to compute on a cache miss.
        batch_size (int): Samples per forward pass on a cache miss.
        cache_dir (path, optional): Cache folder. (default: :func:`default_cache_dir`)
        cache (bool, optional): ``False`` computes without reading or writing the cache.
            (default: ``True``)

    Returns:
        ``[N, D]`` float32 CPU tensor.

    Raises:
        PluginError: If the embedder returns something other than ``[N, D]`` rows.
    """
    device = torch.device(device)
    name = embedder.registry_name()
    path: Path | None = None
    if cache:
        path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        key = embedding_key(embedder, x)
        path = path / f"{key}.pt"
        hit = _read(path, len(x), key)
        if hit is not None:
            log.info("embeddings of %d samples by %s: cache hit (%s)", len(x), name, path)
            return hit
        log.info("embeddings of %d samples by %s: cache miss, computing on %s", len(x), name, device)
    out = embedder.embed(x, device, batch_size)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(x):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise PluginError(f"embedder {name!r} returned {shape} for {len(x)} samples; expected [{len(x)}, D]")
    out = out.detach().to("cpu", torch.float32)
    if path is not None:
        try:
            saved = out.clone()  # clone: a view would save its whole storage
            save_torch(path, {"format": _FILE_FORMAT, "key": key, "embeddings": saved, "sha256": _digest_of(saved)})
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
            log.warning("could not write embedding cache file %s (%s); continuing without it", path, exc)
    return out
