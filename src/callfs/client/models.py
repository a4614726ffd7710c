"""What the SDK returns: :class:`Entry` (an entry's metadata) and :class:`Link`.

Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["Entry", "EntryType", "Link", "format_mode", "parse_time"]

EntryType = Literal["file", "directory"]


def parse_time(text: str) -> datetime:
    """An API time (RFC 3339, ``2026-11-24T10:00:00Z``) as an aware UTC datetime."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_mode(mode: int) -> str:
    """A mode as the API writes it: four octal digits (``0o640`` → ``"0640"``).

    Raises:
        ValueError: not an int in 0..0o7777.
    """
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        raise ValueError(f"mode must be an int in 0..0o7777, got {mode!r}")
    return f"{mode:04o}"


def _file_type(value: object) -> EntryType:
    if value == "file":
        return "file"
    if value == "directory":
        return "directory"
    raise ValueError(f"unknown entry type {value!r}")


@dataclass(frozen=True)
class Entry:
    """The metadata of a file or directory, as the API's entry JSON carries it.

    ``mode`` is an int (``0o644``); ``mtime`` and ``ctime`` are aware UTC datetimes;
    ``etag`` is the bare ETag (no quotes), None for directories; ``instance_id`` and
    ``replicas`` name the storage nodes holding a file (None/empty for S3 and for
    directories).

    Entries from :meth:`Client.list`, :meth:`Client.write`, :meth:`Client.mkdir`,
    :meth:`Client.move`, :meth:`Client.rename` and :meth:`Client.chmod` carry every
    field. :meth:`Client.stat` answers from a ``HEAD``, whose headers carry no ctime
    and no backend: there ``ctime`` is None, and ``backend`` is derived for files
    (``localfs`` when a storage node holds it, else ``s3``) and None for directories
    — unless the server sends ``X-CallFS-CTime`` / ``X-CallFS-Backend``, which are read
    when present.
    """

    name: str
    path: str
    type: EntryType
    size: int
    mode: int
    owner: str
    group: str
    mtime: datetime
    ctime: datetime | None
    backend: str | None
    instance_id: str | None
    replicas: tuple[str, ...]
    etag: str | None

    @property
    def is_dir(self) -> bool:
        return self.type == "directory"

    @property
    def is_file(self) -> bool:
        return self.type == "file"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        """An entry from the API's metadata object."""
        path = str(data["path"])
        return cls(
            name=str(data.get("name") or _name(path)),
            path=path,
            type=_file_type(data["type"]),
            size=int(data.get("size") or 0),
            mode=int(str(data["mode"]), 8),
            owner=str(data["owner"]),
            group=str(data["group"]),
            mtime=parse_time(str(data["mtime"])),
            ctime=parse_time(str(data["ctime"])) if data.get("ctime") else None,
            backend=str(data["backend"]) if data.get("backend") else None,
            instance_id=str(data["instance_id"]) if data.get("instance_id") else None,
            replicas=tuple(str(node) for node in data.get("replicas") or ()),
            etag=str(data["etag"]) if data.get("etag") else None,
        )

    @classmethod
    def from_headers(cls, path: str, headers: Mapping[str, str]) -> Entry:
        """An entry from a ``HEAD``/``GET``'s ``X-CallFS-*`` headers (``path`` as asked)."""
        canonical = "/" + path.strip("/")
        kind = _file_type(headers.get("x-callfs-type"))
        instance_id = headers.get("x-callfs-instance-id") or None
        replicas = tuple(node for node in headers.get("x-callfs-replicas", "").split(",") if node)
        backend = headers.get("x-callfs-backend") or None
        if backend is None and kind == "file":
            backend = "localfs" if instance_id or replicas else "s3"
        ctime = headers.get("x-callfs-ctime")
        etag = headers.get("etag")
        return cls(
            name=_name(canonical),
            path=canonical,
            type=kind,
            size=int(headers.get("x-callfs-size") or 0),
            mode=int(headers.get("x-callfs-mode") or "0", 8),
            owner=headers.get("x-callfs-owner", ""),
            group=headers.get("x-callfs-group", ""),
            mtime=parse_time(headers["x-callfs-mtime"]),
            ctime=parse_time(ctime) if ctime else None,
            backend=backend,
            instance_id=instance_id,
            replicas=replicas,
            etag=_bare_etag(etag) if etag else None,
        )


@dataclass(frozen=True)
class Link:
    """A single-use download link: anyone holding ``url`` may download the file once,
    without an API key, until ``expires_at``."""

    url: str
    token: str
    expires_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Link:
        expires = data.get("expires_at") or data.get("expires")
        return cls(
            url=str(data["url"]), token=str(data["token"]), expires_at=parse_time(str(expires))
        )


def _name(path: str) -> str:
    """The last segment, ``""`` for the root (as the server names it)."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def _bare_etag(value: str) -> str:
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')
