"""A link downloads a small file whose bytes the metadata store keeps, as any other."""

from __future__ import annotations

import hashlib

import pytest

from callfs.settings import Settings
from tests.links.support import download_path, issue
from tests.support.harness import Cluster

pytestmark = pytest.mark.both_stores


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.backend.inline_max_bytes = 4096
    return settings


async def test_a_kept_file_downloads_once(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    content = b"kept in the metadata store\n"
    created = await alice.post("/v1/files/k.txt", content=content)
    link = await issue(alice, "/k.txt")
    anonymous = cluster.client("anonymous")

    response = await anonymous.get(download_path(link))
    again = await anonymous.get(download_path(link))

    assert created.json()["replicas"] == []
    assert (response.status_code, response.content) == (200, content)
    assert response.headers["etag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    assert again.status_code == 410
