"""Fixtures for the link suites: every API test runs against SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from callfs_link_service.app import mount_links

from callfs.settings import Settings
from tests.links.support import GENEROUS_LIMITS
from tests.support.harness import Cluster, make_settings, running_cluster

EXTERNAL_URL = "files.example.com"


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Test settings on one metadata store (PostgreSQL: a fresh database per test)."""
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    return make_settings(
        tmp_path,
        request.param,
        dsn,
        server={"external_url": EXTERNAL_URL},
        links=GENEROUS_LIMITS,
    )


@pytest.fixture
async def cluster(settings: Settings) -> AsyncIterator[Cluster]:
    """Two storage nodes and one gateway that also serves the link routes (as ``callfs dev``)."""
    async with running_cluster(settings, extend=mount_links) as running:
        yield running
