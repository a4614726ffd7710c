"""``python -m callfs_storage_node [--config FILE]``: the storage-node role."""

from __future__ import annotations

import sys

from callfs.cli import main

if __name__ == "__main__":
    sys.exit(main([*sys.argv[1:], "storage-node"]))
