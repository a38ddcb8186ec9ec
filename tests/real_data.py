"""Where the real-data tests find real Fashion-MNIST and MNIST (not collected as tests).

The folder named by ``$GRAPHFORGE_REAL_DATA``, else a ``shared/data`` folder beside the
checkout (the developers' workspace and CI have one; a user's clone does not). Tests that
need it skip when it is absent; they never download.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL_DATA = Path(os.environ.get("GRAPHFORGE_REAL_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def real_data(name: str) -> Path:
    """The real-data root holding ``name`` (``MNIST``, ``FashionMNIST``); skips the test without it."""
    if not (REAL_DATA / name / "raw").is_dir():
        pytest.skip(f"real {name} data not found (set GRAPHFORGE_REAL_DATA to a folder holding {name}/raw)")
    return REAL_DATA
