"""The S3 backend against real S3-compatible servers: SeaweedFS and moto."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callfs.backends.base import Backend, ObjectRef
from callfs.backends.instrumented import InstrumentedBackend
from callfs.backends.s3 import S3Backend, check_connectivity
from callfs.errors import BackendUnavailable, NotFound, RangeNotSatisfiable
from callfs.metrics import Metrics
from callfs.settings import BackendSettings
from tests.support.proxy import CuttingProxy
from tools.s3_server import MotoServer, S3Server, SeaweedS3Server

pytestmark = pytest.mark.s3

MiB = 1024 * 1024
LOGGER = "callfs.backends.s3"


class BrokeOff(Exception):
    """What a client that goes away mid-upload raises in the body iterator."""


def block(index: int) -> bytes:
    """The ``index``-th MiB of a reproducible pseudo-random body."""
    return random.Random(index).randbytes(MiB)


def expected(offset: int, length: int) -> bytes:
    """Bytes ``offset .. offset+length`` of the body made of :func:`block` s."""
    first, last = offset // MiB, (offset + length - 1) // MiB
    data = b"".join(block(i) for i in range(first, last + 1))
    start = offset - first * MiB
    return data[start : start + length]


async def blocks(count: int) -> AsyncIterator[bytes]:
    for index in range(count):
        yield block(index)


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read_all(backend: Backend, ref: ObjectRef, **kwargs: int) -> bytes:
    return b"".join([chunk async for chunk in await backend.read(ref, **kwargs)])


@pytest.fixture
async def backend(s3_settings: BackendSettings) -> AsyncIterator[S3Backend]:
    s3 = S3Backend(s3_settings)
    await s3.start()
    yield s3
    await s3.close()


async def test_new_objects_get_distinct_s3_keys(backend: S3Backend) -> None:
    first = await backend.new_object("/a.txt")
    second = await backend.new_object("/a.txt")
    assert (first.backend, first.instance_id) == ("s3", None)
    assert first.key != second.key


async def test_small_body_goes_in_one_put_and_reads_back(
    backend: S3Backend, s3_server: S3Server
) -> None:
    data = b"hello, s3\n" * 100
    ref = await backend.new_object("/hello.txt")

    written = await backend.write(ref, chunks_of(data[:300], data[300:]))

    assert written.size == len(data)
    assert written.sha256 == hashlib.sha256(data).hexdigest()
    # A single PutObject's ETag is the body's MD5; a multipart one ends in "-<parts>".
    assert written.etag == hashlib.md5(data).hexdigest()
    assert await read_all(backend, ref) == data
    assert s3_server.multipart_uploads(backend.bucket) == []


async def test_empty_body_stores_an_empty_object(backend: S3Backend) -> None:
    ref = await backend.new_object("/empty")

    written = await backend.write(ref, chunks_of())

    assert (written.size, written.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert await read_all(backend, ref) == b""
    assert await read_all(backend, ref, offset=0, length=0) == b""


async def test_fifty_mib_upload_is_multipart_with_its_checksum_and_ranges(
    backend: S3Backend, s3_server: S3Server
) -> None:
    count = 50
    digest = hashlib.sha256()
    for index in range(count):
        digest.update(block(index))
    ref = await backend.new_object("/big.bin")

    written = await backend.write(ref, blocks(count))

    size = count * MiB
    assert written.size == size
    assert written.sha256 == digest.hexdigest()
    assert written.etag.endswith("-7")  # 8 MiB parts: six full, one of 2 MiB
    assert s3_server.multipart_uploads(backend.bucket) == []

    part = 8 * MiB
    for offset, length in [
        (0, 100),  # start
        (25 * MiB + 123, 1000),  # middle
        (part - 10, 20),  # across the first part boundary
        (part - 1, part + 2),  # spans a whole part and both its boundaries
        (size - 100, 100),  # the end
        (6 * part, size - 6 * part),  # exactly the short last part
    ]:
        assert await read_all(backend, ref, offset=offset, length=length) == expected(
            offset, length
        ), (offset, length)
    assert await read_all(backend, ref, offset=size - 5) == expected(size - 5, 5)

    received = hashlib.sha256()
    sizes = []
    async for chunk in await backend.read(ref):
        received.update(chunk)
        sizes.append(len(chunk))
    assert received.hexdigest() == written.sha256
    assert sum(sizes) == size
    assert set(sizes) == {MiB}  # streamed in chunk_size pieces


async def test_upload_that_breaks_off_leaves_no_object_no_parts_and_old_content(
    backend: S3Backend, s3_server: S3Server
) -> None:
    previous = await backend.new_object("/f.txt")
    await backend.write(previous, chunks_of(b"old content"))
    broken = await backend.new_object("/f.txt")

    async def breaks_off() -> AsyncIterator[bytes]:
        for index in range(12):  # one whole 8 MiB part is uploaded before the break
            yield block(index)
        raise BrokeOff("client went away")

    with pytest.raises(BrokeOff):
        await backend.write(broken, breaks_off())

    assert s3_server.keys(backend.bucket) == [previous.key]
    assert s3_server.multipart_uploads(backend.bucket) == []
    assert await read_all(backend, previous) == b"old content"
    with pytest.raises(NotFound):
        await backend.read(broken)


async def test_body_is_read_on_while_the_previous_part_uploads(
    backend: S3Backend, s3_server: S3Server
) -> None:
    ref = await backend.new_object("/overlapped.bin")
    parts_done_when_pulled_on: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for index in range(20):
            yield block(index)
            if index == 7:  # the first 8 MiB part has just been handed over
                parts_done_when_pulled_on.extend(s3_server.uploaded_parts(backend.bucket, ref.key))

    written = await backend.write(ref, body())

    assert parts_done_when_pulled_on == []
    assert written.etag.endswith("-3")
    assert await read_all(backend, ref) == expected(0, 20 * MiB)
    assert s3_server.multipart_uploads(backend.bucket) == []


async def test_several_parts_in_flight_keep_their_order(
    s3_settings: BackendSettings, s3_server: S3Server
) -> None:
    s3 = S3Backend(s3_settings, parts_in_flight=3)
    await s3.start()
    try:
        ref = await s3.new_object("/parallel.bin")
        written = await s3.write(ref, blocks(37))

        assert written.size == 37 * MiB
        assert written.etag.endswith("-5")
        assert await read_all(s3, ref) == expected(0, 37 * MiB)
    finally:
        await s3.close()
    assert s3_server.multipart_uploads(s3_settings.s3_bucket_name) == []


async def test_part_cut_off_midway_aborts_the_upload_while_the_body_still_arrives(
    s3_settings: BackendSettings, s3_server: S3Server
) -> None:
    async with CuttingProxy(s3_server.port, upload_limit=2 * MiB) as proxy:
        # Every attempt is cut off the same way: retries would only add backoff.
        update = {"s3_endpoint": proxy.endpoint, "s3_max_attempts": 1}
        s3 = S3Backend(s3_settings.model_copy(update=update))
        await s3.start()
        try:
            ref = await s3.new_object("/cut.bin")
            with pytest.raises(BackendUnavailable):
                await s3.write(ref, blocks(40))
        finally:
            await s3.close()

    assert proxy.cuts > 0
    assert s3_server.multipart_uploads(s3_settings.s3_bucket_name) == []
    assert s3_server.keys(s3_settings.s3_bucket_name) == []


async def test_a_request_cut_off_is_attempted_s3_max_attempts_times(
    moto_s3: MotoServer,
) -> None:
    """botocore's standard retries, ``s3_max_attempts`` attempts in all (3 unless set):
    each attempt of a PutObject cut off midway cuts as many connections as the one
    attempt of ``s3_max_attempts=1`` (aiohttp itself resends an idempotent request once
    on a reset connection)."""
    bucket = f"callfs-{uuid.uuid4().hex[:16]}"
    moto_s3.create_bucket(bucket)
    async with CuttingProxy(moto_s3.port, upload_limit=MiB) as proxy:
        default = BackendSettings(
            s3_access_key=moto_s3.access_key,
            s3_secret_key=moto_s3.secret_key,
            s3_region=moto_s3.region,
            s3_bucket_name=bucket,
            s3_endpoint=proxy.endpoint,
        )
        cuts = []
        for settings in (default, default.model_copy(update={"s3_max_attempts": 1})):
            before = proxy.cuts
            s3 = S3Backend(settings)
            await s3.start()
            try:
                with pytest.raises(BackendUnavailable):
                    await s3.write(await s3.new_object("/cut.bin"), chunks_of(block(0), block(1)))
            finally:
                await s3.close()
            cuts.append(proxy.cuts - before)

    assert cuts[1] >= 1
    assert cuts[0] == 3 * cuts[1], cuts
    assert moto_s3.keys(bucket) == []


async def test_cancelled_upload_aborts_its_multipart_upload(
    backend: S3Backend, s3_server: S3Server
) -> None:
    ref = await backend.new_object("/cancelled.bin")
    first_part_sent = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        for index in range(8):
            yield block(index)
        first_part_sent.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(backend.write(ref, stalls()))
    await first_part_sent.wait()
    assert s3_server.multipart_uploads(backend.bucket) == [ref.key]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert s3_server.multipart_uploads(backend.bucket) == []
    assert s3_server.keys(backend.bucket) == []


async def test_delete_removes_the_object_and_a_missing_one_is_fine(
    backend: S3Backend, s3_server: S3Server
) -> None:
    ref = await backend.new_object("/gone.txt")
    await backend.write(ref, chunks_of(b"bytes"))

    await backend.delete(ref)
    await backend.delete(ref)

    assert s3_server.keys(backend.bucket) == []
    with pytest.raises(NotFound):
        await backend.read(ref)


async def test_missing_key_is_not_found_and_the_log_names_it(
    backend: S3Backend, caplog: pytest.LogCaptureFixture
) -> None:
    ref = await backend.new_object("/missing")

    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(NotFound):
        await backend.read(ref)

    assert ref.key in caplog.text
    assert "missing" in caplog.text


async def test_ranged_read_of_a_missing_key_is_not_found(backend: S3Backend) -> None:
    ref = await backend.new_object("/missing")

    with pytest.raises(NotFound):
        await backend.read(ref, offset=10, length=5)
    with pytest.raises(NotFound):
        await backend.read(ref, offset=0, length=0)


async def test_range_starting_beyond_the_end_is_not_satisfiable(backend: S3Backend) -> None:
    ref = await backend.new_object("/short")
    await backend.write(ref, chunks_of(b"12345"))

    with pytest.raises(RangeNotSatisfiable):
        await backend.read(ref, offset=10, length=5)


async def test_missing_bucket_is_backend_unavailable_with_a_clear_log(
    s3_settings: BackendSettings, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = f"callfs-absent-{uuid.uuid4().hex[:8]}"
    s3 = S3Backend(s3_settings.model_copy(update={"s3_bucket_name": bucket}))
    await s3.start()
    try:
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            with pytest.raises(BackendUnavailable) as reading:
                await s3.read(await s3.new_object("/x"))
            with pytest.raises(BackendUnavailable):
                await s3.write(await s3.new_object("/x"), chunks_of(b"x"))
    finally:
        await s3.close()

    assert reading.value.message == "S3 is unavailable"
    assert f"bucket {bucket!r} does not exist" in caplog.text


async def test_wrong_secret_is_backend_unavailable_and_logs_denial_without_secrets(
    seaweedfs_s3: SeaweedS3Server, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = f"callfs-{uuid.uuid4().hex[:16]}"
    seaweedfs_s3.create_bucket(bucket)
    wrong_secret = "wrong-secret-0123456789"
    settings = BackendSettings(
        s3_access_key=seaweedfs_s3.access_key,
        s3_secret_key=wrong_secret,
        s3_bucket_name=bucket,
        s3_endpoint=seaweedfs_s3.endpoint,
    )
    s3 = S3Backend(settings)
    await s3.start()
    try:
        with (
            caplog.at_level(logging.ERROR, logger=LOGGER),
            pytest.raises(BackendUnavailable),
        ):
            await s3.write(await s3.new_object("/x"), chunks_of(b"x"))
    finally:
        await s3.close()

    assert "denied" in caplog.text
    assert wrong_secret not in caplog.text
    assert seaweedfs_s3.secret_key not in caplog.text
    assert seaweedfs_s3.keys(bucket) == []


@pytest.mark.parametrize("server_type", [MotoServer, SeaweedS3Server])
async def test_stopped_server_makes_operations_backend_unavailable(
    server_type: type[S3Server], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = server_type(tmp_path / "s3")
    await asyncio.to_thread(server.start)
    try:
        server.create_bucket("callfs-stopped")
        settings = BackendSettings(
            s3_access_key=server.access_key,
            s3_secret_key=server.secret_key,
            s3_bucket_name="callfs-stopped",
            s3_endpoint=server.endpoint,
            # Retrying a refused connection only adds backoff; one attempt shows the mapping.
            s3_max_attempts=1,
        )
        s3 = S3Backend(settings)
        await s3.start()
        try:
            ref = await s3.new_object("/before")
            await s3.write(ref, chunks_of(b"stored"))
            await asyncio.to_thread(server.stop)

            with caplog.at_level(logging.WARNING, logger=LOGGER):
                with pytest.raises(BackendUnavailable) as reading:
                    await s3.read(ref)
                with pytest.raises(BackendUnavailable):
                    await s3.write(await s3.new_object("/after"), chunks_of(b"x"))
        finally:
            await s3.close()
    finally:
        server.stop()

    assert reading.value.message == "S3 is unavailable"
    assert "unreachable" in caplog.text


async def test_instrumented_s3_counts_each_operation_once_whatever_it_asks_s3(
    s3_settings: BackendSettings,
) -> None:
    settings = s3_settings.model_copy(update={"s3_part_size": 5 * MiB})
    metrics = Metrics()
    inner = S3Backend(settings, list_page_size=1)
    s3 = InstrumentedBackend(inner, metrics)
    await s3.start()
    try:
        ref = await s3.new_object("/observed")
        # A multipart upload (two parts) and a listing of two pages are still one
        # operation each.
        await s3.write(ref, blocks(6))
        await s3.write(await s3.new_object("/small"), chunks_of(b"x"))
        assert len([stored async for stored in s3.list_objects()]) == 2
        await read_all(s3, ref)
        await s3.delete(ref)
        with pytest.raises(NotFound):
            await s3.read(ref)
    finally:
        await s3.close()

    def count(operation: str) -> float | None:
        labels = {"backend_type": "s3", "operation": operation}
        return metrics.registry.get_sample_value("callfs_backend_ops_total", labels)

    assert {op: count(op) for op in ("write", "list", "read", "delete")} == {
        "write": 2.0,
        "list": 1.0,
        "read": 2.0,
        "delete": 1.0,
    }
    # S3 is not a storage node: no proxy operations.
    assert (
        metrics.registry.get_sample_value(
            "callfs_proxy_operations_total", {"operation": "read", "result": "error"}
        )
        is None
    )


async def test_check_connectivity_passes_for_a_reachable_bucket(
    s3_settings: BackendSettings,
) -> None:
    await check_connectivity(s3_settings)


async def test_check_connectivity_says_when_the_bucket_does_not_exist(
    s3_settings: BackendSettings,
) -> None:
    settings = s3_settings.model_copy(update={"s3_bucket_name": "callfs-no-such-bucket"})

    with pytest.raises(BackendUnavailable) as failed:
        await check_connectivity(settings)

    assert "'callfs-no-such-bucket' does not exist" in failed.value.message
    assert s3_settings.s3_endpoint in failed.value.message


async def test_check_connectivity_names_the_unset_bucket_setting() -> None:
    with pytest.raises(BackendUnavailable) as failed:
        await check_connectivity(BackendSettings())

    assert "CALLFS_BACKEND_S3_BUCKET_NAME" in failed.value.message
