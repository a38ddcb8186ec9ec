"""Device choice and seeding."""

from __future__ import annotations

import random

import numpy as np
import torch

from graphforge.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """Turn ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` into a usable device.

    Raises:
        ConfigError: If CUDA is asked for but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name} was asked for, but CUDA is not available here; use --device cpu or auto")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Capture the global RNG states (saved in checkpoints for exact resume).

    Only tensors and plain Python values, so the checkpoint loads with
    ``torch.load(..., weights_only=True)`` (no pickled objects, no code run on load).
    """
    version, key, gauss = random.getstate()
    name, mt, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [int(version), torch.tensor(key, dtype=torch.int64), gauss],
        "numpy": {"name": str(name), "key": torch.from_numpy(np.asarray(mt, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore RNG states captured by :func:`rng_state` (or by graphforge before 0.2, which pickled them)."""
    py = state["python"]
    if isinstance(py, list) and isinstance(py[1], torch.Tensor):
        py = (py[0], tuple(int(v) for v in py[1].tolist()), py[2])
    random.setstate(tuple(py))
    npy = state["numpy"]
    if isinstance(npy, dict):
        npy = (npy["name"], npy["key"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    np.random.set_state(npy)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
