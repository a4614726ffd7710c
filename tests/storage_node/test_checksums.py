"""Block checksums: a sidecar per object, and a flipped byte on disk is never served."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from callfs_storage_node.volume import TEMP_PREFIX, Volume

from callfs.backends.storage_node import StorageNodeBackend
from callfs.discovery.base import StaticDiscovery
from callfs.errors import InvalidPath, NotFound, ReplicaCorrupted
from callfs.storage.v1 import storage_pb2, storage_pb2_grpc
from tests.storage_node.conftest import METADATA, SECRET, RunningNode, start_node

MiB = 1024 * 1024
KEY = "ab/cd/0123456789abcdef0123456789abcdef"
MAGIC = b"CALLFS-SUMS/1 crc32\n"
Stub = storage_pb2_grpc.StorageNodeStub


def pattern(size: int) -> bytes:
    return bytes(index * 7 % 251 for index in range(size))


def odd_parts(data: bytes, size: int = 300_000) -> list[bytes]:
    """``data`` in chunks that do not line up with the 1 MiB blocks."""
    return [data[start : start + size] for start in range(0, len(data), size)]


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def sidecar(root: Path | str, key: str = KEY) -> Path:
    return Path(root) / f"{key}.sums"


def parse_sidecar(path: Path) -> tuple[int, int, list[int]]:
    """Block size, object size and CRCs of a sidecar, read as its format says."""
    raw = path.read_bytes()
    assert raw.startswith(MAGIC)
    block_size, size = struct.unpack_from(">IQ", raw, len(MAGIC))
    body = raw[len(MAGIC) + 12 :]
    return block_size, size, [crc for (crc,) in struct.iter_unpack(">I", body)]


def flip(path: Path, position: int) -> None:
    """Rot one bit of the byte at ``position`` on disk."""
    with path.open("r+b") as file:
        file.seek(position)
        byte = file.read(1)
        file.seek(position)
        file.write(bytes([byte[0] ^ 0x10]))


@pytest.fixture
def volume(tmp_path: Path) -> Volume:
    root = tmp_path / "volume"
    root.mkdir()
    return Volume(root)


async def store(volume: Volume, data: bytes, key: str = KEY) -> None:
    await volume.write(key, chunks_of(*odd_parts(data)), create_parents=True)


async def read_all(volume: Volume, key: str = KEY, **kwargs: int) -> bytes:
    return b"".join([chunk async for chunk in await volume.read(key, **kwargs)])


async def read_until_error(volume: Volume, **kwargs: int) -> tuple[bytes, Exception | None]:
    """The bytes a read yields before it fails, and its error (None if it did not)."""
    received = b""
    try:
        async for chunk in await volume.read(KEY, **kwargs):
            received += chunk
    except Exception as exc:
        return received, exc
    return received, None


# --- the sidecar -----------------------------------------------------------------------


async def test_a_write_stores_the_crc_of_every_block_beside_the_object(volume: Volume) -> None:
    data = pattern(5 * MiB + 12345)
    await store(volume, data)
    block_size, size, crcs = parse_sidecar(sidecar(volume.root))
    assert (block_size, size) == (MiB, len(data))
    assert crcs == [zlib.crc32(data[start : start + MiB]) for start in range(0, len(data), MiB)]
    assert len(crcs) == 6
    assert list(Path(volume.root).rglob(f"{TEMP_PREFIX}*")) == []


async def test_an_empty_object_has_a_sidecar_without_crcs(volume: Volume) -> None:
    await store(volume, b"")
    assert parse_sidecar(sidecar(volume.root)) == (MiB, 0, [])
    assert await read_all(volume) == b""


async def test_an_overwrite_replaces_the_sidecar(volume: Volume) -> None:
    await store(volume, pattern(3 * MiB))
    data = pattern(MiB + 5)[::-1]
    await store(volume, data)
    assert parse_sidecar(sidecar(volume.root))[1:] == (
        len(data),
        [zlib.crc32(data[:MiB]), zlib.crc32(data[MiB:])],
    )
    assert await read_all(volume) == data


async def test_without_overwrite_an_existing_object_keeps_its_sidecar(volume: Volume) -> None:
    data = pattern(MiB + 1)
    await store(volume, data)
    before = sidecar(volume.root).read_bytes()
    with pytest.raises(Exception, match="exists"):
        await volume.write(KEY, chunks_of(b"other"), overwrite=False)
    assert sidecar(volume.root).read_bytes() == before
    assert await read_all(volume) == data


@pytest.mark.parametrize("path", ["a.sums", f"{KEY}.sums", "dir.sums/file"])
async def test_paths_naming_a_sidecar_are_invalid(volume: Volume, path: str) -> None:
    await store(volume, b"x")
    with pytest.raises(InvalidPath):
        await volume.write(path, chunks_of(b"x"), create_parents=True)
    with pytest.raises(InvalidPath):
        await volume.read(path)
    with pytest.raises(InvalidPath):
        await volume.delete(path)


# --- checked reads --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "length", "chunk_size"),
    [
        (0, None, MiB),
        (0, None, 100_000),
        (0, None, 3 * MiB + 7),
        (MiB - 5, 10, MiB),
        (MiB, MiB, MiB),
        (123_456, 4 * MiB, 700_000),
        (5 * MiB, None, MiB),
        (5 * MiB + 12345, None, MiB),
        (9 * MiB, None, MiB),
        (17, 0, MiB),
    ],
)
async def test_checked_reads_return_exactly_the_range_in_chunks_of_the_asked_size(
    volume: Volume, offset: int, length: int | None, chunk_size: int
) -> None:
    data = pattern(5 * MiB + 12345)
    await store(volume, data)
    kwargs = {"offset": offset, "chunk_size": chunk_size}
    if length is not None:
        kwargs["length"] = length
    chunks = [chunk async for chunk in await volume.read(KEY, **kwargs)]
    end = len(data) if length is None else offset + length
    assert b"".join(chunks) == data[offset:end]
    assert all(len(chunk) == chunk_size for chunk in chunks[:-1])


async def test_a_flipped_byte_fails_a_read_before_any_byte_of_its_block(volume: Volume) -> None:
    data = pattern(7 * MiB)
    await store(volume, data)
    flip(Path(volume.root) / KEY, 5 * MiB + 1000)

    received, error = await read_until_error(volume, chunk_size=64 * 1024)

    assert isinstance(error, ReplicaCorrupted)
    assert KEY in error.message and "block 5" in error.message
    assert len(received) <= 5 * MiB
    assert received == data[: len(received)]


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, None), (3 * MiB - 1, 2), (2 * MiB + 10, 1), (MiB, 2 * MiB + 1)],
)
async def test_a_read_touching_the_rotten_block_fails_when_it_opens(
    volume: Volume, offset: int, length: int | None
) -> None:
    data = pattern(4 * MiB)
    await store(volume, data)
    flip(Path(volume.root) / KEY, 2 * MiB + 10)
    kwargs = {"offset": offset} if length is None else {"offset": offset, "length": length}
    with pytest.raises(ReplicaCorrupted, match="block 2"):
        await volume.read(KEY, **kwargs)


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 2 * MiB), (MiB + 7, 100), (3 * MiB, None), (3 * MiB + 99, 1000)],
)
async def test_reads_that_miss_the_rotten_block_succeed(
    volume: Volume, offset: int, length: int | None
) -> None:
    data = pattern(4 * MiB + 500)
    await store(volume, data)
    flip(Path(volume.root) / KEY, 2 * MiB + 10)
    kwargs = {"offset": offset} if length is None else {"offset": offset, "length": length}
    end = len(data) if length is None else offset + length
    assert await read_all(volume, **kwargs) == data[offset:end]


async def test_a_flip_in_a_short_last_block_is_caught(volume: Volume) -> None:
    data = pattern(2 * MiB + 300)
    await store(volume, data)
    flip(Path(volume.root) / KEY, 2 * MiB + 299)
    assert await read_all(volume, length=2 * MiB) == data[: 2 * MiB]
    with pytest.raises(ReplicaCorrupted, match="block 2"):
        await read_all(volume, offset=2 * MiB)


async def test_a_truncated_object_does_not_match_its_sidecar(volume: Volume) -> None:
    await store(volume, pattern(2 * MiB))
    os.truncate(Path(volume.root) / KEY, MiB)
    with pytest.raises(ReplicaCorrupted, match=KEY):
        await volume.read(KEY)


async def test_a_damaged_sidecar_fails_the_read(volume: Volume) -> None:
    await store(volume, pattern(2 * MiB))
    flip(sidecar(volume.root), 3)
    with pytest.raises(ReplicaCorrupted, match="checksums"):
        await volume.read(KEY)


async def test_an_object_without_sidecar_is_read_unchecked(volume: Volume) -> None:
    data = pattern(3 * MiB)
    await store(volume, data)
    sidecar(volume.root).unlink()
    assert await read_all(volume) == data
    flip(Path(volume.root) / KEY, MiB)
    assert len(await read_all(volume)) == len(data)


# --- delete, list, sweep --------------------------------------------------------------


async def test_delete_removes_the_object_and_its_sidecar(volume: Volume) -> None:
    await store(volume, pattern(MiB + 1))
    assert await volume.delete(KEY)
    assert not (Path(volume.root) / KEY).exists()
    assert not sidecar(volume.root).exists()


async def test_delete_of_a_missing_object_removes_a_sidecar_left_alone(volume: Volume) -> None:
    await store(volume, b"data")
    (Path(volume.root) / KEY).unlink()
    assert not await volume.delete(KEY, missing_ok=True)
    assert not sidecar(volume.root).exists()


async def test_listing_never_shows_sidecars(volume: Volume) -> None:
    await store(volume, b"one", "ab/cd/one")
    await store(volume, b"two", "ab/cd/two")
    listed = [item.key async for batch in volume.list_files() for item in batch]
    assert sorted(listed) == ["ab/cd/one", "ab/cd/two"]


async def test_a_crash_between_sidecar_and_object_leaves_nothing_listed_and_is_swept(
    volume: Volume,
) -> None:
    await store(volume, b"kept", "ab/cd/kept")
    # What a crash after the sidecar was published and before its object was leaves.
    orphan = sidecar(volume.root)
    orphan.write_bytes(MAGIC + struct.pack(">IQ", MiB, 4) + struct.pack(">I", zlib.crc32(b"lost")))
    (Path(volume.root) / "ab" / "cd" / f"{TEMP_PREFIX}0123.sums").write_bytes(b"half a sidecar")

    assert [item.key async for batch in volume.list_files() for item in batch] == ["ab/cd/kept"]
    with pytest.raises(NotFound):
        await volume.read(KEY)

    assert await volume.sweep_temp_files() == 2
    assert sorted(p.name for p in (Path(volume.root) / "ab" / "cd").iterdir()) == [
        "kept",
        "kept.sums",
    ]


async def test_a_fresh_orphaned_sidecar_waits_for_the_grace(tmp_path: Path) -> None:
    root = tmp_path / "volume"
    root.mkdir()
    now = [1_000_000.0]
    volume = Volume(root, clock=lambda: now[0])
    await store(volume, b"data")
    (root / KEY).unlink()
    os.utime(sidecar(root), (now[0] - 10, now[0] - 10))
    assert await volume.sweep_temp_files(60) == 0
    now[0] += 60
    assert await volume.sweep_temp_files(60) == 1
    assert not sidecar(root).exists()


# --- over gRPC ------------------------------------------------------------------------


async def grpc_write(stub: Stub, path: str, data: bytes) -> storage_pb2.WriteResponse:
    call = stub.Write(metadata=METADATA)
    header = storage_pb2.WriteHeader(path=path, create_parents=True, overwrite=True)
    await call.write(storage_pb2.WriteRequest(header=header))
    for part in odd_parts(data):
        await call.write(storage_pb2.WriteRequest(chunk=part))
    await call.write(storage_pb2.WriteRequest(end=storage_pb2.WriteEnd(size=len(data))))
    await call.done_writing()
    return await call


async def grpc_read(
    stub: Stub, path: str = KEY, **options: int
) -> tuple[bytes, grpc.aio.AioRpcError | None]:
    """The bytes a Read stream delivers, and the status it ends with (None: OK)."""
    received = b""
    try:
        request = storage_pb2.ReadRequest(path=path, **options)
        async for response in stub.Read(request, metadata=METADATA):
            received += response.chunk
    except grpc.aio.AioRpcError as error:
        return received, error
    return received, None


async def test_a_flipped_byte_is_data_loss_before_any_byte_of_its_block_is_sent(
    stub: Stub, node: RunningNode
) -> None:
    data = pattern(6 * MiB)
    response = await grpc_write(stub, KEY, data)
    flip(node.root / KEY, 5 * MiB + 3)

    received, error = await grpc_read(stub, chunk_size=256 * 1024)

    assert error is not None and error.code() == grpc.StatusCode.DATA_LOSS
    assert KEY in (error.details() or "") and "block 5" in (error.details() or "")
    assert len(received) <= 5 * MiB
    assert received == data[: len(received)]
    # Ranges inside other blocks, and after the rotten one, are still served.
    assert await grpc_read(stub, offset=MiB + 5, length=MiB) == (data[MiB + 5 : 2 * MiB + 5], None)
    assert await grpc_read(stub, length=5 * MiB) == (data[: 5 * MiB], None)
    _, inside = await grpc_read(stub, offset=5 * MiB + 3, length=1)
    assert inside is not None and inside.code() == grpc.StatusCode.DATA_LOSS
    assert len(response.sha256) == 64


async def test_an_object_written_before_checksums_is_served(stub: Stub, node: RunningNode) -> None:
    (node.root / "ab" / "cd").mkdir(parents=True)
    data = pattern(2 * MiB + 1)
    (node.root / KEY).write_bytes(data)
    assert await grpc_read(stub) == (data, None)


async def test_list_and_delete_over_grpc_treat_object_and_sidecar_as_one(
    stub: Stub, node: RunningNode
) -> None:
    await grpc_write(stub, KEY, pattern(MiB + 1))
    await grpc_write(stub, "ab/cd/other", b"other")
    request = storage_pb2.ListRequest()
    responses = [response async for response in stub.List(request, metadata=METADATA)]
    assert sorted(o.key for r in responses for o in r.objects) == [KEY, "ab/cd/other"]

    deleted = await stub.Delete(storage_pb2.DeleteRequest(path=KEY), metadata=METADATA)
    assert deleted.existed
    assert not (node.root / KEY).exists() and not sidecar(node.root).exists()


# --- through the storage client -------------------------------------------------------


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[dict[str, RunningNode]]:
    nodes = {name: await start_node(tmp_path / name) for name in ("node-0", "node-1")}
    yield nodes
    for running in nodes.values():
        await running.server.stop(0)


async def test_the_client_reads_past_a_corrupted_replica_and_names_its_node(
    two_nodes: dict[str, RunningNode], caplog: pytest.LogCaptureFixture
) -> None:
    discovery = StaticDiscovery({name: node.address for name, node in two_nodes.items()})
    backend = StorageNodeBackend(discovery, SECRET, timeout=5.0, replication=2)
    await backend.start()
    try:
        data = pattern(6 * MiB + 5)
        ref = await backend.new_object("/rotten.bin")
        await backend.write(ref, chunks_of(*odd_parts(data)))
        assert len(ref.replicas) == 2
        first = ref.replicas[0]
        flip(two_nodes[first].root / ref.key, 4 * MiB + 1)
        caplog.set_level(logging.WARNING, logger="callfs.backends.storage_node")

        received = b"".join([chunk async for chunk in await backend.read(ref)])
    finally:
        await backend.close()

    assert received == data
    assert any(
        record.levelno == logging.WARNING and first in record.getMessage()
        for record in caplog.records
        if "corrupt" in record.getMessage()
    )
