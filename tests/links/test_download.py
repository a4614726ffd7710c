"""GET /download/{token}: one download per link, then 410; every other status of API.md."""

from __future__ import annotations

import asyncio
import hashlib
import string
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from callfs_link_service.app import mount_links
from callfs_link_service.tokens import Signer

from callfs.metadata.base import LinkRecord
from tests.links.support import GENEROUS_LIMITS, claims, download_path, error_code, issue
from tests.support.clock import ManualClock
from tests.support.harness import LINK_SECRET, Cluster, make_settings, running_cluster

# On PostgreSQL as well: these answers depend on the store's own behaviour.
pytestmark = pytest.mark.both_stores

ALPHABET = string.ascii_letters + string.digits + "-_"


async def test_download_streams_the_file_once_then_410_link_used(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    content = bytes(range(256)) * 4096 + b"tail"
    await alice.post("/v1/files/docs/report.pdf", content=content)
    link = await issue(alice, "/docs/report.pdf")
    anonymous = cluster.client("anonymous")
    response = await anonymous.get(download_path(link))
    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(len(content))
    assert response.headers["etag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    assert response.headers["content-disposition"] == 'attachment; filename="report.pdf"'
    assert response.headers["cache-control"] == "no-store"
    again = await anonymous.get(download_path(link))
    assert again.status_code == 410
    assert error_code(again) == "LINK_USED"


async def test_download_needs_no_credentials_and_ignores_them(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/f.txt", content=b"data")
    link = await issue(alice, "/f.txt")
    async with httpx.AsyncClient(
        base_url=cluster.gateway.url, headers={"Authorization": "Bearer wrong"}
    ) as client:
        response = await client.get(download_path(link))
    assert response.status_code == 200
    assert response.content == b"data"


async def test_the_link_carries_the_permission(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/private/?mode=0700")
    await alice.post("/v1/files/private/mine.txt?mode=0600", content=b"mine")
    link = await issue(alice, "/private/mine.txt")
    assert (await cluster.client("bob").get("/v1/files/private/mine.txt")).status_code == 403
    response = await cluster.client("anonymous").get(download_path(link))
    assert response.status_code == 200
    assert response.content == b"mine"


async def test_empty_file_downloads_as_zero_bytes(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/empty.txt", content=b"")
    response = await cluster.client("anonymous").get(
        download_path(await issue(alice, "/empty.txt"))
    )
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"


async def test_non_ascii_name_gets_rfc_6266_filename_star(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/r%C3%A9sum%C3%A9%20%E2%82%AC.pdf", content=b"cv")
    link = await issue(alice, "/résumé €.pdf")
    response = await cluster.client("anonymous").get(download_path(link))
    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"resume _.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%82%AC.pdf"
    )


async def test_quotes_in_a_name_cannot_break_the_header(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post('/v1/files/say "hi";x.txt', content=b"q")
    response = await cluster.client("anonymous").get(
        download_path(await issue(alice, '/say "hi";x.txt'))
    )
    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"say _hi_;x.txt\"; filename*=UTF-8''say%20%22hi%22%3Bx.txt"
    )


async def test_fifty_concurrent_downloads_give_exactly_one_200(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/race.bin", content=b"r" * 100_000)
    link = await issue(alice, "/race.bin")
    async with httpx.AsyncClient(
        base_url=cluster.gateway.url,
        timeout=60,
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=50),
    ) as client:
        responses = await asyncio.gather(*(client.get(download_path(link)) for _ in range(50)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 1
    assert statuses.count(410) == 49
    winner = next(r for r in responses if r.status_code == 200)
    assert winner.content == b"r" * 100_000
    assert all(error_code(r) == "LINK_USED" for r in responses if r.status_code == 410)


async def test_changing_any_character_of_a_token_is_404(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/f.txt", content=b"x")
    token = (await issue(alice, "/f.txt"))["token"]
    anonymous = cluster.client("anonymous")
    for position, original in enumerate(token):
        replacement = ALPHABET[(ALPHABET.index(original) + 1) % len(ALPHABET)]
        tampered = token[:position] + replacement + token[position + 1 :]
        response = await anonymous.get(f"/download/{tampered}")
        assert response.status_code == 404, position
        assert error_code(response) == "FILE_NOT_FOUND"
    # None of that burned the real link.
    assert (await anonymous.get(f"/download/{token}")).status_code == 200


async def test_unknown_and_garbage_tokens_are_404(cluster: Cluster) -> None:
    anonymous = cluster.client("anonymous")
    for token in ("abc", "A" * 80, "%00", "not a token", "x" * 10_000):
        response = await anonymous.get(f"/download/{token}")
        assert response.status_code == 404
        assert error_code(response) == "FILE_NOT_FOUND"


async def test_link_expires_after_its_seconds(cluster: Cluster, clock: ManualClock) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/f.txt", content=b"x")
    fresh = await issue(alice, "/f.txt", expiry_seconds=1)
    late = await issue(alice, "/f.txt", expiry_seconds=1)
    anonymous = cluster.client("anonymous")
    # Good until the last moment of its life (the expiry is rounded up to a second)...
    clock.seconds = claims(fresh["token"]).expires - 0.01
    assert (await anonymous.get(download_path(fresh))).status_code == 200
    # ...and no longer once it has passed.
    clock.seconds = claims(late["token"]).expires
    response = await anonymous.get(download_path(late))
    assert response.status_code == 410
    assert error_code(response) == "LINK_EXPIRED"


async def test_deleted_file_is_404(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/gone.txt", content=b"x")
    link = await issue(alice, "/gone.txt")
    assert (await alice.delete("/v1/files/gone.txt")).status_code == 204
    response = await cluster.client("anonymous").get(download_path(link))
    assert response.status_code == 404
    assert error_code(response) == "FILE_NOT_FOUND"


async def test_file_replaced_by_a_directory_is_404(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/shape", content=b"x")
    link = await issue(alice, "/shape")
    await alice.delete("/v1/files/shape")
    await alice.post("/v1/files/shape/inside.txt", content=b"y")
    response = await cluster.client("anonymous").get(download_path(link))
    assert response.status_code == 404


async def test_renamed_file_is_404_and_replaced_content_is_served(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/old.txt", content=b"x")
    await alice.post("/v1/files/kept.txt", content=b"v1")
    renamed = await issue(alice, "/old.txt")
    replaced = await issue(alice, "/kept.txt")
    await alice.patch("/v1/files/old.txt", json={"name": "new.txt"})
    await alice.put("/v1/files/kept.txt", content=b"version 2")
    anonymous = cluster.client("anonymous")
    assert (await anonymous.get(download_path(renamed))).status_code == 404
    response = await anonymous.get(download_path(replaced))
    assert response.status_code == 200
    assert response.content == b"version 2"


async def test_file_deleted_and_recreated_by_another_user_is_404(cluster: Cluster) -> None:
    """The link names alice's file, not the path: bob's private file there is not served."""
    alice, bob = cluster.client("alice"), cluster.client("bob")
    await alice.post("/v1/files/shared-name.txt?mode=0644", content=b"public")
    link = await issue(alice, "/shared-name.txt")
    assert (await alice.delete("/v1/files/shared-name.txt")).status_code == 204
    created = await bob.post("/v1/files/shared-name.txt?mode=0600", content=b"bob's secret")
    assert created.status_code == 201
    response = await cluster.client("anonymous").get(download_path(link))
    assert response.status_code == 404
    assert error_code(response) == "FILE_NOT_FOUND"
    assert b"secret" not in response.content


async def test_file_whose_content_is_replaced_is_still_served(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/report.txt", content=b"draft")
    link = await issue(alice, "/report.txt")
    assert (await alice.put("/v1/files/report.txt", content=b"final")).status_code == 200
    response = await cluster.client("anonymous").get(download_path(link))
    assert response.status_code == 200
    assert response.content == b"final"


async def test_renamed_file_is_404_even_with_a_new_file_at_its_old_path(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/before.txt", content=b"original")
    link = await issue(alice, "/before.txt")
    renamed = await alice.patch("/v1/files/before.txt", json={"name": "after.txt"})
    assert renamed.status_code == 200
    await alice.post("/v1/files/before.txt", content=b"newcomer")
    response = await cluster.client("anonymous").get(download_path(link))
    assert response.status_code == 404
    assert error_code(response) == "FILE_NOT_FOUND"
    assert b"newcomer" not in response.content


async def test_link_recorded_without_an_entry_id_follows_its_path(cluster: Cluster) -> None:
    """As a replica of the previous version writes links during a rolling upgrade."""
    alice = cluster.client("alice")
    await alice.post("/v1/files/old-style.txt", content=b"then")
    await alice.delete("/v1/files/old-style.txt")
    await alice.post("/v1/files/old-style.txt", content=b"now")
    expires = int(time.time()) + 60
    token, signed = Signer([LINK_SECRET.encode()]).issue("/old-style.txt", expires)
    at = datetime.fromtimestamp(expires, UTC)
    await cluster.gateway.runtime.store.create_link(
        LinkRecord(signed.token_id, "/old-style.txt", at, "alice", at)
    )
    response = await cluster.client("anonymous").get(f"/download/{token}")
    assert response.status_code == 200
    assert response.content == b"now"


async def test_head_does_not_consume_the_link(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/f.txt", content=b"x")
    link = await issue(alice, "/f.txt")
    anonymous = cluster.client("anonymous")
    assert (await anonymous.head(download_path(link))).status_code == 405
    assert (await anonymous.post(download_path(link))).status_code == 405
    assert (await anonymous.get(download_path(link))).status_code == 200


async def test_stopped_node_is_503_and_the_link_survives(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    created = await alice.post("/v1/files/held.txt", content=b"held bytes")
    node = created.json()["instance_id"]
    link = await issue(alice, "/held.txt")
    await cluster.stop_node(node)
    anonymous = cluster.client("anonymous")
    for _ in range(2):
        response = await anonymous.get(download_path(link))
        assert response.status_code == 503
        assert error_code(response) == "BACKEND_UNAVAILABLE"
    await cluster.restart_node(node)
    response = await anonymous.get(download_path(link))
    assert response.status_code == 200
    assert response.content == b"held bytes"
    assert (await anonymous.get(download_path(link))).status_code == 410


async def test_errors_and_downloads_carry_request_id_and_security_headers(
    cluster: Cluster,
) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/f.txt", content=b"x")
    link = await issue(alice, "/f.txt")
    anonymous = cluster.client("anonymous")
    for response in (
        await anonymous.get(download_path(link), headers={"X-Request-ID": "trace-1"}),
        await anonymous.get(download_path(link)),
        await anonymous.get("/download/bogus"),
    ):
        assert response.headers["x-request-id"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cross-origin-resource-policy"] == "same-origin"
    first = await anonymous.get("/download/bogus", headers={"X-Request-ID": "trace-2"})
    assert first.headers["x-request-id"] == "trace-2"


async def test_consumptions_are_counted_by_outcome(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/f.txt", content=b"x")
    await alice.post("/v1/files/g.txt", content=b"x")
    used = await issue(alice, "/f.txt")
    deleted = await issue(alice, "/g.txt")
    await alice.delete("/v1/files/g.txt")
    anonymous = cluster.client("anonymous")
    await anonymous.get(download_path(used))
    await anonymous.get(download_path(used))
    await anonymous.get(download_path(deleted))
    await anonymous.get("/download/bogus")
    metrics = (await alice.get("/metrics")).text
    for status, count in (("success", 1), ("used", 1), ("not_found", 1), ("invalid", 1)):
        line = f'callfs_single_use_link_consumptions_total{{status="{status}"}} {count}.0'
        assert line in metrics
    assert 'path="/download/{token}"' in metrics
    # The one download that reached the bytes is one read of a storage node.
    assert 'callfs_backend_ops_total{backend_type="localfs",operation="read"} 1.0' in metrics
    assert 'callfs_proxy_operations_total{operation="read",result="ok"} 1.0' in metrics


async def test_tokens_are_checked_before_any_lookup(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite", None, links=GENEROUS_LIMITS)
    async with running_cluster(settings, extend=mount_links) as cluster:
        alice = cluster.client("alice")
        await alice.post("/v1/files/f.txt", content=b"x")
        clock = ManualClock()
        cluster.gateway.app.state.links.clock = clock
        valid = await issue(alice, "/f.txt")
        expiring = await issue(alice, "/f.txt", expiry_seconds=1)
        clock.seconds = claims(expiring["token"]).expires
        # With the metadata store gone, only requests that reach it fail.
        await cluster.gateway.runtime.store.close()
        anonymous = cluster.client("anonymous")
        token = valid["token"]
        tampered = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
        assert (await anonymous.get(f"/download/{tampered}")).status_code == 404
        assert (await anonymous.get(download_path(expiring))).status_code == 410
        assert (await anonymous.get(download_path(valid))).status_code == 503
