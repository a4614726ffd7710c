"""A Redis restart loses cache invalidations, never a file (hardening issue, item 1).

The sequence that once lost files: a file A is created through gateway X and read
through gateway Y (Y caches it); Redis is killed and started again, so Y's cache bus
misses whatever is announced until it subscribes again; then at once A is renamed to
B and created anew through X, and replaced through Y. Y decided from its stale cache
that A's old object (by then B's) was the one it replaced, and deleted it.

Each round runs the sequence on several files right after the restart, while Y's
bus is still backing off; five rounds make 50 tries. Needs the local cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.e2e.target import Target, eventually
from tools.cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.local_cluster]

ROUNDS = 5
FILES_PER_ROUND = 10
# Seconds Redis stays away: long enough for the buses' reconnect backoff to grow past
# the restart (they are still backing off when Redis answers again, and reconnect in
# the middle of the round's mutations), short enough that as a rule they are connected again
# before the next round (a longer outage lets the backoff reach its 5 s cap, and the
# later rounds then start with Y's bus still cut off, so with nothing cached).
OUTAGE = 1.0


@pytest.fixture
def redis_restarts(cluster: Cluster) -> Iterator[Callable[[], None]]:
    """Kill Redis, wait, start it again; it runs again after the test whatever happened."""

    def restart() -> None:
        cluster.kill("redis")
        # Not a wait for a condition: the outage's length is the scenario (the buses'
        # reconnect backoff grows while Redis is away).
        time.sleep(OUTAGE)
        cluster.restart("redis")

    yield restart
    if not cluster.running("redis"):
        cluster.restart("redis")


def settled(attempt: Callable[[], httpx.Response], what: str) -> httpx.Response:
    """A mutation right after the restart may meet a dead pooled connection: 503, retried."""
    return eventually(attempt, lambda r: r.status_code != 503, what=what)


def test_a_redis_restart_loses_no_file(
    target: Target, redis_restarts: Callable[[], None], home: str
) -> None:
    x, y = target.client(1, door=1), target.client(1, door=2)
    lost: list[str] = []
    stale: list[str] = []
    for round_ in range(ROUNDS):
        files = [f"{home}/r{round_}-{n}" for n in range(FILES_PER_ROUND)]
        for path in files:
            assert x.post(f"/v1/files{path}-a", content=b"first A").status_code == 201
            assert y.get(f"/v1/files{path}-a").content == b"first A"

        redis_restarts()

        for path in files:
            a, b = f"/v1/files{path}-a", f"/v1/files{path}-b"
            renamed = settled(
                lambda a=a, path=path: x.patch(a, json={"destination": f"{path}-b"}), "rename"
            )
            assert renamed.status_code == 200, renamed.text
            # The rename has answered: no gateway serves A's old bytes under A any more.
            if y.get(a).status_code != 404:
                stale.append(a)
            assert settled(lambda a=a: x.post(a, content=b"second A"), "create").status_code == 201
            assert settled(lambda a=a: y.put(a, content=b"A from Y"), "replace").status_code == 200
            for client in (x, y):
                moved = client.get(b)
                if (moved.status_code, moved.content) != (200, b"first A"):
                    lost.append(f"{b}: {moved.status_code} {moved.content[:60]!r}")
            assert x.get(a).content == b"A from Y"
    assert lost == []
    assert stale == []
