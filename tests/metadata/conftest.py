"""Fixtures for the metadata suite: every store test runs against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import asyncpg
import pytest
from pydantic import SecretStr

from callfs.metadata import open_store
from callfs.metadata.base import MetadataStore
from callfs.settings import MetadataStoreSettings


@dataclass(frozen=True)
class StoreTarget:
    """Where a test's metadata lives: a SQLite file or a fresh PostgreSQL database."""

    kind: Literal["sqlite", "postgres"]
    location: str

    def build(self) -> MetadataStore:
        """A new, unopened store on this target (another replica, as it were)."""
        if self.kind == "sqlite":
            settings = MetadataStoreSettings(type="sqlite", sqlite_path=self.location)
        else:
            settings = MetadataStoreSettings(
                type="postgres", dsn=SecretStr(self.location), pool_min_size=1, pool_max_size=10
            )
        return open_store(settings)

    async def migration_versions(self) -> list[int]:
        """The versions recorded in ``schema_migrations``, read around the store."""
        if self.kind == "sqlite":
            return await asyncio.to_thread(self._sqlite_versions)
        conn = await asyncpg.connect(self.location)
        try:
            records = await conn.fetch("SELECT version FROM schema_migrations")
        finally:
            await conn.close()
        return sorted(record["version"] for record in records)

    async def plan(self, query: str, *args: object) -> str:
        """The store's own plan for ``query`` (``EXPLAIN QUERY PLAN`` on SQLite; on
        PostgreSQL ``EXPLAIN`` with sequential scans priced out, since a handful of rows
        is cheaper scanned than through any index), one line per step.
        """
        if self.kind == "sqlite":
            return await asyncio.to_thread(self._sqlite_plan, query, args)
        conn = await asyncpg.connect(self.location)
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_seqscan = off")
                records = await conn.fetch(f"EXPLAIN {query}", *args)
        finally:
            await conn.close()
        return "\n".join(record[0] for record in records)

    def _sqlite_plan(self, query: str, args: tuple[object, ...]) -> str:
        connection = sqlite3.connect(self.location)
        try:
            rows = connection.execute(f"EXPLAIN QUERY PLAN {query}", args).fetchall()
        finally:
            connection.close()
        return "\n".join(str(row[-1]) for row in rows)

    def _sqlite_versions(self) -> list[int]:
        connection = sqlite3.connect(self.location)
        try:
            rows = connection.execute("SELECT version FROM schema_migrations").fetchall()
        finally:
            connection.close()
        return sorted(row[0] for row in rows)


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    """Each store kind in turn (PostgreSQL: a fresh database per test)."""
    if request.param == "sqlite":
        return StoreTarget("sqlite", str(tmp_path / "metadata" / "callfs.sqlite3"))
    return StoreTarget("postgres", request.getfixturevalue("postgres_dsn"))


@pytest.fixture
async def store(store_target: StoreTarget) -> AsyncIterator[MetadataStore]:
    """An opened store on ``store_target``."""
    opened = store_target.build()
    await opened.open()
    yield opened
    await opened.close()
