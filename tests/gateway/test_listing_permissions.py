"""API.md's listing rule: a recursive listing never returns an entry below a directory
the caller may not list and enter, whatever the cursor says."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from callfs_gateway.filesystem import FileSystem
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from callfs import paths, permissions
from callfs.discovery.base import StaticDiscovery
from callfs.entry import Entry, EntryType
from callfs.errors import PermissionDenied
from callfs.permissions import EXECUTE, READ, User
from callfs.runtime import open_runtime
from tests.support.harness import Cluster, make_settings

# On PostgreSQL as well: these answers depend on the store's own behaviour.
pytestmark = pytest.mark.both_stores


def cursor_for(path: str) -> str:
    """A listing cursor naming ``path``, encoded as the gateway encodes its own."""
    return base64.urlsafe_b64encode(path.encode()).decode().rstrip("=")


async def make_private_tree(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/p1/?mode=0755")
    await alice.post("/v1/files/p1/a.txt", content=b"a")
    await alice.post("/v1/files/p1/pd/sub/secret.txt?mode=0644", content=b"secret")
    await alice.post("/v1/files/p1/pd/sub/deeper/more.txt", content=b"more")
    await alice.post("/v1/files/p1/pd/sub2/other.txt", content=b"other")
    await alice.post("/v1/files/p1/zz.txt", content=b"z")
    assert (await alice.patch("/v1/files/p1/pd", json={"mode": "0700"})).status_code == 200


@pytest.mark.parametrize(
    "cursor",
    ["/p1/pd", "/p1/pd/sub", "/p1/pd/sub/", "/p1/pd/sub/deeper", "/p1/pd/sub/a", "/p1/pd/sub2"],
)
async def test_cursor_inside_private_directory_shows_nothing_below_it(
    cluster: Cluster, cursor: str
) -> None:
    await make_private_tree(cluster)
    for limit in (None, 1, 2):
        params = {"recursive": "true", "cursor": cursor_for(cursor)}
        if limit is not None:
            params["limit"] = str(limit)
        response = await cluster.client("bob").get("/v1/directories/p1", params=params)
        assert response.status_code == 200
        listed = [item["path"] for item in response.json()["items"]]
        assert not [path for path in listed if path.startswith("/p1/pd/")], (limit, listed)
        assert listed == ["/p1/zz.txt"]


async def test_owner_still_resumes_inside_her_private_directory(cluster: Cluster) -> None:
    await make_private_tree(cluster)
    response = await cluster.client("alice").get(
        "/v1/directories/p1", params={"recursive": "true", "cursor": cursor_for("/p1/pd/sub")}
    )
    assert [item["path"] for item in response.json()["items"]] == [
        "/p1/pd/sub/deeper",
        "/p1/pd/sub/deeper/more.txt",
        "/p1/pd/sub/secret.txt",
        "/p1/pd/sub2",
        "/p1/pd/sub2/other.txt",
        "/p1/zz.txt",
    ]


async def test_directory_without_x_shows_only_its_children(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/rx/inner/f.txt", content=b"f")
    await alice.patch("/v1/files/rx", json={"mode": "0744"})
    for cursor in (None, "/rx/inner"):
        params = {"recursive": "true"}
        if cursor:
            params["cursor"] = cursor_for(cursor)
        body = (await cluster.client("carol").get("/v1/directories/rx", params=params)).json()
        expected = [] if cursor else ["/rx/inner"]
        assert [item["path"] for item in body["items"]] == expected


# The property, at the FileSystem level on SQLite (fast: metadata only, no bytes).

USERS = {
    "root": User("root"),
    "alice": User("alice", frozenset({"staff"})),
    "bob": User("bob", frozenset({"staff"})),
    "carol": User("carol"),
}
MODES = [0o700, 0o750, 0o755, 0o711, 0o744, 0o555]
# Names whose order straddles "/" (" " and "-" sort before it, "0" right after).
NAMES = ["a", "a b", "a-", "a0", "b", "pd"]


@dataclass(frozen=True)
class Node:
    """One generated entry: its parent, counted back from the latest directory so far."""

    parent: int
    name: str
    is_dir: bool
    mode: int
    owner: str
    group: str


nodes = st.builds(
    Node,
    parent=st.integers(min_value=0, max_value=3),
    name=st.sampled_from(NAMES),
    is_dir=st.booleans(),
    mode=st.sampled_from(MODES),
    owner=st.sampled_from(["alice", "bob"]),
    group=st.sampled_from(["staff", "other"]),
)
top_number = itertools.count()


@pytest.fixture
async def filesystem(tmp_path: Path) -> AsyncIterator[FileSystem]:
    runtime = await open_runtime(
        make_settings(tmp_path, "sqlite", None), discovery=StaticDiscovery({})
    )
    try:
        yield FileSystem(runtime)
    finally:
        await runtime.close()


async def build_tree(fs: FileSystem, top: Node, spec: list[Node]) -> list[Entry]:
    """Create ``spec`` below a fresh top directory; returns every entry, top first."""
    root = f"/t{next(top_number)}"
    made = [_entry(root, top)]
    directories = [made[0]]
    for node in spec:
        parent = directories[-1 - node.parent % len(directories)]
        path = paths.join(parent.path, node.name)
        if any(entry.path == path for entry in made):
            continue
        made.append(_entry(path, node))
        if node.is_dir:
            directories.append(made[-1])
    for entry in made:
        await fs.store.create(entry)
    return made


def _entry(path: str, node: Node) -> Entry:
    kind: EntryType = "directory" if node.is_dir else "file"
    return Entry(path=path, type=kind, mode=node.mode, owner=node.owner, group=node.group)


def visible(user: User, tree: dict[str, Entry], listed: str, max_depth: int) -> list[str]:
    """The model: what ``user`` may see below ``listed`` (which it may list).

    The listed directory's children need ``r`` on it (API.md: listing needs r); an
    entry deeper down needs ``r`` and ``x`` on every directory from the listed one to
    its parent.
    """
    seen = []
    for path in sorted(tree):
        if path == listed or not paths.is_within(path, listed):
            continue
        if paths.depth(path) - paths.depth(listed) - 1 > max_depth:
            continue
        inside = [a for a in paths.ancestors(path) if paths.is_within(a, listed) and a != listed]
        if inside and not permissions.may(user, tree[listed], EXECUTE):
            continue
        if all(permissions.may(user, tree[a], READ | EXECUTE) for a in inside):
            seen.append(path)
    return seen


def may_list(user: User, tree: dict[str, Entry], listed: str) -> bool:
    ancestors = [tree[a] for a in paths.ancestors(listed) if a in tree]
    return all(permissions.may(user, a, EXECUTE) for a in ancestors) and permissions.may(
        user, tree[listed], READ
    )


Cursor = tuple[int, tuple[str, ...]] | str | None

# A cursor: none, an existing entry (picked by index) with segments appended, or a
# path elsewhere.
cursors: st.SearchStrategy[Cursor] = (
    st.none()
    | st.tuples(
        st.integers(min_value=0, max_value=40),
        st.lists(st.sampled_from([*NAMES, "zz", "0"]), max_size=3).map(tuple),
    )
    | st.sampled_from(["/", "/a", "/t", "/zzz"])
)


def cursor_path(cursor: Cursor, made: list[Entry]) -> str | None:
    if cursor is None or isinstance(cursor, str):
        return cursor
    index, names = cursor
    return "/".join([made[index % len(made)].path, *names])


def dir_node(name: str, mode: int) -> Node:
    return Node(0, name, True, mode, "alice", "staff")


@settings(
    max_examples=50,
    deadline=None,
    # One store for all examples: each builds its tree under its own top directory.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    top=nodes.map(lambda node: Node(0, "", True, node.mode, node.owner, node.group)),
    spec=st.lists(nodes, max_size=12),
    who=st.sampled_from(sorted(USERS)),
    max_depth=st.sampled_from([0, 1, 2, 100]),
    limit=st.sampled_from([None, 1, 2, 3, 5]),
    listed_pick=st.integers(min_value=0, max_value=20),
    cursor=cursors,
)
# The exploit: /top/pd is 0700, bob resumes after /top/pd/sub.
@example(
    top=dir_node("", 0o755),
    spec=[
        dir_node("pd", 0o700),
        dir_node("sub", 0o755),
        dir_node("a", 0o755),
        Node(0, "f", False, 0o644, "alice", "staff"),
    ],
    who="bob",
    max_depth=100,
    limit=1,
    listed_pick=0,
    cursor=(2, ()),
)
async def test_no_cursor_reaches_below_a_directory_the_caller_may_not_enter(
    filesystem: FileSystem,
    top: Node,
    spec: list[Node],
    who: str,
    max_depth: int,
    limit: int | None,
    listed_pick: int,
    cursor: Cursor,
) -> None:
    made = await build_tree(filesystem, top, spec)
    tree = {entry.path: entry for entry in made}
    user = USERS[who]
    directories = [entry.path for entry in made if entry.is_dir]
    listed = directories[listed_pick % len(directories)]
    if not may_list(user, {**tree, "/": await _root(filesystem)}, listed):
        with pytest.raises(PermissionDenied):
            await filesystem.list_tree(user, listed, max_depth=max_depth, limit=limit, after=None)
        return
    expected = visible(user, tree, listed, max_depth)

    # Any cursor: the page is the visible entries after it, and nothing else.
    after = cursor_path(cursor, made)
    page, following = await filesystem.list_tree(
        user, listed, max_depth=max_depth, limit=limit, after=after
    )
    rest = [path for path in expected if after is None or path > after]
    want = rest if limit is None else rest[:limit]
    assert [entry.path for entry in page] == want
    assert following == (want[-1] if limit is not None and len(rest) > limit else None)

    # Following next_cursor from the start yields exactly the visible entries, in order.
    walked: list[str] = []
    resume: str | None = None
    while True:
        page, resume = await filesystem.list_tree(
            user, listed, max_depth=max_depth, limit=limit, after=resume
        )
        walked += [entry.path for entry in page]
        if resume is None:
            break
        assert len(walked) <= len(expected)
    assert walked == expected


async def _root(fs: FileSystem) -> Entry:
    root = await fs.store.get(paths.ROOT)
    assert root is not None
    return root
