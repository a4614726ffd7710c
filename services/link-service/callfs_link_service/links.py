"""Single-use links: issuing them to readers of a file, and consuming each exactly once.

Plain Python over the runtime's adapters. Issuing checks the caller's read
permission with the gateway's own rules; consuming needs no caller at all (the
link carries the permission): verify the signature, burn the link with one atomic
conditional update in the metadata store, then open the file's bytes. If opening
fails before the first byte the link is released again, so it is not lost.

A link names the one file entry it was issued for (its ``entry_id``), not just its
path: it follows that file through content replaces, but once the file is deleted,
or moved away, it answers 404 whatever now lives at the path.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from callfs import namespace, permissions
from callfs.entry import Entry, format_time
from callfs.errors import (
    BackendUnavailable,
    BadRequest,
    IsADirectory,
    LinkExpired,
    LinkUsed,
    NotFound,
)
from callfs.metadata.base import LinkRecord
from callfs.permissions import READ, User
from callfs.runtime import Runtime
from callfs_link_service.tokens import LinkToken, Signer

logger = logging.getLogger(__name__)

MIN_EXPIRY = 1
MAX_EXPIRY = 86400
DEFAULT_EXPIRY = 3600


@dataclass(frozen=True)
class IssuedLink:
    """A new link: the URL to hand out, its token and when it stops working."""

    url: str
    token: str
    expires_at: datetime

    def to_json(self) -> dict[str, Any]:
        """API.md's answer; ``expires`` repeats ``expires_at`` for the original's clients."""
        when = format_time(self.expires_at)
        return {"url": self.url, "token": self.token, "expires_at": when, "expires": when}


@dataclass(frozen=True)
class LinkDownload:
    """A consumed link's file, opened: its entry and its bytes."""

    entry: Entry
    stream: AsyncIterator[bytes]


def base_url(external_url: str) -> str:
    """``server.external_url`` as a URL prefix (``https://`` when it names no scheme)."""
    url = external_url.strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    return url


class Links:
    """Issues and consumes the single-use links of one process's runtime."""

    def __init__(self, runtime: Runtime, clock: Callable[[], float] = time.time) -> None:
        self.rt = runtime
        self.store = runtime.store
        self.metrics = runtime.metrics
        self.signer = Signer(runtime.settings.link_secrets())
        self.base_url = base_url(runtime.settings.server.external_url)
        self.clock = clock
        """Seconds since the epoch: when links are issued, expire and are purged."""

    def now(self) -> datetime:
        """The moment :attr:`clock` tells."""
        return datetime.fromtimestamp(self.clock(), UTC)

    async def generate(
        self, user: User, path: str, expiry_seconds: int = DEFAULT_EXPIRY
    ) -> IssuedLink:
        """Issue a link to the file at ``path`` (normalized) for a user who may read it.

        Raises:
            BadRequest: ``expiry_seconds`` is outside 1..86400.
            NotFound: the file (or an ancestor) does not exist.
            PermissionDenied: an ancestor lacks ``x``, or the file lacks ``r``, for ``user``.
            IsADirectory: ``path`` is a directory.
        """
        if not MIN_EXPIRY <= expiry_seconds <= MAX_EXPIRY:
            raise BadRequest(f"expiry_seconds must be between {MIN_EXPIRY} and {MAX_EXPIRY}")
        resolved = await namespace.lookup(self.store, user, path)
        entry = resolved.entry
        assert entry is not None
        if entry.is_dir:
            raise IsADirectory(f"{path} is a directory; links name files")
        permissions.require(user, entry, READ, "read")
        now = self.clock()
        # Rounded up to a whole second, so a link never lives shorter than asked.
        expires = math.ceil(now + expiry_seconds)
        token, claims = self.signer.issue(entry.path, expires)
        await self.store.create_link(
            LinkRecord(
                token_id=claims.token_id,
                path=claims.path,
                expires_at=datetime.fromtimestamp(expires, UTC),
                created_by=user.name,
                created_at=datetime.fromtimestamp(int(now), UTC),
                entry_id=entry.entry_id,
            )
        )
        self.metrics.link_generations.inc()
        logger.info("link issued for %s by %s, valid %ds", entry.path, user.name, expiry_seconds)
        return IssuedLink(
            f"{self.base_url}/download/{token}", token, datetime.fromtimestamp(expires, UTC)
        )

    async def consume(self, token: str) -> LinkDownload:
        """Burn the link ``token`` and open its file for streaming.

        Raises:
            NotFound: the token is malformed, tampered or unknown, or the file
                entry it was issued for no longer lives at its path.
            LinkUsed: the link was consumed before.
            LinkExpired: the link's time is up.
            BackendUnavailable: the bytes cannot be reached now (the link stays usable).
        """
        claims = self._verify(token)
        now = self.now()
        if claims.expired(now.timestamp()):
            self._count("expired")
            raise LinkExpired("this link has expired")
        outcome, link = await self.store.consume_link(claims.token_id, now)
        if outcome == "used":
            self._count("used")
            raise LinkUsed("this link was already used")
        if outcome == "expired":
            self._count("expired")
            raise LinkExpired("this link has expired")
        if outcome == "not_found":
            self._count("not_found")
            raise NotFound("no such link")
        assert link is not None
        try:
            entry = await self._entry(claims.path, link.entry_id)
        except NotFound:
            self._count("not_found")
            raise
        except BaseException:
            await self._release(claims)
            raise
        try:
            stream = await self._read(entry)
        except BaseException as exc:
            # Nothing was sent yet: the link stays usable for another try.
            await self._release(claims)
            if isinstance(exc, NotFound):
                self._count("not_found")
            raise
        self._count("success")
        return LinkDownload(entry, stream)

    def _verify(self, token: str) -> LinkToken:
        try:
            return self.signer.verify(token)
        except NotFound:
            self._count("invalid")
            raise

    async def _entry(self, path: str, entry_id: str | None) -> Entry:
        """The file entry ``entry_id``, if it still lives at ``path``.

        A link written without an entry id (by a replica of the previous version,
        during an upgrade) follows its path, as links did then.
        """
        entry = await self.store.get(path)
        if entry is None or entry.is_dir or (entry_id is not None and entry.entry_id != entry_id):
            # One answer for every case: the holder learns nothing of what is there now.
            raise NotFound(f"{path} no longer exists")
        return entry

    async def _read(self, entry: Entry) -> AsyncIterator[bytes]:
        try:
            backend = self.rt.backend(entry.backend)
        except BadRequest:
            raise BackendUnavailable(f"backend {entry.backend!r} is not configured here") from None
        stream = await namespace.open_bytes(backend, entry, cache=self.rt.objects)
        self.metrics.file_operations.labels("read", entry.backend).inc()
        return stream

    async def _release(self, claims: LinkToken) -> None:
        try:
            await self.store.release_link(claims.token_id)
        except Exception:
            logger.exception("could not release link %s after a failed download", claims.token_id)

    def _count(self, status: str) -> None:
        self.metrics.link_consumptions.labels(status).inc()


def expiry_from_json(body: dict[str, Any]) -> int:
    """``expiry_seconds`` of a generate request: absent or null → 3600, else an int in range.

    Raises:
        BadRequest: not an integer (booleans, floats and strings are refused) or out of range.
    """
    value = body.get("expiry_seconds")
    if value is None:
        return DEFAULT_EXPIRY
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("expiry_seconds must be an integer number of seconds")
    if not MIN_EXPIRY <= value <= MAX_EXPIRY:
        raise BadRequest(f"expiry_seconds must be between {MIN_EXPIRY} and {MAX_EXPIRY}")
    return value
