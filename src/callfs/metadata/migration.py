"""Versioned schema migrations: ``migrations/<dialect>/NNNN_name.sql``, applied in order."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from importlib import resources
from typing import Literal

Dialect = Literal["postgres", "sqlite"]


@dataclass(frozen=True)
class Migration:
    """One migration file: its version (the number before ``_``), name and SQL."""

    version: int
    name: str
    sql: str


def load(dialect: Dialect) -> list[Migration]:
    """Every migration shipped for ``dialect``, oldest first.

    Raises:
        ValueError: two files claim the same version.
    """
    folder = resources.files("callfs.metadata").joinpath("migrations", dialect)
    found: dict[int, Migration] = {}
    for item in folder.iterdir():
        if not item.name.endswith(".sql"):
            continue
        number, _, rest = item.name.partition("_")
        version = int(number)
        if version in found:
            raise ValueError(f"two {dialect} migrations have version {version}")
        found[version] = Migration(version, rest.removesuffix(".sql"), item.read_text("utf-8"))
    return [found[version] for version in sorted(found)]


def statements(sql: str) -> list[str]:
    """Split a SQLite script into complete statements (sqlite3 runs one at a time)."""
    result: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                result.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        not line.strip() or line.strip().startswith("--") for line in buffer.splitlines()
    ):
        raise ValueError("SQLite migration ends with an incomplete statement")
    return result
