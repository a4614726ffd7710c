"""Every error class of the client commands ends with its own exit code and one line
on stderr: 1 other, 2 usage, 3 not found, 4 permission denied, 5 conflict."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Callfs, Result
from tests.support.dev import environment
from tests.support.servers import free_port

OTHER, USAGE, NOT_FOUND, DENIED, CONFLICT = 1, 2, 3, 4, 5


def failed(result: Result, code: int, command: str, *words: str) -> None:
    """``result`` exited with ``code`` and said so in one line naming the command."""
    assert result.code == code, result
    assert "Traceback" not in result.stderr, result
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith(f"callfs {command}: "), result
    if code != USAGE:
        assert len(lines) == 1, result
    for word in words:
        assert word in result.stderr, result


@pytest.mark.parametrize(
    "arguments",
    [
        ("stat", "{missing}"),
        ("ls", "{missing}"),
        ("ls", "-l", "callfs:{missing}/below"),
        ("cat", "{missing}"),
        ("cp", "callfs:{missing}", "{local}"),
        ("cp", "callfs:{missing}", "-"),
        ("cp", "-r", "callfs:{missing}", "callfs:{home}/copy"),
        ("cp", "{local}/not-here", "callfs:{home}/x"),
        ("mv", "callfs:{missing}", "callfs:{home}/x"),
        ("mv", "{local}/not-here", "callfs:{home}/x"),
        ("rm", "{missing}"),
        ("rm", "-r", "{missing}"),
        ("mkdir", "{missing}/child"),
        ("chmod", "600", "{missing}"),
        ("link", "{missing}"),
        ("du", "{missing}"),
        ("tree", "{missing}"),
    ],
)
def test_not_found_exits_3(
    callfs: Callfs, home: str, tmp_path: Path, arguments: tuple[str, ...]
) -> None:
    callfs.ok("mkdir", home)
    values = {"missing": f"{home}/missing", "home": home, "local": str(tmp_path)}
    result = callfs(*(argument.format(**values) for argument in arguments))
    failed(result, NOT_FOUND, arguments[0])
    if arguments[0] not in ("cp", "mv") or "callfs:{missing}" in arguments:
        assert "FILE_NOT_FOUND" in result.stderr
    else:
        assert "No such file or directory" in result.stderr


def test_permission_denied_exits_4(callfs: Callfs, home: str, tmp_path: Path) -> None:
    other = callfs.server.other_key
    callfs.ok("mkdir", home)
    callfs.ok("chmod", "777", home)
    callfs.ok("cp", "-", f"callfs:{home}/theirs/secret", key=other, stdin=b"secret")
    callfs.ok("chmod", "600", f"{home}/theirs/secret", key=other)
    secret = f"{home}/theirs/secret"
    for arguments in (
        ("cat", secret),
        ("stat", secret),
        ("cp", f"callfs:{secret}", str(tmp_path / "copy")),
        ("cp", f"callfs:{secret}", "-"),
        ("link", secret),
        ("chmod", "644", secret),  # only the owner may
        ("rm", secret),  # theirs/ is 0755, owned by api-user-2
        ("mkdir", f"{home}/theirs/mine"),
        ("cp", "-", f"callfs:{home}/theirs/mine"),
        ("mv", f"callfs:{secret}", f"callfs:{home}/stolen"),
    ):
        failed(callfs(*arguments), DENIED, arguments[0], "PERMISSION_DENIED")
    assert not (tmp_path / "copy").exists()
    # The owner still can.
    assert callfs.ok("cat", secret, key=other).stdout == b"secret"


def test_an_unknown_key_exits_4(callfs: Callfs) -> None:
    result = callfs("ls", "/", key="not-a-key-of-this-server")
    failed(result, DENIED, "ls", "AUTHENTICATION_FAILED")


@pytest.mark.parametrize(
    "arguments",
    [
        ("cp", "only-one"),
        ("ls", "--no-such-option"),
        ("chmod", "rwx", "/f"),
        ("chmod", "99999", "/f"),
        ("link", "--expiry", "0", "/f"),
        ("cp", "local-a", "local-b"),
        ("cp", "-", "-"),
        ("cp", "-", "local-file"),
        ("cp", "-r", "-", "callfs:/x"),
        ("mv", "-", "callfs:/x"),
        ("mv", "local-a", "local-b"),
        ("ls", "callfs://somehost/x"),
        ("cp", "callfs://somehost/x", "local"),
    ],
)
def test_usage_errors_exit_2(callfs: Callfs, arguments: tuple[str, ...]) -> None:
    result = callfs(*arguments)
    assert result.code == USAGE, result
    assert "Traceback" not in result.stderr
    assert result.stderr.strip(), result


def test_no_url_anywhere_is_a_usage_error(callfs: Callfs) -> None:
    env = environment(XDG_CONFIG_HOME=str(callfs.config_home))
    failed(callfs("ls", "/", env=env), USAGE, "ls", "--url", "CALLFS_URL")
    failed(callfs("ls", "--url", "ftp://nowhere", "/", env=env), USAGE, "ls", "CONFIG_ERROR")
    failed(callfs("ls", "--profile", "absent", "/", env=env), USAGE, "ls", "absent")


def test_conflicts_exit_5(callfs: Callfs, home: str) -> None:
    callfs.ok("mkdir", "-p", f"{home}/dir/full")
    callfs.ok("cp", "-", f"callfs:{home}/file", stdin=b"f")
    failed(callfs("mkdir", f"{home}/dir"), CONFLICT, "mkdir", "FILE_ALREADY_EXISTS")
    failed(callfs("rm", f"{home}/dir"), CONFLICT, "rm", "DIRECTORY_NOT_EMPTY")
    # A directory is never moved over a file.
    failed(
        callfs("mv", f"callfs:{home}/dir", f"callfs:{home}/file"),
        CONFLICT,
        "mv",
        "FILE_ALREADY_EXISTS",
    )
    assert callfs.ok("cat", f"{home}/file").stdout == b"f"


def test_other_errors_exit_1(callfs: Callfs, home: str, tmp_path: Path) -> None:
    callfs.ok("mkdir", "-p", f"{home}/dir")
    failed(callfs("cp", f"callfs:{home}/dir", str(tmp_path)), OTHER, "cp", "-r")
    (tmp_path / "local-dir").mkdir()
    failed(callfs("cp", str(tmp_path / "local-dir"), f"callfs:{home}/x"), OTHER, "cp", "-r")
    failed(callfs("cat", f"{home}/dir"), OTHER, "cat", "IS_A_DIRECTORY")
    failed(callfs("stat", f"{home}/../etc"), OTHER, "stat", "INVALID_PATH")
    failed(callfs("cp", "-r", f"callfs:{home}", f"callfs:{home}/dir/inside"), USAGE, "cp")
    unreachable = f"http://127.0.0.1:{free_port()}"
    failed(callfs("ls", "--url", unreachable, "/"), OTHER, "ls", "TRANSPORT_ERROR")


def test_several_failures_are_all_reported(callfs: Callfs, home: str) -> None:
    other = callfs.server.other_key
    callfs.ok("mkdir", home)
    callfs.ok("cp", "-", f"callfs:{home}/keep", stdin=b"k")
    callfs.ok("cp", "-", f"callfs:{home}/gone", stdin=b"g")
    # The same failure twice: its code.
    same = callfs("rm", f"{home}/nope-1", f"{home}/gone", f"{home}/nope-2")
    assert same.code == NOT_FOUND, same
    assert same.stderr.startswith("callfs rm: 2 of 3 paths failed:\n"), same
    assert f"{home}/nope-1: " in same.stderr and f"{home}/nope-2: " in same.stderr
    assert callfs.ok("ls", home).out == "keep\n"
    # Different failures: 1.
    mixed = callfs("rm", f"{home}-nope", f"{home}/keep", key=other)  # / is 1777
    assert mixed.code == OTHER, mixed
    assert "FILE_NOT_FOUND" in mixed.stderr and "PERMISSION_DENIED" in mixed.stderr


def test_tree_marks_a_directory_it_may_not_list_and_goes_on(callfs: Callfs, home: str) -> None:
    other = callfs.server.other_key
    callfs.ok("mkdir", home)
    callfs.ok("chmod", "777", home)
    callfs.ok("mkdir", "-m", "700", f"{home}/private", key=other)
    callfs.ok("cp", "-", f"callfs:{home}/private/inside", key=other, stdin=b"i")
    callfs.ok("cp", "-", f"callfs:{home}/z.txt", stdin=b"z")
    result = callfs("tree", home)
    assert result.code == DENIED, result
    assert result.out.splitlines() == [
        home,
        "├── private  [PERMISSION_DENIED]",
        "└── z.txt",
        "",
        "1 directory, 1 file",
    ]
    failed(callfs("ls", f"{home}/private"), DENIED, "ls", "PERMISSION_DENIED")


def test_the_console_script_ends_with_the_code_and_errors_on_stderr_only(
    callfs: Callfs, home: str
) -> None:
    """The installed ``callfs`` script as a process, stdin and stdout pipes: its exit
    status is the command's code, and an error goes to stderr, never to stdout."""
    written = callfs.console("cp", "-", f"callfs:{home}/piped", stdin=b"through a pipe")
    assert (written.code, written.stdout, written.stderr) == (0, b"", ""), written
    read = callfs.console("cat", f"{home}/piped")
    assert (read.code, read.stdout, read.stderr) == (0, b"through a pipe", ""), read
    missing = callfs.console("stat", f"{home}/missing")
    failed(missing, NOT_FOUND, "stat", "FILE_NOT_FOUND")
    assert missing.stdout == b"", missing
    usage = callfs.console("chmod", "rwx", f"{home}/piped")
    assert usage.code == USAGE and usage.stdout == b"", usage
    assert "invalid octal mode" in usage.stderr and "Traceback" not in usage.stderr, usage
