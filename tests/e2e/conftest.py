"""The end-to-end suite's target: ``CALLFS_URL`` and friends from the environment (kind,
``make cluster-up``), or else a local multi-process cluster started for the session and
always stopped after it (``make test``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import httpx
import pytest

from tests.e2e.target import Target
from tools import cluster as local

LOCAL_CLUSTER = "local_cluster"
GROWS_CLUSTER = "grows_cluster"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that kill processes last, so a failure there cannot spoil the others,
    and those that add processes after them, so every other test sees three nodes."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker(LOCAL_CLUSTER) is not None,
            item.get_closest_marker(GROWS_CLUSTER) is not None,
        )
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The system under test, with clients through both front doors."""
    if os.environ.get("CALLFS_URL"):
        chosen = Target.from_environment(os.environ)
        yield chosen
        chosen.close()
        return
    root = Path(tempfile.mkdtemp(prefix="callfs-e2e-"))
    # A SIGTERM to pytest still tears the session down, and so stops the cluster.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    started: Target | None = None
    try:
        # Hermetic: the developer's own CALLFS_* settings do not leak into the suite's cluster.
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CALLFS_")}
        started = Target.of_cluster(local.up(root, environ, watch_pid=os.getpid()))
        yield started
    finally:
        if started is not None:
            started.close()
        local.down(root)
        signal.signal(signal.SIGTERM, previous)
        _clean(request, root, keep_logs=started is None or bool(request.session.testsfailed))


def _clean(request: pytest.FixtureRequest, root: Path, *, keep_logs: bool) -> None:
    """Remove the cluster's folder, but keep its logs when it failed to start or a test failed."""
    if not keep_logs:
        shutil.rmtree(root, ignore_errors=True)
        return
    for name in ("postgres", "redis", "volumes", "nginx"):
        shutil.rmtree(root / name, ignore_errors=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"tests/e2e: the local cluster's logs are in {root / 'logs'}")


@pytest.fixture(scope="session")
def cluster(target: Target) -> local.Cluster:
    """The local cluster whose processes the failure tests kill.

    Against an external system (kind) these tests must be deselected with
    ``-m "not local_cluster"``; run here, they fail rather than skip.
    """
    if target.cluster is None:
        pytest.fail(
            "this test kills processes of the local cluster, but CALLFS_URL names another "
            'system: deselect it with -m "not local_cluster" (or set CALLFS_CLUSTER_DIR)'
        )
    return target.cluster


@pytest.fixture(scope="session")
def run_id() -> str:
    """A prefix unique to this run, so the suite can run against a long-lived system."""
    return f"e2e-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def home(request: pytest.FixtureRequest, target: Target, run_id: str) -> str:
    """A fresh directory of api-user-1 for one test: ``/e2e-<run>/<test>``."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:120]
    path = f"/{run_id}/{name}"
    response = target.client(1).post(f"/v1/files{path}/")
    assert response.status_code == 201, response.text
    return path


@pytest.fixture
def user1(target: Target) -> httpx.Client:
    """api-user-1 through front door 1."""
    return target.client(1)


@pytest.fixture
def user2(target: Target) -> httpx.Client:
    """api-user-2 through front door 1."""
    return target.client(2)


@pytest.fixture
def user1_door2(target: Target) -> httpx.Client:
    """api-user-1 through front door 2 (the other gateway replica)."""
    return target.client(1, door=2)


@pytest.fixture
def anonymous(target: Target) -> httpx.Client:
    """No Authorization header, through front door 1."""
    return target.client(0)
