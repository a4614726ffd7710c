"""Transfers: tree copies going on past a failure, progress bars on a terminal only,
and streaming in bounded memory (stdin and stdout included)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import IO

from tests.cli.conftest import Callfs, MiB, read_tree
from tests.support.dev import CALLFS

PART = ".callfs-part"

# The console script's entry point, then VmHWM: this process's own peak RSS (ru_maxrss
# would count the parent's, inherited through fork and exec).
MEASURED = """
import re, sys
from callfs.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    peak = re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1)
sys.stderr.write(f"\\npeak-kib {peak}\\n")
sys.exit(code)
"""


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes (a MiB at a time); their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for _ in range(size // MiB):
            chunk = os.urandom(MiB)
            digest.update(chunk)
            file.write(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def test_tree_copies_go_past_an_unreadable_file_and_report_it(
    callfs: Callfs, tmp_path: Path, home: str
) -> None:
    other = callfs.server.other_key
    callfs.ok("cp", "-", f"callfs:{home}/a.txt", stdin=b"a")
    callfs.ok("cp", "-", f"callfs:{home}/sub/b.txt", stdin=b"b")
    callfs.ok("chmod", "777", f"{home}/sub")
    callfs.ok("cp", "-", f"callfs:{home}/sub/secret", key=other, stdin=b"not yours")
    callfs.ok("chmod", "600", f"{home}/sub/secret", key=other)
    callfs.ok("cp", "-", f"callfs:{home}/sub/z-after.txt", key=other, stdin=b"z")
    callfs.ok("cp", "-", f"callfs:{home}/z.txt", stdin=b"zz")
    readable = {"a.txt": b"a", "sub/b.txt": b"b", "sub/z-after.txt": b"z", "z.txt": b"zz"}

    def reported(stderr: str) -> None:
        lines = stderr.splitlines()
        assert re.fullmatch(r"callfs (cp|mv): 1 of \d+ entries failed:", lines[-2]), stderr
        assert lines[-1].startswith(f"  {home}/sub/secret: HTTP 403 PERMISSION_DENIED"), stderr

    # remote → local: everything else is copied, the failure is named at the end.
    result = callfs("cp", "-r", f"callfs:{home}", str(tmp_path / "copy"))
    assert result.code == 4, result
    reported(result.stderr)
    assert read_tree(tmp_path / "copy") == readable
    assert not [path for path in (tmp_path / "copy").rglob(f"*{PART}")]

    # remote → remote: the same.
    result = callfs("cp", "-r", f"callfs:{home}", f"callfs:{home}-copy")
    assert result.code == 4, result
    reported(result.stderr)
    assert callfs.ok("ls", "-R", f"{home}-copy").out.splitlines() == [
        "a.txt",
        "sub/",
        "sub/b.txt",
        "sub/z-after.txt",
        "z.txt",
    ]

    # mv that could not copy everything keeps its source.
    result = callfs("mv", f"callfs:{home}", str(tmp_path / "moved"))
    assert result.code == 4, result
    assert f"callfs:{home} was kept" in result.stderr
    reported(result.stderr)
    assert callfs.ok("ls", home).out == "a.txt\nsub/\nz.txt\n"


def test_a_local_tree_upload_goes_past_an_unreadable_entry(
    callfs: Callfs, tmp_path: Path, home: str
) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"a")
    (tree / "sub" / "b.txt").write_bytes(b"b")
    os.mkfifo(tree / "sub" / "fifo")  # unreadable as a file (even for root): skipped
    result = callfs("cp", "-r", str(tree), f"callfs:{home}")
    assert result.code == 1, result
    assert "1 of 4 entries failed" in result.stderr
    assert f"{tree / 'sub' / 'fifo'}: not a regular file" in result.stderr
    assert callfs.ok("ls", "-R", home).out.splitlines() == ["a.txt", "sub/", "sub/b.txt"]


def test_progress_bars_show_on_a_terminal_only(callfs: Callfs, tmp_path: Path, home: str) -> None:
    big = tmp_path / "big.bin"
    random_file(big, 5 * MiB)
    small = tmp_path / "small.bin"
    small.write_bytes(b"small")

    code, terminal = callfs.in_terminal("cp", str(big), f"callfs:{home}/big.bin")
    assert code == 0, terminal
    assert re.search(r"big\.bin: +100%\|█+\| 5\.00M/5\.00M \[", terminal), terminal

    code, terminal = callfs.in_terminal("cp", f"callfs:{home}/big.bin", str(tmp_path / "down.bin"))
    assert code == 0, terminal
    assert re.search(r"down\.bin: +100%\|█+\| 5\.00M/5\.00M", terminal), terminal
    assert sha256_of(tmp_path / "down.bin") == sha256_of(big)

    # Remote → remote, and a download to stdout (the bar goes to stderr).
    code, terminal = callfs.in_terminal("cp", f"callfs:{home}/big.bin", f"callfs:{home}/b2")
    assert code == 0 and "100%" in terminal, terminal
    code, terminal = callfs.in_terminal("cp", f"callfs:{home}/big.bin", "-")
    assert code == 0 and "100%" in terminal, terminal

    # Small transfers, and -q, draw nothing.
    assert callfs.in_terminal("cp", str(small), f"callfs:{home}/small") == (0, "")
    assert callfs.in_terminal("cp", "-q", str(big), f"callfs:{home}/quiet") == (0, "")

    # Piped (not a terminal): quiet.
    callfs.ok("cp", str(big), f"callfs:{home}/piped.bin")
    callfs.ok("cp", f"callfs:{home}/piped.bin", str(tmp_path / "piped.bin"))
    assert sha256_of(tmp_path / "piped.bin") == sha256_of(big)


def measured(
    callfs: Callfs, *arguments: str, stdin: int | IO[bytes] | None = subprocess.DEVNULL
) -> int:
    """Run a client command in a fresh interpreter; its peak RSS in KiB."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURED, *arguments],
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=callfs.env(),
        timeout=300,
        check=False,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    found = re.search(r"peak-kib (\d+)", result.stderr)
    assert found, result.stderr
    return int(found.group(1))


def test_transfers_stream_in_bounded_memory(callfs: Callfs, tmp_path: Path, home: str) -> None:
    size = 48 * MiB
    big = tmp_path / "big.bin"
    digest = random_file(big, size)
    callfs.ok("mkdir", home)
    baseline = measured(callfs, "ls", "-l", home)
    bound = baseline + 24 * 1024  # KiB: far below the file's 48 MiB

    assert measured(callfs, "cp", str(big), f"callfs:{home}/big.bin") < bound
    assert measured(callfs, "cp", f"callfs:{home}/big.bin", str(tmp_path / "down.bin")) < bound
    assert sha256_of(tmp_path / "down.bin") == digest
    with subprocess.Popen(["cat", str(big)], stdout=subprocess.PIPE) as pipe:
        assert measured(callfs, "cp", "-", f"callfs:{home}/piped.bin", stdin=pipe.stdout) < bound
    assert measured(callfs, "cp", f"callfs:{home}/piped.bin", "-") < bound
    assert measured(callfs, "cat", f"{home}/piped.bin") < bound

    with (tmp_path / "out.bin").open("wb") as out:
        done = subprocess.run(
            [str(CALLFS), "cat", f"{home}/piped.bin"],
            stdout=out,
            env=callfs.env(),
            timeout=300,
            check=False,
        )
    assert done.returncode == 0
    assert sha256_of(tmp_path / "out.bin") == digest
