"""Fixtures of the ops tests."""

from __future__ import annotations

import pytest

from tests.ops.knn_checks import DEVICES


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Every device present: CPU always, CUDA when available."""
    return request.param
