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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    """API and metrics listeners on ports the system picks (0): no port is guessed free
    and then lost to another process; the banner tells which ones they are."""
    return {
        "CALLFS_SERVER_LISTEN_ADDR": "127.0.0.1:0",
        "CALLFS_METRICS_LISTEN_ADDR": "127.0.0.1:0",
    }


def chosen_ports() -> dict[str, str]:
    """Free API and metrics listener addresses chosen beforehand, for the tests of a
    listener the user names (everything else takes :func:`dev_ports`)."""
    return {
        "CALLFS_SERVER_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
        "CALLFS_METRICS_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
    }


FIRST_KEY = "client-tests-first-key-0123456789"
SECOND_KEY = "client-tests-second-key-0123456789"


@dataclass(frozen=True)
class TwoUsers:
    """A running ``callfs dev`` with two API keys."""

    url: str
    key: str
    """api-user-1's key."""
    other_key: str
    """api-user-2's key (same group ``callfs``)."""

    @property
    def options(self) -> dict[str, str]:
        """fsspec storage options that reach this server as api-user-1."""
        return {"endpoint_url": self.url, "api_key": self.key}


@contextmanager
def two_user_dev(data_dir: Path) -> Iterator[TwoUsers]:
    """``callfs dev`` on free ports with :data:`FIRST_KEY` and :data:`SECOND_KEY`."""
    keys = f"{FIRST_KEY},{SECOND_KEY}"
    with dev_server(data_dir, CALLFS_AUTH_API_KEYS=keys, **dev_ports()) as (url, key):
        assert key == FIRST_KEY
        yield TwoUsers(url, FIRST_KEY, SECOND_KEY)


def own_directory(test_name: str) -> str:
    """A remote directory path of a test's own (not created)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", test_name).strip("-")[:80]
    return f"/{name}-{uuid.uuid4().hex[:8]}"
