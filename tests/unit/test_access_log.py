"""The access log: one line per answered request, written a loop turn at a time."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Iterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from callfs import logs
from callfs.addresses import TrustedProxies
from callfs.logs import AccessLog
from callfs.metrics import Metrics
from callfs.web import PATH_KEY, EdgeMiddleware


class Stream(io.StringIO):
    """A stderr stand-in that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


@pytest.fixture
def stream() -> Iterator[Stream]:
    """The process-wide access log pointed at a fresh stream, and turned off after."""
    target = Stream()
    logs.access.configure(target, "json")
    try:
        yield target
    finally:
        logs.access.configure(None, "json")


async def test_lines_of_one_loop_turn_go_out_in_one_write() -> None:
    stream = Stream()
    log = AccessLog()
    log.configure(stream, "json")
    log.write("GET", "/v1/files/{path:path}", 200, 0.0004, "a" * 32)
    log.write("PUT", "/v1/files/{path:path}", 201, 0.0123, "b" * 32)
    assert stream.writes == 0
    await asyncio.sleep(0)
    assert stream.writes == 1
    first, second = (json.loads(line) for line in stream.lines())
    assert first["logger"] == "callfs.access"
    assert (first["method"], first["route"], first["status"]) == (
        "GET",
        "/v1/files/{path:path}",
        200,
    )
    assert first["request_id"] == "a" * 32
    assert first["message"] == "GET /v1/files/{path:path} 200 0.4ms"
    assert (second["status"], second["duration_ms"], second["request_id"]) == (201, 12.3, "b" * 32)


def test_without_a_loop_a_line_is_written_at_once_in_console_format() -> None:
    stream = Stream()
    log = AccessLog()
    log.configure(stream, "console")
    log.write("DELETE", "unmatched", 404, 0.002, "r1", client="127.0.0.1", bytes_out=60)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    \[r1\] callfs\.access: "
        r"DELETE unmatched 404 2\.0ms path=- user=- client=127\.0\.0\.1 in=0 out=60",
        stream.getvalue().rstrip("\n"),
    )


def test_a_json_line_carries_every_field_and_the_formatters_time() -> None:
    stream = Stream()
    log = AccessLog()
    log.configure(stream, "json")
    log.write(
        "PUT",
        "/v1/files/{path:path}",
        201,
        0.0031234,
        "abc",
        path="/docs/résumé.txt",
        user="alice",
        client="203.0.113.9",
        bytes_in=3000,
        bytes_out=212,
    )
    line = json.loads(stream.getvalue())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line.pop("time"))
    assert line == {
        "level": "info",
        "logger": "callfs.access",
        "request_id": "abc",
        "message": "PUT /v1/files/{path:path} 201 3.1ms",
        "method": "PUT",
        "route": "/v1/files/{path:path}",
        "path": "/docs/résumé.txt",
        "status": 201,
        "duration_ms": 3.123,
        "bytes_in": 3000,
        "bytes_out": 212,
        "user": "alice",
        "client": "203.0.113.9",
    }


async def test_off_writes_nothing() -> None:
    stream = Stream()
    log = AccessLog()
    log.configure(stream, "json")
    log.configure(None, "json")
    log.write("GET", "/health", 200, 0.001, "r")
    await asyncio.sleep(0)
    assert not log.enabled
    assert stream.getvalue() == ""


async def test_every_answer_through_the_edge_is_logged_with_its_request_id(stream: Stream) -> None:
    async def teapot(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"short and stout"})

    edge = EdgeMiddleware(teapot, metrics=Metrics())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=edge), base_url="http://callfs"
    ) as client:
        answers = [
            await client.get("/brew", headers={"x-request-id": f"req-{number}"})
            for number in range(3)
        ]
    await asyncio.sleep(0)
    assert [answer.status_code for answer in answers] == [418] * 3
    logged = [json.loads(line) for line in stream.lines()]
    assert [(line["request_id"], line["status"], line["route"]) for line in logged] == [
        (f"req-{number}", 418, "unmatched") for number in range(3)
    ]


async def test_the_edge_counts_body_bytes_and_believes_only_trusted_proxies(
    stream: Stream,
) -> None:
    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        scope[PATH_KEY] = "/echo"
        received = b""
        more = True
        while more:
            message = await receive()
            received += message.get("body", b"")
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": received, "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})

    edge = EdgeMiddleware(echo, metrics=Metrics(), proxies=TrustedProxies(["127.0.0.0/8"]))
    clients = [("127.0.0.1", 123), ("192.0.2.1", 123)]
    for client in clients:
        transport = httpx.ASGITransport(app=edge, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://callfs") as http:
            answer = await http.post(
                "/echo", content=b"x" * 70_000, headers={"x-forwarded-for": "198.51.100.4"}
            )
            assert len(answer.content) == 70_001
    await asyncio.sleep(0)
    logged = [json.loads(line) for line in stream.lines()]
    assert [(line["client"], line["path"], line["user"]) for line in logged] == [
        ("198.51.100.4", "/echo", None),
        ("192.0.2.1", "/echo", None),
    ]
    assert {(line["bytes_in"], line["bytes_out"]) for line in logged} == {(70_000, 70_001)}
