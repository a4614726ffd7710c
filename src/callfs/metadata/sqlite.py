"""The embedded metadata store: one SQLite file in WAL mode (``callfs dev``).

Writes go through one connection, one transaction at a time (``BEGIN IMMEDIATE``,
so other processes on the same file wait on ``busy_timeout`` rather than fail);
reads use a second connection and see the last committed state.

Each connection has a thread of its own (:class:`_Connection`), and every store
operation is one plain function over the ``sqlite3.Connection``, run there in one
call: a create with its parent checks and its ``COMMIT`` is one hand-off to the
thread and one back, not one per statement.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from callfs import paths
from callfs.backends.base import ObjectRef
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
    removed_object,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

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
# What delete_tree returns of each removed row: enough to name its object.
_REMOVED = "path, backend, object_key, instance_id, replicas, type"
_LINK_COLUMNS = "token_id, path, expires_at, created_by, created_at, used_at, entry_id"
_DEPTH = "(length(path) - length(replace(path, '/', '')))"


def _to_db(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


@functools.lru_cache(maxsize=4096)
def _from_db(value: int) -> datetime:
    """The moment a column holds. Remembered for the last few thousand: times are
    kept to the second, and a long listing's rows share a few seconds between them."""
    return _EPOCH + timedelta(microseconds=value)


def _replicas(column: str | None) -> list[str]:
    """The ``replicas`` column as the instance ids it lists (comma-separated)."""
    return column.split(",") if column else []


def _entry(row: sqlite3.Row | tuple[Any, ...]) -> Entry:
    return Entry.stored(
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
        replicas=recorded_replicas(row[10], _replicas(row[12])),
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


# A directory's children, a page after a path: both read the ``parent`` index in order.
CHILDREN = f"SELECT {_COLUMNS} FROM entries WHERE parent = ? AND path > ? ORDER BY path LIMIT ?"


def _time_json(column: str) -> str:
    """SQL of a time column (microseconds since the epoch) as :func:`format_time` writes it."""
    return f"strftime('%Y-%m-%dT%H:%M:%SZ', {column} / 1000000, 'unixepoch')"


# A file's replicas as its entry carries them (recorded_replicas, then holders): the
# recorded list when it starts at instance_id, else instance_id alone. The list is
# comma-separated, and no JSON escape holds a comma, so quoting the whole column and
# then closing and opening a string at each comma makes the array.
_REPLICAS_JSON = (
    "CASE WHEN replicas = instance_id OR substr(replicas, 1, length(instance_id) + 1)"
    " = instance_id || ',' THEN json('[' || replace(json_quote(replicas), ',', '\",\"') || ']')"
    " WHEN instance_id IS NOT NULL THEN json_array(instance_id) ELSE json_array() END"
)
_COMMON_JSON = (
    "'name', name, 'path', path, 'type', type, 'size', {size}, 'mode', printf('%04o', mode & 4095),"
    f" 'owner', owner, 'group', grp, 'mtime', {_time_json('mtime')},"
    f" 'ctime', {_time_json('ctime')}, 'backend', backend"
)
# API.md's metadata object of each row, built by SQLite byte for byte as the gateway
# would encode the entry (orjson), keys in the same order: no row becomes an Entry or
# a dict on the event loop.
ENCODED_CHILDREN = (
    "SELECT path, CASE WHEN type = 'file' THEN json_object("
    + _COMMON_JSON.format(size="size")
    + f", 'instance_id', instance_id, 'replicas', {_REPLICAS_JSON}, 'etag', etag)"
    + " ELSE json_object("
    + _COMMON_JSON.format(size="0")
    + ", 'instance_id', NULL, 'replicas', json_array()) END"
    + " FROM entries WHERE parent = ? AND path > ? ORDER BY path LIMIT ?"
)
COUNT_CHILDREN = (
    "SELECT count(*) FROM (SELECT 1 FROM entries WHERE parent = ? AND path > ?"
    " ORDER BY path LIMIT ?)"
)
_INSERT = (
    "INSERT INTO entries (path, parent, name, type, size, mode, owner, grp, mtime, ctime,"
    " etag, backend, instance_id, object_key, replicas, entry_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (path) DO NOTHING"
)


def _when_free(db: sqlite3.Connection, sql: str) -> None:
    """Run ``sql``, tried again while SQLite answers busy without waiting.

    SQLite skips the busy handler where waiting could deadlock (for instance while
    another connection turns a fresh file to WAL, or when two connections switch it
    at once), so ``busy_timeout`` alone is not enough for ``BEGIN IMMEDIATE`` and
    ``PRAGMA journal_mode``. Runs in the connection's thread, which it keeps while
    it waits: no other call on this connection could go ahead meanwhile anyway.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            db.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
        time.sleep(BUSY_RETRY_DELAY)


def _all(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Every row of one statement, run to its end (the statement finished, not pending)."""
    cursor = db.execute(sql, params)
    try:
        return cursor.fetchall()
    finally:
        cursor.close()


def _count(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> int:
    """Run one statement that returns no rows; the number of rows it changed."""
    cursor = db.execute(sql, params)
    try:
        return cursor.rowcount
    finally:
        cursor.close()


def _transaction(work: Callable[[sqlite3.Connection], T], db: sqlite3.Connection) -> T:
    """Run ``work`` as one ``BEGIN IMMEDIATE`` transaction, in the connection's thread.

    Committed if ``work`` returns; rolled back if anything raises, ``COMMIT`` included,
    so the connection never stays inside a transaction after the call.
    """
    _when_free(db, "BEGIN IMMEDIATE")
    try:
        result = work(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return result


def _connect(path: str, prepare: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
    """A new connection to ``path``, set up and then handed to ``prepare``."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA synchronous = FULL")
        prepare(db)
    except BaseException:
        db.close()
        raise
    return db


def _prepare_writer(db: sqlite3.Connection) -> None:
    _when_free(db, "PRAGMA journal_mode = WAL")
    _transaction(_migrate, db)


def _prepare_reader(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA query_only = ON")


def _migrate(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    applied = {row[0] for row in _all(db, "SELECT version FROM schema_migrations")}
    for step in migration.load("sqlite"):
        if step.version in applied:
            continue
        logger.info("applying SQLite migration %04d_%s", step.version, step.name)
        for statement in migration.statements(step.sql):
            db.execute(statement)
        db.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
            (step.version, utcnow().isoformat()),
        )
    now = utcnow()
    root = Entry(
        path=paths.ROOT, type="directory", mode=0o1777, owner="root", group="root",
        mtime=now, ctime=now,
    )  # fmt: skip
    db.execute(_INSERT, _insert_params(root))


def _fetch(db: sqlite3.Connection, path: str) -> Entry | None:
    rows = _all(db, f"SELECT {_COLUMNS} FROM entries WHERE path = ?", (path,))
    return _entry(rows[0]) if rows else None


def _has_children(db: sqlite3.Connection, path: str) -> bool:
    return bool(_all(db, "SELECT 1 FROM entries WHERE parent = ? LIMIT 1", (path,)))


def _ensure_parents(db: sqlite3.Connection, path: str, parents: Sequence[Entry]) -> None:
    """Insert the missing ``parents``, then check every directory a new row hangs off."""
    for parent in sorted(parents, key=lambda e: e.path):
        db.execute(_INSERT, _insert_params(parent))
    wanted = subtree.anchors(path, parents)
    types: dict[str, str] = {}
    for chunk in _chunks(wanted):
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT path, type FROM entries WHERE path IN ({marks})"
        types.update({row[0]: row[1] for row in _all(db, sql, tuple(chunk))})
    for directory in wanted:
        kind = types.get(directory)
        if kind is None:
            raise NotFound(f"parent directory {directory} does not exist")
        if kind != "directory":
            raise NotADirectory(f"{directory} is not a directory")


def _keep_content(db: sqlite3.Connection, entry: Entry, content: bytes | None) -> None:
    """Keep ``content`` as the bytes of ``entry``'s object (in the caller's transaction)."""
    if content is not None:
        if entry.object_key is None:
            raise ValueError("content needs the entry's object key")
        db.execute(
            "INSERT INTO contents (object_key, data) VALUES (?, ?)", (entry.object_key, content)
        )


def _make_folder(path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), MAX_PARAMS):
        yield items[start : start + MAX_PARAMS]


class _Connection:
    """One ``sqlite3.Connection`` and the one thread that opens, uses and closes it.

    :meth:`call` runs a plain function over the connection in that thread: one hop
    there and back per call, whatever the function does. Calls run one at a time, in
    the order they were made. A caller cancelled while its function runs only stops
    waiting: the function still runs to its end in the thread (a transaction to its
    ``COMMIT`` or ``ROLLBACK``, never half of one); a function whose caller is
    cancelled before its turn does not run at all.
    """

    def __init__(self) -> None:
        self.hops = 0  # calls into the thread, for tests
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callfs-sqlite")

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Make the connection with ``connect``, in the thread.

        Kept there as soon as it is made, so that :meth:`close` closes it even if this
        call's caller was cancelled meanwhile.
        """

        def keep() -> None:
            self._db = connect()

        await self._hop(keep)

    async def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)``, run in the connection's thread."""
        return await self._hop(lambda: work(self._connection()))

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.InterfaceError("the connection is not open")
        return self._db

    async def _hop(self, work: Callable[[], T]) -> T:
        if self._closed:
            raise BackendUnavailable("metadata store unavailable")
        self.hops += 1
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    async def close(self) -> None:
        """Close the connection once every call made before has run, then end the thread."""
        if self._closed:
            return
        self._closed = True
        closed = asyncio.get_running_loop().run_in_executor(self._thread, self._disconnect)
        self._thread.shutdown(wait=False)
        await closed

    def _disconnect(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()


class SQLiteMetadataStore(MetadataStore):
    """The namespace in one SQLite file at ``path`` (created with its folder if missing).

    Every operation is one call into a connection's thread (see :class:`_Connection`).
    The writer's one thread is what serializes writes: each mutation is a whole
    ``BEGIN IMMEDIATE ... COMMIT`` function run there, so no asyncio lock is needed,
    and a cancelled caller cannot leave a transaction open.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer: _Connection | None = None
        self._reader: _Connection | None = None

    @property
    def hops(self) -> int:
        """How many calls went into the connections' threads so far (for tests)."""
        writer, reader = self._writer, self._reader
        hops = 0 if writer is None else writer.hops
        if reader is not None and reader is not writer:
            hops += reader.hops
        return hops

    # Lifecycle

    async def open(self) -> None:
        memory = self.path == ":memory:"
        try:
            if not memory:
                await asyncio.to_thread(_make_folder, self.path)
            self._writer = _Connection()
            await self._writer.open(lambda: _connect(self.path, _prepare_writer))
            # An in-memory database exists only on its one connection.
            if memory:
                self._reader = self._writer
            else:
                self._reader = _Connection()
                await self._reader.open(lambda: _connect(self.path, _prepare_reader))
        except BaseException as exc:
            await self.close()
            if not isinstance(exc, OSError | sqlite3.Error):
                raise
            logger.error("cannot open the SQLite metadata store at %s: %s", self.path, exc)
            raise BackendUnavailable("metadata store unavailable") from None

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

    async def _call(
        self, connection: _Connection | None, work: Callable[[sqlite3.Connection], T]
    ) -> T:
        """``work`` run in ``connection``'s thread, SQLite's failures answered as unavailable."""
        if connection is None:
            raise BackendUnavailable("metadata store unavailable")
        try:
            return await connection.call(work)
        except (sqlite3.OperationalError, sqlite3.InterfaceError) as exc:
            logger.error("SQLite metadata store failed: %s", exc)
            raise BackendUnavailable("metadata store unavailable") from None

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of one query on the reader connection, run to its end in one call.

        Never a statement left unfinished across awaits: the reader connection is
        shared, and while one of its statements is unfinished SQLite keeps its read
        transaction open, so every other query on it would read that older snapshot
        (a mutation deciding from it would decide from the past).
        """
        return await self._call(self._reader, lambda db: _all(db, sql, params))

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` as one ``BEGIN IMMEDIATE`` transaction in the writer's thread, one call.

        Committed if ``work`` returns, rolled back if it raises (its exception goes on
        to the caller). ``BEGIN IMMEDIATE`` is tried again while SQLite answers busy,
        up to ``BUSY_TIMEOUT_MS``.
        """
        return await self._call(self._writer, lambda db: _transaction(work, db))

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
        params = (path, after or "", -1 if limit is None else limit)
        return [_entry(row) for row in await self._rows(CHILDREN, params)]

    async def list_children_encoded(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> list[tuple[str, bytes]]:
        params = (path, after or "", -1 if limit is None else limit)
        rows = await self._rows(ENCODED_CHILDREN, params)
        return [(row[0], row[1].encode()) for row in rows]

    async def count_children(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> int:
        rows = await self._rows(COUNT_CHILDREN, (path, after or "", -1 if limit is None else limit))
        return int(rows[0][0])

    async def list_tree(
        self,
        path: str,
        *,
        max_depth: int | None = None,
        limit: int | None = None,
        after: str | None = None,
        directories_only: bool = False,
    ) -> list[Entry]:
        if max_depth == 0 and not directories_only:
            return await self.list_children(path, limit=limit, after=after)
        low, high, deepest = subtree.window(path, max_depth, after)
        sql = f"SELECT {_COLUMNS} FROM entries WHERE path > ? AND path < ?"
        if directories_only:
            sql += " AND type = 'directory'"
        params: list[Any] = [low, high]
        if deepest is not None:
            sql += f" AND {_DEPTH} <= ?"
            params.append(deepest)
        sql += " ORDER BY path LIMIT ?"
        params.append(-1 if limit is None else limit)
        return [_entry(row) for row in await self._rows(sql, params)]

    async def has_children(self, path: str) -> bool:
        return bool(await self._rows("SELECT 1 FROM entries WHERE parent = ? LIMIT 1", (path,)))

    async def read_content(self, object_key: str) -> bytes | None:
        rows = await self._rows("SELECT data FROM contents WHERE object_key = ?", (object_key,))
        return bytes(rows[0][0]) if rows else None

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

    async def create(
        self, entry: Entry, parents: Sequence[Entry] = (), *, content: bytes | None = None
    ) -> None:
        def create(db: sqlite3.Connection) -> None:
            _ensure_parents(db, entry.path, parents)
            if _count(db, _INSERT, _insert_params(entry)) == 0:
                raise AlreadyExists(f"{entry.path} already exists")
            _keep_content(db, entry, content)

        await self._write(create)

    async def update(
        self, entry: Entry, *, expected: Entry | None = None, content: bytes | None = None
    ) -> None:
        sql = (
            "UPDATE entries SET size = ?, mode = ?, owner = ?, grp = ?, mtime = ?, ctime = ?,"
            " etag = ?, backend = ?, instance_id = ?, object_key = ?, replicas = ? WHERE path = ?"
        )
        params: list[Any] = [*_changeable(entry), entry.path]
        if expected is not None:
            sql += " AND object_key IS ? AND etag IS ?"
            params += [expected.object_key, expected.etag]

        def update(db: sqlite3.Connection) -> None:
            if _all(db, sql + " RETURNING path", params):
                _keep_content(db, entry, content)
                return
            if not _all(db, "SELECT 1 FROM entries WHERE path = ?", (entry.path,)):
                raise NotFound(f"{entry.path} does not exist")
            raise EntryChanged(f"{entry.path} changed since it was read")

        await self._write(update)

    async def set_replicas(self, path: str, object_key: str, replicas: Sequence[str]) -> bool:
        holders = placement(replicas)
        sql = (
            "UPDATE entries SET instance_id = ?, replicas = ?"
            " WHERE path = ? AND object_key = ? RETURNING path"
        )
        params = (holders[0], ",".join(holders), path, object_key)
        return await self._write(lambda db: bool(_all(db, sql, params)))

    async def delete(self, path: str) -> Entry:
        subtree.check_delete(path)

        def delete(db: sqlite3.Connection) -> Entry:
            entry = _fetch(db, path)
            if entry is None:
                raise NotFound(f"{path} does not exist")
            if entry.is_dir and _has_children(db, path):
                raise DirectoryNotEmpty(f"{path} is not empty")
            db.execute("DELETE FROM entries WHERE path = ?", (path,))
            return entry

        return await self._write(delete)

    async def delete_tree(self, path: str) -> list[ObjectRef]:
        subtree.check_delete(path)
        low, high = subtree.bounds(path)
        where = "path = ? OR (path > ? AND path < ?)"
        sql = f"DELETE FROM entries WHERE {where} RETURNING {_REMOVED}"
        rows = await self._write(lambda db: _all(db, sql, (path, low, high)))
        return [
            removed_object(row[1], row[2], row[3], _replicas(row[4]))
            for row in sorted(rows)
            if row[2] is not None and row[5] == "file"
        ]

    async def move(
        self, source: str, destination: str, *, replace: bool = False, parents: Sequence[Entry] = ()
    ) -> list[Entry]:
        subtree.check_move(source, destination)

        def move(db: sqlite3.Connection) -> list[Entry]:
            moving = _fetch(db, source)
            if moving is None:
                raise NotFound(f"{source} does not exist")
            if destination == source:
                return []
            _ensure_parents(db, destination, parents)
            replaced: list[Entry] = []
            target = _fetch(db, destination)
            if target is not None:
                subtree.check_replace(moving, target, replace=replace)
                if target.is_dir and _has_children(db, destination):
                    raise DirectoryNotEmpty(f"{destination} is not empty")
                db.execute("DELETE FROM entries WHERE path = ?", (destination,))
                replaced.append(target)
            low, high = subtree.bounds(source)
            cut = len(source) + 1
            db.execute(
                "UPDATE entries SET path = ?, parent = ?, name = ? WHERE path = ?",
                (destination, subtree.row_parent(destination), paths.name(destination), source),
            )
            db.execute(
                "UPDATE entries SET path = ? || substr(path, ?), parent = ? || substr(parent, ?)"
                " WHERE path > ? AND path < ?",
                (destination, cut, destination, cut, low, high),
            )
            return replaced

        return await self._write(move)

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
            await self._write(lambda db: _count(db, sql, params))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"link {link.token_id} already exists") from None

    async def consume_link(
        self, token_id: str, now: datetime
    ) -> tuple[ConsumeOutcome, LinkRecord | None]:
        moment = _to_db(now)

        def consume(db: sqlite3.Connection) -> tuple[ConsumeOutcome, LinkRecord | None]:
            rows = _all(
                db,
                "UPDATE links SET used_at = ?"
                " WHERE token_id = ? AND used_at IS NULL AND expires_at > ?"
                f" RETURNING {_LINK_COLUMNS}",
                (moment, token_id, moment),
            )
            if rows:
                return "consumed", _link(rows[0])
            rows = _all(db, f"SELECT {_LINK_COLUMNS} FROM links WHERE token_id = ?", (token_id,))
            if not rows:
                return "not_found", None
            link = _link(rows[0])
            return ("used" if link.used_at is not None else "expired"), link

        return await self._write(consume)

    async def release_link(self, token_id: str) -> None:
        sql = "UPDATE links SET used_at = NULL WHERE token_id = ?"
        await self._write(lambda db: _count(db, sql, (token_id,)))

    async def purge_links(self, now: datetime, batch: int) -> int:
        sql = (
            "DELETE FROM links WHERE token_id IN (SELECT token_id FROM links"
            " WHERE expires_at <= ? LIMIT ?)"
        )
        params = (_to_db(now), batch)
        return await self._write(lambda db: _count(db, sql, params))
