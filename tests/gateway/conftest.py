"""Fixtures for the gateway suite: every API test runs against SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callfs.settings import Settings
from tests.support.harness import Cluster, make_settings, running_cluster


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Test settings on one metadata store (PostgreSQL: a fresh database per test)."""
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    return make_settings(tmp_path, request.param, dsn)


@pytest.fixture
async def cluster(settings: Settings) -> AsyncIterator[Cluster]:
    """Two storage nodes and one gateway."""
    async with running_cluster(settings) as running:
        yield running
