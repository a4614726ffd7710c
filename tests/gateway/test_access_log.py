"""The access log and the request id end to end: one JSON line per request at the
gateway, and the storage node's lines for the same request carrying its id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from callfs import logs
from tests.support.harness import Cluster, make_settings, running_cluster
from tests.support.polling import wait_until

FIELDS = {
    "time",
    "level",
    "logger",
    "request_id",
    "message",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "bytes_in",
    "bytes_out",
    "user",
    "client",
}


class Records(logging.Handler):
    """The node's log lines as its JSON formatter writes them, request id included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(logs.RequestIdFilter())
        self.setFormatter(logs.JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def access() -> Iterator[io.StringIO]:
    """The access log on, into a buffer; off after."""
    stream = io.StringIO()
    logs.access.configure(stream, "json")
    try:
        yield stream
    finally:
        logs.access.configure(None, "json")


@pytest.fixture
def node_lines() -> Iterator[Records]:
    """Every line the storage nodes log, at debug level."""
    records = Records()
    node_logger = logging.getLogger("callfs_storage_node")
    level = node_logger.level
    node_logger.addHandler(records)
    node_logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        node_logger.removeHandler(records)
        node_logger.setLevel(level)


@pytest.fixture(params=["trusted", "untrusted"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    """A gateway whose trusted proxies include the test's loopback address, or not."""
    proxies = ["127.0.0.1"] if request.param == "trusted" else ["10.0.0.0/8"]
    settings = make_settings(tmp_path, "sqlite", None, server={"trusted_proxies": proxies})
    async with running_cluster(settings) as running:
        yield running


def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_an_upload_is_one_access_line_and_its_node_lines_carry_the_request_id(
    cluster: Cluster, access: io.StringIO, node_lines: Records
) -> None:
    trusted = cluster.settings.server.trusted_proxies == ["127.0.0.1"]
    body = b"\xe2\x82\xac" * 1000
    response = await cluster.client("alice").put(
        "/v1/files/r%C3%A9sum%C3%A9.txt",
        content=body,
        headers={"X-Request-ID": "abc", "X-Forwarded-For": "203.0.113.9"},
    )
    assert response.status_code == 201
    await wait_until(lambda: bool(access.getvalue()), what="the access line")

    (line,) = access_lines(access)
    assert set(line) == FIELDS
    assert line["request_id"] == "abc"
    assert (line["method"], line["route"], line["path"]) == (
        "PUT",
        "/v1/files/{path:path}",
        "/résumé.txt",
    )
    assert (line["status"], line["user"], line["logger"]) == (201, "alice", "callfs.access")
    assert line["bytes_in"] == len(body) == 3000
    assert line["bytes_out"] == len(response.content)
    assert line["client"] == ("203.0.113.9" if trusted else "127.0.0.1")
    assert line["duration_ms"] > 0

    writes = [entry for entry in node_lines.lines if entry["message"].endswith("/Write")]
    assert writes
    assert {entry["request_id"] for entry in writes} == {"abc"}


async def test_a_download_counts_the_bytes_sent_and_a_refusal_names_no_user(
    cluster: Cluster, access: io.StringIO
) -> None:
    alice = cluster.client("alice")
    await alice.put("/v1/files/a.txt", content=b"x" * 4096)
    read = await alice.get("/v1/files/a.txt", headers={"X-Request-ID": "r2"})
    refused = await cluster.client("anonymous").get("/v1/files/a.txt")
    assert (read.status_code, refused.status_code) == (200, 401)
    await wait_until(lambda: len(access_lines(access)) == 3, what="three access lines")

    _, get, anonymous = access_lines(access)
    assert (get["request_id"], get["path"], get["user"]) == ("r2", "/a.txt", "alice")
    assert (get["bytes_in"], get["bytes_out"]) == (0, 4096)
    assert (anonymous["status"], anonymous["user"], anonymous["path"]) == (401, None, None)
    assert anonymous["client"] == "127.0.0.1"
