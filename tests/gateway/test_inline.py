"""Small files kept in the metadata store (``backend.inline_max_bytes``): written with
their entry in one transaction, read back from the store, gone with their entry; a file
that grows past the limit moves to the storage nodes, one that shrinks comes back.

On PostgreSQL as well: the bytes live in the store.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest

from callfs.entry import utcnow
from callfs.repairer import Repairer
from callfs.scrubber import Scrubber
from callfs.settings import Settings
from tests.support.harness import Cluster

pytestmark = pytest.mark.both_stores

LIMIT = 64
SMALL = b"s" * LIMIT
BIG = b"b" * (LIMIT + 1)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.backend.inline_max_bytes = LIMIT
    return settings


async def kept(cluster: Cluster, path: str) -> bytes | None:
    """The bytes the metadata store keeps for the file at ``path``."""
    entry = await cluster.gateway.runtime.truth.get(path)
    assert entry is not None and entry.object_key is not None
    return await cluster.gateway.runtime.truth.read_content(entry.object_key)


async def test_a_small_file_lives_in_the_metadata_store_alone(cluster: Cluster) -> None:
    client = cluster.client()

    created = await client.put("/v1/files/s.txt", content=SMALL)
    head = await client.head("/v1/files/s.txt")
    whole = await client.get("/v1/files/s.txt")
    ranged = await client.get("/v1/files/s.txt", headers={"Range": "bytes=2-5"})

    assert created.status_code == 201
    assert (created.json()["instance_id"], created.json()["replicas"]) == (None, [])
    assert created.json()["etag"] == hashlib.sha256(SMALL).hexdigest()
    assert "x-callfs-instance-id" not in head.headers
    assert head.headers["x-callfs-replicas"] == ""
    assert head.headers["x-callfs-backend"] == "localfs"
    assert head.headers["content-length"] == str(LIMIT)
    assert (whole.status_code, whole.content) == (200, SMALL)
    assert (ranged.status_code, ranged.content) == (206, SMALL[2:6])
    assert cluster.stored_objects() == []
    assert await kept(cluster, "/s.txt") == SMALL


async def test_an_empty_file_is_kept_too(cluster: Cluster) -> None:
    client = cluster.client()

    assert (await client.post("/v1/files/e", content=b"")).status_code == 201

    assert (await client.get("/v1/files/e")).content == b""
    assert cluster.stored_objects() == []
    assert await kept(cluster, "/e") == b""


async def test_a_file_moves_to_the_nodes_when_it_grows_and_back_when_it_shrinks(
    cluster: Cluster,
) -> None:
    client = cluster.client()
    await client.put("/v1/files/g", content=SMALL)
    small = await cluster.gateway.runtime.truth.get("/g")
    assert small is not None and small.object_key is not None

    grown = await client.put("/v1/files/g", content=BIG)

    assert grown.status_code == 200 and grown.json()["replicas"] != []
    assert (await client.get("/v1/files/g")).content == BIG
    assert await cluster.gateway.runtime.truth.read_content(small.object_key) is None
    assert len(cluster.stored_objects()) == 1

    shrunk = await client.put("/v1/files/g", content=b"tiny")
    await cluster.gateway.runtime.reclaimer.idle()

    assert shrunk.json()["replicas"] == []
    assert (await client.get("/v1/files/g")).content == b"tiny"
    assert cluster.stored_objects() == []


async def test_a_replaced_small_file_is_never_answered_from_its_old_bytes(
    cluster: Cluster,
) -> None:
    client = cluster.client()
    await client.put("/v1/files/v", content=b"one")
    assert (await client.get("/v1/files/v")).content == b"one"

    await client.put("/v1/files/v", content=b"two!")

    assert (await client.get("/v1/files/v")).content == b"two!"


async def test_a_refused_write_leaves_the_kept_bytes_whole(cluster: Cluster) -> None:
    client = cluster.client()
    await client.put("/v1/files/w", content=b"old")

    refused = await client.put("/v1/files/w", content=b"new", headers={"If-Match": '"nope"'})
    exists = await client.post("/v1/files/w", content=b"new")

    assert (refused.status_code, exists.status_code) == (412, 409)
    assert (await client.get("/v1/files/w")).content == b"old"


async def test_a_small_body_is_checked_under_the_lock_before_any_answer(
    cluster: Cluster,
) -> None:
    """A small body is read whole and decided once, under the path's lock: the same
    answers, in the same order, as a body checked before it is stored."""
    alice, carol = cluster.client("alice"), cluster.client("carol")
    await alice.post("/v1/files/private/", headers={"X-CallFS-Mode": "0700"})
    await alice.put("/v1/files/mine", content=b"alice's")

    hidden = await carol.put("/v1/files/private/x", content=b"carol's")
    overwrite = await carol.put("/v1/files/mine", content=b"carol's")
    on_a_directory = await alice.put("/v1/files/private", content=b"x")

    assert (hidden.status_code, overwrite.status_code) == (403, 403)
    assert on_a_directory.status_code == 400
    assert on_a_directory.json()["code"] == "IS_A_DIRECTORY"
    assert (await alice.get("/v1/files/mine")).content == b"alice's"
    assert (await alice.head("/v1/files/private/x")).status_code == 404


async def test_renames_keep_the_bytes_and_deletes_drop_them(cluster: Cluster) -> None:
    client = cluster.client()
    for name in ("d/a", "d/sub/b", "c"):
        await client.post(f"/v1/files/{name}", content=name.encode())
    a = await cluster.gateway.runtime.truth.get("/d/a")
    assert a is not None and a.object_key is not None

    moved = await client.patch("/v1/files/d", json={"destination": "/e"})
    renamed = await client.get("/v1/files/e/sub/b")
    deleted = await client.delete("/v1/files/e", params={"recursive": "true"})

    assert (moved.status_code, renamed.content, deleted.status_code) == (200, b"d/sub/b", 204)
    assert await cluster.gateway.runtime.truth.read_content(a.object_key) is None
    assert await kept(cluster, "/c") == b"c"


async def test_repair_and_scrub_pass_over_kept_files(cluster: Cluster) -> None:
    client = cluster.client()
    await client.post("/v1/files/k", content=b"kept")
    runtime = cluster.gateway.runtime

    # The file is seconds old: the passes must not take it for one being written.
    def later() -> datetime:
        return utcnow() + timedelta(minutes=1)

    repairer = Repairer(runtime.store, runtime.nodes, repair_after=0.0, rate=1e12, wall=later)
    scrubber = Scrubber(runtime.store, runtime.nodes, rate=1e12, wall=later)
    repaired = await repairer.run_pass()
    scrubbed = await scrubber.run_pass()

    assert (repaired.checked, repaired.short, repaired.degraded) == (0, [], 0)
    assert (scrubbed.checked, scrubbed.corrupted) == (0, [])
    assert (await client.get("/v1/files/k")).content == b"kept"
