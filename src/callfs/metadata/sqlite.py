"""The embedded metadata store: one SQLite file in WAL mode (``callfs dev``).

Writes go through one connection, one transaction at a time (``BEGIN IMMEDIATE``,
so other processes on the same file wait on ``busy_timeout`` rather than fail);
reads use a second connection and see the last committed state.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite

from callfs import paths
from callfs.entry import Entry, utcnow
from callfs.errors import (
    AlreadyExists,
    BackendUnavailable,
    DirectoryNotEmpty,
    EntryChanged,
    NotADirectory,
    NotFound,
)
from callfs.metadata import migration, subtree
from callfs.metadata.base import (
    ConsumeOutcome,
    LinkRecord,
    MetadataStore,
    placement,
    recorded_replicas,
)

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
BUSY_RETRY_DELAY = 0.01
# SQLite allows 32766 host parameters; stay far below it.
MAX_PARAMS = 500

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_COLUMNS = (
    "path, type, size, mode, owner, grp, mtime, ctime, etag, backend, instance_id, object_key,"
    " replicas, entry_id"
)
_LINK_COLUMNS = "token_id, path, expires_at, created_by, created_at, used_at, entry_id"
_DEPTH = "(length(path) - length(replace(path, '/', '')))"


def _to_db(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def _from_db(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _entry(row: sqlite3.Row | tuple[Any, ...]) -> Entry:
    return Entry(
        path=row[0],
        type=row[1],
        size=row[2],
        mode=row[3],
        owner=row[4],
        group=row[5],
        mtime=_from_db(row[6]),
        ctime=_from_db(row[7]),
        etag=row[8],
        backend=row[9],
        instance_id=row[10],
        object_key=row[11],
        replicas=recorded_replicas(row[10], row[12].split(",") if row[12] else ()),
        entry_id=row[13],
    )


def _link(row: sqlite3.Row | tuple[Any, ...]) -> LinkRecord:
    return LinkRecord(
        token_id=row[0],
        path=row[1],
        expires_at=_from_db(row[2]),
        created_by=row[3],
        created_at=_from_db(row[4]),
        used_at=None if row[5] is None else _from_db(row[5]),
        entry_id=row[6],
    )


def _changeable(entry: Entry) -> tuple[Any, ...]:
    """The columns an update may change, in the order the statements name them."""
    return (
        entry.size,
        entry.mode,
        entry.owner,
        entry.group,
        _to_db(entry.mtime),
        _to_db(entry.ctime),
        entry.etag,
        entry.backend,
        entry.instance_id,
        entry.object_key,
        ",".join(entry.replicas),
    )


def _on_node(backend: str, instance_id: str | None) -> tuple[str, tuple[Any, ...]]:
    """The condition (and its parameters) for rows whose object is on one node of
    ``backend``: the node is one of the row's replicas, or its instance_id (a row
    written before replicas were recorded); for S3 (None), the row names no node.
    """
    if instance_id is None:
        return "backend = ? AND instance_id IS NULL", (backend,)
    return (
        "backend = ? AND (instance_id = ? OR instr(',' || replicas || ',', ',' || ? || ',') > 0)",
        (backend, instance_id, instance_id),
    )


def _insert_params(entry: Entry) -> tuple[Any, ...]:
    parent = subtree.row_parent(entry.path)
    return (entry.path, parent, entry.name, entry.type, *_changeable(entry), entry.entry_id)


_INSERT = (
    "INSERT INTO entries (path, parent, name, type, size, mode, owner, grp, mtime, ctime,"
    " etag, backend, instance_id, object_key, replicas, entry_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (path) DO NOTHING"
)


async def _when_free(db: aiosqlite.Connection, sql: str) -> None:
    """Run ``sql``, tried again while SQLite answers busy without waiting.

    SQLite skips the busy handler where waiting could deadlock (for instance while
    another connection turns a fresh file to WAL, or when two connections switch it
    at once), so ``busy_timeout`` alone is not enough for ``BEGIN IMMEDIATE`` and
    ``PRAGMA journal_mode``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            await db.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or loop.time() > deadline:
                raise
        await asyncio.sleep(BUSY_RETRY_DELAY)


def _make_folder(path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), MAX_PARAMS):
        yield items[start : start + MAX_PARAMS]


class SQLiteMetadataStore(MetadataStore):
    """The namespace in one SQLite file at ``path`` (created with its folder if missing)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    # Lifecycle

    async def open(self) -> None:
        memory = self.path == ":memory:"
        try:
            if not memory:
                await asyncio.to_thread(_make_folder, self.path)
            self._writer = await self._connect()
            await _when_free(self._writer, "PRAGMA journal_mode = WAL")
            await self._migrate()
            # An in-memory database exists only on its one connection.
            if memory:
                self._reader = self._writer
            else:
                self._reader = await self._connect()
                await self._reader.execute("PRAGMA query_only = ON")
        except BaseException as exc:
            await self.close()
            if not isinstance(exc, OSError | sqlite3.Error):
                raise
            logger.error("cannot open the SQLite metadata store at %s: %s", self.path, exc)
            raise BackendUnavailable("metadata store unavailable") from None

    async def _connect(self) -> aiosqlite.Connection:
        connection = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await connection.execute("PRAGMA synchronous = FULL")
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _migrate(self) -> None:
        async with self._write() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            async with db.execute("SELECT version FROM schema_migrations") as cursor:
                applied = {row[0] for row in await cursor.fetchall()}
            for step in migration.load("sqlite"):
                if step.version in applied:
                    continue
                logger.info("applying SQLite migration %04d_%s", step.version, step.name)
                for statement in migration.statements(step.sql):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (step.version, utcnow().isoformat()),
                )
            now = utcnow()
            root = Entry(
                path=paths.ROOT, type="directory", mode=0o1777, owner="root", group="root",
                mtime=now, ctime=now,
            )  # fmt: skip
            await db.execute(_INSERT, _insert_params(root))

    async def close(self) -> None:
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if reader is not None and reader is not writer:
            await reader.close()
        if writer is not None:
            await writer.close()

    async def ping(self) -> None:
        await self._rows("SELECT 1")

    # Connections

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of one query on the reader connection, run to its end in one call.

        Never a cursor left open across awaits: the reader connection is shared, and
        while one of its statements is unfinished SQLite keeps its read transaction
        open, so every other query on it would read that older snapshot (a mutation
        deciding from it would decide from the past).
        """
        if self._reader is None:
            raise BackendUnavailable("metadata store unavailable")
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except (sqlite3.OperationalError, sqlite3.InterfaceError, ValueError) as exc:
            # ValueError: aiosqlite's "no active connection" after close.
            logger.error("SQLite metadata store failed: %s", exc)
            raise BackendUnavailable("metadata store unavailable") from None

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction, committed unless the block raises."""
        async with self._write_lock:
            db = self._writer
            if db is None:
                raise BackendUnavailable("metadata store unavailable")
            try:
                await _when_free(db, "BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                    raise
                await db.execute("COMMIT")
            except (sqlite3.OperationalError, sqlite3.InterfaceError, ValueError) as exc:
                logger.error("SQLite metadata store failed: %s", exc)
                raise BackendUnavailable("metadata store unavailable") from None

    async def _write_one(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Run one statement as its own transaction and return its rows.

        SQLite commits a lone statement by itself, as atomically and durably as
        ``BEGIN IMMEDIATE ... COMMIT``, in one round trip to the connection's thread
        instead of three: the write lock is held that much shorter.
        """
        async with self._write_lock:
            db = self._writer
            if db is None:
                raise BackendUnavailable("metadata store unavailable")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + BUSY_TIMEOUT_MS / 1000
            while True:
                try:
                    return list(await db.execute_fetchall(sql, params))
                except sqlite3.OperationalError as exc:
                    busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                    if not busy or loop.time() > deadline:
                        logger.error("SQLite metadata store failed: %s", exc)
                        raise BackendUnavailable("metadata store unavailable") from None
                except (sqlite3.InterfaceError, ValueError) as exc:
                    logger.error("SQLite metadata store failed: %s", exc)
                    raise BackendUnavailable("metadata store unavailable") from None
                await asyncio.sleep(BUSY_RETRY_DELAY)

    # Reads

    async def get(self, path: str) -> Entry | None:
        rows = await self._rows(f"SELECT {_COLUMNS} FROM entries WHERE path = ?", (path,))
        return _entry(rows[0]) if rows else None

    async def get_many(self, paths: Sequence[str]) -> dict[str, Entry]:
        wanted = sorted(set(paths))
        found: dict[str, Entry] = {}
        for chunk in _chunks(wanted):
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT {_COLUMNS} FROM entries WHERE path IN ({marks})"
            for row in await self._rows(sql, tuple(chunk)):
                found[row[0]] = _entry(row)
        return found

    async def list_children(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> list[Entry]:
        sql = f"SELECT {_COLUMNS} FROM entries WHERE parent = ? AND path > ? ORDER BY path LIMIT ?"
        params = (path, after or "", -1 if limit is None else limit)
        return [_entry(row) for row in await self._rows(sql, params)]

    async def list_tree(
        self,
        path: str,
        *,
        max_depth: int | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> list[Entry]:
        low, high, deepest = subtree.window(path, max_depth, after)
        sql = f"SELECT {_COLUMNS} FROM entries WHERE path > ? AND path < ?"
        params: list[Any] = [low, high]
        if deepest is not None:
            sql += f" AND {_DEPTH} <= ?"
            params.append(deepest)
        sql += " ORDER BY path LIMIT ?"
        params.append(-1 if limit is None else limit)
        return [_entry(row) for row in await self._rows(sql, params)]

    async def has_children(self, path: str) -> bool:
        return bool(await self._rows("SELECT 1 FROM entries WHERE parent = ? LIMIT 1", (path,)))

    async def object_keys(self, backend: str, instance_id: str | None) -> set[str]:
        on_node, params = _on_node(backend, instance_id)
        sql = f"SELECT object_key FROM entries WHERE {on_node} AND object_key IS NOT NULL"
        return {row[0] for row in await self._rows(sql, params)}

    async def referenced_keys(
        self, backend: str, instance_id: str | None, keys: Sequence[str]
    ) -> set[str]:
        on_node, params = _on_node(backend, instance_id)
        found: set[str] = set()
        for chunk in _chunks(list(set(keys))):
            sql = (
                f"SELECT object_key FROM entries WHERE {on_node}"
                f" AND object_key IN ({', '.join('?' * len(chunk))})"
            )
            found.update(row[0] for row in await self._rows(sql, (*params, *chunk)))
        return found

    # Mutations

    async def create(self, entry: Entry, parents: Sequence[Entry] = ()) -> None:
        async with self._write() as db:
            await self._ensure_parents(db, entry.path, parents)
            cursor = await db.execute(_INSERT, _insert_params(entry))
            inserted = cursor.rowcount
            await cursor.close()
            if inserted == 0:
                raise AlreadyExists(f"{entry.path} already exists")

    async def _ensure_parents(
        self, db: aiosqlite.Connection, path: str, parents: Sequence[Entry]
    ) -> None:
        """Insert the missing ``parents``, then check every directory a new row hangs off."""
        for parent in sorted(parents, key=lambda e: e.path):
            await db.execute(_INSERT, _insert_params(parent))
        wanted = subtree.anchors(path, parents)
        types: dict[str, str] = {}
        for chunk in _chunks(wanted):
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT path, type FROM entries WHERE path IN ({marks})"
            async with db.execute(sql, tuple(chunk)) as cursor:
                types.update({row[0]: row[1] for row in await cursor.fetchall()})
        for directory in wanted:
            kind = types.get(directory)
            if kind is None:
                raise NotFound(f"parent directory {directory} does not exist")
            if kind != "directory":
                raise NotADirectory(f"{directory} is not a directory")

    async def update(self, entry: Entry, *, expected: Entry | None = None) -> None:
        sql = (
            "UPDATE entries SET size = ?, mode = ?, owner = ?, grp = ?, mtime = ?, ctime = ?,"
            " etag = ?, backend = ?, instance_id = ?, object_key = ?, replicas = ? WHERE path = ?"
        )
        params: list[Any] = [*_changeable(entry), entry.path]
        if expected is not None:
            sql += " AND object_key IS ? AND etag IS ?"
            params += [expected.object_key, expected.etag]
        if await self._write_one(sql + " RETURNING path", params):
            return
        if await self.get(entry.path) is None:
            raise NotFound(f"{entry.path} does not exist")
        raise EntryChanged(f"{entry.path} changed since it was read")

    async def set_replicas(self, path: str, object_key: str, replicas: Sequence[str]) -> bool:
        holders = placement(replicas)
        rows = await self._write_one(
            "UPDATE entries SET instance_id = ?, replicas = ?"
            " WHERE path = ? AND object_key = ? RETURNING path",
            (holders[0], ",".join(holders), path, object_key),
        )
        return bool(rows)

    async def delete(self, path: str) -> Entry:
        subtree.check_delete(path)
        async with self._write() as db:
            entry = await self._fetch(db, path)
            if entry is None:
                raise NotFound(f"{path} does not exist")
            if entry.is_dir:
                async with db.execute(
                    "SELECT 1 FROM entries WHERE parent = ? LIMIT 1", (path,)
                ) as cursor:
                    if await cursor.fetchone() is not None:
                        raise DirectoryNotEmpty(f"{path} is not empty")
            await db.execute("DELETE FROM entries WHERE path = ?", (path,))
        return entry

    async def delete_tree(self, path: str) -> list[Entry]:
        subtree.check_delete(path)
        low, high = subtree.bounds(path)
        where = "path = ? OR (path > ? AND path < ?)"
        async with self._write() as db:
            sql = f"DELETE FROM entries WHERE {where} RETURNING {_COLUMNS}"
            async with db.execute(sql, (path, low, high)) as cursor:
                removed = [_entry(row) for row in await cursor.fetchall()]
        return sorted(removed, key=lambda e: e.path)

    async def move(
        self, source: str, destination: str, *, replace: bool = False, parents: Sequence[Entry] = ()
    ) -> list[Entry]:
        subtree.check_move(source, destination)
        async with self._write() as db:
            moving = await self._fetch(db, source)
            if moving is None:
                raise NotFound(f"{source} does not exist")
            if destination == source:
                return []
            await self._ensure_parents(db, destination, parents)
            replaced: list[Entry] = []
            target = await self._fetch(db, destination)
            if target is not None:
                subtree.check_replace(moving, target, replace=replace)
                if target.is_dir:
                    async with db.execute(
                        "SELECT 1 FROM entries WHERE parent = ? LIMIT 1", (destination,)
                    ) as cursor:
                        if await cursor.fetchone() is not None:
                            raise DirectoryNotEmpty(f"{destination} is not empty")
                await db.execute("DELETE FROM entries WHERE path = ?", (destination,))
                replaced.append(target)
            low, high = subtree.bounds(source)
            cut = len(source) + 1
            await db.execute(
                "UPDATE entries SET path = ?, parent = ?, name = ? WHERE path = ?",
                (destination, subtree.row_parent(destination), paths.name(destination), source),
            )
            await db.execute(
                "UPDATE entries SET path = ? || substr(path, ?), parent = ? || substr(parent, ?)"
                " WHERE path > ? AND path < ?",
                (destination, cut, destination, cut, low, high),
            )
        return replaced

    async def _fetch(self, db: aiosqlite.Connection, path: str) -> Entry | None:
        async with db.execute(f"SELECT {_COLUMNS} FROM entries WHERE path = ?", (path,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _entry(row)

    # Links

    async def create_link(self, link: LinkRecord) -> None:
        sql = f"INSERT INTO links ({_LINK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        params = (
            link.token_id,
            link.path,
            _to_db(link.expires_at),
            link.created_by,
            _to_db(link.created_at),
            None if link.used_at is None else _to_db(link.used_at),
            link.entry_id,
        )
        try:
            async with self._write() as db:
                await db.execute(sql, params)
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"link {link.token_id} already exists") from None

    async def consume_link(
        self, token_id: str, now: datetime
    ) -> tuple[ConsumeOutcome, LinkRecord | None]:
        moment = _to_db(now)
        async with self._write() as db:
            async with db.execute(
                "UPDATE links SET used_at = ?"
                " WHERE token_id = ? AND used_at IS NULL AND expires_at > ?"
                f" RETURNING {_LINK_COLUMNS}",
                (moment, token_id, moment),
            ) as cursor:
                row = await cursor.fetchone()
            if row is not None:
                return "consumed", _link(row)
            async with db.execute(
                f"SELECT {_LINK_COLUMNS} FROM links WHERE token_id = ?", (token_id,)
            ) as cursor:
                row = await cursor.fetchone()
        if row is None:
            return "not_found", None
        link = _link(row)
        return ("used" if link.used_at is not None else "expired"), link

    async def release_link(self, token_id: str) -> None:
        async with self._write() as db:
            await db.execute("UPDATE links SET used_at = NULL WHERE token_id = ?", (token_id,))

    async def purge_links(self, now: datetime, batch: int) -> int:
        async with self._write() as db:
            cursor = await db.execute(
                "DELETE FROM links WHERE token_id IN (SELECT token_id FROM links"
                " WHERE expires_at <= ? LIMIT ?)",
                (_to_db(now), batch),
            )
            removed = cursor.rowcount
            await cursor.close()
        return removed
