"""The link-service application factory, and the hook that adds its routes to another app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from callfs import __version__, system
from callfs.metrics import Metrics
from callfs.runtime import Runtime, open_runtime
from callfs.settings import Settings
from callfs.web import EdgeMiddleware, install_error_handlers
from callfs_link_service import cleanup
from callfs_link_service.api import router
from callfs_link_service.limits import LinkLimits
from callfs_link_service.links import Links


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """The link-service: ``/v1/links/generate``, ``/download/{token}``, ``/health``,
    ``/ready``, ``/metrics``, and the cleanup worker.

    With ``runtime`` given, the caller owns it; otherwise the app opens its own at
    start-up and closes it.
    """
    metrics = runtime.metrics if runtime is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = runtime is None
        active = runtime if runtime is not None else await open_runtime(settings, metrics=metrics)
        try:
            app.state.runtime = active
            async with _serving_links(app, active):
                yield
        finally:
            if own:
                await active.close()

    app = FastAPI(
        title="CallFS link-service",
        version=__version__,
        description="Single-use download links for CallFS files.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.metrics = metrics
    install_error_handlers(app, metrics, "link-service")
    app.include_router(router)
    app.include_router(system.router)
    app.add_middleware(EdgeMiddleware, metrics=metrics)
    return app


def mount_links(app: FastAPI, settings: Settings, runtime: Runtime) -> None:
    """Serve the link routes and run the cleanup worker inside ``app`` (``callfs dev``).

    ``app`` keeps its own error handlers, middleware and system routes; the worker
    runs for as long as the app's lifespan.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _serving_links(app, runtime):
            yield

    mounted = APIRouter(lifespan=lifespan)
    mounted.include_router(router)
    app.include_router(mounted)


@asynccontextmanager
async def _serving_links(app: FastAPI, runtime: Runtime) -> AsyncIterator[None]:
    """Attach the link domain to ``app`` and run the cleanup worker while the block runs."""
    app.state.links = Links(runtime)
    app.state.link_limits = LinkLimits(runtime)
    links = runtime.settings.links
    async with cleanup.running(
        runtime.store, interval=links.cleanup_interval, batch=links.cleanup_batch
    ):
        yield
