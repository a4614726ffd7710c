"""The namespace store: one row per file or directory, and the link records."""

from __future__ import annotations

from callfs.metadata.base import MetadataStore
from callfs.settings import MetadataStoreSettings


def open_store(settings: MetadataStoreSettings) -> MetadataStore:
    """The store ``settings.type`` names, not yet opened (call ``open()``)."""
    if settings.type == "sqlite":
        from callfs.metadata.sqlite import SQLiteMetadataStore

        return SQLiteMetadataStore(settings.sqlite_path)
    from callfs.metadata.postgres import PostgresMetadataStore

    return PostgresMetadataStore(
        settings.dsn.get_secret_value(),
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
    )
