"""The production metadata store: PostgreSQL through an asyncpg pool.

Every mutation is one READ COMMITTED transaction. Rows a mutation depends on are
locked: the entry it changes ``FOR UPDATE``, the directories it creates inside
``FOR KEY SHARE``, so a directory cannot vanish under a create and a subtree delete
or move cannot leave a child behind. Deadlocks between such transactions are
retried. Lost connections surface as :class:`~callfs.errors.BackendUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from callfs import paths
from callfs.backends.base import ObjectRef
from callfs.entry import Entry
from callfs.errors import (
    AlreadyExists,
    BackendUnavailable,
    DirectoryNotEmpty,
    EntryChanged,
    NotADirectory,
    NotFound,
)
from callfs.health import DependencyState
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

# pg_advisory_lock key serializing migrations across replicas ("callfs" in ASCII).
MIGRATION_LOCK = 0x63616C6C6673
RETRIES = 5

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # includes TimeoutError: a pool acquire or a connect that timed out
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # CannotConnectNow, AdminShutdown
    asyncpg.exceptions.InsufficientResourcesError,  # TooManyConnections, DiskFull
)
_RETRYABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)

_COLUMNS = (
    "path, type, size, mode, owner, grp, mtime, ctime, etag, backend, instance_id, object_key,"
    " replicas, entry_id"
)
# Removes a subtree's rows, returning enough of each to name its object.
_DELETE_TREE = (
    "DELETE FROM entries WHERE path = $1 OR (path > $2 AND path < $3)"
    " RETURNING path, backend, object_key, instance_id, replicas, type"
)
_LINK_COLUMNS = "token_id, path, expires_at, created_by, created_at, used_at, entry_id"
_DEPTH = "(length(path) - length(replace(path, '/', '')))"
_INSERT = (
    "INSERT INTO entries (path, parent, name, type, size, mode, owner, grp, mtime, ctime,"
    " etag, backend, instance_id, object_key, replicas, entry_id)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    " ON CONFLICT (path) DO NOTHING RETURNING path"
)
# A directory's children, a page after a path: both read the ``parent`` index in order.
CHILDREN = f"SELECT {_COLUMNS} FROM entries WHERE parent = $1 AND path > $2 ORDER BY path LIMIT $3"
# API.md's metadata object of a row, built by PostgreSQL as the gateway would write it
# (Entry.to_json, compact): the keys in the same order, times in UTC to the second, the
# mode in four octal digits, the replicas as recorded_replicas and holders read them,
# no etag for a directory.
_ENCODED = (
    """'{"name":' || to_json(name)::text || ',"path":' || to_json(path)::text"""
    """ || ',"type":' || to_json(type)::text"""
    """ || ',"size":' || (CASE WHEN type = 'file' THEN size ELSE 0 END)::text"""
    """ || ',"mode":"' || ((mode >> 9) & 7)::text || ((mode >> 6) & 7)::text"""
    """ || ((mode >> 3) & 7)::text || (mode & 7)::text || '"'"""
    """ || ',"owner":' || to_json(owner)::text || ',"group":' || to_json(grp)::text"""
    """ || ',"mtime":"' || to_char(mtime AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""
    """ || '","ctime":"' || to_char(ctime AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""
    """ || '","backend":' || to_json(backend)::text"""
    """ || ',"instance_id":' || CASE WHEN type = 'file' AND instance_id IS NOT NULL"""
    """ THEN to_json(instance_id)::text ELSE 'null' END"""
    """ || ',"replicas":' || CASE WHEN type <> 'file' THEN '[]'"""
    """ WHEN cardinality(replicas) > 0 AND replicas[1] = instance_id"""
    """ THEN array_to_json(replicas)::text"""
    """ WHEN instance_id IS NOT NULL THEN json_build_array(instance_id)::text ELSE '[]' END"""
    """ || CASE WHEN type = 'file'"""
    """ THEN ',"etag":' || coalesce(to_json(etag)::text, 'null') ELSE '' END || '}'"""
)
ENCODED_CHILDREN = (
    f"SELECT path, {_ENCODED} FROM entries WHERE parent = $1 AND path > $2 ORDER BY path LIMIT $3"
)
COUNT_CHILDREN = (
    "SELECT count(*) FROM (SELECT 1 FROM entries WHERE parent = $1 AND path > $2"
    " ORDER BY path LIMIT $3) AS page"
)
_CHILD = "SELECT EXISTS (SELECT 1 FROM entries WHERE parent = $1)"


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _entry(row: Any) -> Entry:
    return Entry.stored(
        path=row["path"],
        type=row["type"],
        size=row["size"],
        mode=row["mode"],
        owner=row["owner"],
        group=row["grp"],
        mtime=_aware(row["mtime"]),
        ctime=_aware(row["ctime"]),
        etag=row["etag"],
        backend=row["backend"],
        instance_id=row["instance_id"],
        object_key=row["object_key"],
        replicas=recorded_replicas(row["instance_id"], row["replicas"]),
        entry_id=row["entry_id"],
    )


def _link(row: Any) -> LinkRecord:
    return LinkRecord(
        token_id=row["token_id"],
        path=row["path"],
        expires_at=_aware(row["expires_at"]),
        created_by=row["created_by"],
        created_at=_aware(row["created_at"]),
        used_at=None if row["used_at"] is None else _aware(row["used_at"]),
        entry_id=row["entry_id"],
    )


def _changeable(entry: Entry) -> tuple[Any, ...]:
    """The columns an update may change, in the order the statements name them."""
    return (
        entry.size,
        entry.mode,
        entry.owner,
        entry.group,
        _aware(entry.mtime),
        _aware(entry.ctime),
        entry.etag,
        entry.backend,
        entry.instance_id,
        entry.object_key,
        list(entry.replicas),
    )


def _on_node(backend: str, instance_id: str | None) -> tuple[str, list[Any]]:
    """The condition (and its arguments, ``$1``...) for rows whose object is on one node
    of ``backend``: the node is one of the row's replicas, or its instance_id (a row
    written before replicas were recorded); for S3 (None), the row names no node.

    Each arm of the ``OR`` has its own index, so PostgreSQL can combine the two.
    """
    if instance_id is None:
        return "backend = $1 AND instance_id IS NULL", [backend]
    return (
        "backend = $1 AND (instance_id = $2 OR replicas @> ARRAY[$2::text])",
        [backend, instance_id],
    )


def _insert_params(entry: Entry) -> tuple[Any, ...]:
    parent = subtree.row_parent(entry.path)
    return (entry.path, parent, entry.name, entry.type, *_changeable(entry), entry.entry_id)


class _QuietFloorRestore(logging.Filter):
    """Drops asyncpg's traceback for each failed attempt to reconnect the pool's idle
    connections: in an outage it comes every few seconds, and the store logs the
    outage once (:class:`~callfs.health.DependencyState`).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to restore the pool connection floor")


_QUIET_FLOOR_RESTORE = _QuietFloorRestore()


def _count(status: str) -> int:
    """The row count of a command status such as ``DELETE 3``."""
    return int(status.rsplit(" ", 1)[-1])


async def _keep_content(conn: Any, entry: Entry, content: bytes | None) -> None:
    """Keep ``content`` as the bytes of ``entry``'s object (in the caller's transaction)."""
    if content is not None:
        if entry.object_key is None:
            raise ValueError("content needs the entry's object key")
        await conn.execute(
            "INSERT INTO contents (object_key, data) VALUES ($1, $2)", entry.object_key, content
        )


class PostgresMetadataStore(MetadataStore):
    """The namespace in PostgreSQL at ``dsn``, through a pool of ``min_size``..``max_size``."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 20,
        acquire_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._min_size = min(min_size, max_size)
        self._max_size = max_size
        self._acquire_timeout = acquire_timeout
        self._pool: asyncpg.Pool | None = None
        self._health = DependencyState("metadata store", logger)

    # Lifecycle

    async def open(self) -> None:
        logging.getLogger("asyncpg.pool").addFilter(_QUIET_FLOOR_RESTORE)
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._acquire_timeout,
            )
        except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
            logger.error("cannot connect to the PostgreSQL metadata store: %s", exc)
            raise BackendUnavailable("metadata store unavailable") from None
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        async with self._connection() as conn:
            # Replicas starting together queue here; the first applies, the rest see it done.
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                applied = {
                    r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
                }
                for step in migration.load("postgres"):
                    if step.version in applied:
                        continue
                    logger.info("applying PostgreSQL migration %04d_%s", step.version, step.name)
                    async with conn.transaction():
                        await conn.execute(step.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version) VALUES ($1)", step.version
                        )
                now = datetime.now(UTC).replace(microsecond=0)
                root = Entry(
                    path=paths.ROOT, type="directory", mode=0o1777, owner="root", group="root",
                    mtime=now, ctime=now,
                )  # fmt: skip
                await conn.execute(_INSERT, *_insert_params(root))
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    # Connections

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; connection trouble becomes BackendUnavailable, logged
        once per outage.
        """
        pool = self._pool
        if pool is None:
            raise BackendUnavailable("metadata store unavailable")
        try:
            async with pool.acquire(timeout=self._acquire_timeout) as conn:
                yield conn
        except _UNAVAILABLE as exc:
            self._health.failed(exc)
            raise BackendUnavailable("metadata store unavailable") from None
        self._health.succeeded()

    async def _transact(self, body: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``body(conn)`` in one transaction, again when it lost a deadlock."""
        for attempt in range(1, RETRIES + 1):
            try:
                async with self._connection() as conn, conn.transaction():
                    return await body(conn)
            except _RETRYABLE as exc:
                logger.warning("metadata transaction retried (%d/%d): %s", attempt, RETRIES, exc)
        raise BackendUnavailable("metadata store unavailable: too much contention")

    # Reads

    async def get(self, path: str) -> Entry | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM entries WHERE path = $1", path)
        return None if row is None else _entry(row)

    async def get_many(self, paths: Sequence[str]) -> dict[str, Entry]:
        if not paths:
            return {}
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM entries WHERE path = ANY($1::text[])", list(set(paths))
            )
        return {row["path"]: _entry(row) for row in rows}

    async def list_children(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> list[Entry]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                CHILDREN,
                path,
                after or "",
                limit,
            )
        return [_entry(row) for row in rows]

    async def list_children_encoded(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> list[tuple[str, bytes]]:
        # Two text columns a row: decoding them is what is left for the event loop.
        async with self._connection() as conn:
            rows = await conn.fetch(ENCODED_CHILDREN, path, after or "", limit)
        return [(row[0], row[1].encode()) for row in rows]

    async def count_children(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> int:
        async with self._connection() as conn:
            found: int = await conn.fetchval(
                COUNT_CHILDREN,
                path,
                after or "",
                limit,
            )
        return found

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
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM entries WHERE path > $1 AND path < $2"
                f" AND ($3::integer IS NULL OR {_DEPTH} <= $3::integer)"
                " AND (NOT $5::boolean OR type = 'directory')"
                " ORDER BY path LIMIT $4",
                low,
                high,
                deepest,
                limit,
                directories_only,
            )
        return [_entry(row) for row in rows]

    async def has_children(self, path: str) -> bool:
        async with self._connection() as conn:
            found: bool = await conn.fetchval(_CHILD, path)
        return found

    async def read_content(self, object_key: str) -> bytes | None:
        async with self._connection() as conn:
            data = await conn.fetchval(
                "SELECT data FROM contents WHERE object_key = $1", object_key
            )
        return None if data is None else bytes(data)

    async def object_keys(self, backend: str, instance_id: str | None) -> set[str]:
        on_node, args = _on_node(backend, instance_id)
        keys: set[str] = set()
        async with self._connection() as conn, conn.transaction():
            async for row in conn.cursor(
                f"SELECT object_key FROM entries WHERE {on_node} AND object_key IS NOT NULL",
                *args,
            ):
                keys.add(row["object_key"])
        return keys

    async def referenced_keys(
        self, backend: str, instance_id: str | None, keys: Sequence[str]
    ) -> set[str]:
        on_node, args = _on_node(backend, instance_id)
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT object_key FROM entries WHERE {on_node}"
                f" AND object_key = ANY(${len(args) + 1}::text[])",
                *args,
                list(set(keys)),
            )
        return {row["object_key"] for row in rows}

    # Mutations

    async def create(
        self, entry: Entry, parents: Sequence[Entry] = (), *, content: bytes | None = None
    ) -> None:
        async def body(conn: Any) -> None:
            await self._ensure_parents(conn, entry.path, parents)
            if await conn.fetchval(_INSERT, *_insert_params(entry)) is None:
                raise AlreadyExists(f"{entry.path} already exists")
            await _keep_content(conn, entry, content)

        await self._transact(body)

    async def _ensure_parents(self, conn: Any, path: str, parents: Sequence[Entry]) -> None:
        """Insert the missing ``parents``; lock and check every directory a new row hangs off.

        ``FOR KEY SHARE`` keeps those directories from being deleted or moved until
        this transaction ends, and lets their own updates (chmod, touch) through.
        """
        for parent in sorted(parents, key=lambda e: e.path):
            await conn.execute(_INSERT, *_insert_params(parent))
        wanted = subtree.anchors(path, parents)
        rows = await conn.fetch(
            "SELECT path, type FROM entries WHERE path = ANY($1::text[])"
            " ORDER BY path FOR KEY SHARE",
            wanted,
        )
        types = {row["path"]: row["type"] for row in rows}
        for directory in wanted:
            kind = types.get(directory)
            if kind is None:
                raise NotFound(f"parent directory {directory} does not exist")
            if kind != "directory":
                raise NotADirectory(f"{directory} is not a directory")

    async def update(
        self, entry: Entry, *, expected: Entry | None = None, content: bytes | None = None
    ) -> None:
        seen = (None, None) if expected is None else (expected.object_key, expected.etag)

        async def body(conn: Any) -> None:
            status = await conn.execute(
                "UPDATE entries SET size = $2, mode = $3, owner = $4, grp = $5, mtime = $6,"
                " ctime = $7, etag = $8, backend = $9, instance_id = $10, object_key = $11,"
                " replicas = $12 WHERE path = $1 AND (NOT $13::boolean"
                " OR (object_key IS NOT DISTINCT FROM $14::text"
                " AND etag IS NOT DISTINCT FROM $15::text))",
                entry.path,
                *_changeable(entry),
                expected is not None,
                *seen,
            )
            if _count(status):
                await _keep_content(conn, entry, content)
                return
            if await conn.fetchval("SELECT 1 FROM entries WHERE path = $1", entry.path) is None:
                raise NotFound(f"{entry.path} does not exist")
            raise EntryChanged(f"{entry.path} changed since it was read")

        await self._transact(body)

    async def set_replicas(self, path: str, object_key: str, replicas: Sequence[str]) -> bool:
        holders = placement(replicas)

        async def body(conn: Any) -> bool:
            status = await conn.execute(
                "UPDATE entries SET instance_id = $3, replicas = $4"
                " WHERE path = $1 AND object_key = $2",
                path,
                object_key,
                holders[0],
                list(holders),
            )
            return _count(status) > 0

        return await self._transact(body)

    async def delete(self, path: str) -> Entry:
        subtree.check_delete(path)

        async def body(conn: Any) -> Entry:
            entry = await self._lock(conn, path)
            if entry is None:
                raise NotFound(f"{path} does not exist")
            # A new statement after the lock sees children committed while we waited.
            if entry.is_dir and await conn.fetchval(_CHILD, path):
                raise DirectoryNotEmpty(f"{path} is not empty")
            await conn.execute("DELETE FROM entries WHERE path = $1", path)
            return entry

        return await self._transact(body)

    async def delete_tree(self, path: str) -> list[ObjectRef]:
        subtree.check_delete(path)
        low, high = subtree.bounds(path)

        async def body(conn: Any) -> list[ObjectRef]:
            removed: list[Any] = []
            # A create that held a directory in the subtree when we reached it commits a
            # row this statement's snapshot cannot see; the next pass removes it.
            while rows := await conn.fetch(_DELETE_TREE, path, low, high):
                removed.extend(row for row in rows if row[2] is not None and row[5] == "file")
            removed.sort()
            return [removed_object(row[1], row[2], row[3], row[4]) for row in removed]

        return await self._transact(body)

    async def move(
        self, source: str, destination: str, *, replace: bool = False, parents: Sequence[Entry] = ()
    ) -> list[Entry]:
        subtree.check_move(source, destination)
        low, high = subtree.bounds(source)
        cut = len(source) + 1

        async def body(conn: Any) -> list[Entry]:
            moving = await self._lock(conn, source)
            if moving is None:
                raise NotFound(f"{source} does not exist")
            if destination == source:
                return []
            await self._ensure_parents(conn, destination, parents)
            replaced: list[Entry] = []
            target = await self._lock(conn, destination)
            if target is not None:
                subtree.check_replace(moving, target, replace=replace)
                if target.is_dir and await conn.fetchval(_CHILD, destination):
                    raise DirectoryNotEmpty(f"{destination} is not empty")
                await conn.execute("DELETE FROM entries WHERE path = $1", destination)
                replaced.append(target)
            try:
                await conn.execute(
                    "UPDATE entries SET path = $2, parent = $3, name = $4 WHERE path = $1",
                    source,
                    destination,
                    subtree.row_parent(destination),
                    paths.name(destination),
                )
                # Repeated for the same reason as in delete_tree.
                while _count(
                    await conn.execute(
                        "UPDATE entries SET path = $1 || substr(path, $2),"
                        " parent = $1 || substr(parent, $2) WHERE path > $3 AND path < $4",
                        destination,
                        cut,
                        low,
                        high,
                    )
                ):
                    pass
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"{destination} already exists") from None
            return replaced

        return await self._transact(body)

    async def _lock(self, conn: Any, path: str) -> Entry | None:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM entries WHERE path = $1 FOR UPDATE", path
        )
        return None if row is None else _entry(row)

    # Links

    async def create_link(self, link: LinkRecord) -> None:
        try:
            async with self._connection() as conn:
                await conn.execute(
                    f"INSERT INTO links ({_LINK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    link.token_id,
                    link.path,
                    _aware(link.expires_at),
                    link.created_by,
                    _aware(link.created_at),
                    None if link.used_at is None else _aware(link.used_at),
                    link.entry_id,
                )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"link {link.token_id} already exists") from None

    async def consume_link(
        self, token_id: str, now: datetime
    ) -> tuple[ConsumeOutcome, LinkRecord | None]:
        moment = _aware(now)
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "UPDATE links SET used_at = $2"
                " WHERE token_id = $1 AND used_at IS NULL AND expires_at > $2"
                f" RETURNING {_LINK_COLUMNS}",
                token_id,
                moment,
            )
            if row is not None:
                return "consumed", _link(row)
            row = await conn.fetchrow(
                f"SELECT {_LINK_COLUMNS} FROM links WHERE token_id = $1", token_id
            )
        if row is None:
            return "not_found", None
        link = _link(row)
        return ("used" if link.used_at is not None else "expired"), link

    async def release_link(self, token_id: str) -> None:
        async with self._connection() as conn:
            await conn.execute("UPDATE links SET used_at = NULL WHERE token_id = $1", token_id)

    async def purge_links(self, now: datetime, batch: int) -> int:
        async with self._connection() as conn:
            status = await conn.execute(
                "DELETE FROM links WHERE token_id IN (SELECT token_id FROM links"
                " WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                _aware(now),
                batch,
            )
        return _count(status)


async def check_connectivity(dsn: str, timeout: float = 5.0) -> None:
    """Check that the PostgreSQL at ``dsn`` lets us in and answers (``config validate``).

    Raises:
        BackendUnavailable: saying where and why, never with the DSN's password.
    """
    where = _where(dsn)
    try:
        async with asyncio.timeout(timeout):
            conn = await asyncpg.connect(dsn, timeout=timeout)
            try:
                await conn.fetchval("SELECT 1")
            finally:
                await conn.close(timeout=timeout)
    except TimeoutError:
        raise BackendUnavailable(f"PostgreSQL at {where}: no answer in {timeout:g}s") from None
    except (*_UNAVAILABLE, asyncpg.PostgresError, ValueError) as exc:
        # asyncpg's and the server's messages name the user and the host, not the password.
        reason = str(exc) or type(exc).__name__
        raise BackendUnavailable(f"PostgreSQL at {where}: {reason}") from None


def _where(dsn: str) -> str:
    """``host:port/database`` of a ``postgres://`` DSN, without user or password."""
    try:
        url = urlsplit(dsn)
        port = url.port or 5432
    except ValueError:  # several hosts, or a port that is not a number
        return "metadata_store.dsn"
    if url.scheme not in ("postgres", "postgresql"):
        return "metadata_store.dsn"
    return f"{url.hostname or 'localhost'}:{port}{url.path or '/'}"
