"""The gateway application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from callfs import __version__, reconciler, system
from callfs.metrics import Metrics
from callfs.runtime import Runtime, open_runtime
from callfs.settings import Settings
from callfs.web import EdgeMiddleware, install_error_handlers
from callfs_gateway.api import router
from callfs_gateway.filesystem import FileSystem


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """The gateway: ``/v1/files``, ``/v1/directories``, ``/health``, ``/ready``, ``/metrics``,
    and the reconciler in the background.

    With ``runtime`` given, the caller owns it (``callfs dev`` shares one runtime
    between roles); otherwise the app opens its own at start-up and closes it.
    """

    metrics = runtime.metrics if runtime is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = runtime is None
        active = runtime if runtime is not None else await open_runtime(settings, metrics=metrics)
        app.state.runtime = active
        app.state.filesystem = FileSystem(active)
        try:
            async with reconciler.running(active):
                yield
        finally:
            if own:
                await active.close()

    app = FastAPI(
        title="CallFS",
        version=__version__,
        description="A REST API filesystem with Linux semantics.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.metrics = metrics
    install_error_handlers(app, metrics, "gateway")
    app.include_router(router)
    app.include_router(system.router)
    app.add_middleware(EdgeMiddleware, metrics=metrics)
    return app
