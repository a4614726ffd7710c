"""Subtrees as key ranges: what both SQL stores need to list, move and delete below a path.

Everything strictly below ``/a`` sorts between ``/a/`` and ``/a0`` (``0`` is the
character after ``/``), so a subtree is one primary-key range scan, never a walk.
"""

from __future__ import annotations

from collections.abc import Sequence

from callfs import paths
from callfs.entry import Entry
from callfs.errors import AlreadyExists, BadRequest, IsADirectory, NotADirectory


def bounds(path: str) -> tuple[str, str]:
    """The exclusive key range ``(low, high)`` holding every path strictly below ``path``."""
    prefix = "" if path == paths.ROOT else path
    return prefix + "/", prefix + "0"


def deepest(path: str, max_depth: int | None) -> int | None:
    """The greatest path depth a listing of ``path`` down to ``max_depth`` may return."""
    if max_depth is None:
        return None
    if max_depth < 0:
        raise BadRequest("max_depth must be 0 or more")
    return paths.depth(path) + 1 + max_depth


def window(path: str, max_depth: int | None, after: str | None) -> tuple[str, str, int | None]:
    """A listing's ``(low, high, deepest)``: :func:`bounds` resumed past ``after``, and
    :func:`deepest`."""
    low, high = bounds(path)
    if after is not None and after > low:
        low = after
    return low, high, deepest(path, max_depth)


def row_parent(path: str) -> str:
    """The ``parent`` column of a row: the parent path, or ``""`` for the root."""
    return "" if path == paths.ROOT else paths.parent(path)


def check_move(source: str, destination: str) -> None:
    """Refuse moves no store can perform.

    Raises:
        BadRequest: the root is moved or replaced, or a directory goes into itself.
    """
    if paths.ROOT in (source, destination):
        raise BadRequest("the root directory cannot be moved or replaced")
    if destination != source and paths.is_within(destination, source):
        raise BadRequest("cannot move a directory into itself")


def check_delete(path: str) -> None:
    """Refuse to delete the root.

    Raises:
        BadRequest: ``path`` is the root.
    """
    if path == paths.ROOT:
        raise BadRequest("the root directory cannot be deleted")


def check_replace(moving: Entry, target: Entry, *, replace: bool) -> None:
    """Whether a move of ``moving`` may replace the existing ``target`` (emptiness aside).

    Raises:
        AlreadyExists: ``replace`` is false.
        IsADirectory: a file would replace a directory.
        NotADirectory: a directory would replace a file.
    """
    if not replace:
        raise AlreadyExists(f"{target.path} already exists")
    if target.is_dir and not moving.is_dir:
        raise IsADirectory(f"{target.path} is a directory")
    if moving.is_dir and not target.is_dir:
        raise NotADirectory(f"{target.path} is not a directory")


def anchors(path: str, parents: Sequence[Entry]) -> list[str]:
    """The directories that must exist for ``path`` and its new ``parents`` to hang off, sorted."""
    wanted = {paths.parent(path)}
    for parent in parents:
        wanted |= {parent.path, paths.parent(parent.path)}
    return sorted(wanted)
