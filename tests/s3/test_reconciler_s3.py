"""The reconciler on S3 (SeaweedFS and moto): orphans in the bucket go once they are
older than the grace; objects with rows, fresh uploads and foreign keys stay.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callfs import reconciler
from callfs.backends.base import Backend, ObjectRef
from callfs.backends.s3 import S3Backend
from callfs.settings import BackendSettings
from tests.support.harness import Cluster, make_settings, running_cluster
from tools.s3_server import S3Server

pytestmark = pytest.mark.s3


def later() -> datetime:
    """A moment when everything written so far is older than the default grace (1 h)."""
    return datetime.now(UTC) + timedelta(hours=2)


@pytest.fixture
async def cluster(tmp_path: Path, s3_settings: BackendSettings) -> AsyncIterator[Cluster]:
    """A gateway whose new files go to a fresh bucket (and one storage node)."""
    backend = s3_settings.model_dump(mode="python")
    for secret in ("s3_access_key", "s3_secret_key"):
        backend[secret] = getattr(s3_settings, secret).get_secret_value()
    settings = make_settings(tmp_path, "sqlite", None, backend=backend)
    async with running_cluster(settings, nodes=1) as running:
        yield running


async def put_orphan(backend: Backend) -> str:
    ref = ObjectRef("s3", (await backend.new_object("/orphan")).key)

    async def body() -> AsyncIterator[bytes]:
        yield b"orphaned bytes"

    await backend.write(ref, body())
    return ref.key


async def test_s3_orphans_are_removed_and_the_rest_stays(
    cluster: Cluster, s3_server: S3Server, s3_settings: BackendSettings
) -> None:
    runtime = cluster.gateway.runtime
    backend = runtime.backends["s3"]
    bucket = s3_settings.s3_bucket_name
    client = cluster.client("alice")
    for index in range(3):
        response = await client.post(f"/v1/files/s3/{index}.txt", content=f"{index}".encode())
        assert response.status_code == 201
        assert response.json()["backend"] == "s3"
    orphans = {await put_orphan(backend) for _ in range(2)}
    foreign = f"someone-else/{uuid.uuid4().hex}"
    s3_server.admin.put_object(Bucket=bucket, Key=foreign, Body=b"not ours")
    before = set(s3_server.keys(bucket))

    young = await reconciler.for_runtime(runtime).run_pass()
    assert young.removed == {"localfs/node-0": 0, "s3": 0}
    assert set(s3_server.keys(bucket)) == before

    report = await reconciler.for_runtime(runtime).run_pass(now=later())

    assert report.removed == {"localfs/node-0": 0, "s3": 2}
    assert set(s3_server.keys(bucket)) == before - orphans
    for index in range(3):
        assert (await client.get(f"/v1/files/s3/{index}.txt")).content == f"{index}".encode()
    removed = runtime.metrics.registry.get_sample_value(
        "callfs_reconciler_orphans_removed_total", {"backend": "s3"}
    )
    assert removed == 2


async def test_list_objects_follows_every_page(s3_settings: BackendSettings) -> None:
    backend = S3Backend(s3_settings, list_page_size=2)
    await backend.start()
    try:
        keys = {await put_orphan(backend) for _ in range(5)}
        listed = [stored async for stored in backend.list_objects()]
    finally:
        await backend.close()
    assert sorted(stored.key for stored in listed) == sorted(keys)
    assert {stored.size for stored in listed} == {len(b"orphaned bytes")}
    assert all(stored.modified.tzinfo is not None for stored in listed)
