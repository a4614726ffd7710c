"""CallFSFileSystem's own behaviour against a real ``callfs dev``: URLs and
configuration, listings and metadata, ranged reads, buffered files, the namespace
operations, and the errors fsspec's callers expect."""

from __future__ import annotations

import errno
import hashlib
import pickle
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import httpx
import pytest
from fsspec.core import url_to_fs

from callfs.client.fsspec import CallFSFile, CallFSFileSystem
from tests.client.test_imports import loaded_after
from tests.fsspec.conftest import Server

MiB = 1024 * 1024
DIGITS = b"0123456789"


# --- protocol, URLs and configuration ---------------------------------------------------


def test_the_entry_point_registers_the_protocol(server: Server) -> None:
    assert fsspec.get_filesystem_class("callfs") is CallFSFileSystem
    fs = fsspec.filesystem("callfs", **server.options)
    assert isinstance(fs, CallFSFileSystem) and fs.client.url == server.url
    assert CallFSFileSystem(**server.options) is fs  # fsspec's instance cache


def test_the_sdk_alone_does_not_import_fsspec() -> None:
    loaded = loaded_after("import callfs.client\ncallfs.client.Client('http://127.0.0.1:1')")
    assert "callfs.client" in loaded and "fsspec" not in loaded


def test_url_is_no_storage_option(server: Server) -> None:
    # url_to_fs(url, **storage_options) takes the URL as "url": the option could not pass.
    with pytest.raises(TypeError, match="endpoint_url"):
        fsspec.filesystem("callfs", url=server.url, api_key=server.key)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("callfs:///data/x.csv", "/data/x.csv"),
        ("callfs://data/x.csv", "/data/x.csv"),
        ("callfs:///data/dir/", "/data/dir"),
        ("/data/x.csv", "/data/x.csv"),
        ("data/x.csv", "/data/x.csv"),
        ("callfs:///", "/"),
        ("callfs://", "/"),
        ("", "/"),
    ],
)
def test_urls_name_paths_never_servers(url: str, path: str) -> None:
    assert CallFSFileSystem._strip_protocol(url) == path


def test_paths_round_trip_through_urls(server: Server) -> None:
    fs, path = url_to_fs("callfs:///data/x.csv", **server.options)
    assert isinstance(fs, CallFSFileSystem) and path == "/data/x.csv"
    assert fs.unstrip_protocol(path) == "callfs:///data/x.csv"
    assert fs._parent("/data/x.csv") == "/data" and fs._parent("/data") == "/"


def test_configured_from_the_environment_or_a_profile(
    server: Server,
    callfs: CallFSFileSystem,
    home: str,
    monkeypatch: pytest.MonkeyPatch,
    clean_environment: Path,
) -> None:
    callfs.pipe_file(f"{home}/f", b"x")
    monkeypatch.setenv("CALLFS_URL", server.url)
    monkeypatch.setenv("CALLFS_API_KEY", server.key)
    assert fsspec.filesystem("callfs").cat_file(f"callfs://{home}/f") == b"x"
    monkeypatch.delenv("CALLFS_URL")
    monkeypatch.delenv("CALLFS_API_KEY")
    config = clean_environment / "callfs" / "config.yaml"
    config.parent.mkdir()
    config.write_text(f"profiles:\n  dev:\n    url: {server.url}\n    api_key: {server.key}\n")
    with fsspec.open(f"callfs://{home}/f", profile="dev") as f:
        assert f.read() == b"x"


def test_pickles_by_its_options(server: Server, home: str) -> None:
    fs = fsspec.filesystem("callfs", **server.options)
    fs.pipe_file(f"{home}/f", b"x")
    again = pickle.loads(pickle.dumps(fs))
    assert again.cat_file(f"{home}/f") == b"x"
    with fs.open(f"{home}/f") as f:
        assert pickle.loads(pickle.dumps(f)).read() == b"x"


# --- listings and metadata --------------------------------------------------------------


def test_ls_info_and_find(callfs: CallFSFileSystem, home: str) -> None:
    callfs.pipe({f"{home}/a.txt": b"aa", f"{home}/sub/b.txt": b"bbb", f"{home}/sub/deep/c": b""})
    callfs.mkdir(f"{home}/empty")
    assert callfs.ls(home, detail=False) == [f"{home}/a.txt", f"{home}/empty", f"{home}/sub"]
    entries = {entry["name"]: entry for entry in callfs.ls(f"callfs://{home}")}
    assert entries[f"{home}/a.txt"]["type"] == "file" and entries[f"{home}/a.txt"]["size"] == 2
    assert entries[f"{home}/sub"]["type"] == "directory"
    assert entries[f"{home}/a.txt"]["ctime"] is not None  # listings carry it, HEAD does not
    assert callfs.ls(f"{home}/a.txt", detail=False) == [f"{home}/a.txt"]  # a file lists itself

    info = callfs.info(f"{home}/a.txt")
    assert info["name"] == f"{home}/a.txt" and info["type"] == "file" and info["size"] == 2
    assert info["mode"] == 0o644 and info["owner"] == "api-user-1" and info["group"] == "callfs"
    assert info["etag"] == hashlib.sha256(b"aa").hexdigest()
    assert abs(info["mtime"] - datetime.now(UTC)) < timedelta(minutes=5)
    assert callfs.info(home)["type"] == "directory" and callfs.info("/")["name"] == "/"
    assert callfs.isdir(home) and callfs.isfile(f"{home}/a.txt") and not callfs.isfile(home)

    files = [f"{home}/a.txt", f"{home}/sub/b.txt", f"{home}/sub/deep/c"]
    assert callfs.find(home) == files
    assert callfs.find(home, maxdepth=2) == files[:2]
    with_dirs = callfs.find(home, withdirs=True, detail=True)
    dirs = [home, f"{home}/empty", f"{home}/sub", f"{home}/sub/deep"]
    assert list(with_dirs) == sorted(dirs + files)
    assert with_dirs[f"{home}/sub"]["type"] == "directory"
    assert callfs.find(f"{home}/a.txt") == [f"{home}/a.txt"] and callfs.find(f"{home}/no") == []
    assert callfs.glob(f"{home}/**/*.txt") == [f"{home}/a.txt", f"{home}/sub/b.txt"]
    assert callfs.du(home) == 5
    assert callfs.du(home, total=False)[f"{home}/sub/b.txt"] == 3
    assert [name for name, _, _ in callfs.walk(home)] == [
        home,
        f"{home}/empty",
        f"{home}/sub",
        f"{home}/sub/deep",
    ]


def test_find_lists_past_the_depth_one_request_covers(
    callfs: CallFSFileSystem, home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    callfs.pipe({f"{home}/a/b/c/d/e": b"1", f"{home}/a/f": b"2", f"{home}/g": b"3"})
    monkeypatch.setattr("callfs.client.fsspec.LISTING_LEVELS", 2)
    every = [f"{home}/a/b/c/d/e", f"{home}/a/f", f"{home}/g"]
    assert callfs.find(home) == every
    assert callfs.find(home, maxdepth=3) == every[1:]
    assert callfs.find(home, maxdepth=5) == every
    assert len(callfs.find(home, withdirs=True)) == 8


def test_modified_ukey_checksum_and_no_created(callfs: CallFSFileSystem, home: str) -> None:
    path = f"{home}/f"
    callfs.pipe_file(path, b"one")
    assert callfs.modified(path) == callfs.info(path)["mtime"]
    assert callfs.modified(path).tzinfo is not None
    first, checksum = callfs.ukey(path), callfs.checksum(path)
    assert first == hashlib.sha256(b"one").hexdigest() and isinstance(checksum, int)
    callfs.pipe_file(path, b"two")
    assert callfs.ukey(path) != first and callfs.checksum(path) != checksum
    assert callfs.ukey(home)  # a directory has no ETag: a hash of its metadata
    with pytest.raises(NotImplementedError, match="no creation time"):
        callfs.created(path)


def test_exists(callfs: CallFSFileSystem, home: str) -> None:
    callfs.pipe_file(f"{home}/f", b"x")
    assert callfs.exists(home) and callfs.exists(f"{home}/f") and callfs.exists("/")
    assert not callfs.exists(f"{home}/nope") and not callfs.exists(f"{home}/f/under")
    assert not callfs.exists(f"{home}/../etc")  # refused by the server: INVALID_PATH


# --- bytes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (None, None),
        (3, None),
        (-3, None),
        (2, 5),
        (-4, -1),
        (None, -2),
        (8, 100),
        (10, None),
        (20, None),
        (5, 2),
        (0, 0),
        (-100, None),
        (-100, 3),
    ],
)
def test_cat_file_slices_like_python(
    callfs: CallFSFileSystem, home: str, start: int | None, end: int | None
) -> None:
    callfs.pipe_file(f"{home}/digits", DIGITS)
    assert callfs.cat_file(f"{home}/digits", start, end) == DIGITS[start:end]


def test_cat_file_of_an_empty_file(callfs: CallFSFileSystem, home: str) -> None:
    callfs.pipe_file(f"{home}/empty", b"")
    for start in (None, 0, 1, -3):
        assert callfs.cat_file(f"{home}/empty", start) == b""


def test_cat_ranges_head_tail_and_read_block(callfs: CallFSFileSystem, home: str) -> None:
    path = f"{home}/lines"
    callfs.pipe_file(path, b"one\ntwo\nthree\n")
    assert callfs.cat_ranges([path, path], [0, 4], [3, 7]) == [b"one", b"two"]
    assert callfs.head(path, 3) == b"one" and callfs.tail(path, 6) == b"three\n"
    assert callfs.read_block(path, 1, 5, delimiter=b"\n") == b"two\n"


def test_reads_are_buffered_random_access(callfs: CallFSFileSystem, home: str) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    callfs.pipe_file(f"{home}/f", data)
    with callfs.open(f"{home}/f", block_size=64 * 1024) as f:
        assert isinstance(f, CallFSFile) and f.size == len(data)
        f.seek(500_000)
        assert f.read(10) == data[500_000:500_010]
        f.seek(-5, 2)
        assert f.read() == data[-5:]
        f.seek(10)
        assert f.read(5) == data[10:15] and f.tell() == 15
    with callfs.open(f"{home}/f", "rt", encoding="latin-1") as text:
        assert text.read(3) == data[:3].decode("latin-1")


def test_a_file_replaced_while_open_is_not_mixed(callfs: CallFSFileSystem, home: str) -> None:
    callfs.pipe_file(f"{home}/f", b"a" * 100)
    with callfs.open(f"{home}/f", cache_type="none") as f:
        assert f.read(10) == b"a" * 10
        callfs.pipe_file(f"{home}/f", b"b" * 100)
        with pytest.raises(OSError, match="replaced since it was opened") as caught:
            f.read(10)
        assert caught.value.errno == errno.ESTALE


def test_writes_are_sent_on_close_in_one_replace(callfs: CallFSFileSystem, home: str) -> None:
    path = f"{home}/f"
    callfs.pipe_file(path, b"old")
    with callfs.open(path, "wb", block_size=1024) as f:
        for _ in range(10):
            f.write(b"x" * 1000)  # past the block size: spooled to a temporary file
        assert callfs.cat_file(path) == b"old"  # nothing sent before close
    assert callfs.cat_file(path) == b"x" * 10_000
    with callfs.open(f"{home}/new/dir/t.txt", "w") as text:  # parents are created
        text.write("héllo")
    assert callfs.read_text(f"{home}/new/dir/t.txt", encoding="utf-8") == "héllo"


def test_a_failed_with_block_sends_nothing(callfs: CallFSFileSystem, home: str) -> None:
    path = f"{home}/f"
    callfs.pipe_file(path, b"old")
    with pytest.raises(RuntimeError), callfs.open(path, "wb") as f:
        f.write(b"half")
        raise RuntimeError("boom")
    assert f.closed and callfs.cat_file(path) == b"old"
    with pytest.raises(RuntimeError), callfs.open(f"{home}/new", "wb") as f:
        raise RuntimeError("boom")
    assert not callfs.exists(f"{home}/new")


def test_exclusive_and_append_modes(callfs: CallFSFileSystem, home: str) -> None:
    path = f"{home}/f"
    with callfs.open(path, "xb") as f:
        f.write(b"one")
    with pytest.raises(FileExistsError):
        callfs.open(path, "xb")
    racing = callfs.open(f"{home}/race", "xb")
    racing.write(b"mine")
    callfs.pipe_file(f"{home}/race", b"theirs")
    with pytest.raises(FileExistsError):
        racing.close()  # create-only at the close too: nothing replaced
    assert callfs.cat_file(f"{home}/race") == b"theirs"

    with callfs.open(path, "ab") as f:
        assert f.tell() == 3
        f.write(b"+two")
    assert callfs.cat_file(path) == b"one+two"
    with callfs.open(f"{home}/fresh", "ab") as f:
        f.write(b"new")
    assert callfs.cat_file(f"{home}/fresh") == b"new"
    appending = callfs.open(path, "ab")
    appending.write(b"+three")
    callfs.pipe_file(path, b"changed")
    with pytest.raises(OSError) as caught:
        appending.close()  # the file changed since it was read: not overwritten
    assert caught.value.errno == errno.ESTALE and callfs.cat_file(path) == b"changed"


def test_a_transaction_sends_on_commit_only(callfs: CallFSFileSystem, home: str) -> None:
    with callfs.transaction:
        with callfs.open(f"{home}/a", "wb") as f:
            f.write(b"a")
        assert not callfs.exists(f"{home}/a")
    assert callfs.cat_file(f"{home}/a") == b"a"
    with pytest.raises(RuntimeError), callfs.transaction:
        with callfs.open(f"{home}/b", "wb") as f:
            f.write(b"b")
        raise RuntimeError("boom")
    assert not callfs.exists(f"{home}/b")


def test_pipe_file_create_mode(callfs: CallFSFileSystem, home: str) -> None:
    callfs.pipe_file(f"{home}/f", b"one", mode="create")
    with pytest.raises(FileExistsError):
        callfs.pipe_file(f"{home}/f", b"two", mode="create")
    assert callfs.cat_file(f"{home}/f") == b"one"


def test_large_transfers_hold_bounded_memory(
    callfs: CallFSFileSystem, home: str, tmp_path: Path
) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB, allocated before tracing
    count = 24
    local = tmp_path / "big.bin"
    with local.open("wb") as out:
        for _ in range(count):
            out.write(block)
    tracemalloc.start()
    try:
        with callfs.open(f"{home}/written", "wb", block_size=MiB) as f:
            for _ in range(count):
                f.write(block)
        callfs.put_file(str(local), f"{home}/put")
        callfs.cp_file(f"{home}/put", f"{home}/copied")
        callfs.get_file(f"{home}/copied", str(tmp_path / "back.bin"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB for {count} MiB files"
    for name in ("written", "put", "copied"):
        assert callfs.info(f"{home}/{name}")["etag"] == hashlib.sha256(block * count).hexdigest()
    assert (tmp_path / "back.bin").read_bytes() == block * count


def test_put_and_get_report_progress(callfs: CallFSFileSystem, home: str, tmp_path: Path) -> None:
    from fsspec.callbacks import Callback

    local = tmp_path / "f"
    local.write_bytes(b"z" * 3000)
    up = Callback()
    callfs.put_file(str(local), f"{home}/f", callback=up)
    assert (up.size, up.value) == (3000, 3000)
    down = Callback()
    callfs.get_file(f"{home}/f", str(tmp_path / "g"), callback=down)
    assert (down.size, down.value) == (3000, 3000)
    with pytest.raises(FileExistsError):
        callfs.put_file(str(local), f"{home}/f", mode="create")
    with pytest.raises(FileNotFoundError):
        callfs.get_file(f"{home}/nope", str(tmp_path / "nope"))
    assert not (tmp_path / "nope").exists()  # nothing created for a missing file


# --- namespace ------------------------------------------------------------------------


def test_mkdir_and_makedirs(callfs: CallFSFileSystem, home: str) -> None:
    callfs.mkdir(f"{home}/a/b")  # create_parents=True by default
    assert callfs.isdir(f"{home}/a/b")
    with pytest.raises(FileExistsError):
        callfs.mkdir(f"{home}/a/b")
    with pytest.raises(FileNotFoundError):
        callfs.mkdir(f"{home}/x/y", create_parents=False)
    assert not callfs.exists(f"{home}/x")
    callfs.mkdir(f"{home}/a/c", create_parents=False)
    callfs.makedirs(f"{home}/a/b", exist_ok=True)
    with pytest.raises(FileExistsError):
        callfs.makedirs(f"{home}/a/b")
    callfs.makedirs(f"{home}/d/e/f", exist_ok=True)
    assert callfs.isdir(f"{home}/d/e/f")
    callfs.pipe_file(f"{home}/file", b"x")
    with pytest.raises(FileExistsError):
        callfs.makedirs(f"{home}/file", exist_ok=True)
    with pytest.raises(NotADirectoryError):
        callfs.mkdir(f"{home}/file/sub", create_parents=False)


def test_rm_rmdir_and_rm_file(callfs: CallFSFileSystem, home: str) -> None:
    callfs.pipe({f"{home}/t/a": b"a", f"{home}/t/s/b": b"b", f"{home}/f": b"f"})
    callfs.mkdir(f"{home}/empty")
    with pytest.raises(OSError) as caught:
        callfs.rm(f"{home}/t")  # not recursive: the directory is not empty
    assert caught.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError) as caught:
        callfs.rmdir(f"{home}/t")
    assert caught.value.errno == errno.ENOTEMPTY
    with pytest.raises(NotADirectoryError):
        callfs.rmdir(f"{home}/f")
    callfs.rmdir(f"{home}/empty")
    callfs.rm_file(f"{home}/f")
    callfs.rm(f"{home}/t", recursive=True)  # one request, on the server
    assert callfs.ls(home) == []
    with pytest.raises(FileNotFoundError):
        callfs.rm(f"{home}/t", recursive=True)
    with pytest.raises(FileNotFoundError):
        callfs.rm_file(f"{home}/f")
    callfs.pipe({f"{home}/g/x1": b"", f"{home}/g/x2": b"", f"{home}/g/sub/x3": b""})
    callfs.rm(f"{home}/g/x*")  # globs
    assert callfs.find(f"{home}/g") == [f"{home}/g/sub/x3"]
    callfs.rm([f"{home}/g", f"{home}/g/sub"], recursive=True)  # a path under a removed one
    assert not callfs.exists(f"{home}/g")
    callfs.pipe({f"{home}/h/1/2/f": b""})
    callfs.rm(f"{home}/h", recursive=True, maxdepth=5)  # entry by entry
    assert not callfs.exists(f"{home}/h")


def test_mv_moves_on_the_server(callfs: CallFSFileSystem, home: str) -> None:
    callfs.pipe({f"{home}/d/a": b"a", f"{home}/d/s/b": b"b", f"{home}/f": b"f"})
    etag = callfs.info(f"{home}/d/s/b")["etag"]
    callfs.mv(f"{home}/d", f"{home}/e")  # rename a directory, whole
    assert callfs.find(f"{home}/e") == [f"{home}/e/a", f"{home}/e/s/b"]
    assert callfs.info(f"{home}/e/s/b")["etag"] == etag and not callfs.exists(f"{home}/d")
    callfs.mv(f"{home}/f", f"{home}/e")  # into an existing directory
    assert callfs.cat_file(f"{home}/e/f") == b"f"
    callfs.mv(f"{home}/e/f", f"{home}/new/")  # a trailing slash names a directory
    assert callfs.cat_file(f"{home}/new/f") == b"f"
    callfs.pipe_file(f"{home}/other", b"o")
    callfs.mv(f"{home}/other", f"{home}/new/f")  # a file replaces a file
    assert callfs.cat_file(f"{home}/new/f") == b"o"
    callfs.mv(f"{home}/new/f", f"{home}/x/y/z")  # missing parents are created
    assert callfs.cat_file(f"{home}/x/y/z") == b"o"
    callfs.mkdir(f"{home}/target/e")
    with pytest.raises(FileExistsError):
        callfs.mv(f"{home}/e", f"{home}/target")  # a directory never replaces one
    assert callfs.exists(f"{home}/e/a")
    with pytest.raises(FileNotFoundError):
        callfs.mv(f"{home}/nope", f"{home}/z")
    callfs.mv([f"{home}/e/a", f"{home}/x/y/z"], [f"{home}/l1", f"{home}/l2"])
    assert callfs.cat([f"{home}/l1", f"{home}/l2"]) == {f"{home}/l1": b"a", f"{home}/l2": b"o"}
    callfs.mv(f"{home}/l*", f"{home}/globbed/", recursive=True)  # globs: copy then delete
    assert callfs.ls(f"{home}/globbed", detail=False) == [
        f"{home}/globbed/l1",
        f"{home}/globbed/l2",
    ]


def test_copy_streams_files_and_creates_directories(callfs: CallFSFileSystem, home: str) -> None:
    callfs.pipe({f"{home}/s/a": b"a", f"{home}/s/d/b": b"b"})
    callfs.mkdir(f"{home}/s/empty")
    callfs.copy(f"{home}/s", f"{home}/t", recursive=True)
    assert callfs.find(f"{home}/t", withdirs=True) == [
        f"{home}/t",
        f"{home}/t/a",
        f"{home}/t/d",
        f"{home}/t/d/b",
        f"{home}/t/empty",
    ]
    callfs.cp_file(f"{home}/s/a", f"{home}/s/a")  # onto itself: nothing to do
    assert callfs.cat_file(f"{home}/s/a") == b"a"
    with pytest.raises(FileNotFoundError):
        callfs.cp_file(f"{home}/nope", f"{home}/t/x")
    with pytest.raises(IsADirectoryError):
        callfs.cp_file(f"{home}/s/a", f"{home}/t/d")


def test_chmod_and_sign(callfs: CallFSFileSystem, home: str) -> None:
    callfs.pipe_file(f"{home}/f", b"signed")
    callfs.chmod(f"{home}/f", 0o600)
    assert callfs.info(f"{home}/f")["mode"] == 0o600
    url = callfs.sign(f"{home}/f", expiration=60)
    assert httpx.get(url).content == b"signed"
    assert httpx.get(url).status_code == 410  # single use


# --- errors -----------------------------------------------------------------------------


def test_sdk_errors_become_the_python_errors_fsspec_expects(
    server: Server, callfs: CallFSFileSystem, home: str
) -> None:
    callfs.pipe_file(f"{home}/f", b"x")
    with pytest.raises(FileNotFoundError) as missing:
        callfs.info(f"{home}/nope")
    assert missing.value.errno == errno.ENOENT and missing.value.filename == f"{home}/nope"
    assert "FILE_NOT_FOUND" in str(missing.value) and missing.value.__cause__ is not None
    with pytest.raises(FileNotFoundError):
        callfs.ls(f"{home}/nope")
    with pytest.raises(FileNotFoundError):
        callfs.open(f"{home}/nope")
    with pytest.raises(IsADirectoryError):
        callfs.cat_file(home)
    with pytest.raises(IsADirectoryError):
        callfs.open(home)
    with pytest.raises(IsADirectoryError):
        callfs.pipe_file(home, b"x")
    with pytest.raises(NotADirectoryError):
        callfs.pipe_file(f"{home}/f/under", b"x")  # a file cannot be a parent
    with pytest.raises(OSError) as invalid:
        callfs.cat_file(f"{home}/../f")
    assert invalid.value.errno == errno.EINVAL

    callfs.chmod(f"{home}/f", 0o600)
    other = CallFSFileSystem(server.url, server.other_key, skip_instance_cache=True)
    with pytest.raises(PermissionError):
        other.cat_file(f"{home}/f")
    with pytest.raises(PermissionError):
        other.exists(f"{home}/f")  # may exist: never taken for a missing file
    stranger = CallFSFileSystem(server.url, "not-a-key", skip_instance_cache=True)
    with pytest.raises(PermissionError):
        stranger.ls("/")


def test_an_unreachable_server_is_an_error_not_a_missing_file(free_url: str) -> None:
    fs = CallFSFileSystem(free_url, "key", retries=0, skip_instance_cache=True)
    with pytest.raises(ConnectionError):
        fs.exists("/f")
    with pytest.raises(ConnectionError):
        fs.info("/f")


@pytest.fixture
def free_url() -> str:
    from tests.support.servers import free_port

    return f"http://127.0.0.1:{free_port()}"
