"""A serving role freezes the heap start-up built, so full collections skip it."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import httpx

from callfs.metrics import Metrics
from callfs.serving import bound_port, metrics_server, serve_all
from tests.support.harness import make_settings
from tests.support.polling import wait_until


async def test_serve_all_freezes_what_start_up_built_once_it_serves(tmp_path: Path) -> None:
    gc.unfreeze()
    built_before = Metrics()
    server = metrics_server(built_before, make_settings(tmp_path, "sqlite", None))
    assert server is not None
    task = asyncio.create_task(serve_all(server))
    try:
        await wait_until(lambda: gc.get_freeze_count() > 0, what="a frozen heap")
        # Frozen means out of every generation the collector walks.
        assert not any(obj is built_before for obj in gc.get_objects())
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{bound_port(server)}/health")
        assert answer.status_code == 200
    finally:
        server.should_exit = True
        await task
        gc.unfreeze()
