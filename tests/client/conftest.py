"""One real ``callfs dev`` per test module (two API keys: api-user-1 and api-user-2),
each test in a directory of its own, and an environment without CallFS settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dev import TwoUsers, own_directory, two_user_dev

Server = TwoUsers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with two_user_dev(tmp_path_factory.mktemp("callfs-dev") / "data") as running:
        yield running


@pytest.fixture
def home(request: pytest.FixtureRequest) -> str:
    """The test's own directory (not created: writes create their parents)."""
    return own_directory(request.node.name)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CALLFS_URL/API_KEY/PROFILE and an empty config directory, unless a test sets them."""
    for name in ("CALLFS_URL", "CALLFS_API_KEY", "CALLFS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    config_home = tmp_path / "xdg"
    config_home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    return config_home
