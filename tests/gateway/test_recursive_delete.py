"""A recursive delete: the rows go in one transaction and the answer does not wait
for the objects, which the reclaimer removes in the background (the reconciler when
a gateway stops first)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from callfs_gateway import filesystem

from callfs.backends.base import Backend, ObjectRef
from callfs.errors import CallFSError
from tests.gateway.test_files import error_code
from tests.gateway.test_reconciler import later, reconciler_of
from tests.support.harness import Cluster

# On PostgreSQL as well: these answers depend on the store's own behaviour.
pytestmark = pytest.mark.both_stores

TREE = ["t/a", "t/b/c", "t/b/d/e", "t/b/d/f", "t/g"]


class HeldDeletes:
    """A backend whose object removals (one by one or in batches) wait until
    ``release`` is set."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.release = asyncio.Event()
        self.waiting = 0

    async def delete(self, ref: ObjectRef) -> None:
        self.waiting += 1
        await self.release.wait()
        await self.inner.delete(ref)

    async def delete_many(self, refs: Sequence[ObjectRef]) -> list[tuple[ObjectRef, CallFSError]]:
        self.waiting += len(refs)
        await self.release.wait()
        return await self.inner.delete_many(refs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def held(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> HeldDeletes:
    backends = cluster.gateway.runtime.backends
    gate = HeldDeletes(backends["localfs"])
    monkeypatch.setitem(backends, "localfs", gate)  # type: ignore[arg-type]
    return gate


async def make_tree(cluster: Cluster) -> None:
    client = cluster.client("alice")
    for name in [*TREE, "kept"]:
        assert (await client.post(f"/v1/files/{name}", content=name.encode())).status_code == 201


async def test_the_answer_comes_before_the_objects_go(cluster: Cluster, held: HeldDeletes) -> None:
    await make_tree(cluster)
    client = cluster.client("alice")
    response = await client.delete("/v1/files/t", params={"recursive": "true"})
    assert response.status_code == 204
    # Answered while every removal still waits; nothing of the tree is visible.
    reclaimer = cluster.gateway.runtime.reclaimer
    assert reclaimer.pending == len(TREE) and len(cluster.stored_objects()) == len(TREE) + 1
    assert (await client.get("/v1/files/t/b/d/e")).status_code == 404
    assert (await client.get("/v1/directories/t")).status_code == 404
    assert [i["path"] for i in (await client.get("/v1/files/")).json()] == ["/kept"]
    held.release.set()
    await reclaimer.idle()
    assert reclaimer.pending == 0 and held.waiting == len(TREE)
    assert len(cluster.stored_objects()) == 1
    assert (await client.get("/v1/files/kept")).content == b"kept"


async def test_objects_left_by_a_stopped_gateway_go_with_the_reconciler(
    cluster: Cluster, held: HeldDeletes
) -> None:
    await make_tree(cluster)
    client = cluster.client("alice")
    assert (await client.delete("/v1/files/t", params={"recursive": "true"})).status_code == 204
    # The gateway stops (or crashes) before its removals ran: they are lost with it.
    await cluster.gateway.runtime.reclaimer.close()
    held.release.set()
    assert held.waiting > 0 and len(cluster.stored_objects()) == len(TREE) + 1
    report = await reconciler_of(cluster).run_pass(now=later())
    assert report.result == "ok"
    assert sum(report.removed.values()) == len(TREE)
    assert len(cluster.stored_objects()) == 1
    assert (await client.get("/v1/files/kept")).content == b"kept"


async def test_a_denied_directory_deep_in_a_paged_tree_changes_nothing(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filesystem, "LISTING_PAGE", 2)
    await make_tree(cluster)
    alice = cluster.client("alice")
    assert (await alice.patch("/v1/files/t/b/d", json={"mode": "0555"})).status_code == 200
    response = await alice.delete("/v1/files/t", params={"recursive": "true"})
    assert response.status_code == 403
    assert error_code(response) == "PERMISSION_DENIED"
    listed = await alice.get("/v1/directories/t", params={"recursive": "true"})
    assert listed.json()["count"] == len(TREE) + 2  # the files and t/b, t/b/d
    assert len(cluster.stored_objects()) == len(TREE) + 1


async def test_an_object_on_a_backend_not_configured_here_is_logged_and_the_rest_go(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    await make_tree(cluster)
    kept = (await cluster.client("alice").get("/v1/files/")).json()
    assert [item["path"] for item in kept] == ["/kept", "/t"]
    runtime = cluster.gateway.runtime
    elsewhere = ObjectRef("s3", "0123456789abcdef0123456789abcdef")
    (entry,) = (await runtime.store.get_many(["/kept"])).values()
    assert entry.object_key is not None
    runtime.reclaimer.reclaim([elsewhere, ObjectRef("localfs", entry.object_key, entry.holders)])
    await runtime.reclaimer.idle()
    assert f"could not remove object {elsewhere.key} on s3" in caplog.text
    assert runtime.reclaimer.pending == 0
    assert len(cluster.stored_objects()) == len(TREE)
