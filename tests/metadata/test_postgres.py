"""What only the PostgreSQL store does: connection trouble, migration locking."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from pydantic import SecretStr

from callfs.errors import BackendUnavailable
from callfs.metadata import migration, open_store
from callfs.metadata.postgres import MIGRATION_LOCK, PostgresMetadataStore, check_connectivity
from callfs.settings import MetadataStoreSettings
from tests.support.servers import free_port, silent_port


async def test_unreachable_server_is_backend_unavailable_without_details() -> None:
    store = PostgresMetadataStore(
        f"postgresql://callfs:hunter2@127.0.0.1:{free_port()}/callfs", acquire_timeout=2
    )
    with pytest.raises(BackendUnavailable) as caught:
        await store.open()
    assert str(caught.value) == "metadata store unavailable"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_closed_store_is_backend_unavailable(postgres_dsn: str) -> None:
    store = PostgresMetadataStore(postgres_dsn, min_size=1, max_size=2)
    await store.open()
    await store.ping()
    await store.close()
    with pytest.raises(BackendUnavailable):
        await store.get("/")
    with pytest.raises(BackendUnavailable):
        await store.ping()


async def test_migrations_are_recorded_with_their_time(postgres_dsn: str) -> None:
    store = PostgresMetadataStore(postgres_dsn, min_size=1, max_size=2)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        rows = await conn.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY 1")
        collation = await conn.fetchval(
            "SELECT collation_name FROM information_schema.columns"
            " WHERE table_name = 'entries' AND column_name = 'path'"
        )
    finally:
        await conn.close()
    assert [row["version"] for row in rows] == [step.version for step in migration.load("postgres")]
    assert all(row["applied_at"].tzinfo is not None for row in rows)
    assert collation == "C"


async def test_open_waits_for_another_replica_migrating(postgres_dsn: str) -> None:
    holder = await asyncpg.connect(postgres_dsn)
    store = PostgresMetadataStore(postgres_dsn, min_size=1, max_size=2)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        opening = asyncio.create_task(store.open())
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        async with asyncio.timeout(10):
            # Polling: the waiter is another connection, nothing here can signal.
            while not await holder.fetchval(waiting):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert not opening.done()
        assert await holder.fetchval("SELECT to_regclass('entries') IS NULL")
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        await asyncio.wait_for(opening, 10)
        root = await store.get("/")
        assert root is not None and root.owner == "root"
    finally:
        await store.close()
        await holder.close()


def test_open_store_builds_a_postgres_store_from_settings() -> None:
    settings = MetadataStoreSettings(type="postgres", dsn=SecretStr("postgresql://h/db"))
    assert isinstance(open_store(settings), PostgresMetadataStore)


# --- config validate --check-connectivity ----------------------------------------------


async def test_check_connectivity_passes_when_the_server_lets_us_in(postgres_dsn: str) -> None:
    await check_connectivity(postgres_dsn, timeout=5)


async def test_check_connectivity_names_where_without_the_password() -> None:
    port = free_port()
    with pytest.raises(BackendUnavailable) as caught:
        await check_connectivity(f"postgresql://callfs:hunter2@127.0.0.1:{port}/callfs")
    message = str(caught.value)
    assert message.startswith(f"PostgreSQL at 127.0.0.1:{port}/callfs: ")
    assert "hunter2" not in message


async def test_check_connectivity_gives_up_on_a_server_that_never_answers() -> None:
    with silent_port() as port, pytest.raises(BackendUnavailable) as caught:
        await check_connectivity(f"postgresql://callfs@127.0.0.1:{port}/callfs", timeout=0.5)
    assert str(caught.value) == f"PostgreSQL at 127.0.0.1:{port}/callfs: no answer in 0.5s"


async def test_check_connectivity_of_a_dsn_that_is_no_url_says_so() -> None:
    with pytest.raises(BackendUnavailable, match=r"^PostgreSQL at metadata_store\.dsn: "):
        await check_connectivity("host=db user=callfs")
