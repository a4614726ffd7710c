"""POST /v1/links/generate refuses any body that is not a small flat UTF-8 JSON object."""

from __future__ import annotations

import pytest

from tests.links.support import error_code
from tests.support.harness import Cluster


def deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(deep_array(100_000), id="array-100000-deep"),
        pytest.param(deep_object(100_000), id="object-100000-deep"),
        # Deep enough to exhaust the recursion limit, small enough for the 8 KiB cap.
        pytest.param(deep_array(4_000), id="array-4000-deep"),
        pytest.param(deep_object(1_300), id="object-1300-deep"),
        pytest.param(b'{"path": "/f.txt", "extra": [1]}', id="array-value"),
        pytest.param(b'{"path": "/f.txt", "extra": {"a": 1}}', id="object-value"),
        pytest.param(b"\xef\xbb\xbf" + b'{"path": "/f.txt"}', id="utf-8-bom"),
        pytest.param('{"path": "/f.txt"}'.encode("utf-16"), id="utf-16"),
        pytest.param('{"path": "/f.txt"}'.encode("utf-16-le"), id="utf-16-le"),
        pytest.param('{"path": "/f.txt"}'.encode("utf-32"), id="utf-32"),
        pytest.param('{"path": "/f.txt"}'.encode("utf-32-be"), id="utf-32-be"),
    ],
)
async def test_generate_body_not_a_flat_utf8_object_is_400(cluster: Cluster, body: bytes) -> None:
    client = cluster.client("alice")
    assert (await client.post("/v1/files/f.txt", content=b"x")).status_code == 201
    response = await client.post(
        "/v1/links/generate", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert error_code(response) == "BAD_REQUEST"


async def test_generate_flat_utf8_body_is_201(cluster: Cluster) -> None:
    client = cluster.client("alice")
    assert (await client.post("/v1/files/ñ.txt", content=b"x")).status_code == 201
    response = await client.post(
        "/v1/links/generate",
        content='{"path": "/ñ.txt", "expiry_seconds": 60, "note": null}'.encode(),
    )
    assert response.status_code == 201, response.text
