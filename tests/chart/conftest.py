"""Fixtures of the chart checks: the helm of .tools/ (a missing one fails, never skips)."""

from __future__ import annotations

import pytest

from tests.chart.rendering import Helm, tool


@pytest.fixture(scope="session")
def helm() -> Helm:
    """The helm of .tools/."""
    return Helm(tool("helm"))
