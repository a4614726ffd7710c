"""Entries for the metadata tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from callfs.entry import Entry

T0 = datetime(2026, 3, 1, 12, 30, 45, tzinfo=UTC)


def directory(path: str, **fields: Any) -> Entry:
    """A directory owned by alice."""
    values: dict[str, Any] = {"mode": 0o755, "owner": "alice", "group": "staff"}
    values.update(mtime=T0, ctime=T0)
    values.update(fields)
    return Entry(path=path, type="directory", **values)


def file(path: str, **fields: Any) -> Entry:
    """A 3-byte file owned by alice on storage node ``node-0``."""
    values: dict[str, Any] = {
        "mode": 0o644,
        "owner": "alice",
        "group": "staff",
        "size": 3,
        "etag": "etag-1",
        "backend": "localfs",
        "instance_id": "node-0",
        "object_key": f"key{path.replace('/', '-')}",
    }
    values.update(mtime=T0, ctime=T0)
    values.update(fields)
    return Entry(path=path, type="file", **values)
