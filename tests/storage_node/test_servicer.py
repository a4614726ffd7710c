"""The storage node over real gRPC: streams, status codes, the secret, health."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path

import grpc
import pytest
from callfs_storage_node.errors import status_for
from grpc_health.v1 import health_pb2, health_pb2_grpc

from callfs.errors import DirectoryNotEmpty, InvalidPath, NotFound
from callfs.storage.v1 import storage_pb2, storage_pb2_grpc
from tests.storage_node.conftest import METADATA, RunningNode, start_node
from tests.support.polling import wait_until

MiB = 1024 * 1024
Stub = storage_pb2_grpc.StorageNodeStub
Metadata = tuple[tuple[str, str], ...]


def pattern(size: int) -> bytes:
    return bytes(index * 13 % 241 for index in range(size))


def header(path: str, **options: object) -> storage_pb2.WriteRequest:
    return storage_pb2.WriteRequest(header=storage_pb2.WriteHeader(path=path, **options))


def messages(
    path: str, parts: Iterable[bytes], **options: object
) -> list[storage_pb2.WriteRequest]:
    chunks = [storage_pb2.WriteRequest(chunk=part) for part in parts]
    size = sum(len(request.chunk) for request in chunks)
    end = storage_pb2.WriteRequest(end=storage_pb2.WriteEnd(size=size))
    return [header(path, **options), *chunks, end]


async def write(stub: Stub, path: str, data: bytes, **options: object) -> storage_pb2.WriteResponse:
    parts = [data[start : start + MiB] for start in range(0, len(data), MiB)]
    call = stub.Write(metadata=METADATA)
    for request in messages(path, parts, **options):
        await call.write(request)
    await call.done_writing()
    return await call


async def read(stub: Stub, path: str, **options: int) -> list[bytes]:
    request = storage_pb2.ReadRequest(path=path, **options)
    return [response.chunk async for response in stub.Read(request, metadata=METADATA)]


async def status_of_write(
    stub: Stub, requests: list[storage_pb2.WriteRequest], metadata: Metadata = METADATA
) -> grpc.StatusCode:
    """The status a failing write ends with.

    Pass the messages up to the one the node decides on, no further: a message sent
    after the node answered fails, and grpc then reports its own INTERNAL error
    instead of the node's status.
    """
    call = stub.Write(metadata=metadata)
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
        for request in requests:
            await call.write(request)
        await call.done_writing()
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value.code()


async def test_multi_chunk_write_reads_back_with_its_sha256(stub: Stub, node: RunningNode) -> None:
    data = pattern(5 * MiB + 777)
    response = await write(stub, "ab/cd/object", data, create_parents=True)
    assert response.size == len(data)
    assert response.sha256 == hashlib.sha256(data).hexdigest()
    chunks = await read(stub, "ab/cd/object")
    assert len(chunks) == 6
    assert b"".join(chunks) == data
    assert (node.root / "ab" / "cd" / "object").read_bytes() == data


async def test_ranged_reads_return_exactly_the_range(stub: Stub) -> None:
    data = pattern(3 * MiB)
    await write(stub, "f", data)
    assert b"".join(await read(stub, "f", offset=MiB - 5, length=10)) == data[MiB - 5 : MiB + 5]
    assert b"".join(await read(stub, "f", offset=2 * MiB)) == data[2 * MiB :]
    assert await read(stub, "f", offset=10, length=0) == []


async def test_read_chunks_stay_under_the_message_limit(stub: Stub) -> None:
    data = pattern(9 * MiB)
    await write(stub, "big", data)
    chunks = await read(stub, "big", chunk_size=64 * MiB)
    assert len(chunks) == 2
    assert b"".join(chunks) == data


async def test_a_reader_cancelling_mid_download_logs_no_error(
    stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    await write(stub, "big", pattern(16 * MiB))
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        call = stub.Read(
            storage_pb2.ReadRequest(path="big", chunk_size=256 * 1024), metadata=METADATA
        )
        await call.read()
        # The node fills the flow-control window meanwhile: the cancel finds it writing.
        await asyncio.sleep(0.3)
        call.cancel()
    # The node hears of a cancel at once; give its log a moment to show what it made of it.
    await asyncio.sleep(0.5)
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert noisy == []
    assert b"".join(await read(stub, "big", length=10)) == pattern(10)


async def test_overwrite_replaces_the_content(stub: Stub) -> None:
    await write(stub, "f", b"old")
    await write(stub, "f", b"new", overwrite=True)
    assert await read(stub, "f") == [b"new"]


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../etc/passwd", "link/passwd"])
async def test_paths_escaping_the_volume_are_invalid_argument(
    stub: Stub, node: RunningNode, tmp_path: Path, path: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_bytes(b"root:x:0:0")
    (node.root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await read(stub, path)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    code = await status_of_write(stub, messages(path, [b"evil"], overwrite=True))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert (outside / "passwd").read_bytes() == b"root:x:0:0"


async def test_a_symlink_inside_pointing_outside_is_invalid_argument(
    stub: Stub, node: RunningNode, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    (node.root / "innocent").symlink_to(secret)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await read(stub, "innocent")
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    delete = stub.Delete(storage_pb2.DeleteRequest(path="innocent"), metadata=METADATA)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await delete
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert secret.read_bytes() == b"secret"


@pytest.mark.parametrize("metadata", [(), (("x-callfs-internal-secret", "wrong-secret"),)])
async def test_calls_without_the_right_secret_are_unauthenticated(
    stub: Stub, node: RunningNode, metadata: Metadata
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.Usage(storage_pb2.UsageRequest(), metadata=metadata)
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await anext(aiter(stub.Read(storage_pb2.ReadRequest(path="f"), metadata=metadata)))
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Refused on its metadata alone, before any message.
    assert await status_of_write(stub, [], metadata) == grpc.StatusCode.UNAUTHENTICATED
    assert not list(node.root.iterdir())


async def test_health_answers_serving_without_the_secret(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    response = await health.Check(health_pb2.HealthCheckRequest())
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_an_upload_that_breaks_off_keeps_the_old_content_and_no_temp_file(
    stub: Stub, node: RunningNode
) -> None:
    await write(stub, "f", b"old content")
    call = stub.Write(metadata=METADATA)
    await call.write(header("f", overwrite=True))
    for _ in range(6):
        await call.write(storage_pb2.WriteRequest(chunk=pattern(MiB)))
    await wait_until(lambda: bool(node.temp_files()), what="the upload reached the volume")
    call.cancel()
    await wait_until(lambda: not node.temp_files(), what="the temp file was removed")
    assert await read(stub, "f") == [b"old content"]


async def test_a_stream_ending_without_its_end_message_stores_nothing(
    stub: Stub, node: RunningNode
) -> None:
    await write(stub, "f", b"old content")
    requests = messages("f", [b"truncated"], overwrite=True)[:-1]
    assert await status_of_write(stub, requests) == grpc.StatusCode.INVALID_ARGUMENT
    assert await read(stub, "f") == [b"old content"]
    assert node.temp_files() == []


async def test_an_end_counting_other_bytes_stores_nothing(stub: Stub, node: RunningNode) -> None:
    requests = messages("g", [b"abc"])
    requests[-1] = storage_pb2.WriteRequest(end=storage_pb2.WriteEnd(size=4))
    assert await status_of_write(stub, requests) == grpc.StatusCode.INVALID_ARGUMENT
    assert not (node.root / "g").exists()
    assert node.temp_files() == []


async def test_a_stream_not_starting_with_a_header_is_invalid_argument(stub: Stub) -> None:
    requests = messages("f", [b"x"])[1:2]
    assert await status_of_write(stub, requests) == grpc.StatusCode.INVALID_ARGUMENT


async def test_domain_errors_arrive_as_their_status_codes(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await read(stub, "missing")
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    await write(stub, "f", b"x")
    code = await status_of_write(stub, messages("f", [b"y"], overwrite=False))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    await write(stub, "d/e/f", b"z", create_parents=True)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await read(stub, "d")
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.Delete(storage_pb2.DeleteRequest(path="d"), metadata=METADATA)
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_disk_full_is_resource_exhausted_and_other_failures_hide_their_details() -> None:
    full = status_for(OSError(errno.ENOSPC, "No space left on device"))
    assert full == (grpc.StatusCode.RESOURCE_EXHAUSTED, "the volume is full")
    assert status_for(NotFound())[0] == grpc.StatusCode.NOT_FOUND
    assert status_for(InvalidPath("bad"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for(DirectoryNotEmpty())[0] == grpc.StatusCode.FAILED_PRECONDITION
    hidden = status_for(RuntimeError("/srv/volume/ab/cd: internal detail"))
    assert hidden == (grpc.StatusCode.INTERNAL, "internal error")


async def test_delete_reports_whether_a_file_was_there(stub: Stub, node: RunningNode) -> None:
    await write(stub, "dir/f", b"12345", create_parents=True)
    deleted = await stub.Delete(storage_pb2.DeleteRequest(path="dir/f"), metadata=METADATA)
    assert deleted.existed
    assert not (node.root / "dir" / "f").exists()
    again = await stub.Delete(
        storage_pb2.DeleteRequest(path="dir/f", missing_ok=True), metadata=METADATA
    )
    assert not again.existed


async def test_usage_reports_used_free_and_total_bytes(stub: Stub, node: RunningNode) -> None:
    await write(stub, "a", pattern(1000), create_parents=True)
    await write(stub, "b/c", pattern(500), create_parents=True)
    usage = await stub.Usage(storage_pb2.UsageRequest(), metadata=METADATA)
    sidecars = sum(path.stat().st_size for path in node.root.rglob("*.sums"))
    assert sidecars > 0
    assert usage.used_bytes == 1500 + sidecars
    assert usage.total_bytes > 0
    assert 0 < usage.free_bytes <= usage.total_bytes


async def list_all(
    stub: Stub, batch_size: int = 0, metadata: Metadata = METADATA
) -> list[storage_pb2.ListResponse]:
    request = storage_pb2.ListRequest(batch_size=batch_size)
    return [response async for response in stub.List(request, metadata=metadata)]


async def test_list_streams_every_stored_file_in_batches_without_temp_files(
    stub: Stub, node: RunningNode
) -> None:
    for index in range(5):
        await write(stub, f"ab/c{index % 2}/object-{index}", b"x" * index, create_parents=True)
    (node.root / "ab" / "c0" / ".callfs-tmp-upload").write_bytes(b"in flight")

    responses = await list_all(stub, batch_size=2)

    assert [len(response.objects) for response in responses] == [2, 2, 1]
    listed = {o.key: o for response in responses for o in response.objects}
    assert set(listed) == {f"ab/c{index % 2}/object-{index}" for index in range(5)}
    for key, found in listed.items():
        on_disk = (node.root / key).stat()
        assert (found.size, found.mtime_ns) == (on_disk.st_size, on_disk.st_mtime_ns)


async def test_list_of_an_empty_volume_ends_without_a_message(stub: Stub) -> None:
    assert await list_all(stub) == []


async def test_list_splits_a_batch_of_long_paths_over_several_messages(tmp_path: Path) -> None:
    small = await start_node(tmp_path / "volume", max_message_bytes=MiB)
    try:
        # ~3 KiB paths: a batch of 1000 would be a 3 MiB message, over the 1 MiB limit.
        deep = small.root.joinpath(*(["d" * 200] * 14))
        deep.mkdir(parents=True)
        for index in range(1000):
            (deep / f"{index:0200d}").write_bytes(b"")
        async with grpc.aio.insecure_channel(small.address) as channel:
            stub = Stub(channel)  # type: ignore[no-untyped-call]
            responses = await list_all(stub, batch_size=1000)
    finally:
        await small.server.stop(0)
    assert sum(len(response.objects) for response in responses) == 1000
    assert len(responses) > 2
    assert all(response.ByteSize() < MiB for response in responses)


@pytest.mark.parametrize("metadata", [(), (("x-callfs-internal-secret", "wrong-secret"),)])
async def test_list_without_the_right_secret_is_unauthenticated(
    stub: Stub, node: RunningNode, metadata: Metadata
) -> None:
    await write(stub, "f", b"x")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await list_all(stub, metadata=metadata)
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_list_for_another_instance_is_refused(stub: Stub) -> None:
    await write(stub, "f", b"x")
    named = storage_pb2.ListRequest(instance_id="volume")
    responses = [response async for response in stub.List(named, metadata=METADATA)]
    assert [o.key for response in responses for o in response.objects] == ["f"]
    other = storage_pb2.ListRequest(instance_id="node-7")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await anext(aiter(stub.List(other, metadata=METADATA)))
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'node-7'" in (failure.value.details() or "")
