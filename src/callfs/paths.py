"""Namespace paths: the one place a client-supplied path is validated and normalized.

A valid path is absolute, has no empty, ``.`` or ``..`` segment, no backslash, no
control character, segments of at most 255 UTF-8 bytes and at most 4096 bytes in
all. Every rejection raises :class:`~callfs.errors.InvalidPath`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from callfs.errors import InvalidPath

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 4096
ROOT = "/"

_ENCODED_SEPARATOR = re.compile(r"%(2f|5c|00)", re.IGNORECASE)


@dataclass(frozen=True)
class RequestPath:
    """A validated path and whether the client wrote it with a trailing slash."""

    path: str
    trailing_slash: bool

    @property
    def is_root(self) -> bool:
        return self.path == ROOT


def normalize(raw: str) -> RequestPath:
    """Validate an already-decoded path (``a/b``, ``/a/b``, ``/a/``) and normalize it.

    Raises:
        InvalidPath: the path breaks one of the rules in the module docstring.
    """
    if not isinstance(raw, str):
        raise InvalidPath("path must be a string")
    trailing = raw.endswith("/") or raw == ""
    body = raw[1:] if raw.startswith("/") else raw
    if body.endswith("/"):
        body = body[:-1]
    if body == "":
        if raw not in ("", "/"):
            raise InvalidPath("path has an empty segment")
        return RequestPath(ROOT, True)
    for char in body:
        if char == "\\":
            raise InvalidPath("path must not contain a backslash")
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidPath("path must not contain control characters")
    try:
        encoded = body.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPath("path is not valid UTF-8") from exc
    if len(encoded) + 1 > MAX_PATH_BYTES:
        raise InvalidPath(f"path is longer than {MAX_PATH_BYTES} bytes")
    for segment in body.split("/"):
        if segment == "":
            raise InvalidPath("path has an empty segment")
        if segment in (".", ".."):
            raise InvalidPath("path must not contain '.' or '..' segments")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidPath(f"path segment is longer than {MAX_SEGMENT_BYTES} bytes")
    return RequestPath("/" + body, trailing)


def from_url(raw: str | bytes) -> RequestPath:
    """Validate the percent-encoded rest of a URL (``/v1/files/<raw>``), decoding it once.

    Encoded separators (``%2F``, ``%5C``) and NUL are refused before decoding, so
    a client cannot smuggle a segment boundary past the checks.

    Raises:
        InvalidPath: the path breaks a rule, or does not decode to UTF-8.
    """
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    if _ENCODED_SEPARATOR.search(text):
        raise InvalidPath("path must not contain encoded separators")
    try:
        decoded = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidPath("path is not valid UTF-8") from exc
    return normalize(decoded)


def parent(path: str) -> str:
    """The parent of a normalized path; the root is its own parent."""
    if path == ROOT:
        return ROOT
    head = path.rsplit("/", 1)[0]
    return head or ROOT


def name(path: str) -> str:
    """The last segment of a normalized path; ``""`` for the root."""
    return path.rsplit("/", 1)[1] if path != ROOT else ""


def join(directory: str, child: str) -> str:
    """Join a normalized directory path and one segment."""
    return f"/{child}" if directory == ROOT else f"{directory}/{child}"


def ancestors(path: str) -> list[str]:
    """Every directory above ``path``, root first (``/a/b/c`` → ``/``, ``/a``, ``/a/b``)."""
    if path == ROOT:
        return []
    parts = path.strip("/").split("/")[:-1]
    result = [ROOT]
    current = ""
    for part in parts:
        current = f"{current}/{part}"
        result.append(current)
    return result


def is_within(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` itself or lies below it."""
    if directory == ROOT:
        return True
    return path == directory or path.startswith(directory + "/")


def depth(path: str) -> int:
    """How many segments a normalized path has (root is 0)."""
    return 0 if path == ROOT else path.count("/")
