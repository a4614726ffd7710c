"""The reconciler against real storage nodes and metadata stores: it removes objects
no row points to once they are older than the grace, and nothing else.

Ages are set without waiting: a pass takes ``now``, and volume files get old mtimes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callfs import reconciler
from callfs.backends.base import Backend, ObjectRef, StoredObject, new_object_key
from callfs.backends.storage_node import StorageNodeBackend
from callfs.discovery.base import StaticDiscovery
from callfs.entry import Entry
from callfs.reconciler import LOCK_KEY, Reconciler
from callfs.runtime import Runtime
from tests.support.harness import INTERNAL_SECRET, Cluster, make_settings, running_cluster
from tests.support.polling import wait_until

# On PostgreSQL as well: these answers depend on the store's own behaviour.
pytestmark = pytest.mark.both_stores

HOURS_AGO = 2 * 3600


def later() -> datetime:
    """A moment when everything written so far is older than the default grace (1 h)."""
    return datetime.now(UTC) + timedelta(hours=2)


def reconciler_of(cluster: Cluster, replica: int = 0) -> Reconciler:
    return reconciler.for_runtime(cluster.gateways[replica].runtime)


def localfs(cluster: Cluster, replica: int = 0) -> Backend:
    return cluster.gateways[replica].runtime.backends["localfs"]


async def put_orphan(cluster: Cluster, node: str, *, age: float = 0.0) -> Path:
    """Store an object on ``node`` that no row points to, written ``age`` seconds ago."""
    ref = ObjectRef("localfs", new_object_key(), (node,))

    async def body() -> AsyncIterator[bytes]:
        yield b"orphaned bytes"

    await localfs(cluster).write(ref, body())
    path = cluster.nodes[node].root / ref.key
    if age:
        then = path.stat().st_mtime - age
        os.utime(path, (then, then))
    return path


async def upload(cluster: Cluster, path: str, content: bytes) -> Entry:
    response = await cluster.client("alice").post(f"/v1/files{path}", content=content)
    assert response.status_code == 201
    entry = await cluster.gateway.runtime.store.get(path)
    assert entry is not None
    return entry


def sample(runtime: Runtime, name: str, **labels: str) -> float:
    value = runtime.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_orphans_older_than_the_grace_are_removed_and_files_keep_their_bytes(
    cluster: Cluster,
) -> None:
    files = {f"/docs/{index}.txt": f"content {index}".encode() for index in range(6)}
    for path, content in files.items():
        await upload(cluster, path, content)
    replaced = await cluster.client("alice").put("/v1/files/docs/0.txt", content=b"new")
    assert replaced.status_code == 200
    files["/docs/0.txt"] = b"new"
    orphans = [await put_orphan(cluster, node) for node in ("node-0", "node-1", "node-1")]

    report = await reconciler_of(cluster).run_pass(now=later())

    assert report.removed == {"localfs/node-0": 1, "localfs/node-1": 2}
    assert (report.skipped, report.result) == ([], "ok")
    assert not any(orphan.exists() for orphan in orphans)
    assert len(cluster.stored_objects()) == len(files)
    for path, content in files.items():
        assert (await cluster.client("alice").get(f"/v1/files{path}")).content == content
    runtime = cluster.gateway.runtime
    removed = "callfs_reconciler_orphans_removed_total"
    assert sample(runtime, removed, backend="localfs") == 3


async def test_orphans_younger_than_the_grace_survive(cluster: Cluster) -> None:
    fresh = await put_orphan(cluster, "node-0")
    almost = await put_orphan(cluster, "node-1", age=3000)
    old = await put_orphan(cluster, "node-1", age=HOURS_AGO)

    report = await reconciler_of(cluster).run_pass()

    assert fresh.exists()
    assert almost.exists()
    assert not old.exists()
    assert report.removed == {"localfs/node-0": 0, "localfs/node-1": 1}


async def test_files_of_another_shape_than_object_keys_are_never_removed(
    cluster: Cluster,
) -> None:
    root = cluster.nodes["node-0"].root
    # A name, a short key, and a uuid filed under the wrong directories.
    foreign = [
        root / "notes.txt",
        root / "ab" / "cd" / "not-a-uuid",
        root / "ab" / "cd" / ("e" * 32),
    ]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not ours")
        os.utime(path, (1_000_000, 1_000_000))

    report = await reconciler_of(cluster).run_pass(now=later())

    assert all(path.exists() for path in foreign)
    assert report.removed["localfs/node-0"] == 0


async def test_a_key_committed_between_listing_and_deletion_survives(cluster: Cluster) -> None:
    run = reconciler_of(cluster)
    backend = localfs(cluster)
    first = await put_orphan(cluster, "node-0")
    second = await put_orphan(cluster, "node-0")

    candidates = [
        key async for batch in run.orphans(backend, "node-0", now=later()) for key in batch
    ]
    assert sorted(candidates) == sorted(
        str(p.relative_to(cluster.nodes["node-0"].root)) for p in (first, second)
    )
    # An upload commits its row for the first object while the pass is under way.
    committed = str(first.relative_to(cluster.nodes["node-0"].root))
    entry = Entry(
        path="/late.txt",
        type="file",
        mode=0o644,
        owner="alice",
        group="alice",
        size=first.stat().st_size,
        etag=hashlib.sha256(first.read_bytes()).hexdigest(),
        backend="localfs",
        instance_id="node-0",
        object_key=committed,
    )
    await cluster.gateway.runtime.store.create(entry)

    assert await run.remove(backend, "node-0", candidates) == 1

    assert first.exists()
    assert not second.exists()
    answer = await cluster.client("alice").get("/v1/files/late.txt")
    assert answer.content == b"orphaned bytes"


async def test_a_stopped_node_is_skipped_and_the_others_are_still_cleaned(
    cluster: Cluster,
) -> None:
    kept = await put_orphan(cluster, "node-0", age=HOURS_AGO)
    cleaned = await put_orphan(cluster, "node-1", age=HOURS_AGO)
    await cluster.stop_node("node-0")
    runtime = cluster.gateway.runtime

    result = await reconciler_of(cluster).run_exclusive(runtime.locks)

    assert result == "partial"
    assert kept.exists()
    assert not cleaned.exists()
    assert sample(runtime, "callfs_reconciler_runs_total", result="partial") == 1

    await cluster.restart_node("node-0")
    report = await reconciler_of(cluster).run_pass()
    assert report.removed == {"localfs/node-0": 1, "localfs/node-1": 0}
    assert not kept.exists()


async def test_nodes_behind_each_others_addresses_are_skipped_not_emptied(
    cluster: Cluster,
) -> None:
    for index in range(6):
        await upload(cluster, f"/f{index}.txt", b"kept")
    stored = cluster.stored_objects()
    endpoints = cluster.endpoints()
    swapped = {"node-0": endpoints["node-1"], "node-1": endpoints["node-0"]}
    backend = StorageNodeBackend(StaticDiscovery(swapped), INTERNAL_SECRET)
    misrouted = Reconciler(cluster.gateway.runtime.store, {"localfs": backend}, grace=3600)
    try:
        report = await misrouted.run_pass(now=later())
    finally:
        await backend.close()
    assert sorted(report.skipped) == ["localfs/node-0", "localfs/node-1"]
    assert report.result == "failed"
    assert cluster.stored_objects() == stored


async def test_the_gateway_runs_passes_on_its_interval(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite", None, reconciler={"interval": "100ms"})
    async with running_cluster(settings) as cluster:
        orphan = await put_orphan(cluster, "node-0", age=HOURS_AGO)
        runtime = cluster.gateway.runtime
        await wait_until(lambda: not orphan.exists(), what="the orphan was removed")
        await wait_until(
            lambda: sample(runtime, "callfs_reconciler_runs_total", result="ok") >= 1,
            what="a pass was counted",
        )


async def test_interval_zero_starts_no_reconciler(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite", None, reconciler={"interval": 0})
    async with running_cluster(settings, nodes=1):
        names = {task.get_name() for task in asyncio.all_tasks()}
    assert "reconciler" not in names


# --- replicas sharing Redis ------------------------------------------------------------


@pytest.fixture
async def replicas(tmp_path: Path, postgres_dsn: str, redis_url: str) -> AsyncIterator[Cluster]:
    settings = make_settings(
        tmp_path, "postgres", postgres_dsn, dlm={"type": "redis", "redis_addr": redis_url}
    )
    async with running_cluster(settings, replicas=2) as cluster:
        yield cluster


async def test_two_replicas_never_run_a_pass_at_once(
    replicas: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    orphan = await put_orphan(replicas, "node-0", age=HOURS_AGO)
    first, second = (gateway.runtime for gateway in replicas.gateways)
    started, resume = asyncio.Event(), asyncio.Event()
    listing = first.backends["localfs"].list_objects

    async def paused(instance_id: str | None = None) -> AsyncIterator[StoredObject]:
        started.set()
        await resume.wait()
        async for stored in listing(instance_id):
            yield stored

    monkeypatch.setattr(first.backends["localfs"], "list_objects", paused)
    running = asyncio.create_task(reconciler.for_runtime(first).run_exclusive(first.locks))
    await started.wait()

    assert await reconciler.for_runtime(second).run_exclusive(second.locks) == "skipped"
    assert orphan.exists()
    assert sample(second, "callfs_reconciler_runs_total", result="skipped") == 1

    resume.set()
    assert await running == "ok"
    assert not orphan.exists()
    # The lock is free again once the pass is over.
    assert await reconciler.for_runtime(second).run_exclusive(second.locks) == "ok"


async def test_a_held_reconciler_lock_makes_a_replica_skip(replicas: Cluster) -> None:
    orphan = await put_orphan(replicas, "node-1", age=HOURS_AGO)
    first, second = (gateway.runtime for gateway in replicas.gateways)
    async with first.locks.hold([LOCK_KEY], timeout=0):
        assert await reconciler.for_runtime(second).run_exclusive(second.locks) == "skipped"
    assert orphan.exists()
