"""Upgrading a database that earlier versions wrote, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from datetime import timedelta

import asyncpg

from callfs.metadata import migration
from callfs.metadata.base import MetadataStore
from tests.metadata.conftest import StoreTarget
from tests.metadata.entries import T0

# Rows as version 1 stored them: (path, parent, name, type, object_key).
ROWS = [
    ("/", "", "", "directory", None),
    ("/docs", "/", "docs", "directory", None),
    ("/docs/a.txt", "/docs", "a.txt", "file", "key-a"),
    ("/b.txt", "/", "b.txt", "file", "key-b"),
]
# Links as version 1 stored them: (token_id, path).
LINKS = [("to-a", "/docs/a.txt"), ("to-gone", "/gone.txt"), ("to-docs", "/docs")]


def _sqlite_at_version_one(location: str) -> None:
    os.makedirs(os.path.dirname(location), exist_ok=True)
    micros = int(T0.timestamp() * 1_000_000)
    db = sqlite3.connect(location)
    try:
        db.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        for statement in migration.statements(migration.load("sqlite")[0].sql):
            db.execute(statement)
        db.execute("INSERT INTO schema_migrations VALUES (1, ?)", (T0.isoformat(),))
        for path, parent, name, kind, key in ROWS:
            db.execute(
                "INSERT INTO entries (path, parent, name, type, size, mode, owner, grp, mtime,"
                " ctime, backend, object_key) VALUES (?, ?, ?, ?, 0, 420, 'alice', 'staff', ?, ?,"
                " 'localfs', ?)",
                (path, parent, name, kind, micros, micros, key),
            )
        for token_id, path in LINKS:
            db.execute(
                "INSERT INTO links (token_id, path, expires_at, created_by, created_at)"
                " VALUES (?, ?, ?, 'alice', ?)",
                (token_id, path, micros + 3_600_000_000, micros),
            )
        db.commit()
    finally:
        db.close()


async def _postgres_at_version_one(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(migration.load("postgres")[0].sql)
        await conn.execute("INSERT INTO schema_migrations (version) VALUES (1)")
        await conn.executemany(
            "INSERT INTO entries (path, parent, name, type, size, mode, owner, grp, mtime, ctime,"
            " backend, object_key) VALUES ($1, $2, $3, $4, 0, 420, 'alice', 'staff', $5, $5,"
            " 'localfs', $6)",
            [(path, parent, name, kind, T0, key) for path, parent, name, kind, key in ROWS],
        )
        await conn.executemany(
            "INSERT INTO links (token_id, path, expires_at, created_by, created_at)"
            " VALUES ($1, $2, $3, 'alice', $4)",
            [(token_id, path, T0 + timedelta(hours=1), T0) for token_id, path in LINKS],
        )
    finally:
        await conn.close()


async def _at_version_one(target: StoreTarget) -> None:
    if target.kind == "sqlite":
        await asyncio.to_thread(_sqlite_at_version_one, target.location)
    else:
        await _postgres_at_version_one(target.location)


async def _entry_ids(store: MetadataStore) -> dict[str, str]:
    entries = [*(await store.get_many(["/"])).values(), *await store.list_tree("/")]
    return {entry.path: entry.entry_id for entry in entries}


async def test_upgrade_gives_every_existing_entry_its_own_entry_id(
    store_target: StoreTarget,
) -> None:
    await _at_version_one(store_target)
    store = store_target.build()
    await store.open()
    try:
        ids = await _entry_ids(store)
        assert sorted(ids) == sorted(path for path, *_ in ROWS)
        assert all(re.fullmatch("[0-9a-f]{32}", entry_id) for entry_id in ids.values())
        assert len(set(ids.values())) == len(ids)
        found = await store.get("/docs/a.txt")
        assert found is not None and found.object_key == "key-a"
    finally:
        await store.close()
    assert await store_target.migration_versions() == [1, 2, 3, 4]
    # Reopened, the upgraded rows keep the ids they were given.
    again = store_target.build()
    await again.open()
    try:
        assert await _entry_ids(again) == ids
    finally:
        await again.close()


async def test_upgrade_pins_existing_links_to_the_file_at_their_path(
    store_target: StoreTarget,
) -> None:
    await _at_version_one(store_target)
    store = store_target.build()
    await store.open()
    try:
        file_id = (await _entry_ids(store))["/docs/a.txt"]
        now = T0 + timedelta(minutes=1)
        pinned = {}
        for token_id, _ in LINKS:
            outcome, record = await store.consume_link(token_id, now)
            assert outcome == "consumed" and record is not None
            pinned[token_id] = record.entry_id
    finally:
        await store.close()
    assert pinned == {
        "to-a": file_id,
        # No file at the path: an id that names no entry, so the link stays dead.
        "to-gone": "",
        "to-docs": "",
    }


# Rows as version 2 stored them: (path, parent, name, type, backend, instance_id, object_key).
ROWS_TWO = [
    ("/", "", "", "directory", "localfs", None, None),
    ("/local.txt", "/", "local.txt", "file", "localfs", "node-1", "key-local"),
    ("/remote.txt", "/", "remote.txt", "file", "s3", None, "key-remote"),
]


def _sqlite_at_version_two(location: str) -> None:
    os.makedirs(os.path.dirname(location), exist_ok=True)
    micros = int(T0.timestamp() * 1_000_000)
    db = sqlite3.connect(location)
    try:
        db.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        for step in migration.load("sqlite")[:2]:
            for statement in migration.statements(step.sql):
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations VALUES (?, ?)", (step.version, T0.isoformat())
            )
        for path, parent, name, kind, backend, instance_id, key in ROWS_TWO:
            db.execute(
                "INSERT INTO entries (path, parent, name, type, size, mode, owner, grp, mtime,"
                " ctime, backend, instance_id, object_key) VALUES (?, ?, ?, ?, 0, 420, 'alice',"
                " 'staff', ?, ?, ?, ?, ?)",
                (path, parent, name, kind, micros, micros, backend, instance_id, key),
            )
        db.commit()
    finally:
        db.close()


async def _postgres_at_version_two(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for step in migration.load("postgres")[:2]:
            await conn.execute(step.sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", step.version)
        await conn.executemany(
            "INSERT INTO entries (path, parent, name, type, size, mode, owner, grp, mtime, ctime,"
            " backend, instance_id, object_key) VALUES ($1, $2, $3, $4, 0, 420, 'alice', 'staff',"
            " $5, $5, $6, $7, $8)",
            [(path, parent, name, kind, T0, *rest) for path, parent, name, kind, *rest in ROWS_TWO],
        )
    finally:
        await conn.close()


async def test_upgrade_records_each_node_file_on_its_instance_id(
    store_target: StoreTarget,
) -> None:
    if store_target.kind == "sqlite":
        await asyncio.to_thread(_sqlite_at_version_two, store_target.location)
    else:
        await _postgres_at_version_two(store_target.location)
    store = store_target.build()
    await store.open()
    try:
        local = await store.get("/local.txt")
        remote = await store.get("/remote.txt")
        root = await store.get("/")
        # The column itself was filled in, not only read through instance_id.
        assert local is not None and local.replicas == ("node-1",)
        assert local.to_json()["replicas"] == ["node-1"]
        assert remote is not None and remote.replicas == ()
        assert root is not None and root.replicas == ()
        assert await store.object_keys("localfs", "node-1") == {"key-local"}
        assert await store.object_keys("s3", None) == {"key-remote"}
    finally:
        await store.close()
    assert await store_target.migration_versions() == [1, 2, 3, 4]
