"""Idempotent requests are retried after connection failures and 503s, with exponential
backoff (slept through an injected ``sleep``: no test waits); the others never are.

The failures are injected by a transport wrapping the real one: every request it lets
through reaches the real ``callfs dev``.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import httpx
import pytest

from callfs.client import AsyncClient, Client, Retry, TransportError, Unavailable
from tests.client.conftest import Server
from tests.client.transports import AsyncRecording, Recording


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class AsyncSleeps(Sleeps):
    async def __call__(self, seconds: float) -> None:  # type: ignore[override]
        self.calls.append(seconds)


def files(request: httpx.Request) -> bool:
    return request.url.path.startswith("/v1/files/")


def test_backoff_doubles_up_to_its_cap() -> None:
    retry = Retry(total=6, backoff_factor=0.5, backoff_max=3.0)
    assert [retry.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert retry.delay(0, after=2.0) == 2.0  # Retry-After, when longer
    assert retry.delay(0, after=60.0) == 3.0  # still capped
    assert Retry.of(None).total == 0 and Retry.of(2).total == 2
    with pytest.raises(ValueError):
        Retry(total=-1)


def test_reads_retry_connection_failures(server: Server, home: str) -> None:
    sleeps = Sleeps()
    transport = Recording()
    with Client(server.url, server.key, transport=transport, sleep=sleeps) as fs:
        fs.write(f"{home}/f", b"data")
        transport.connect_errors = 2
        assert fs.read(f"{home}/f") == b"data"
        assert len(transport.sent("GET", home)) == 3
        assert sleeps.calls == [0.2, 0.4]

        transport.connect_errors = 2
        assert fs.stat(f"{home}/f").size == 4  # HEAD
        transport.connect_errors = 1
        assert [e.name for e in fs.list(home)] == ["f"]
        transport.connect_errors = 1
        with fs.stream(f"{home}/f") as chunks:
            assert chunks.read() == b"data"


def test_retries_give_up_after_total(server: Server, home: str) -> None:
    sleeps = Sleeps()
    transport = Recording(connect_errors=10)
    retry = Retry(total=2, backoff_factor=1.0)
    with Client(server.url, server.key, transport=transport, sleep=sleeps, retries=retry) as fs:
        with pytest.raises(TransportError) as raised:
            fs.read(f"{home}/f")
        assert isinstance(raised.value.__cause__, httpx.ConnectError)
        assert len(transport.requests) == 3 and sleeps.calls == [1.0, 2.0]

    transport = Recording(connect_errors=1)
    with Client(server.url, server.key, transport=transport, retries=0) as fs:
        with pytest.raises(TransportError):
            fs.read(f"{home}/f")
        assert len(transport.requests) == 1


def test_503_is_retried_then_raised(server: Server, home: str) -> None:
    sleeps = Sleeps()
    transport = Recording(unavailable=2, rule=files)
    with Client(server.url, server.key, transport=transport, sleep=sleeps) as fs:
        fs.write(f"{home}/f", b"data")  # PUT of bytes: retried twice, then sent
        assert len(transport.sent("PUT")) == 3 and sleeps.calls == [0.2, 0.4]
        assert fs.read(f"{home}/f") == b"data"

        transport.unavailable, transport.retry_after = 2, "1"
        assert fs.read(f"{home}/f") == b"data"
        assert sleeps.calls[-2:] == [1.0, 1.0]  # Retry-After beats a shorter backoff

        transport.unavailable = 10
        with pytest.raises(Unavailable) as raised:
            fs.delete(f"{home}/f")
        assert raised.value.status == 503 and raised.value.code == "BACKEND_UNAVAILABLE"
        assert raised.value.request_id == "injected-503"
        assert len(transport.sent("DELETE")) == 4  # the first attempt and 3 retries
        transport.unavailable = 0
        fs.delete(f"{home}/f")
        assert not fs.exists(f"{home}/f")


def test_non_idempotent_requests_are_never_retried(server: Server, home: str) -> None:
    sleeps = Sleeps()
    transport = Recording(rule=files)
    with Client(server.url, server.key, transport=transport, sleep=sleeps) as fs:
        fs.write(f"{home}/f", b"data")
        for attempt in (
            lambda: fs.write(f"{home}/new", b"x", create_only=True),  # POST
            lambda: fs.mkdir(f"{home}/dir", parents=True),  # POST
            lambda: fs.rename(f"{home}/f", "g"),  # PATCH
            lambda: fs.chmod(f"{home}/f", 0o600),  # PATCH
            lambda: fs.write(f"{home}/f", iter([b"streamed"])),  # PUT of an iterator
            lambda: fs.write(f"{home}/f", io.BytesIO(b"from a file")),  # PUT of a file
        ):
            before = len(transport.requests)
            transport.connect_errors = 1
            with pytest.raises(TransportError):
                attempt()
            assert len(transport.requests) == before + 1
            transport.connect_errors = 0
            before = len(transport.requests)
            transport.unavailable = 1
            with pytest.raises(Unavailable):
                attempt()
            assert len(transport.requests) == before + 1
            transport.unavailable = 0
        assert sleeps.calls == []
        assert fs.read(f"{home}/f") == b"data"  # nothing above reached the server
        assert not fs.exists(f"{home}/new") and not fs.exists(f"{home}/dir")


def test_links_are_not_retried(server: Server, home: str) -> None:
    transport = Recording()
    with Client(server.url, server.key, transport=transport, sleep=Sleeps()) as fs:
        fs.write(f"{home}/f", b"data")
        link = fs.link(f"{home}/f")
        transport.connect_errors = 1
        with pytest.raises(TransportError):
            fs.download(link)  # single-use: a retry could find it consumed
        assert fs.download(link) == b"data"


async def test_async_retries(server: Server, home: str) -> None:
    sleeps = AsyncSleeps()
    transport = AsyncRecording(rule=files)
    async with AsyncClient(server.url, server.key, transport=transport, sleep=sleeps) as fs:
        await fs.write(f"{home}/f", b"data")
        transport.connect_errors = 2
        assert await fs.read(f"{home}/f") == b"data"
        transport.unavailable = 3
        await fs.write(f"{home}/f", b"again")
        assert sleeps.calls == [0.2, 0.4, 0.2, 0.4, 0.8]
        transport.unavailable = 4
        with pytest.raises(Unavailable) as raised:
            await fs.stat(f"{home}/f")  # a HEAD: no body, yet the 503's one code
        assert raised.value.code == "BACKEND_UNAVAILABLE"
        assert len(transport.sent("GET")) == 3  # the read above only: no GET to learn it

        transport.unavailable = 0
        transport.connect_errors = 1

        async def stream() -> AsyncIterator[bytes]:
            yield b"streamed"

        with pytest.raises(TransportError):
            await fs.write(f"{home}/f", stream())
        transport.connect_errors = 1
        with pytest.raises(TransportError):
            await fs.write(f"{home}/g", b"x", create_only=True)
        assert await fs.read(f"{home}/f") == b"again"
