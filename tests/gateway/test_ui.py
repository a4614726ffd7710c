"""``/ui/`` serves the web file browser from the package under its own policy; ``/`` leads
there; the API keeps its strict policy. (The page itself is driven in tests/ui.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from callfs_gateway.ui import ASSETS, UI_CSP

from tests.support.harness import make_settings, running_cluster

API_CSP = "default-src 'none'; frame-ancestors 'none'"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client without a key, of a running gateway."""
    async with running_cluster(make_settings(tmp_path, "sqlite", None)) as cluster:
        yield cluster.client("anonymous")


async def test_root_and_ui_redirect_relatively_to_the_page(client: httpx.AsyncClient) -> None:
    for url in ("/", "/ui"):
        for method in ("GET", "HEAD"):
            answer = await client.request(method, url)
            assert answer.status_code == 307, (method, url)
            # Relative: under an ingress prefix the page is found below the same prefix.
            assert answer.headers["location"] == "ui/"


async def test_page_runs_only_its_own_files_under_its_own_policy(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers.get_list("content-security-policy") == [UI_CSP]
    assert "unsafe" not in UI_CSP and "http" not in UI_CSP
    assert "form-action 'none'" in UI_CSP
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-request-id"]
    # No inline script or style, and nothing from elsewhere.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.DOTALL)
    assert scripts == [(' type="module" src="app.js"', "")]
    assert "<style" not in page.text and "style=" not in page.text
    assert re.search(r"\son[a-z]+=", page.text) is None
    assert "//" not in page.text
    for name, media_type in ASSETS.items():
        answer = await client.get(f"/ui/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith(media_type)
        assert answer.headers.get_list("content-security-policy") == [API_CSP]
        assert "http://" not in answer.text and "https://" not in answer.text
        assert "innerHTML" not in answer.text and "eval(" not in answer.text


async def test_only_the_pages_files_are_served(client: httpx.AsyncClient) -> None:
    for url in ("/ui/index.html.bak", "/ui/../pyproject.toml", "/ui/%2e%2e/app.py", "/ui/x/y"):
        answer = await client.get(url)
        assert answer.status_code == 404, url
        assert answer.json()["code"] == "NOT_FOUND"


async def test_the_api_keeps_its_strict_policy(client: httpx.AsyncClient) -> None:
    for url in ("/health", "/v1/directories/", "/v1/files/nothing"):
        answer = await client.get(url)
        assert answer.headers.get_list("content-security-policy") == [API_CSP], url


async def test_the_page_and_its_files_need_no_key_but_the_api_does(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/ui/")).status_code == 200
    assert (await client.get("/ui/api.js")).status_code == 200
    assert (await client.get("/v1/directories/")).status_code == 401


def test_the_files_ship_in_the_package() -> None:
    from importlib import resources

    static = resources.files("callfs_gateway").joinpath("static")
    assert {"index.html", *ASSETS} <= {item.name for item in static.iterdir()}
