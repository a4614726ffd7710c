"""Fixtures for the link suites: every API test runs on SQLite, those marked
``both_stores`` on PostgreSQL too (tests/support/stores.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from callfs_link_service.app import mount_links

from callfs.settings import Settings
from tests.links.support import GENEROUS_LIMITS
from tests.support.clock import ManualClock
from tests.support.harness import Cluster, make_settings, running_cluster
from tests.support.stores import parametrize_stores

EXTERNAL_URL = "files.example.com"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc)


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, store_kind: str) -> Settings:
    """Test settings on one metadata store (PostgreSQL: a fresh database per test)."""
    dsn = request.getfixturevalue("postgres_dsn") if store_kind == "postgres" else None
    return make_settings(
        tmp_path,
        store_kind,
        dsn,
        server={"external_url": EXTERNAL_URL},
        links=GENEROUS_LIMITS,
    )


@pytest.fixture
async def cluster(settings: Settings) -> AsyncIterator[Cluster]:
    """Two storage nodes and one gateway that also serves the link routes (as ``callfs dev``)."""
    async with running_cluster(settings, extend=mount_links) as running:
        yield running


@pytest.fixture
def clock(cluster: Cluster) -> ManualClock:
    """The clock the cluster's links are issued, expire and are purged by, from now on."""
    manual = ManualClock()
    cluster.gateway.app.state.links.clock = manual
    return manual
