"""What only the SQLite store does: the file, WAL mode, in-memory use."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable
from pathlib import Path

import pytest

from callfs.errors import AlreadyExists, BackendUnavailable, EntryChanged
from callfs.metadata import open_store, sqlite
from callfs.metadata.sqlite import SQLiteMetadataStore
from callfs.settings import MetadataStoreSettings
from tests.metadata.entries import directory, file


def journal_mode(path: Path) -> str:
    connection = sqlite3.connect(path)
    try:
        mode: str = connection.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        connection.close()
    return mode


async def test_store_creates_its_folder_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "meta.sqlite3"
    store = SQLiteMetadataStore(str(path))
    await store.open()
    try:
        await store.create(file("/f"))
    finally:
        await store.close()
    assert await asyncio.to_thread(journal_mode, path) == "wal"


async def test_unopenable_path_is_backend_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = SQLiteMetadataStore(str(blocker / "meta.sqlite3"))
    with pytest.raises(BackendUnavailable):
        await store.open()


async def test_closed_store_is_backend_unavailable(tmp_path: Path) -> None:
    store = SQLiteMetadataStore(str(tmp_path / "meta.sqlite3"))
    await store.open()
    await store.close()
    with pytest.raises(BackendUnavailable):
        await store.get("/")
    with pytest.raises(BackendUnavailable):
        await store.create(file("/f"))


async def test_in_memory_store_keeps_entries_while_open() -> None:
    store = SQLiteMetadataStore(":memory:")
    await store.open()
    try:
        await store.create(file("/f"))
        assert await store.get("/f") == file("/f")
        assert [e.path for e in await store.list_children("/")] == ["/f"]
    finally:
        await store.close()


async def test_every_operation_is_one_call_into_a_connection_thread(tmp_path: Path) -> None:
    store = SQLiteMetadataStore(str(tmp_path / "meta.sqlite3"))
    await store.open()

    async def hops(operation: Awaitable[object]) -> int:
        before = store.hops
        await operation
        return store.hops - before

    try:
        parents = [directory("/a"), directory("/a/b")]
        assert await hops(store.create(file("/a/b/f"), parents)) == 1
        assert await hops(store.update(file("/a/b/f", size=5))) == 1
        assert await hops(store.move("/a/b/f", "/a/g")) == 1
        assert await hops(store.delete("/a/g")) == 1
        assert await hops(store.get("/a")) == 1
        before = store.hops
        with pytest.raises(EntryChanged):
            await store.update(file("/a/b", size=1), expected=file("/a/b", etag="other"))
        with pytest.raises(AlreadyExists):
            await store.create(directory("/a"))
        assert store.hops - before == 2
    finally:
        await store.close()


async def test_a_write_whose_caller_is_cancelled_still_commits_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteMetadataStore(str(tmp_path / "meta.sqlite3"))
    await store.open()
    started, release = threading.Event(), threading.Event()
    when_free = sqlite._when_free

    def held(db: sqlite3.Connection, sql: str) -> None:
        started.set()
        release.wait(10)
        when_free(db, sql)

    monkeypatch.setattr(sqlite, "_when_free", held)
    try:
        creating = asyncio.create_task(store.create(file("/a/f"), [directory("/a")]))
        assert await asyncio.to_thread(started.wait, 10)
        creating.cancel()
        with pytest.raises(asyncio.CancelledError):
            await creating
        release.set()
        # Queued behind the cancelled call in the writer's thread: it finds no
        # transaction left open, and both rows of the create committed.
        await store.create(file("/g"))
        assert await store.get("/a") is not None
        assert await store.get("/a/f") == file("/a/f")
    finally:
        release.set()
        await store.close()


def test_open_store_builds_a_sqlite_store_from_settings(tmp_path: Path) -> None:
    settings = MetadataStoreSettings(type="sqlite", sqlite_path=str(tmp_path / "m.sqlite3"))
    store = open_store(settings)
    assert isinstance(store, SQLiteMetadataStore)
    assert store.path == str(tmp_path / "m.sqlite3")
