"""Both gateway replicas serve one namespace: a change through one door shows through the other."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.target import Target

pytestmark = pytest.mark.e2e


def test_write_through_one_gateway_read_through_the_other(
    user1: httpx.Client, user1_door2: httpx.Client, home: str
) -> None:
    path = f"/v1/files{home}/ping-pong.txt"
    assert user1.post(path, content=b"v1").status_code == 201
    assert user1_door2.get(path).content == b"v1"

    assert user1_door2.put(path, content=b"version two").status_code == 200
    assert user1.get(path).content == b"version two"

    assert user1.patch(path, json={"mode": "0600"}).status_code == 200
    assert user1_door2.head(path).headers["x-callfs-mode"] == "0600"

    assert user1_door2.patch(path, json={"name": "renamed.txt"}).status_code == 200
    assert user1.get(path).status_code == 404
    assert user1.get(f"/v1/files{home}/renamed.txt").content == b"version two"

    assert user1.delete(f"/v1/files{home}/renamed.txt").status_code == 204
    assert user1_door2.get(f"/v1/files{home}/renamed.txt").status_code == 404


def test_listings_agree_across_gateways(
    user1: httpx.Client, user1_door2: httpx.Client, home: str
) -> None:
    for index in range(4):
        client = user1 if index % 2 else user1_door2
        assert client.post(f"/v1/files{home}/n{index}.txt", content=b"x").status_code == 201
    first = user1.get(f"/v1/directories{home}", params={"recursive": "true"}).json()
    second = user1_door2.get(f"/v1/directories{home}", params={"recursive": "true"}).json()
    assert first["items"] == second["items"]
    assert first["count"] == 4


def test_racing_creates_through_both_doors_have_one_winner(target: Target, home: str) -> None:
    path = f"/v1/files{home}/contested.txt"

    def create(index: int) -> int:
        client = target.client(1, door=1 + index % 2)
        return client.post(path, content=str(index).encode()).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(create, range(6)))
    assert statuses == [201] + [409] * 5
    assert target.client(1, door=2).get(path).content.decode() in {str(i) for i in range(6)}
