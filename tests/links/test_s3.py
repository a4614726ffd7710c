"""Links to files whose bytes live in S3 (SeaweedFS and moto): streamed from the bucket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from callfs_link_service.app import mount_links

from callfs.settings import BackendSettings
from tests.links.support import GENEROUS_LIMITS, download_path, error_code, issue
from tests.support.harness import Cluster, make_settings, running_cluster

pytestmark = pytest.mark.s3


@pytest.fixture
async def cluster(tmp_path: Path, s3_settings: BackendSettings) -> AsyncIterator[Cluster]:
    """One storage node and a gateway with the link routes, new files going to a fresh bucket."""
    backend = s3_settings.model_dump(exclude={"localfs_root_path"})
    settings = make_settings(tmp_path, "sqlite", None, backend=backend, links=GENEROUS_LIMITS)
    async with running_cluster(settings, nodes=1, extend=mount_links) as running:
        yield running


async def test_link_to_an_s3_file_downloads_once(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    content = b"in the bucket " * 100_000
    created = await alice.post("/v1/files/cloud/data.bin", content=content)
    assert created.json()["backend"] == "s3"
    link = await issue(alice, "/cloud/data.bin")
    anonymous = cluster.client("anonymous")
    response = await anonymous.get(download_path(link))
    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-length"] == str(len(content))
    assert response.headers["etag"] == f'"{created.json()["etag"]}"'
    again = await anonymous.get(download_path(link))
    assert again.status_code == 410
    assert error_code(again) == "LINK_USED"
