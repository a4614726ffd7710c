"""``python -m callfs_link_service [--config FILE]``: the same as ``callfs link-service``."""

from __future__ import annotations

import sys

from callfs.cli import main

if __name__ == "__main__":
    sys.exit(main([*sys.argv[1:], "link-service"]))
