"""HTTP byte ranges: one ``Range: bytes=a-b`` header into an inclusive span."""

from __future__ import annotations

from callfs.errors import RangeNotSatisfiable


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(start, end)`` a Range header asks of a ``size``-byte file.

    None means "serve the whole file": no header, a malformed one, another unit or
    several ranges (RFC 9110 lets a server ignore those).

    Raises:
        RangeNotSatisfiable: a well-formed single range that misses the file.
    """
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
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
