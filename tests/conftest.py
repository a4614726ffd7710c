"""Session-wide fixtures: real servers shared by every suite."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from callfs.settings import BackendSettings
from tests.support.servers import PostgresInstance, PostgresServer, RedisInstance, RedisServer
from tools.s3_server import MotoServer, S3Server, SeaweedS3Server

# --- PostgreSQL and Redis -------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresInstance]:
    """One PostgreSQL per session: throwaway, or CALLFS_TEST_POSTGRES_DSN's (a superuser)."""
    external = os.environ.get("CALLFS_TEST_POSTGRES_DSN")
    if external:
        yield PostgresInstance(external)
        return
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_dsn(postgres_server: PostgresInstance) -> Iterator[str]:
    """The DSN of a fresh, empty database, dropped after the test."""
    name = f"callfs_test_{uuid.uuid4().hex[:16]}"
    dsn = postgres_server.create_database(name)
    yield dsn
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisInstance]:
    """One Redis per session: throwaway, or the one at CALLFS_TEST_REDIS_URL."""
    external = os.environ.get("CALLFS_TEST_REDIS_URL")
    if external:
        yield RedisInstance(external)
        return
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisInstance) -> str:
    """The session Redis's URL, emptied (FLUSHALL) before the test."""
    redis_server.flushall()
    return redis_server.url


# --- S3 -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def seaweedfs_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3Server]:
    """SeaweedFS's S3 gateway (``weed server -s3``) for the whole session."""
    server = SeaweedS3Server(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's S3 server mode for the whole session."""
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["seaweedfs", "moto"])
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Each S3-compatible server in turn (both live for the session)."""
    server: S3Server = request.getfixturevalue(f"{request.param}_s3")
    return server


@pytest.fixture
def s3_settings(s3_server: S3Server) -> BackendSettings:
    """Backend settings pointing at a fresh bucket on ``s3_server``."""
    bucket = f"callfs-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(bucket)
    return BackendSettings(
        default_backend="s3",
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        s3_region=s3_server.region,
        s3_bucket_name=bucket,
        s3_endpoint=s3_server.endpoint,
    )


# --- Parallel runs ------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With pytest-xdist's ``--dist loadgroup``, the tests on the local cluster share one
    worker, which starts the cluster once and runs them in their order (those killing
    processes last). ``make test`` runs them in a process of their own instead."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(pytest.mark.xdist_group("local-cluster"))
