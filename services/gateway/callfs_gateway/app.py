"""The gateway application factory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from callfs import reconciler, repairer, scrubber, system
from callfs.runtime import Runtime
from callfs.settings import Settings
from callfs_gateway.api import router
from callfs_gateway.fastpath import FilesFastPath
from callfs_gateway.filesystem import FileSystem
from callfs_gateway.ui import ui_router


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """The gateway: ``/v1/files``, ``/v1/directories``, ``/health``, ``/ready``, ``/metrics``,
    the web file browser at ``/ui/``, and the reconciler, the repairer and the scrubber in
    the background.

    With ``runtime`` given, the caller owns it (``callfs dev`` shares one runtime
    between roles); otherwise the app opens its own at start-up and closes it.
    Its ``/openapi.json`` describes the link routes too: the ingress serves them at
    the same base URL (``callfs dev``, this app itself).
    """
    documented: list[APIRouter] = []
    with contextlib.suppress(ImportError):
        from callfs_link_service.api import router as links

        documented.append(links)
    app = system.build_app(
        settings,
        runtime,
        component="gateway",
        title="CallFS",
        description="A REST API filesystem with Linux semantics.",
        routes=router,
        serving=_serving,
        front=FilesFastPath,
        documented=documented,
    )
    app.include_router(ui_router())
    return app


@asynccontextmanager
async def _serving(app: FastAPI, runtime: Runtime) -> AsyncIterator[None]:
    """Attach the filesystem to ``app``; run the reconciler, the repairer and the
    scrubber meanwhile.
    """
    app.state.filesystem = FileSystem(runtime)
    async with reconciler.running(runtime), repairer.running(runtime), scrubber.running(runtime):
        yield
