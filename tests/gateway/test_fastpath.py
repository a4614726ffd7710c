"""The fast path answers GET, HEAD, PUT and POST of files itself, with the routes'
answers and errors, and hands every other request to the framework."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from callfs_gateway.fastpath import FilesFastPath
from starlette.types import Receive, Scope, Send

from tests.support.harness import USERS, Cluster

TOKEN = {"Authorization": f"Bearer {USERS['alice'][0]}"}


class Downstream:
    """The framework behind the fast path: records what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"framework"})


@pytest.fixture
async def fast(cluster: Cluster) -> AsyncIterator[tuple[httpx.AsyncClient, Downstream]]:
    await cluster.client().put("/v1/files/f.txt", content=b"fast bytes")
    downstream = Downstream()
    transport = httpx.ASGITransport(app=FilesFastPath(downstream, cluster.gateway.app))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        yield client, downstream


async def test_file_reads_never_reach_the_framework(
    fast: tuple[httpx.AsyncClient, Downstream],
) -> None:
    client, downstream = fast

    got = await client.get("/v1/files/f.txt", headers=TOKEN)
    head = await client.head("/v1/files/f.txt", headers=TOKEN)
    ranged = await client.get("/v1/files/f.txt", headers={**TOKEN, "Range": "bytes=5-"})

    assert (got.status_code, got.content) == (200, b"fast bytes")
    assert (head.status_code, head.headers["content-length"]) == (200, "10")
    assert (ranged.status_code, ranged.content) == (206, b"bytes")
    assert downstream.seen == []


async def test_file_writes_never_reach_the_framework(
    cluster: Cluster, fast: tuple[httpx.AsyncClient, Downstream]
) -> None:
    client, downstream = fast

    created = await client.post("/v1/files/n.txt?mode=0600", headers=TOKEN, content=b"new")
    folder = await client.post("/v1/files/d/", headers=TOKEN)
    replaced = await client.put("/v1/files/f.txt", headers=TOKEN, content=b"replaced")
    stale = await client.put(
        "/v1/files/f.txt", headers={**TOKEN, "If-Match": '"stale"'}, content=b"x"
    )
    again = await client.post("/v1/files/n.txt", headers=TOKEN, content=b"again")

    assert (created.status_code, created.json()["mode"]) == (201, "0600")
    assert (folder.status_code, folder.json()["type"]) == (201, "directory")
    assert replaced.status_code == 200
    assert (stale.status_code, stale.json()["code"]) == (412, "PRECONDITION_FAILED")
    assert (again.status_code, again.json()["code"]) == (409, "FILE_ALREADY_EXISTS")
    assert (await cluster.client().get("/v1/files/f.txt")).content == b"replaced"
    assert downstream.seen == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/v1/files/f.txt"),
        ("GET", "/v1/files"),
        ("PUT", "/v1/files"),
        ("GET", "/v1/directories/"),
        ("DELETE", "/v1/files/f.txt"),
        ("GET", "/health"),
    ],
)
async def test_everything_else_goes_to_the_framework(
    fast: tuple[httpx.AsyncClient, Downstream], method: str, path: str
) -> None:
    client, downstream = fast

    answer = await client.request(method, path, headers=TOKEN)

    assert (answer.status_code, downstream.seen) == (299, [(method, path)])


async def test_errors_are_the_documented_json(
    fast: tuple[httpx.AsyncClient, Downstream],
) -> None:
    client, _ = fast

    anonymous = await client.get("/v1/files/f.txt")
    missing = await client.get("/v1/files/nope.txt", headers=TOKEN)
    encoded = await client.get("/v1/fil%65s/f.txt", headers=TOKEN)
    unsatisfiable = await client.get("/v1/files/f.txt", headers={**TOKEN, "Range": "bytes=99-"})

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="callfs"'
    assert anonymous.json()["code"] == "AUTHENTICATION_FAILED"
    assert (missing.status_code, missing.json()["code"]) == (404, "FILE_NOT_FOUND")
    assert (encoded.status_code, encoded.json()["code"]) == (404, "NOT_FOUND")
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == "bytes */10"


async def test_an_unexpected_failure_is_a_bare_500(
    cluster: Cluster, fast: tuple[httpx.AsyncClient, Downstream]
) -> None:
    client, _ = fast
    cluster.gateway.app.state.filesystem = None  # any use of it now fails unexpectedly

    answer = await client.get("/v1/files/f.txt", headers=TOKEN)

    assert answer.status_code == 500
    assert answer.json() == {"code": "INTERNAL_ERROR", "message": "internal error"}
