"""One real ``callfs dev`` for every test of tests/fsspec (two API keys), an environment
without CallFS settings, and a filesystem on it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from callfs.client.fsspec import CallFSFileSystem
from tests.support.dev import TwoUsers, two_user_dev

Server = TwoUsers


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with two_user_dev(tmp_path_factory.mktemp("callfs-dev") / "data") as running:
        yield running


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CALLFS_URL/API_KEY/PROFILE and an empty config directory, unless a test sets
    them; no filesystem instance cached by an earlier test."""
    for name in ("CALLFS_URL", "CALLFS_API_KEY", "CALLFS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    config_home = tmp_path / "xdg"
    config_home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    CallFSFileSystem.clear_instance_cache()
    return config_home


@pytest.fixture
def callfs(server: Server) -> CallFSFileSystem:
    """A filesystem on the server, as api-user-1 (a new instance: not fsspec's cached one)."""
    return CallFSFileSystem(server.url, server.key, skip_instance_cache=True)


@pytest.fixture
def home(request: pytest.FixtureRequest, callfs: CallFSFileSystem) -> Iterator[str]:
    """The test's own directory (not created: writes create their parents), removed after."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:80]
    path = f"/{name}-{uuid.uuid4().hex[:8]}"
    yield path
    if callfs.exists(path):
        callfs.rm(path, recursive=True)
