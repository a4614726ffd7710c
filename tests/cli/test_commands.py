"""Every client command of ``callfs`` succeeding, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.cli.conftest import Callfs, read_tree, run_cli, write_tree
from tests.support.dev import CALLFS, environment

TREE = {
    "a.txt": b"alpha\n",
    "sub/b.txt": b"bravo!\n",
    "sub/deeper/c.bin": bytes(range(256)) * 4,
    "sub/.hidden": b"h",
    "with space/d e.txt": b"delta echo",
}


def upload_tree(callfs: Callfs, tmp_path: Path, home: str) -> None:
    local = tmp_path / "tree"
    write_tree(local, TREE)
    callfs.ok("cp", "-r", str(local), f"callfs:{home}")


def test_client_commands_sit_beside_the_server_roles() -> None:
    """The installed console script lists them (the rest run its entry point in-process)."""
    result = subprocess.run(
        [str(CALLFS), "--help"], env=environment(), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for command in (
        "gateway",
        "storage-node",
        "link-service",
        "dev",
        "config",
        *("ls", "stat", "cat", "cp", "mv", "rm", "mkdir", "chmod", "link", "du", "tree"),
    ):
        assert command in result.stdout
    ls_help = run_cli("ls", "--help", env=environment())
    assert ls_help.code == 0, ls_help
    assert "--url" in ls_help.out and "--api-key" in ls_help.out


def test_client_commands_load_nothing_of_the_server(callfs: Callfs, home: str) -> None:
    """The console script's own entry point, run in a fresh interpreter: after a client
    command, no server module (nor the progress bar's library) is loaded."""
    callfs.ok("mkdir", home)
    probe = (
        "import json, sys\n"
        "from callfs.cli import main\n"
        f"code = main(['ls', '-l', {home!r}])\n"
        "print(json.dumps([code, sorted(sys.modules)]), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=callfs.env(), capture_output=True, text=True, check=True
    )
    code, modules = json.loads(result.stderr.strip().splitlines()[-1])
    assert code == 0
    loaded = set(modules) | {name.split(".")[0] for name in modules}
    assert "callfs.client.cli" in loaded
    server_side = {
        "fastapi",
        "starlette",
        "uvicorn",
        "uvloop",
        "grpc",
        "pydantic",
        "redis",
        "asyncpg",
        "aioboto3",
        "kubernetes",
        "prometheus_client",
        "yaml",
        "tqdm",
        "callfs.settings",
        "callfs.logs",
        "callfs.runtime",
        "callfs.errors",
        "callfs_gateway",
        "callfs_link_service",
        "callfs_storage_node",
    }
    assert not loaded & server_side


def test_ls_lists_names_long_recursive_and_json(callfs: Callfs, tmp_path: Path, home: str) -> None:
    upload_tree(callfs, tmp_path, home)
    assert callfs.ok("ls", home).out.splitlines() == ["a.txt", "sub/", "with space/"]
    # callfs: paths are accepted too, as everywhere.
    assert callfs.ok("ls", f"callfs://{home}").out == callfs.ok("ls", f"callfs:{home}").out

    long = [line.split() for line in callfs.ok("ls", "-l", home).out.splitlines()]
    assert long[0][:4] == ["-rw-r--r--", "api-user-1", "callfs", "6"]
    assert long[0][-1] == "a.txt"
    assert long[1][0] == "drwxr-xr-x" and long[1][-1] == "sub/"
    assert long[2][-2:] == ["with", "space/"]

    recursive = callfs.ok("ls", "-R", home).out.splitlines()
    assert set(recursive) == {
        "a.txt",
        "sub/",
        "sub/.hidden",
        "sub/b.txt",
        "sub/deeper/",
        "sub/deeper/c.bin",
        "with space/",
        "with space/d e.txt",
    }
    human = callfs.ok("ls", "-lh", f"{home}/sub/deeper").out
    assert " 1.0K " in human

    entries = json.loads(callfs.ok("ls", "--json", home).out)
    assert [entry["name"] for entry in entries] == ["a.txt", "sub", "with space"]
    first = entries[0]
    assert first["path"] == f"{home}/a.txt" and first["type"] == "file"
    assert (first["size"], first["mode"], first["owner"]) == (6, "0644", "api-user-1")
    mtime = datetime.fromisoformat(first["mtime"])
    assert abs(mtime - datetime.now(UTC)) < timedelta(minutes=5)
    assert len(json.loads(callfs.ok("ls", "-R", "--json", home).out)) == 8
    assert json.loads(callfs.ok("ls", "--json", f"{home}/sub/deeper/c.bin").out)[0]["size"] == 1024

    # A file is shown as itself; the root lists top-level entries (this test's among them).
    assert callfs.ok("ls", f"{home}/a.txt").out == f"{home}/a.txt\n"
    assert f"{home[1:]}/" in callfs.ok("ls").out.splitlines()


def test_stat_prints_the_metadata_and_json(callfs: Callfs, home: str) -> None:
    callfs.ok("cp", "-", f"callfs:{home}/hello.txt", stdin=b"hello")
    text = callfs.ok("stat", f"{home}/hello.txt").out
    fields = dict(line.split(":", 1) for line in text.splitlines())
    assert fields["path"].strip() == f"{home}/hello.txt"
    assert fields["type"].strip() == "file"
    assert fields["size"].strip() == "5"
    assert fields["mode"].strip() == "0644 (-rw-r--r--)"
    assert fields["owner"].strip() == "api-user-1"
    assert fields["etag"].strip()

    document = json.loads(callfs.ok("stat", "--json", f"callfs:{home}/hello.txt").out)
    assert document["size"] == 5 and document["type"] == "file"
    assert document["etag"] == fields["etag"].strip()
    directory = json.loads(callfs.ok("stat", "--json", home).out)
    assert directory["type"] == "directory" and directory["mode"] == "0755"


def test_cat_streams_files_to_stdout(callfs: Callfs, home: str) -> None:
    data = bytes(range(256)) * 5000  # binary, over one chunk
    callfs.ok("cp", "-", f"callfs:{home}/bin", stdin=data)
    callfs.ok("cp", "-", f"callfs:{home}/text", stdin=b"text\n")
    assert callfs.ok("cat", f"{home}/bin").stdout == data
    assert callfs.ok("cat", f"{home}/text", f"callfs:{home}/text").stdout == b"text\ntext\n"


def test_cp_copies_files_local_and_remote(callfs: Callfs, tmp_path: Path, home: str) -> None:
    local = tmp_path / "report.pdf"
    local.write_bytes(b"%PDF report")
    # Into a directory: trailing slash, or an existing directory.
    callfs.ok("cp", str(local), f"callfs:{home}/docs/")
    assert callfs.ok("cat", f"{home}/docs/report.pdf").stdout == b"%PDF report"
    callfs.ok("cp", str(local), f"callfs://{home}/docs")  # callfs:///… is accepted too
    callfs.ok("cp", str(local), f"callfs:{home}/docs/renamed.pdf")
    assert callfs.ok("ls", f"{home}/docs").out.splitlines() == ["renamed.pdf", "report.pdf"]

    # Replacing an existing file.
    local.write_bytes(b"%PDF v2")
    callfs.ok("cp", str(local), f"callfs:{home}/docs/report.pdf")
    assert callfs.ok("cat", f"{home}/docs/report.pdf").stdout == b"%PDF v2"

    # Remote → local: to a name, into a directory (relative to the working directory).
    out = tmp_path / "out"
    out.mkdir()
    callfs.ok("cp", f"callfs:{home}/docs/report.pdf", str(out / "copy.pdf"))
    callfs.ok("cp", f"callfs:{home}/docs/renamed.pdf", ".", cwd=out)
    assert read_tree(out) == {"copy.pdf": b"%PDF v2", "renamed.pdf": b"%PDF report"}
    assert not [path for path in out.iterdir() if path.name.endswith(".callfs-part")]

    # Remote → remote.
    callfs.ok("cp", f"callfs:{home}/docs/report.pdf", f"callfs:{home}/other/again.pdf")
    assert callfs.ok("cat", f"{home}/other/again.pdf").stdout == b"%PDF v2"
    assert callfs.ok("cat", f"{home}/docs/report.pdf").stdout == b"%PDF v2"


def test_cp_r_copies_trees_every_way(callfs: Callfs, tmp_path: Path, home: str) -> None:
    upload_tree(callfs, tmp_path, home)  # local → remote (the destination did not exist)
    # An existing remote directory receives the tree under its own name.
    callfs.ok("mkdir", f"{home}-into")
    callfs.ok("cp", "-r", str(tmp_path / "tree"), f"callfs:{home}-into")
    # remote → remote
    callfs.ok("cp", "-r", f"callfs:{home}", f"callfs:{home}-copy")
    # remote → local
    callfs.ok("cp", "-r", f"callfs:{home}-copy", str(tmp_path / "back"))
    assert read_tree(tmp_path / "back") == TREE
    callfs.ok("cp", "-r", f"callfs:{home}-into/tree", str(tmp_path / "back"))
    assert read_tree(tmp_path / "back" / "tree") == TREE
    assert callfs.ok("ls", f"{home}-into").out == "tree/\n"


def test_cp_dash_is_stdin_and_stdout(callfs: Callfs, home: str) -> None:
    data = b"".join(b"line %d\n" % number for number in range(100_000))
    callfs.ok("cp", "-", f"callfs:{home}/from-stdin.txt", stdin=data)
    assert json.loads(callfs.ok("stat", "--json", f"{home}/from-stdin.txt").out)["size"] == len(
        data
    )
    assert callfs.ok("cp", f"callfs:{home}/from-stdin.txt", "-").stdout == data
    # Into a directory: named "stdin".
    callfs.ok("cp", "-", f"callfs:{home}/dir/", stdin=b"x")
    assert callfs.ok("cat", f"{home}/dir/stdin").stdout == b"x"


def test_mv_moves_on_the_server_and_transfers_local_files(
    callfs: Callfs, tmp_path: Path, home: str
) -> None:
    callfs.ok("cp", "-", f"callfs:{home}/a.txt", stdin=b"a")
    etag = json.loads(callfs.ok("stat", "--json", f"{home}/a.txt").out)["etag"]
    callfs.ok("mv", f"callfs:{home}/a.txt", f"callfs:{home}/b.txt")
    assert callfs.ok("ls", home).out == "b.txt\n"
    assert json.loads(callfs.ok("stat", "--json", f"{home}/b.txt").out)["etag"] == etag
    # Into an existing directory; over an existing file.
    callfs.ok("mkdir", f"{home}/dir")
    callfs.ok("mv", f"callfs:{home}/b.txt", f"callfs:{home}/dir")
    callfs.ok("cp", "-", f"callfs:{home}/c.txt", stdin=b"c")
    callfs.ok("mv", f"callfs:{home}/c.txt", f"callfs:{home}/dir/b.txt")
    assert callfs.ok("ls", "-R", home).out.splitlines() == ["dir/", "dir/b.txt"]
    assert callfs.ok("cat", f"{home}/dir/b.txt").stdout == b"c"
    # A directory moves whole.
    callfs.ok("mv", f"callfs:{home}/dir", f"callfs:{home}/moved")
    assert callfs.ok("ls", "-R", home).out.splitlines() == ["moved/", "moved/b.txt"]

    # local → remote: copied, then the local source is removed (a tree too).
    local = tmp_path / "up.txt"
    local.write_bytes(b"up")
    callfs.ok("mv", str(local), f"callfs:{home}/up.txt")
    assert not local.exists()
    write_tree(tmp_path / "tree", TREE)
    callfs.ok("mv", str(tmp_path / "tree"), f"callfs:{home}/tree")
    assert not (tmp_path / "tree").exists()
    # remote → local: downloaded, then the remote source is deleted.
    callfs.ok("mv", f"callfs:{home}/tree", str(tmp_path / "down"))
    assert read_tree(tmp_path / "down") == TREE
    callfs.ok("mv", f"callfs:{home}/up.txt", str(tmp_path / "down"))
    assert (tmp_path / "down" / "up.txt").read_bytes() == b"up"
    assert callfs.ok("ls", home).out == "moved/\n"


def test_rm_removes_files_empty_directories_and_trees(
    callfs: Callfs, tmp_path: Path, home: str
) -> None:
    upload_tree(callfs, tmp_path, home)
    callfs.ok("mkdir", f"{home}/empty")
    callfs.ok("rm", f"{home}/a.txt", f"callfs:{home}/empty")
    callfs.ok("rm", "-r", f"{home}/sub")
    assert callfs.ok("ls", home).out == "with space/\n"
    callfs.ok("rm", "-f", f"{home}/never-was", f"{home}/with space/d e.txt")
    callfs.ok("rm", "-r", home)
    assert callfs("stat", home).code == 3


def test_mkdir_creates_directories(callfs: Callfs, home: str) -> None:
    callfs.ok("mkdir", home)
    callfs.ok("mkdir", f"{home}/one", f"callfs:{home}/two")
    callfs.ok("mkdir", "-p", f"{home}/deep/er/est")
    callfs.ok("mkdir", "-p", f"{home}/deep/er")  # -p: an existing directory is fine
    callfs.ok("mkdir", "-m", "750", f"{home}/private")
    assert callfs.ok("ls", "-R", home).out.splitlines() == [
        "deep/",
        "deep/er/",
        "deep/er/est/",
        "one/",
        "private/",
        "two/",
    ]
    assert json.loads(callfs.ok("stat", "--json", f"{home}/private").out)["mode"] == "0750"


def test_chmod_sets_the_mode(callfs: Callfs, home: str) -> None:
    callfs.ok("cp", "-", f"callfs:{home}/f", stdin=b"f")
    callfs.ok("cp", "-", f"callfs:{home}/g", stdin=b"g")
    callfs.ok("chmod", "640", f"{home}/f")
    callfs.ok("chmod", "0600", f"{home}/f", f"{home}/g")
    callfs.ok("chmod", "1777", home)
    listing = callfs.ok("ls", "-l", home).out.splitlines()
    assert [line.split()[0] for line in listing] == ["-rw-------", "-rw-------"]
    assert json.loads(callfs.ok("stat", "--json", home).out)["mode"] == "1777"
    assert callfs.ok("stat", home).out.count("(drwxrwxrwt)") == 1


def test_link_prints_a_single_use_url(callfs: Callfs, home: str) -> None:
    callfs.ok("cp", "-", f"callfs:{home}/shared.txt", stdin=b"shared")
    url = callfs.ok("link", f"{home}/shared.txt").out.strip()
    assert url.startswith(f"{callfs.server.url}/download/")
    assert httpx.get(url, timeout=30).content == b"shared"
    assert httpx.get(url, timeout=30).status_code == 410

    document = json.loads(callfs.ok("link", "--json", "--expiry", "60", f"{home}/shared.txt").out)
    assert document["url"].endswith(document["token"])
    expires = datetime.fromisoformat(document["expires_at"])
    assert timedelta(seconds=30) < expires - datetime.now(UTC) < timedelta(seconds=90)


def test_du_sums_sizes(callfs: Callfs, tmp_path: Path, home: str) -> None:
    upload_tree(callfs, tmp_path, home)
    lines = [line.split("\t") for line in callfs.ok("du", home).out.splitlines()]
    sizes = {path: int(size) for size, path in lines}
    sub = len(TREE["sub/b.txt"]) + len(TREE["sub/deeper/c.bin"]) + len(TREE["sub/.hidden"])
    total = sum(len(data) for data in TREE.values())
    assert sizes == {
        home: total,
        f"{home}/sub": sub,
        f"{home}/sub/deeper": 1024,
        f"{home}/with space": len(TREE["with space/d e.txt"]),
    }
    assert lines[-1] == [str(total), home]  # each directory after those below it
    assert [path for _, path in lines].index(f"{home}/sub/deeper") < [
        path for _, path in lines
    ].index(f"{home}/sub")

    assert callfs.ok("du", "-s", home).out == f"{total}\t{home}\n"
    assert callfs.ok("du", "-sh", f"{home}/sub/deeper").out == f"1.0K\t{home}/sub/deeper\n"
    assert callfs.ok("du", f"{home}/a.txt").out == f"6\t{home}/a.txt\n"

    summary = json.loads(callfs.ok("du", "-s", "--json", home).out)
    assert summary == {"path": home, "size": total, "files": 5, "directories": 3}
    detailed = json.loads(callfs.ok("du", "--json", home).out)
    assert {item["path"]: item["size"] for item in detailed["entries"]} == sizes


def test_tree_draws_the_hierarchy(callfs: Callfs, tmp_path: Path, home: str) -> None:
    upload_tree(callfs, tmp_path, home)
    assert callfs.ok("tree", home).out == "\n".join(
        [
            home,
            "├── a.txt",
            "├── sub",
            "│   ├── .hidden",
            "│   ├── b.txt",
            "│   └── deeper",
            "│       └── c.bin",
            "└── with space",
            "    └── d e.txt",
            "",
            "3 directories, 5 files",
            "",
        ]
    )
    shallow = callfs.ok("tree", "-L", "1", f"callfs:{home}").out.splitlines()
    assert shallow == [home, "├── a.txt", "├── sub", "└── with space", "", "2 directories, 1 file"]

    document = json.loads(callfs.ok("tree", "--json", home).out)
    assert (document["path"], document["directories"], document["files"]) == (home, 3, 5)
    sub = document["contents"][1]
    assert sub["name"] == "sub" and sub["type"] == "directory"
    assert [child["name"] for child in sub["contents"]] == [".hidden", "b.txt", "deeper"]
    assert sub["contents"][2]["contents"][0]["size"] == 1024


def test_connection_options_and_profiles(callfs: Callfs, home: str) -> None:
    server = callfs.server
    bare = environment(XDG_CONFIG_HOME=str(callfs.config_home))
    result = callfs("mkdir", "--url", server.url, "--api-key", server.key, home, env=bare)
    assert result.code == 0, result
    profile = callfs.config_home / "callfs" / "config.yaml"
    profile.parent.mkdir()
    profile.write_text(
        "profiles:\n"
        f"  first: {{url: '{server.url}', api_key: '{server.key}'}}\n"
        f"  second: {{url: '{server.url}', api_key: '{server.other_key}'}}\n"
    )
    mine = callfs("cp", "--profile", "first", "-", f"callfs:{home}/f", env=bare, stdin=b"1")
    assert mine.code == 0, mine
    # --profile, and CALLFS_PROFILE: the second user owns what it creates.
    callfs.ok("chmod", "777", home)
    theirs = callfs(
        "cp", "-", f"callfs:{home}/g", env={**bare, "CALLFS_PROFILE": "second"}, stdin=b"2"
    )
    assert theirs.code == 0, theirs
    owners = callfs("ls", "-l", "--profile", "first", home, env=bare).out.splitlines()
    assert [line.split()[1] for line in owners] == ["api-user-1", "api-user-2"]
