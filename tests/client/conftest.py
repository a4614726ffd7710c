"""One real ``callfs dev`` per test module (two API keys: api-user-1 and api-user-2),
each test in a directory of its own, and an environment without CallFS settings."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.dev import dev_ports, dev_server

FIRST_KEY = "client-tests-first-key-0123456789"
SECOND_KEY = "client-tests-second-key-0123456789"


@dataclass(frozen=True)
class Server:
    url: str
    key: str
    """api-user-1's key."""
    other_key: str
    """api-user-2's key (same group ``callfs``)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("callfs-dev") / "data"
    keys = f"{FIRST_KEY},{SECOND_KEY}"
    with dev_server(data, CALLFS_AUTH_API_KEYS=keys, **dev_ports()) as (url, key):
        assert key == FIRST_KEY
        yield Server(url, FIRST_KEY, SECOND_KEY)


@pytest.fixture
def home(request: pytest.FixtureRequest) -> str:
    """The test's own directory (not created: writes create their parents)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:80]
    return f"/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CALLFS_URL/API_KEY/PROFILE and an empty config directory, unless a test sets them."""
    for name in ("CALLFS_URL", "CALLFS_API_KEY", "CALLFS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    config_home = tmp_path / "xdg"
    config_home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    return config_home
