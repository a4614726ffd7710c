"""The ``callfs`` client commands against one real ``callfs dev`` per test module (two
API keys: api-user-1 and api-user-2), each test in a remote directory of its own.

Most tests run a command through the console script's entry point,
:func:`callfs.cli.main`, in this process (:func:`run_cli`): the same parser, handlers
and exit codes, with the environment, stdin, stdout, stderr and working directory of
the call. What only a separate process shows — the installed console script itself,
a terminal on stderr, the modules a command loads, its peak memory — runs it as a
subprocess (:meth:`Callfs.console`, :meth:`Callfs.in_terminal`, and the tests that
start their own interpreter).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callfs.cli import main
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


@contextlib.contextmanager
def environ(variables: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` is exactly ``variables`` inside the block (as a subprocess's
    ``env=``), and as it was after it."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(variables)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def standard_streams(stdin: io.BufferedIOBase) -> Iterator[tuple[io.BytesIO, io.StringIO]]:
    """``sys.stdin`` reads ``stdin``; ``sys.stdout`` (text, and bytes through its
    ``.buffer``) and ``sys.stderr`` are captured, as pipes (not terminals) would be."""
    out, err = io.BytesIO(), io.StringIO()
    text_in = io.TextIOWrapper(stdin, encoding="utf-8")
    # write_through: text and bytes written to stdout keep their order.
    text_out = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = text_in, text_out, err
    try:
        yield out, err
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        text_out.flush()
        # The caller's buffers stay open for reading.
        text_in.detach()
        text_out.detach()


def run_cli(
    *arguments: str,
    env: Mapping[str, str],
    stdin: bytes | Path | None = None,
    cwd: Path | None = None,
) -> Result:
    """``callfs ARGS`` through :func:`callfs.cli.main` in this process: its exit code
    (argparse's ``SystemExit`` included), stdout and stderr."""
    with contextlib.ExitStack() as stack:
        if isinstance(stdin, Path):
            source: io.BufferedIOBase = stack.enter_context(stdin.open("rb"))
        else:
            source = io.BytesIO(stdin or b"")
        stack.enter_context(environ(env))
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        out, err = stack.enter_context(standard_streams(source))
        try:
            code = main(list(arguments))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return Result(code, out.getvalue(), err.getvalue())


class Callfs:
    """Runs ``callfs ARGS`` with CALLFS_URL and api-user-1's CALLFS_API_KEY (or ``key``):
    in this process by default, as the console script with :meth:`console`."""

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
        return run_cli(
            *arguments, env=env if env is not None else self.env(key), stdin=stdin, cwd=cwd
        )

    def console(
        self,
        *arguments: str,
        key: str | None = None,
        stdin: bytes | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Result:
        """Run the installed console script as a subprocess, stdin and stdout pipes (or
        ``stdin`` a file)."""
        environment_ = env if env is not None else self.env(key)
        with contextlib.ExitStack() as stack:
            feed: dict[str, Any] = (
                {"stdin": stack.enter_context(stdin.open("rb"))}
                if isinstance(stdin, Path)
                else {"input": stdin or b""}
            )
            done = subprocess.run(
                [str(CALLFS), *arguments],
                capture_output=True,
                env=environment_,
                timeout=120,
                check=False,
                **feed,
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
            # A reader still in os.read would read whatever file reuses the number.
            if reader.is_alive():
                raise AssertionError("the terminal's reader did not end with the command")
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
