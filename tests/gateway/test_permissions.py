"""API.md's Unix permissions: every denial is 403 and changes nothing."""

from __future__ import annotations

from tests.gateway.test_files import error_code
from tests.support.harness import Cluster


async def test_owner_reads_others_cannot_read_0600(cluster: Cluster) -> None:
    await cluster.client("alice").post("/v1/files/private.txt?mode=0600", content=b"mine")
    assert (await cluster.client("alice").get("/v1/files/private.txt")).content == b"mine"
    denied = await cluster.client("bob").get("/v1/files/private.txt")
    assert denied.status_code == 403
    assert error_code(denied) == "PERMISSION_DENIED"
    assert (await cluster.client("bob").head("/v1/files/private.txt")).status_code == 403


async def test_group_bits_apply_to_group_members(cluster: Cluster) -> None:
    await cluster.client("alice").post("/v1/files/team.txt?mode=0640", content=b"team")
    assert (await cluster.client("bob").get("/v1/files/team.txt")).content == b"team"
    assert (await cluster.client("carol").get("/v1/files/team.txt")).status_code == 403


async def test_write_needs_w_and_leaves_content(cluster: Cluster) -> None:
    await cluster.client("alice").post("/v1/files/doc.txt", content=b"original")
    denied = await cluster.client("bob").put("/v1/files/doc.txt", content=b"changed")
    assert denied.status_code == 403
    assert (await cluster.client("alice").get("/v1/files/doc.txt")).content == b"original"
    assert cluster.temp_files() == []


async def test_group_writable_file_can_be_replaced_by_member(cluster: Cluster) -> None:
    await cluster.client("alice").post("/v1/files/shared.txt?mode=0664", content=b"v1")
    response = await cluster.client("bob").put("/v1/files/shared.txt", content=b"v2")
    assert response.status_code == 200
    assert response.json()["owner"] == "alice"


async def test_create_needs_w_and_x_on_parent(cluster: Cluster) -> None:
    await cluster.client("alice").post("/v1/files/home/?mode=0755")
    denied = await cluster.client("bob").post("/v1/files/home/intruder.txt", content=b"x")
    assert denied.status_code == 403
    listing = await cluster.client("alice").get("/v1/files/home/")
    assert listing.json() == []


async def test_missing_parents_need_w_on_deepest_existing_directory(cluster: Cluster) -> None:
    await cluster.client("alice").post("/v1/files/base/?mode=0755")
    denied = await cluster.client("bob").post("/v1/files/base/x/y/z.txt", content=b"x")
    assert denied.status_code == 403
    assert (await cluster.client("alice").head("/v1/files/base/x")).status_code == 404


async def test_ancestors_need_x(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/locked/inner.txt", content=b"x")
    await alice.patch("/v1/files/locked", json={"mode": "0700"})
    assert (await cluster.client("bob").get("/v1/files/locked/inner.txt")).status_code == 403
    assert (await cluster.client("bob").get("/v1/files/locked/absent")).status_code == 403


async def test_listing_needs_r(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/noread/?mode=0711")
    await alice.post("/v1/files/noread/f.txt", content=b"x")
    assert (await cluster.client("bob").get("/v1/files/noread/")).status_code == 403
    assert (await cluster.client("bob").get("/v1/directories/noread")).status_code == 403
    # x without r still lets a known name through.
    assert (await cluster.client("bob").get("/v1/files/noread/f.txt")).content == b"x"


async def test_delete_needs_w_on_parent(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/keep/?mode=0755")
    await alice.post("/v1/files/keep/f.txt?mode=0666", content=b"x")
    assert (await cluster.client("bob").delete("/v1/files/keep/f.txt")).status_code == 403
    assert (await alice.get("/v1/files/keep/f.txt")).content == b"x"


async def test_sticky_root_only_owner_deletes(cluster: Cluster) -> None:
    await cluster.client("alice").post("/v1/files/alices.txt?mode=0666", content=b"x")
    denied = await cluster.client("bob").delete("/v1/files/alices.txt")
    assert denied.status_code == 403
    renamed = await cluster.client("bob").patch("/v1/files/alices.txt", json={"name": "bobs.txt"})
    assert renamed.status_code == 403
    assert (await cluster.client("alice").delete("/v1/files/alices.txt")).status_code == 204


async def test_only_owner_or_root_may_chmod(cluster: Cluster) -> None:
    await cluster.client("alice").post("/v1/files/mode.txt?mode=0666", content=b"x")
    assert (
        await cluster.client("bob").patch("/v1/files/mode.txt", json={"mode": "0777"})
    ).status_code == 403
    assert (await cluster.client("alice").head("/v1/files/mode.txt")).headers[
        "x-callfs-mode"
    ] == "0666"
    assert (
        await cluster.client("root").patch("/v1/files/mode.txt", json={"mode": "0600"})
    ).status_code == 200


async def test_root_bypasses_checks(cluster: Cluster) -> None:
    await cluster.client("alice").post("/v1/files/sealed/?mode=0700")
    await cluster.client("alice").post("/v1/files/sealed/f.txt?mode=0600", content=b"secret")
    root = cluster.client("root")
    assert (await root.get("/v1/files/sealed/f.txt")).content == b"secret"
    assert (await root.put("/v1/files/sealed/f.txt", content=b"root")).status_code == 200
    assert (await root.delete("/v1/files/sealed", params={"recursive": "true"})).status_code == 204


async def test_recursive_delete_denied_anywhere_changes_nothing(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/tree/?mode=0777")
    await cluster.client("bob").post("/v1/files/tree/bobs/?mode=0755")
    await cluster.client("bob").post("/v1/files/tree/bobs/f.txt", content=b"x")
    response = await alice.delete("/v1/files/tree", params={"recursive": "true"})
    assert response.status_code == 403
    assert (await alice.get("/v1/files/tree/bobs/f.txt")).content == b"x"


async def test_recursive_delete_keeps_the_sticky_rule_deep_in_the_tree(cluster: Cluster) -> None:
    """Bob may remove from every directory of his tree, but alice's file in a sticky
    directory of hers inside it is not his to remove: the whole delete is refused."""
    alice, bob = cluster.client("alice"), cluster.client("bob")
    assert (await bob.post("/v1/files/top/?mode=0777")).status_code == 201
    for number in range(3):
        assert (await bob.post(f"/v1/files/top/a/f{number}", content=b"b")).status_code == 201
    assert (await alice.post("/v1/files/top/b/?mode=1777")).status_code == 201
    assert (await bob.post("/v1/files/top/b/bobs.txt", content=b"b")).status_code == 201
    assert (await alice.post("/v1/files/top/b/alices.txt", content=b"a")).status_code == 201

    denied = await bob.delete("/v1/files/top", params={"recursive": "true"})
    assert denied.status_code == 403
    assert "sticky" in denied.json()["message"]
    assert (await bob.get("/v1/files/top/a/f0")).content == b"b"
    assert (await alice.get("/v1/files/top/b/alices.txt")).content == b"a"

    # What is left in the sticky directory is bob's own: now the tree may go.
    assert (await alice.delete("/v1/files/top/b/alices.txt")).status_code == 204
    assert (await bob.delete("/v1/files/top", params={"recursive": "true"})).status_code == 204
    assert (await bob.get("/v1/files/top/b/bobs.txt")).status_code == 404


async def test_api_keys_from_env_are_api_users(cluster: Cluster) -> None:
    from callfs.auth import Authenticator
    from callfs.settings import load_settings

    settings = load_settings(environ={"CALLFS_AUTH_API_KEYS": "first-key,,second-key"})
    auth = Authenticator(settings.auth)
    first = auth.authenticate("Bearer first-key")
    second = auth.authenticate("bearer second-key")
    assert (first.name, second.name) == ("api-user-1", "api-user-2")
    assert first.groups == frozenset({"callfs"})
