"""Link tokens: a random id, an expiry and a path, signed with HMAC-SHA256.

A token is the URL-safe base64 (no padding) of::

    version (1 B) | id (16 B) | expiry (8 B, Unix seconds) | path (UTF-8) | mac (16 B)

where ``mac`` is HMAC-SHA256 over everything before it, truncated to 128 bits.
The path travels inside the token so the signature over (id, path, expiry) is
checked in constant time before any lookup. Several secrets may be configured:
the first signs, every one verifies, so a secret can be rotated without breaking
the links already handed out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from callfs import paths
from callfs.errors import InvalidPath, NotFound

VERSION = 1
ID_BYTES = 16
MAC_BYTES = 16
_HEADER = struct.Struct(">B16sQ")
_MIN_BYTES = _HEADER.size + 2 + MAC_BYTES
# A path of at most 4096 bytes, its header and mac, in base64: nothing longer is a token.
MAX_TOKEN_CHARS = (_HEADER.size + paths.MAX_PATH_BYTES + MAC_BYTES) * 4 // 3 + 4


@dataclass(frozen=True)
class LinkToken:
    """What a verified token says: which link, which file, until when."""

    token_id: str
    path: str
    expires: int

    def expired(self, now: float) -> bool:
        """Whether the link's time is up at ``now`` (Unix seconds)."""
        return now >= self.expires


class Signer:
    """Issues and verifies link tokens with a list of secrets (the first signs)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(not key for key in keys):
            raise ValueError("at least one non-empty link secret is required")
        self._keys = list(keys)

    def issue(self, path: str, expires: int) -> tuple[str, LinkToken]:
        """A new token for ``path`` (normalized) valid until ``expires`` (Unix seconds)."""
        raw_id = secrets.token_bytes(ID_BYTES)
        body = _HEADER.pack(VERSION, raw_id, expires) + path.encode("utf-8")
        token = _encode(body + _mac(self._keys[0], body))
        return token, LinkToken(raw_id.hex(), path, expires)

    def verify(self, token: str) -> LinkToken:
        """Check a token's form and signature; return what it says.

        Raises:
            NotFound: the token is malformed, tampered with, or signed by no known secret.
        """
        raw = _decode(token)
        if raw is None or len(raw) < _MIN_BYTES:
            raise NotFound("no such link")
        body, presented = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        valid = False
        for key in self._keys:
            # Check every secret, never stopping early, so timing tells nothing.
            valid |= hmac.compare_digest(_mac(key, body), presented)
        if not valid:
            raise NotFound("no such link")
        version, raw_id, expires = _HEADER.unpack_from(body)
        if version != VERSION:
            raise NotFound("no such link")
        try:
            path = body[_HEADER.size :].decode("utf-8")
            if paths.normalize(path).path != path:
                raise NotFound("no such link")
        except (UnicodeDecodeError, InvalidPath):
            raise NotFound("no such link") from None
        return LinkToken(raw_id.hex(), path, expires)


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode(token: str) -> bytes | None:
    """The bytes of a canonical unpadded URL-safe base64 string, else None."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        return None
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    # Two spellings of the same bytes (unused low bits set) must not both work.
    return raw if _encode(raw) == token else None
