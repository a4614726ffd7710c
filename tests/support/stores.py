"""Which metadata stores an HTTP test runs on.

Every API test runs on SQLite. The tests whose answers depend on the store's own
behaviour (races and conditional updates, listings' queries, recursive deletes, the
reconciler, outages, link consumption) are marked ``both_stores`` and run on
PostgreSQL as well; ``CALLFS_TEST_STORES=all`` runs every one of them on both. The
stores themselves are tested on both, whole, in tests/metadata.
"""

from __future__ import annotations

import os

import pytest

EVERY_TEST = os.environ.get("CALLFS_TEST_STORES", "") == "all"


def parametrize_stores(metafunc: pytest.Metafunc) -> None:
    """Run the test once per store it is meant for, as ``store_kind``."""
    if "store_kind" not in metafunc.fixturenames:
        return
    both = EVERY_TEST or metafunc.definition.get_closest_marker("both_stores") is not None
    metafunc.parametrize("store_kind", ["sqlite", "postgres"] if both else ["sqlite"])
