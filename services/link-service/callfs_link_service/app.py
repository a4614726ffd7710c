"""The link-service application factory, and the hook that adds its routes to another app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from callfs import system
from callfs.runtime import Runtime
from callfs.settings import Settings
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
    return system.build_app(
        settings,
        runtime,
        component="link-service",
        title="CallFS link-service",
        description="Single-use download links for CallFS files.",
        routes=router,
        serving=_serving_links,
    )


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
    app.state.links = domain = Links(runtime)
    app.state.link_limits = LinkLimits(runtime)
    links = runtime.settings.links
    # Purged by the links' own clock: a link is gone once it answers LINK_EXPIRED.
    async with cleanup.running(
        runtime.store,
        interval=links.cleanup_interval,
        batch=links.cleanup_batch,
        now=domain.now,
    ):
        yield
