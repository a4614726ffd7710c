"""``callfs dev`` as a user runs it: a subprocess on ports of the test's choosing.

Shared by the CLI tests (tests/unit/test_cli.py) and the SDK tests (tests/client/).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.servers import free_port

CALLFS = Path(sys.executable).parent / "callfs"


def environment(**variables: str) -> dict[str, str]:
    """The test process's environment without its CALLFS_* variables, plus ``variables``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CALLFS_")}
    return {**inherited, **variables}


@contextmanager
def dev_server(data_dir: Path, **variables: str) -> Iterator[tuple[str, str]]:
    """Run ``callfs dev``; yield its URL and API key as its banner prints them."""
    process = subprocess.Popen(
        [str(CALLFS), "dev", "--data-dir", str(data_dir)],
        env=environment(**variables),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = ""
        deadline = time.monotonic() + 60
        while "API key:" not in banner and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            banner += line
        url = re.search(r"URL:\s+(\S+)", banner)
        key = re.search(r"API key:\s+(\S+)", banner)
        assert url and key, f"no banner from callfs dev: {banner!r}"
        yield url.group(1), key.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            if process.stdout is not None:
                process.stdout.close()
    assert process.returncode == 0, f"callfs dev exited with {process.returncode}"


def dev_ports() -> dict[str, str]:
    """Free API and metrics listener addresses for one ``callfs dev``."""
    return {
        "CALLFS_SERVER_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
        "CALLFS_METRICS_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
    }
