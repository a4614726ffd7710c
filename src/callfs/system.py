"""What every web role serves besides its own API, the dependencies they share, and
the one factory that builds such an app (:func:`build_app`).

``/health`` (liveness), ``/ready`` (readiness) and ``/metrics`` (authenticated on the
API port; the metrics listener serves the same registry openly) are identical on the
gateway and the link-service, so both include :data:`router`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from callfs import __version__
from callfs.metrics import CONTENT_TYPE, Metrics
from callfs.permissions import User
from callfs.runtime import Runtime, open_runtime
from callfs.settings import Settings
from callfs.web import EdgeMiddleware, install_error_handlers


async def get_runtime(request: Request) -> Runtime:
    """The process's runtime, opened by the app's lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_user(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> User:
    """The caller, from ``Authorization: Bearer <api-key>``."""
    return runtime.auth.authenticate(request.headers.get("authorization"))


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CurrentUser = Annotated[User, Depends(get_user)]

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(runtime: RuntimeDep) -> dict[str, str]:
    """Readiness: the metadata store and the coordination service answer."""
    await runtime.ready()
    return {"status": "ready"}


@router.get("/metrics")
async def metrics(user: CurrentUser, runtime: RuntimeDep) -> Response:
    """Prometheus metrics (authenticated here; the metrics listener serves them openly)."""
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)


def build_app(
    settings: Settings,
    runtime: Runtime | None,
    *,
    component: str,
    title: str,
    description: str,
    routes: APIRouter,
    serving: Callable[[FastAPI, Runtime], AbstractAsyncContextManager[None]],
) -> FastAPI:
    """A web role: ``routes`` plus the system routes, the edge middleware and the error
    handlers; ``serving(app, runtime)`` runs for the app's lifespan.

    With ``runtime`` given, the caller owns it (``callfs dev`` shares one runtime
    between roles); otherwise the app opens its own at start-up and closes it.
    """
    metrics = runtime.metrics if runtime is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        active = runtime if runtime is not None else await open_runtime(settings, metrics=metrics)
        try:
            app.state.runtime = active
            async with serving(app, active):
                yield
        finally:
            if runtime is None:
                await active.close()

    app = FastAPI(
        title=title,
        version=__version__,
        description=description,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.metrics = metrics
    install_error_handlers(app, metrics, component)
    app.include_router(routes)
    app.include_router(router)
    app.add_middleware(EdgeMiddleware, metrics=metrics)
    return app
