"""Helpers for the link suites: issuing links, reading tokens, running a link-service alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from callfs_link_service.app import create_app
from callfs_link_service.tokens import LinkToken, Signer

from callfs.serving import api_server, bound_port
from callfs.settings import Settings
from tests.support.harness import LINK_SECRET, USERS

# Limits high enough that only the rate-limit tests ever meet them.
GENEROUS_LIMITS = {
    "generate_rate": 10_000,
    "generate_burst": 10_000,
    "download_rate": 10_000,
    "download_burst": 10_000,
}


def error_code(response: httpx.Response) -> str:
    """The ``code`` of an API error body, checking it is the documented JSON."""
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message"}
    code: str = body["code"]
    return code


async def issue(
    client: httpx.AsyncClient, path: str, *, user: str | None = None, **body: Any
) -> dict[str, Any]:
    """Generate a link to ``path`` (as ``user``, else as the client is) and return the 201 body."""
    headers = auth(user) if user else None
    response = await client.post("/v1/links/generate", json={"path": path, **body}, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def claims(token: str, secret: str = LINK_SECRET) -> LinkToken:
    """What a token says (its id, path and expiry)."""
    return Signer([secret.encode()]).verify(token)


def download_path(link: dict[str, Any]) -> str:
    """The path part of a link's URL, to send to a test server."""
    return f"/download/{link['token']}"


@contextlib.asynccontextmanager
async def link_service(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``callfs link-service``'s app alone (its own runtime) on a free port.

    Yields a client without credentials; pass ``headers=auth("alice")`` to act as a user.
    """
    app = create_app(settings)
    server = api_server(app, settings)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("link-service stopped before it started")
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{bound_port(server)}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await task


def auth(user: str) -> dict[str, str]:
    """The Authorization header of one of the harness's users."""
    return {"Authorization": f"Bearer {USERS[user][0]}"}
