"""Fixtures of the chart checks: the helm of .tools/ (a missing one fails, never skips), and
the series CallFS's roles export."""

from __future__ import annotations

import pytest

from tests.chart.monitoring import Exported, exported
from tests.chart.rendering import Helm, tool


@pytest.fixture(scope="session")
def helm() -> Helm:
    """The helm of .tools/."""
    return Helm(tool("helm"))


@pytest.fixture(scope="session")
def exported_series(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Every series each role can expose, as Prometheus stores it after a scrape."""
    return exported(tmp_path_factory.mktemp("volume"))
