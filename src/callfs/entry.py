"""The metadata of one file or directory in the namespace."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from callfs.paths import name as path_name

EntryType = Literal["file", "directory"]
BackendName = Literal["localfs", "s3"]


def utcnow() -> datetime:
    """Now, in UTC with microseconds dropped (what every store can keep exactly)."""
    return datetime.now(UTC).replace(microsecond=0)


def new_entry_id() -> str:
    """A fresh entry identity: 32 random hex digits."""
    return uuid.uuid4().hex


@functools.lru_cache(maxsize=4096)
def format_time(value: datetime) -> str:
    """RFC 3339 UTC, as API.md writes times: ``2026-11-24T10:00:00Z``.

    Remembered for the last few thousand moments: the entries of one listing were
    mostly written within a few seconds of each other, and a listing formats two
    times per entry.
    """
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_MODES = tuple(f"{mode:04o}" for mode in range(0o10000))


def format_mode(mode: int) -> str:
    """A mode as API.md writes it: four octal digits (``0644``)."""
    return _MODES[mode & 0o7777]


def parse_mode(text: str) -> int:
    """Parse ``"0640"``/``"640"`` into an int; raises ValueError when it is not 3-4 octal digits."""
    if (
        not isinstance(text, str)
        or not 3 <= len(text) <= 4
        or any(c not in "01234567" for c in text)
    ):
        raise ValueError(f"mode must be 3 or 4 octal digits, got {text!r}")
    return int(text, 8)


@dataclass(frozen=True)
class Entry:
    """One row of the namespace: a file or a directory.

    ``object_key`` names the file's bytes inside its backend (an opaque key, so a
    rename is a metadata change only). ``replicas`` are the storage nodes holding
    them, in placement order, and ``instance_id`` is the first of them: whoever sets
    one sets the other, so ``instance_id == replicas[0]`` whenever ``replicas`` is
    non-empty (both are empty for S3 and for directories). Read :attr:`holders`
    rather than either field: it also answers for rows written before replicas were
    recorded.

    ``entry_id`` names this one entry for its whole life: it is drawn when the entry
    is created and kept through content replaces, chmods and moves, so an entry
    deleted and re-created at the same path is another entry (single-use links rely
    on it). It takes no part in ``==``, which compares what two entries say; code
    that cares which entry it holds compares ``entry_id`` itself.
    """

    path: str
    type: EntryType
    mode: int
    owner: str
    group: str
    mtime: datetime = field(default_factory=utcnow)
    ctime: datetime = field(default_factory=utcnow)
    size: int = 0
    etag: str | None = None
    backend: BackendName = "localfs"
    instance_id: str | None = None
    object_key: str | None = None
    replicas: tuple[str, ...] = ()
    entry_id: str = field(default_factory=new_entry_id, compare=False)

    @property
    def is_dir(self) -> bool:
        return self.type == "directory"

    @property
    def name(self) -> str:
        return path_name(self.path)

    @property
    def holders(self) -> tuple[str, ...]:
        """The storage nodes holding the file's bytes, in placement order.

        ``replicas`` when recorded; otherwise (a row written before replicas were, or
        by an older replica during a rolling upgrade) ``instance_id`` alone.
        """
        return holders(self.instance_id, self.replicas)

    @classmethod
    def stored(
        cls,
        *,
        path: str,
        type: EntryType,
        mode: int,
        owner: str,
        group: str,
        mtime: datetime,
        ctime: datetime,
        size: int,
        etag: str | None,
        backend: BackendName,
        instance_id: str | None,
        object_key: str | None,
        replicas: tuple[str, ...],
        entry_id: str,
    ) -> Entry:
        """An entry as a store read it back: every field given, none defaulted.

        The same object as ``Entry(...)`` makes, built without the frozen dataclass's
        per-field ``object.__setattr__`` (half the cost of a row in a long listing).
        """
        entry = object.__new__(cls)
        entry.__dict__.update(
            path=path,
            type=type,
            mode=mode,
            owner=owner,
            group=group,
            mtime=mtime,
            ctime=ctime,
            size=size,
            etag=etag,
            backend=backend,
            instance_id=instance_id,
            object_key=object_key,
            replicas=replicas,
            entry_id=entry_id,
        )
        return entry

    def evolve(self, **changes: Any) -> Entry:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The entry as API.md's metadata object."""
        return metadata_json(
            self.path,
            self.type,
            self.size,
            self.mode,
            self.owner,
            self.group,
            format_time(self.mtime),
            format_time(self.ctime),
            self.etag,
            self.backend,
            self.instance_id,
            self.replicas,
        )


def holders(instance_id: str | None, replicas: tuple[str, ...]) -> tuple[str, ...]:
    """:attr:`Entry.holders` of an entry with these fields."""
    return replicas or ((instance_id,) if instance_id else ())


def metadata_json(
    path: str,
    type: str,
    size: int,
    mode: int,
    owner: str,
    group: str,
    mtime: str,
    ctime: str,
    etag: str | None,
    backend: str,
    instance_id: str | None,
    replicas: tuple[str, ...],
) -> dict[str, Any]:
    """API.md's metadata object of the entry with these fields (times formatted by
    :func:`format_time`): what :meth:`Entry.to_json` answers. A store's listing builds
    the same object, byte for byte, in SQL (``ENCODED_CHILDREN``).
    """
    is_file = type == "file"
    body: dict[str, Any] = {
        "name": path_name(path),
        "path": path,
        "type": type,
        "size": size if is_file else 0,
        "mode": format_mode(mode),
        "owner": owner,
        "group": group,
        "mtime": mtime,
        "ctime": ctime,
        "backend": backend,
        "instance_id": instance_id if is_file else None,
        "replicas": list(holders(instance_id, replicas)) if is_file else [],
    }
    if is_file:
        body["etag"] = etag
    return body
