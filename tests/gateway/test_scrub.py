"""Rot: a flipped byte on one replica is never served, and is healed (R=2 of 3 nodes).

Scrub passes are run by hand; the nodes, the store and the copies are real (in-process
gRPC nodes, SQLite), and the rot is a byte flipped in an object's file on a volume.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from callfs.backends.base import ObjectRef
from callfs.backends.storage_node import StorageNodeBackend
from callfs.entry import Entry, utcnow
from callfs.errors import ReplicaCorrupted
from callfs.scrubber import Scrubber
from tests.support.harness import Cluster, make_settings, running_cluster
from tests.support.polling import wait_until

MIB = 1024 * 1024


@pytest.fixture
async def replicated(tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = make_settings(
        tmp_path,
        "sqlite",
        None,
        replication={"factor": 2, "repair_interval": "0s", "scrub_interval": "0s"},
    )
    async with running_cluster(settings, nodes=3) as cluster:
        yield cluster


def backend_of(cluster: Cluster) -> StorageNodeBackend:
    return cluster.gateway.runtime.nodes


def scrubber(cluster: Cluster) -> Scrubber:
    runtime = cluster.gateway.runtime
    return Scrubber(
        runtime.store,
        backend_of(cluster),
        rate=1e12,
        metrics=runtime.metrics,
        # The files of a test are seconds old: the pass must not take them for new ones.
        wall=lambda: utcnow() + timedelta(minutes=1),
    )


async def upload(cluster: Cluster, count: int) -> dict[str, bytes]:
    alice = cluster.client("alice")
    files = {f"/f{n}.bin": f"content {n} ".encode() * (1000 + n) for n in range(count)}
    for path, data in files.items():
        assert (await alice.post(f"/v1/files{path}", content=data)).status_code == 201
    return files


async def stored(cluster: Cluster, path: str) -> Entry:
    entry = await cluster.gateway.runtime.truth.get(path)
    assert entry is not None and entry.object_key is not None and len(entry.holders) == 2
    return entry


def object_file(cluster: Cluster, entry: Entry, instance_id: str) -> Path:
    assert entry.object_key is not None
    return cluster.nodes[instance_id].root / entry.object_key


def flip(file: Path, at: int) -> None:
    data = bytearray(file.read_bytes())
    data[at] ^= 0x01
    file.write_bytes(bytes(data))


def sha256_of(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def metric(cluster: Cluster, name: str, **labels: str) -> float:
    value = cluster.gateway.runtime.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_scrub_pass_heals_the_one_replica_with_a_flipped_byte(
    replicated: Cluster,
) -> None:
    files = await upload(replicated, 5)
    entry = await stored(replicated, "/f2.bin")
    good, bad = entry.holders
    flip(object_file(replicated, entry, bad), 100)
    assert sha256_of(object_file(replicated, entry, bad)) != entry.etag

    scrub = scrubber(replicated)
    assert await scrub.run_exclusive(replicated.gateway.runtime.locks) == "ok"

    for instance_id in (good, bad):
        assert sha256_of(object_file(replicated, entry, instance_id)) == entry.etag
    assert metric(replicated, "callfs_scrub_mismatches_total", source="scrub") == 1
    assert metric(replicated, "callfs_scrub_runs_total", result="ok") == 1
    assert metric(replicated, "callfs_repair_objects_total") == 1
    assert metric(replicated, "callfs_repair_bytes_total") == len(files["/f2.bin"])
    # Every replica was read, the corrupted one possibly only up to its bad block.
    everything = 2 * sum(len(data) for data in files.values())
    read = metric(replicated, "callfs_scrub_bytes_total")
    assert everything - len(files["/f2.bin"]) <= read <= everything
    assert (await replicated.client("alice").get("/v1/files/f2.bin")).content == files["/f2.bin"]

    again = await scrub.run_pass()
    assert (again.checked, again.replicas, again.corrupted) == (5, 10, [])


async def test_the_pass_reports_what_it_found_and_healed(replicated: Cluster) -> None:
    await upload(replicated, 3)
    entry = await stored(replicated, "/f1.bin")
    bad = entry.holders[0]
    flip(object_file(replicated, entry, bad), 0)

    report = await scrubber(replicated).run_pass()

    assert (report.checked, report.replicas, report.skipped) == (3, 5, [])
    assert report.corrupted == report.healed == [("/f1.bin", bad)]
    assert report.result == "ok"


async def test_a_node_that_does_not_answer_is_skipped_not_healed(replicated: Cluster) -> None:
    files = await upload(replicated, 6)
    entries = [await stored(replicated, path) for path in files]
    down = entries[0].holders[0]
    await replicated.stop_node(down)
    before = {p: p.read_bytes() for p in replicated.stored_objects()}

    report = await scrubber(replicated).run_pass()

    assert report.skipped == [down]
    assert (report.corrupted, report.healed) == ([], [])
    assert report.result == "partial"
    on_down = sum(down in entry.holders for entry in entries)
    assert report.replicas == 2 * len(files) - on_down
    assert {p: p.read_bytes() for p in replicated.stored_objects()} == before
    assert metric(replicated, "callfs_scrub_mismatches_total", source="scrub") == 0
    assert metric(replicated, "callfs_repair_objects_total") == 0


async def test_with_every_replica_rotten_nothing_is_overwritten(
    replicated: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    await upload(replicated, 2)
    entry = await stored(replicated, "/f0.bin")
    for at, instance_id in enumerate(entry.holders):
        flip(object_file(replicated, entry, instance_id), 10 + at)
    rotten = {i: object_file(replicated, entry, i).read_bytes() for i in entry.holders}
    caplog.set_level(logging.WARNING, logger="callfs.scrubber")

    report = await scrubber(replicated).run_pass()

    assert sorted(report.corrupted) == sorted(("/f0.bin", i) for i in entry.holders)
    assert (report.healed, report.result) == ([], "partial")
    assert {i: object_file(replicated, entry, i).read_bytes() for i in entry.holders} == rotten
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.name == "callfs.scrubber" and r.levelno == logging.ERROR
    ]
    assert len(errors) == 1 and "/f0.bin" in errors[0]
    assert metric(replicated, "callfs_scrub_mismatches_total", source="scrub") == 2
    assert metric(replicated, "callfs_repair_objects_total") == 0


@pytest.mark.parametrize(
    ("size", "at"),
    # A node reads ahead a few MiB as a read opens: rot beyond that shows mid-stream.
    [(20_000, 5), (7 * MIB, 6 * MIB + 12345)],
    ids=["at-open", "mid-stream"],
)
async def test_a_get_never_serves_a_flipped_byte_and_heals_the_replica(
    replicated: Cluster, size: int, at: int
) -> None:
    """Needs the storage nodes' block checksums: a read of a rotten block fails with
    DATA_LOSS (ReplicaCorrupted) instead of serving it.
    """
    data = bytes(range(256)) * (size // 256)
    alice = replicated.client("alice")
    assert (await alice.post("/v1/files/rot.bin", content=data)).status_code == 201
    entry = await stored(replicated, "/rot.bin")
    first = object_file(replicated, entry, entry.holders[0])
    flip(first, at)

    got = await alice.get("/v1/files/rot.bin")

    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == entry.etag
    await wait_until(lambda: sha256_of(first) == entry.etag, what="the rotten replica healed")
    await wait_until(
        lambda: metric(replicated, "callfs_repair_objects_total") == 1, what="the heal counted"
    )
    assert metric(replicated, "callfs_scrub_mismatches_total", source="read") == 1
    assert metric(replicated, "callfs_repair_bytes_total") == len(data)
    assert (await alice.get("/v1/files/rot.bin")).content == data


async def test_a_heal_whose_bytes_miss_the_sha256_leaves_the_target_as_it_was(
    replicated: Cluster,
) -> None:
    await upload(replicated, 1)
    entry = await stored(replicated, "/f0.bin")
    assert entry.object_key is not None
    good, bad = entry.holders
    flip(object_file(replicated, entry, bad), 7)
    rotten = object_file(replicated, entry, bad).read_bytes()
    source = ObjectRef("localfs", entry.object_key, (good,), etag="0" * 64)

    with pytest.raises(ReplicaCorrupted):
        await backend_of(replicated).replicate(source, [bad])

    assert object_file(replicated, entry, bad).read_bytes() == rotten
    assert replicated.temp_files() == []


async def test_the_gateway_scrubs_in_the_background(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        "sqlite",
        None,
        replication={"factor": 2, "repair_interval": "0s", "scrub_interval": "500ms"},
    )
    async with running_cluster(settings, nodes=3) as cluster:
        files = await upload(cluster, 1)
        entry = await stored(cluster, "/f0.bin")
        rotten = object_file(cluster, entry, entry.holders[1])
        flip(rotten, 3)

        # A pass leaves files of the last two seconds to the next one: a few passes.
        await wait_until(
            lambda: metric(cluster, "callfs_repair_bytes_total") == len(files["/f0.bin"]),
            what="the replica healed",
        )
        assert sha256_of(rotten) == entry.etag
        assert metric(cluster, "callfs_scrub_mismatches_total", source="scrub") == 1
