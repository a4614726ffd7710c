"""Fixtures for the gateway suite: every API test runs on SQLite, those marked
``both_stores`` on PostgreSQL too (tests/support/stores.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callfs.settings import Settings
from tests.support.harness import Cluster, make_settings, running_cluster
from tests.support.stores import parametrize_stores


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc)


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, store_kind: str) -> Settings:
    """Test settings on one metadata store (PostgreSQL: a fresh database per test)."""
    dsn = request.getfixturevalue("postgres_dsn") if store_kind == "postgres" else None
    return make_settings(tmp_path, store_kind, dsn)


@pytest.fixture
async def cluster(settings: Settings) -> AsyncIterator[Cluster]:
    """Two storage nodes and one gateway."""
    async with running_cluster(settings) as running:
        yield running
