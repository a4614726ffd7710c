"""The ``callfs`` client commands as a user runs them: the real console script, as a
subprocess, against one real ``callfs dev`` per test module (two API keys: api-user-1
and api-user-2), each test in a remote directory of its own."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.dev import (
    CALLFS,
    TwoUsers,
    environment,
    own_directory,
    two_user_dev,
)

MiB = 1024 * 1024
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


Server = TwoUsers


@dataclass(frozen=True)
class Result:
    code: int
    stdout: bytes
    stderr: str

    @property
    def out(self) -> str:
        return self.stdout.decode()

    def __str__(self) -> str:
        return f"exit {self.code}; stdout {self.stdout[:500]!r}; stderr {self.stderr[:2000]!r}"


class Callfs:
    """Runs ``callfs ARGS`` with CALLFS_URL and api-user-1's CALLFS_API_KEY (or ``key``)."""

    def __init__(self, server: Server, config_home: Path) -> None:
        self.server = server
        self.config_home = config_home

    def env(self, key: str | None = None, **variables: str) -> dict[str, str]:
        return environment(
            CALLFS_URL=self.server.url,
            CALLFS_API_KEY=key or self.server.key,
            XDG_CONFIG_HOME=str(self.config_home),
            **variables,
        )

    def __call__(
        self,
        *arguments: str,
        key: str | None = None,
        stdin: bytes | Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Result:
        environment_ = env if env is not None else self.env(key)
        if isinstance(stdin, Path):
            with stdin.open("rb") as source:
                done = subprocess.run(
                    [str(CALLFS), *arguments],
                    stdin=source,
                    capture_output=True,
                    env=environment_,
                    cwd=cwd,
                    timeout=120,
                    check=False,
                )
        else:
            done = subprocess.run(
                [str(CALLFS), *arguments],
                input=stdin if stdin is not None else b"",
                capture_output=True,
                env=environment_,
                cwd=cwd,
                timeout=120,
                check=False,
            )
        return Result(done.returncode, done.stdout, done.stderr.decode(errors="replace"))

    def ok(
        self,
        *arguments: str,
        key: str | None = None,
        stdin: bytes | Path | None = None,
        cwd: Path | None = None,
    ) -> Result:
        """Run and require exit 0 with nothing on stderr."""
        result = self(*arguments, key=key, stdin=stdin, cwd=cwd)
        assert result.code == 0, result
        assert result.stderr == "", result
        return result

    def in_terminal(self, *arguments: str, columns: int = 120) -> tuple[int, str]:
        """Run with stderr on a pseudo-terminal (stdout a pipe): the exit code and what
        the terminal received, ANSI sequences removed."""
        import termios

        master, slave = os.openpty()
        termios.tcsetwinsize(slave, (24, columns))
        received = bytearray()

        def read() -> None:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    return
                if not data:
                    return
                received.extend(data)

        try:
            process = subprocess.Popen(
                [str(CALLFS), *arguments],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=slave,
                env=self.env(TERM="xterm"),
            )
        finally:
            os.close(slave)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            code = process.wait(timeout=120)
        finally:
            reader.join(timeout=10)
            os.close(master)
        return code, ANSI.sub("", bytes(received).decode(errors="replace"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with two_user_dev(tmp_path_factory.mktemp("callfs-dev") / "data") as running:
        yield running


@pytest.fixture
def home(request: pytest.FixtureRequest) -> str:
    """The test's own remote directory (not created)."""
    return own_directory(request.node.name)


@pytest.fixture
def callfs(server: Server, tmp_path: Path) -> Callfs:
    config_home = tmp_path / "xdg"
    config_home.mkdir()
    return Callfs(server, config_home)


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` by its relative path (``/``-separated)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
