"""The throwaway PostgreSQL and Redis servers start, serve, and leave nothing behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.support import servers
from tests.support.servers import PostgresInstance, PostgresServer, RedisServer, free_port


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaps counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def wait_until_gone(pid: int) -> bool:
    deadline = time.monotonic() + 20
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


async def test_postgres_server_serves_databases_and_leaves_nothing_behind() -> None:
    with PostgresServer() as server:
        assert server.pid is not None and server.workdir is not None
        pid, workdir = server.pid, server.workdir
        workers = children(pid)
        dsn = server.create_database("callfs_probe")
        connection = await asyncpg.connect(dsn)
        try:
            assert await connection.fetchval("SELECT current_database()") == "callfs_probe"
            assert await connection.fetchval("SHOW fsync") == "off"
        finally:
            await connection.close()
        if os.geteuid() == 0:
            status = Path(f"/proc/{pid}/status").read_text()
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            assert uid_line.split()[1] != "0"
        server.drop_database("callfs_probe")
        assert workers
    assert server.pid is None
    assert not alive(pid)
    assert not [worker for worker in workers if alive(worker)]
    assert not workdir.exists()
    server.stop()


async def test_external_postgres_instance_creates_and_drops_databases() -> None:
    with PostgresServer() as server:
        external = PostgresInstance(server.admin_dsn)
        dsn = external.create_database("callfs_external")
        connection = await asyncpg.connect(dsn)
        await connection.close()
        external.drop_database("callfs_external")
        admin = await asyncpg.connect(server.admin_dsn)
        try:
            names = await admin.fetch("SELECT datname FROM pg_database")
        finally:
            await admin.close()
        assert "callfs_external" not in {row["datname"] for row in names}


async def test_redis_server_serves_and_leaves_nothing_behind() -> None:
    with RedisServer() as server:
        assert server.pid is not None and server.workdir is not None
        pid, workdir = server.pid, server.workdir
        client = aioredis.Redis.from_url(server.url)
        try:
            await client.set("k", "v")
            server.flushall()
            assert await client.get("k") is None
        finally:
            await client.aclose()
    assert not alive(pid)
    assert not workdir.exists()
    assert not server.answers()
    server.stop()


def test_redis_server_moves_to_a_new_port_when_its_port_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with RedisServer() as other:
        ports = iter([other.port, free_port()])
        monkeypatch.setattr(servers, "free_port", lambda: next(ports))
        with RedisServer() as server:
            assert server.port != other.port
            with server.client() as client:
                assert client.info("server")["process_id"] == server.pid


async def test_postgres_server_moves_to_a_new_port_when_its_port_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with PostgresServer() as other:
        ports = iter([other.port, free_port()])
        monkeypatch.setattr(servers, "free_port", lambda: next(ports))
        with PostgresServer() as server:
            assert server.port != other.port
            server.create_database("callfs_mine")
            for owner, expected in ((server, True), (other, False)):
                admin = await asyncpg.connect(owner.admin_dsn)
                try:
                    names = await admin.fetch("SELECT datname FROM pg_database")
                finally:
                    await admin.close()
                assert ("callfs_mine" in {row["datname"] for row in names}) is expected


def test_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from tests.support.servers import RedisServer\n"
        "server = RedisServer().start()\n"
        "print(server.pid, server.workdir, flush=True)\n"
        "time.sleep(600)\n"
    )
    launcher = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert launcher.stdout is not None
        pid_text, workdir = launcher.stdout.readline().split()
        pid = int(pid_text)
        assert alive(pid)
    finally:
        launcher.kill()
        launcher.wait()
        assert launcher.stdout is not None
        launcher.stdout.close()
    try:
        assert wait_until_gone(pid)
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)
