"""The storage-node backend calling a node of its own process without gRPC
(``callfs dev``): the node's gRPC server is stopped first, so every call here can only
have gone in-process, through the node's own handlers and interceptors."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from callfs_storage_node.server import build_server

from callfs.backends.base import ObjectRef
from callfs.backends.storage_node import StorageNodeBackend
from callfs.cli import dev_overrides, run_dev
from callfs.discovery.base import StaticDiscovery
from callfs.errors import BackendUnavailable, NotFound, ReplicaCorrupted
from callfs.settings import load_settings
from callfs.storage.inprocess import IN_FLIGHT, InProcessChannel, InProcessServer
from callfs.storage.wire import encoded_read, read_chunk
from tests.storage_node.conftest import SECRET, node_settings
from tests.storage_node.test_checksums import flip
from tests.support.polling import wait_until

MiB = 1024 * 1024
NAME = "node-0"


class SourceBroke(Exception):
    """The client's upload broke off."""


@dataclass
class Local:
    root: Path
    server: InProcessServer
    backend: StorageNodeBackend

    def temp_files(self) -> list[Path]:
        return list(self.root.rglob(".callfs-tmp-*"))

    def channels(self) -> list[Any]:
        return [node.channel for node in self.backend._nodes.values()]


async def open_local(tmp_path: Path, secret: str = SECRET, timeout: float = 5.0) -> Local:
    """A node whose gRPC server stopped at once, and a backend that reaches it in-process."""
    root = tmp_path / NAME
    in_process = InProcessServer()
    grpc_server, port = build_server(
        node_settings(root), listen="127.0.0.1:0", instance_id=NAME, in_process=in_process
    )
    await grpc_server.start()
    await grpc_server.stop(0)
    address = f"127.0.0.1:{port}"
    backend = StorageNodeBackend(
        StaticDiscovery({NAME: address}),
        secret,
        timeout=timeout,
        in_process={address: in_process},
    )
    await backend.start()
    return Local(root, in_process, backend)


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[Local]:
    opened = await open_local(tmp_path)
    yield opened
    await opened.backend.close()


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def stored(backend: StorageNodeBackend, *parts: bytes) -> ObjectRef:
    ref = await backend.new_object("/a/file")
    written = await backend.write(ref, chunks_of(*parts))
    return ObjectRef(ref.backend, ref.key, written.replicas, etag=written.etag)


async def read_all(backend: StorageNodeBackend, ref: ObjectRef, **kwargs: int) -> bytes:
    return b"".join([chunk async for chunk in await backend.read(ref, **kwargs)])


async def test_objects_round_trip_with_their_sha256_small_large_and_ranged(local: Local) -> None:
    big = bytes(range(256)) * (9 * MiB // 256)  # more than a message holds
    for body in (b"", b"small", big):
        ref = await stored(local.backend, body[: len(body) // 2], body[len(body) // 2 :])
        assert await read_all(local.backend, ref) == body
        assert ref.etag == hashlib.sha256(body).hexdigest()
    assert await read_all(local.backend, ref, offset=MiB + 3, length=5) == big[MiB + 3 : MiB + 8]
    assert all(isinstance(channel, InProcessChannel) for channel in local.channels())


async def test_a_missing_object_is_not_found_and_delete_many_removes_what_is_there(
    local: Local,
) -> None:
    ref = await stored(local.backend, b"doomed")
    missing = ObjectRef(ref.backend, "no/such/key", ref.replicas)
    with pytest.raises(NotFound):
        await local.backend.read(missing)
    assert await local.backend.delete_many([ref, missing]) == []
    with pytest.raises(NotFound):
        await local.backend.read(ref)


async def test_an_upload_that_breaks_off_raises_its_error_and_leaves_no_temp_file(
    local: Local,
) -> None:
    async def breaking() -> AsyncIterator[bytes]:
        yield b"x" * (2 * MiB)
        raise SourceBroke()

    ref = await local.backend.new_object("/a/file")
    with pytest.raises(SourceBroke):
        await local.backend.write(ref, breaking())
    assert local.temp_files() == []
    with pytest.raises(NotFound):
        await local.backend.read(ref)


async def test_a_read_left_midway_ends_its_call_on_the_node(local: Local) -> None:
    ref = await stored(local.backend, b"y" * (20 * MiB))
    stream = await local.backend.read(ref)
    assert len(await anext(stream)) > 0
    await stream.aclose()  # type: ignore[attr-defined]
    (channel,) = local.channels()
    await wait_until(lambda: not channel._calls)


async def test_a_corrupted_block_is_refused_as_a_corrupted_replica(local: Local) -> None:
    ref = await stored(local.backend, b"z" * MiB)
    flip(local.root / ref.key, 1000)
    with pytest.raises(ReplicaCorrupted):
        await read_all(local.backend, ref)


async def test_the_nodes_interceptors_check_the_internal_secret_in_process(
    tmp_path: Path,
) -> None:
    wrong = await open_local(tmp_path, secret="not-the-secret-0123456789abcdef")
    try:
        with pytest.raises(BackendUnavailable):
            await wrong.backend.usage(NAME)
    finally:
        await wrong.backend.close()


async def test_usage_and_the_listing_of_the_node(local: Local) -> None:
    ref = await stored(local.backend, b"listed")
    _used, free, total = await local.backend.usage(NAME)  # used: as of the last walk
    assert 0 < free <= total
    listed = [item async for item in local.backend.list_objects(NAME)]
    assert [(item.key, item.size) for item in listed] == [(ref.key, 6)]


class Stalling(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Holds every call until released: a node that stopped answering."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.cancelled = 0

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return await continuation(details)


async def test_a_node_that_does_not_answer_in_time_is_unreachable_and_its_call_ended(
    tmp_path: Path,
) -> None:
    slow = await open_local(tmp_path, timeout=0.2)
    stalling = Stalling()
    slow.server.add_interceptors([stalling])
    try:
        with pytest.raises(BackendUnavailable):
            await slow.backend.usage(NAME)
        assert stalling.cancelled == 1
        assert slow.backend.node_status() == {NAME: False}
        stalling.release.set()
        await slow.backend.usage(NAME)
        assert slow.backend.node_status() == {NAME: True}
    finally:
        await slow.backend.close()


async def test_callfs_dev_serves_files_without_opening_a_grpc_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real = grpc.aio.insecure_channel

    def counted(target: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(target)
        return real(target, *args, **kwargs)

    monkeypatch.setattr(grpc.aio, "insecure_channel", counted)
    data = tmp_path / "data"
    overrides = dev_overrides(data)
    overrides["server"]["listen_addr"] = "127.0.0.1:0"
    overrides["metrics"] = {"listen_addr": "127.0.0.1:0"}
    overrides["log"] = {"level": "warning"}
    key = "in-process-dev-key-0123456789"
    overrides["auth"] = {**overrides.get("auth", {}), "api_keys": [key]}
    settings = load_settings(environ={}, overrides=overrides)
    ready = asyncio.Event()
    banner = io.StringIO()
    with contextlib.redirect_stdout(banner):
        serving = asyncio.create_task(run_dev(settings, data, ready=ready))
        await asyncio.wait(
            {serving, asyncio.ensure_future(ready.wait())},
            timeout=60,
            return_when=asyncio.FIRST_COMPLETED,
        )
    try:
        assert ready.is_set(), banner.getvalue()
        url = re.search(r"URL:\s+(\S+)", banner.getvalue())
        assert url is not None
        async with httpx.AsyncClient(
            base_url=url.group(1), headers={"Authorization": f"Bearer {key}"}
        ) as client:
            body = b"q" * (3 * MiB)
            assert (await client.post("/v1/files/a.bin", content=body)).status_code == 201
            assert (await client.get("/v1/files/a.bin")).content == body
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    assert opened == []


async def test_a_read_chunk_is_handed_over_as_it_is_and_other_messages_go_through_the_codec() -> (
    None
):
    chunk = b"c" * 1000

    async def chunks(request: bytes, context: Any) -> AsyncIterator[bytes]:
        yield chunk

    server = InProcessServer()
    handler = grpc.unary_stream_rpc_method_handler(
        chunks, request_deserializer=bytes, response_serializer=encoded_read
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Chunks", {"Read": handler})]
    )
    channel = InProcessChannel(server)
    read = channel.unary_stream("/test.Chunks/Read", response_deserializer=read_chunk)
    assert await read(b"").read() is chunk
    wire = channel.unary_stream("/test.Chunks/Read", response_deserializer=bytes)
    assert await wire(b"").read() == encoded_read(chunk)
    await channel.close()


def stream_in_server(behavior: Callable[..., Any]) -> InProcessChannel:
    server = InProcessServer()
    handler = grpc.stream_unary_rpc_method_handler(behavior)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Upload", {"Write": handler})]
    )
    return InProcessChannel(server)


async def test_an_upload_to_a_handler_that_stopped_reading_holds_a_few_messages_only() -> None:
    release = asyncio.Event()

    async def stalled(requests: AsyncIterator[bytes], context: Any) -> bytes:
        await release.wait()
        return b"".join([request async for request in requests])

    channel = stream_in_server(stalled)
    call = channel.stream_unary("/test.Upload/Write")()
    sent = 0

    async def send_all() -> None:
        nonlocal sent
        for index in range(20):
            await call.write(b"%d," % index)
            sent += 1
        await call.done_writing()

    sending = asyncio.create_task(send_all())
    await wait_until(lambda: sent == IN_FLIGHT)
    await asyncio.sleep(0)  # the handler had its turn: still nothing more went
    assert sent == IN_FLIGHT and not sending.done()
    release.set()
    await sending
    assert await call == b"".join(b"%d," % index for index in range(20))
    await channel.close()


async def test_a_write_after_the_handler_failed_is_refused_and_the_call_has_its_status() -> None:
    async def refusing(requests: AsyncIterator[bytes], context: Any) -> bytes:
        await anext(requests)
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no more")
        return b""

    channel = stream_in_server(refusing)
    call = channel.stream_unary("/test.Upload/Write")()
    await call.write(b"first")
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert failed.value.details() == "no more"
    with pytest.raises(asyncio.InvalidStateError):
        await call.write(b"second")
    await channel.close()
