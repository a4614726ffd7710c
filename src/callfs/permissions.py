"""POSIX permission decisions: who may read, write, traverse, create, delete and chmod.

Pure functions over :class:`~callfs.entry.Entry` and :class:`User`; the callers
look the entries up. Every refusal raises :class:`~callfs.errors.PermissionDenied`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from callfs.entry import Entry
from callfs.errors import PermissionDenied

READ = 4
WRITE = 2
EXECUTE = 1
STICKY = 0o1000
ROOT_USER = "root"


@dataclass(frozen=True)
class User:
    """The identity an API key maps to."""

    name: str
    groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_root(self) -> bool:
        return self.name == ROOT_USER

    @property
    def primary_group(self) -> str:
        """The group new entries get: the first configured group, else the user's name."""
        return min(self.groups) if self.groups else self.name


def may(user: User, entry: Entry, want: int) -> bool:
    """Whether ``user`` holds every bit of ``want`` (a mix of READ/WRITE/EXECUTE) on ``entry``."""
    if user.is_root:
        return True
    if user.name == entry.owner:
        bits = (entry.mode >> 6) & 7
    elif entry.group in user.groups:
        bits = (entry.mode >> 3) & 7
    else:
        bits = entry.mode & 7
    return bits & want == want


def require(user: User, entry: Entry, want: int, action: str = "access") -> None:
    """Raise PermissionDenied unless ``user`` holds ``want`` on ``entry``."""
    if not may(user, entry, want):
        raise PermissionDenied(f"permission denied: cannot {action} {entry.path}")


def require_traverse(user: User, directories: Iterable[Entry]) -> None:
    """Every ancestor directory needs ``x``."""
    for directory in directories:
        require(user, directory, EXECUTE, "traverse")


def require_create(user: User, parent: Entry) -> None:
    """Creating an entry needs ``w`` and ``x`` on its parent directory."""
    require(user, parent, WRITE | EXECUTE, "create in")


def require_delete(user: User, parent: Entry, entry: Entry) -> None:
    """Removing (or renaming away) an entry: ``w``+``x`` on the parent, and the sticky rule."""
    require(user, parent, WRITE | EXECUTE, "remove from")
    if parent.mode & STICKY and not user.is_root and user.name not in (entry.owner, parent.owner):
        raise PermissionDenied(
            f"permission denied: {parent.path} is sticky and {entry.path} belongs to another user"
        )


def require_owner(user: User, entry: Entry) -> None:
    """Only the owner or root may change an entry's mode."""
    if not user.is_root and user.name != entry.owner:
        raise PermissionDenied(f"permission denied: only the owner may change {entry.path}")
