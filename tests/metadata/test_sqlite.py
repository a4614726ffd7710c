"""What only the SQLite store does: the file, WAL mode, in-memory use."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from callfs.errors import BackendUnavailable
from callfs.metadata import open_store
from callfs.metadata.sqlite import SQLiteMetadataStore
from callfs.settings import MetadataStoreSettings
from tests.metadata.entries import file


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


def test_open_store_builds_a_sqlite_store_from_settings(tmp_path: Path) -> None:
    settings = MetadataStoreSettings(type="sqlite", sqlite_path=str(tmp_path / "m.sqlite3"))
    store = open_store(settings)
    assert isinstance(store, SQLiteMetadataStore)
    assert store.path == str(tmp_path / "m.sqlite3")
