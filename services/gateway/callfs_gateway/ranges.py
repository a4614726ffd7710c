"""HTTP byte ranges: one ``Range: bytes=a-b`` header into an inclusive span."""

from __future__ import annotations

import re

from callfs.errors import RangeNotSatisfiable

MAX_DIGITS = 19
"""Longest position a range may spell (10**19 bytes is beyond any file); longer is malformed."""

_OWS = " \t"  # RFC 9110 optional whitespace: space and tab, nothing else
_POSITION = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(start, end)`` a Range header asks of a ``size``-byte file.

    None means "serve the whole file": no header, a malformed one (positions are
    ASCII digits only, at most :data:`MAX_DIGITS` of them), another unit or several
    ranges (RFC 9110 lets a server ignore those).

    Raises:
        RangeNotSatisfiable: a well-formed single range that misses the file.
    """
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip(_OWS).lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip(_OWS).partition("-")
    if not dash or not _position(first) or not _position(last):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(f"range {spec} is not satisfiable", size=size)
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(f"range {spec} is not satisfiable", size=size)
    return start, min(end, size - 1)


def _position(text: str) -> bool:
    """Whether ``text`` is an empty or a well-formed byte position."""
    return text == "" or _POSITION.fullmatch(text) is not None
