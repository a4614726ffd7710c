"""API.md's directories endpoint: recursion, depth, pages, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from callfs_gateway import filesystem

from callfs.entry import Entry
from callfs.metadata.base import MetadataStore
from tests.gateway.test_files import error_code
from tests.support.harness import Cluster

# On PostgreSQL as well: these answers depend on the store's own behaviour.
pytestmark = pytest.mark.both_stores

TREE = ["d/a.txt", "d/b/c.txt", "d/b/e/f.txt", "d/b/e/g/h.txt", "d/z.txt", "d-sibling.txt"]


async def make_tree(cluster: Cluster) -> None:
    client = cluster.client("alice")
    for path in TREE:
        assert (await client.post(f"/v1/files/{path}", content=path.encode())).status_code == 201


async def test_immediate_children(cluster: Cluster) -> None:
    await make_tree(cluster)
    response = await cluster.client("alice").get("/v1/directories/d")
    assert response.status_code == 200
    body = response.json()
    assert body["path"] == "/d"
    assert body["type"] == "directory"
    assert body["recursive"] is False
    assert body["count"] == 3
    assert [i["path"] for i in body["items"]] == ["/d/a.txt", "/d/b", "/d/z.txt"]
    assert body["next_cursor"] is None
    assert response.headers["x-callfs-count"] == "3"
    assert response.headers["x-callfs-recursive"] == "false"


async def test_recursive_sorted_by_path(cluster: Cluster) -> None:
    await make_tree(cluster)
    response = await cluster.client("alice").get("/v1/directories/d", params={"recursive": "true"})
    paths = [i["path"] for i in response.json()["items"]]
    assert paths == sorted(paths)
    assert set(paths) == {
        "/d/a.txt",
        "/d/b",
        "/d/b/c.txt",
        "/d/b/e",
        "/d/b/e/f.txt",
        "/d/b/e/g",
        "/d/b/e/g/h.txt",
        "/d/z.txt",
    }
    assert response.headers["x-callfs-recursive"] == "true"


async def test_max_depth(cluster: Cluster) -> None:
    await make_tree(cluster)
    client = cluster.client("alice")
    zero = await client.get("/v1/directories/d", params={"recursive": "true", "max_depth": 0})
    assert [i["path"] for i in zero.json()["items"]] == ["/d/a.txt", "/d/b", "/d/z.txt"]
    assert zero.json()["max_depth"] == 0
    one = await client.get("/v1/directories/d", params={"recursive": "true", "max_depth": 1})
    assert [i["path"] for i in one.json()["items"]] == [
        "/d/a.txt",
        "/d/b",
        "/d/b/c.txt",
        "/d/b/e",
        "/d/z.txt",
    ]


async def test_max_depth_defaults_to_100_and_is_clamped_at_1000(cluster: Cluster) -> None:
    await make_tree(cluster)
    client = cluster.client("alice")
    default = await client.get("/v1/directories/d", params={"recursive": "true"})
    assert default.json()["max_depth"] == 100
    assert "/d/b/e/f.txt" in [i["path"] for i in default.json()["items"]]
    deep = await client.get("/v1/directories/d", params={"recursive": "true", "max_depth": 5000})
    assert deep.status_code == 200
    assert deep.json()["max_depth"] == 1000


async def test_pages_with_limit_and_cursor(cluster: Cluster) -> None:
    await make_tree(cluster)
    client = cluster.client("alice")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"recursive": "true", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get("/v1/directories/d", params=params)).json()
        assert body["count"] == len(body["items"]) <= 3
        seen += [i["path"] for i in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 8
    assert seen == sorted(seen)


async def test_root_listing(cluster: Cluster) -> None:
    await make_tree(cluster)
    for url in ("/v1/directories", "/v1/directories/"):
        body = (await cluster.client("alice").get(url)).json()
        assert body["path"] == "/"
        assert [i["path"] for i in body["items"]] == ["/d", "/d-sibling.txt"]


async def test_absent_is_404_and_file_is_400(cluster: Cluster) -> None:
    await make_tree(cluster)
    client = cluster.client("alice")
    absent = await client.get("/v1/directories/none")
    assert absent.status_code == 404
    assert error_code(absent) == "FILE_NOT_FOUND"
    file = await client.get("/v1/directories/d/a.txt")
    assert file.status_code == 400
    assert error_code(file) == "NOT_A_DIRECTORY"


async def test_bad_query_values_are_400(cluster: Cluster) -> None:
    await make_tree(cluster)
    client = cluster.client("alice")
    for params in (
        {"max_depth": "-1"},
        {"max_depth": "deep"},
        {"limit": "0"},
        {"recursive": "maybe"},
        {"cursor": "!!!"},
    ):
        response = await client.get("/v1/directories/d", params=params)
        assert response.status_code == 400, params
        assert error_code(response) == "BAD_REQUEST"


async def test_recursive_listing_skips_unreadable_subdirectories(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/mixed/open/a.txt", content=b"a")
    await alice.post("/v1/files/mixed/closed/b.txt", content=b"b")
    await alice.patch("/v1/files/mixed/closed", json={"mode": "0700"})
    body = (
        await cluster.client("bob").get("/v1/directories/mixed", params={"recursive": "true"})
    ).json()
    assert [i["path"] for i in body["items"]] == [
        "/mixed/closed",
        "/mixed/open",
        "/mixed/open/a.txt",
    ]


async def test_a_non_recursive_listing_reports_max_depth_zero(cluster: Cluster) -> None:
    await make_tree(cluster)
    client = cluster.client("alice")
    for params in ({}, {"max_depth": 7}, {"recursive": "false", "max_depth": 3}):
        response = await client.get("/v1/directories/d", params=params)
        assert response.status_code == 200
        assert (response.json()["max_depth"], response.json()["count"]) == (0, 3), params


class GatedStore:
    """The gateway's store, recording its listing reads; from the ``hold``-th read on,
    each waits for ``gate``.
    """

    def __init__(self, inner: MetadataStore, hold: int) -> None:
        self.inner = inner
        self.hold = hold
        self.reads = 0
        self.counts = 0
        self.gate = asyncio.Event()

    async def count_children(self, path: str, **options: Any) -> int:
        self.counts += 1
        return await self.inner.count_children(path, **options)

    async def list_tree(self, path: str, **options: Any) -> list[Entry]:
        await self._read()
        return await self.inner.list_tree(path, **options)

    async def list_children_encoded(self, path: str, **options: Any) -> list[tuple[str, bytes]]:
        await self._read()
        return await self.inner.list_children_encoded(path, **options)

    async def _read(self) -> None:
        self.reads += 1
        if self.reads >= self.hold:
            await self.gate.wait()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def gated(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Callable[[int], GatedStore]:
    """Listings read pages of 4 rows from a :class:`GatedStore` held from its n-th read."""
    fs = cluster.gateway.app.state.filesystem
    monkeypatch.setattr(filesystem, "LISTING_PAGE", 4)

    def install(hold: int) -> GatedStore:
        store = GatedStore(fs.store, hold)
        monkeypatch.setattr(fs, "store", store)
        return store

    return install


async def fill(cluster: Cluster, directory: str, count: int) -> list[str]:
    """``count`` files in ``directory``, written straight into the store; their paths."""
    store = cluster.gateway.runtime.store
    await store.create(
        Entry(path=directory, type="directory", mode=0o755, owner="alice", group="a")
    )
    names = [f"{directory}/f{number:03}" for number in range(count)]
    for path in names:
        await store.create(Entry(path=path, type="file", mode=0o644, owner="alice", group="a"))
    return names


@pytest.mark.parametrize(
    ("url", "reads_before_items", "reads_after"),
    [
        # Pages of 4, 4, 4 and the last 2.
        ("/v1/files/big/", 1, 3),
        # Counted first, the walk knows it wants 14: pages of 5, 5 and the last 4 (each
        # read asks for one more than it needs, which tells where the listing ends).
        ("/v1/directories/big?recursive=true", 5, 2),
    ],
)
async def test_a_listing_is_streamed_while_the_store_is_read_page_by_page(
    cluster: Cluster,
    gated: Callable[[int], GatedStore],
    url: str,
    reads_before_items: int,
    reads_after: int,
) -> None:
    names = await fill(cluster, "/big", 14)
    # The recursive form counts first (4 reads of pages of 4), then streams.
    store = gated(reads_before_items + 1)
    async with cluster.client("alice").stream("GET", url) as response:
        assert response.status_code == 200
        chunks = response.aiter_bytes()
        body = b""
        while body.count(b'"name"') < 4:
            body += await anext(chunks)
        # The first page went out while the next read of the store is still waiting.
        assert store.reads == reads_before_items + 1 and not store.gate.is_set()
        store.gate.set()
        async for chunk in chunks:
            body += chunk
    parsed = json.loads(body)
    items = parsed if isinstance(parsed, list) else parsed["items"]
    assert [item["path"] for item in items] == names
    assert store.reads == reads_before_items + reads_after


async def test_a_page_that_fits_one_read_is_read_once_and_counted_from_that_read(
    cluster: Cluster, gated: Callable[[int], GatedStore]
) -> None:
    names = await fill(cluster, "/big", 9)
    store = gated(10**6)
    client = cluster.client("alice")
    pages: list[tuple[int, list[str], int, int]] = []
    cursor: str | None = None
    while True:
        store.reads = store.counts = 0
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/directories/big", params=params)
        body = response.json()
        assert response.headers["x-callfs-count"] == str(body["count"])
        pages.append((body["count"], [i["path"] for i in body["items"]], store.reads, store.counts))
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # Each page and whether another follows come from one read of 5 rows; no count query.
    assert pages == [(4, names[:4], 1, 0), (4, names[4:8], 1, 0), (1, names[8:], 1, 0)]
    # A limit beyond one read (pages of 4 here) is counted first, then read in pages.
    store.reads = store.counts = 0
    whole = (await client.get("/v1/directories/big", params={"limit": 6})).json()
    assert [i["path"] for i in whole["items"]] == names[:6] and whole["count"] == 6
    assert (store.counts, store.reads) == (1, 2)


async def test_a_streamed_page_counts_and_continues_like_a_whole_one(cluster: Cluster) -> None:
    names = await fill(cluster, "/big", 9)
    client = cluster.client("alice")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/directories/big", params=params)
        body = response.json()
        assert response.headers["x-callfs-count"] == str(body["count"]) == str(len(body["items"]))
        seen += [item["path"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == names
    head = await client.head("/v1/files/big/")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == "application/json"
