"""What every web role serves besides its own API, the dependencies they share, and
the one factory that builds such an app (:func:`build_app`).

``/health`` (liveness), ``/ready`` (readiness) and ``/metrics`` (authenticated on the
API port; the metrics listener serves the same registry openly) are identical on the
gateway and the link-service, so both include :data:`router`; so are ``/openapi.json``
and ``/docs`` (:mod:`callfs.openapi`), as ``server.docs`` says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from callfs import __version__, openapi
from callfs.addresses import TrustedProxies
from callfs.metrics import Metrics, exposition
from callfs.permissions import User
from callfs.runtime import Runtime, open_runtime
from callfs.settings import Settings
from callfs.tracing import open_tracing
from callfs.web import USER_KEY, EdgeMiddleware, install_error_handlers

if TYPE_CHECKING:
    from callfs.tracing.otel import Tracing


async def get_runtime(request: Request) -> Runtime:
    """The process's runtime, opened by the app's lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


bearer = HTTPBearer(
    scheme_name="bearer",
    description="An API key: `Authorization: Bearer <api-key>`.",
    auto_error=False,
)
"""The security scheme the OpenAPI document names on every authenticated route. It
refuses nothing itself (``auto_error=False``): :func:`get_user` decides, as the fast
path does."""


async def get_user(
    request: Request,
    runtime: Annotated[Runtime, Depends(get_runtime)],
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    """The caller, from ``Authorization: Bearer <api-key>`` (named in the access log)."""
    user = runtime.auth.authenticate(request.headers.get("authorization"))
    request.scope[USER_KEY] = user.name
    return user


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CurrentUser = Annotated[User, Depends(get_user)]

CHECK_TIMEOUT = 1.0
"""Seconds ``/health`` waits for a dependency: liveness answers well within its probe's
timeout even when a dependency hangs."""

router = APIRouter()


@router.get(
    "/health",
    operation_id="health",
    tags=["system"],
    responses={200: openapi.answer("alive; `checks` tells which dependencies answer", "Health")},
)
async def health(runtime: RuntimeDep) -> dict[str, str | dict[str, str]]:
    """Liveness: the process answers, so ``status`` is always ``ok``; ``checks`` tells
    whether the metadata store and the coordination service (Redis) answer."""
    return {"status": "ok", "checks": await dependency_checks(runtime)}


@router.get(
    "/ready",
    operation_id="ready",
    tags=["system"],
    responses={
        200: openapi.answer("the metadata store answers: reads can be served", "Ready"),
        **openapi.errors({503: "the metadata store does not answer (`BACKEND_UNAVAILABLE`)"}),
    },
)
async def ready(runtime: RuntimeDep) -> dict[str, str]:
    """Readiness: the replica can serve reads (the metadata store answers). A Redis
    outage keeps it ready: reads go on and only mutations answer 503."""
    await runtime.ready()
    return {"status": "ready"}


@router.get(
    "/metrics",
    operation_id="metrics",
    tags=["system"],
    response_class=Response,
    responses={
        200: openapi.answer(
            "the Prometheus text format, or OpenMetrics if `Accept` names it",
            content={
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            },
        ),
        **openapi.errors({401: openapi.UNAUTHENTICATED}),
    },
)
async def metrics(request: Request, user: CurrentUser, runtime: RuntimeDep) -> Response:
    """Prometheus metrics (authenticated here; the metrics listener serves them openly),
    in OpenMetrics if ``Accept`` asks for it."""
    await runtime.metrics.refresh()
    body, content_type = exposition(runtime.metrics.registry, request.headers.get("accept"))
    return Response(body, media_type=content_type)


async def dependency_checks(runtime: Runtime) -> dict[str, str]:
    """``ok`` or ``unavailable`` for each shared dependency, also kept in
    ``callfs_dependency_up``; each is given at most :data:`CHECK_TIMEOUT` seconds."""
    pings = {"metadata_store": runtime.store.ping, "coordination": runtime.bus.ping}
    answers = await asyncio.gather(*(_answers(ping) for ping in pings.values()))
    for name, up in zip(pings, answers, strict=True):
        runtime.metrics.dependency_up.labels(name).set(1 if up else 0)
    return {name: "ok" if up else "unavailable" for name, up in zip(pings, answers, strict=True)}


async def _answers(ping: Callable[[], Awaitable[None]]) -> bool:
    try:
        await asyncio.wait_for(ping(), CHECK_TIMEOUT)
    except Exception:  # whatever goes wrong, liveness answers and reports it
        return False
    return True


NO_FASTAPI_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "auto_configure": False,
}
"""FastAPI's own OpenTelemetry layer, off: CallFS traces with :mod:`callfs.tracing`."""


class EdgeApp(FastAPI):
    """A FastAPI app whose outermost layer is :class:`EdgeMiddleware` (on ``state.metrics``),
    behind only the request spans when tracing is on.

    Starlette puts ``ServerErrorMiddleware``, which turns an unhandled exception into
    the 500, outside every added middleware; wrapping it gives that 500 the request id
    and security headers too, and counts it like any other answer.
    """

    front: Callable[[ASGIApp, FastAPI], ASGIApp] | None = None
    """A layer in front of the framework, inside the edge middleware (the gateway's
    fast path for file reads)."""
    documented: Sequence[APIRouter] = ()
    """Routers the OpenAPI document describes when the app does not serve them: another
    role serves them at the same base URL."""
    proxies: TrustedProxies | None = None
    """The proxies whose ``X-Forwarded-For`` the access log believes (None: none)."""
    tracing: Tracing | None = None
    """What puts a server span around each request, outside everything (None: off)."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = openapi.document(self, self.documented)
        return self.openapi_schema

    def build_middleware_stack(self) -> ASGIApp:
        metrics: Metrics = self.state.metrics
        inner = super().build_middleware_stack()
        if self.front is not None:
            inner = self.front(inner, self)
        edge = EdgeMiddleware(inner, metrics=metrics, proxies=self.proxies)
        return edge if self.tracing is None else self.tracing.requests(edge)


def build_app(
    settings: Settings,
    runtime: Runtime | None,
    *,
    component: str,
    title: str,
    description: str,
    routes: APIRouter,
    serving: Callable[[FastAPI, Runtime], AbstractAsyncContextManager[None]],
    front: Callable[[ASGIApp, FastAPI], ASGIApp] | None = None,
    documented: Sequence[APIRouter] = (),
) -> FastAPI:
    """A web role: ``routes`` plus the system routes, the edge middleware and the error
    handlers; ``serving(app, runtime)`` runs for the app's lifespan.

    With ``runtime`` given, the caller owns it (``callfs dev`` shares one runtime
    between roles) and the requests are traced as it is; otherwise the app opens its own
    at start-up (with the role's tracing, when ``tracing.otlp_endpoint`` is set) and
    closes it. ``documented`` routers are described by ``/openapi.json`` but served
    elsewhere.

    Raises:
        ModuleNotFoundError: tracing is on but the ``otel`` extra is not installed.
    """
    metrics = runtime.metrics if runtime is not None else Metrics()
    tracing = runtime.tracing if runtime is not None else open_tracing(settings.tracing, component)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        active = (
            runtime
            if runtime is not None
            else await open_runtime(settings, metrics=metrics, tracing=tracing)
        )
        try:
            app.state.runtime = active
            await dependency_checks(active)
            async with serving(app, active):
                yield
        finally:
            if runtime is None:
                await active.close()

    app = EdgeApp(
        title=title,
        version=__version__,
        description=description,
        lifespan=lifespan,
        openapi_url=None,  # served by docs_router, as server.docs says
        docs_url=None,
        redoc_url=None,
        # Not asked per request whether a global provider turned it on; its spans would
        # miss the fast path's requests, which never reach FastAPI's routing.
        telemetry=NO_FASTAPI_TELEMETRY,
    )
    app.state.metrics = metrics
    app.tracing = tracing
    app.front = front
    app.documented = documented
    if settings.server.trusted_proxies:
        app.proxies = TrustedProxies(settings.server.trusted_proxies)
    install_error_handlers(app, metrics, component)
    app.include_router(routes)
    app.include_router(router)
    if settings.server.docs != "off":
        app.include_router(docs_router(authenticated=settings.server.docs == "authenticated"))
    return app


def docs_router(*, authenticated: bool) -> APIRouter:
    """``/openapi.json`` and ``/docs`` (Swagger UI, its files and its initializer), all
    needing an API key when ``authenticated``."""
    docs = APIRouter(
        include_in_schema=False, dependencies=[Depends(get_user)] if authenticated else []
    )

    @docs.api_route("/openapi.json", methods=["GET", "HEAD"])
    async def openapi_document(request: Request) -> Response:
        app: FastAPI = request.app
        if not hasattr(app.state, "openapi_json"):
            app.state.openapi_json = openapi.encoded(app.openapi())
        return Response(app.state.openapi_json, media_type="application/json")

    @docs.api_route("/docs", methods=["GET", "HEAD"])
    async def swagger_ui(request: Request) -> HTMLResponse:
        # Its own policy, in place of the API's (EdgeMiddleware keeps a response's own).
        return HTMLResponse(
            openapi.DOCS_HTML.format(title=request.app.title),
            headers={"Content-Security-Policy": openapi.DOCS_CSP, "Cache-Control": "no-cache"},
        )

    @docs.api_route("/docs/swagger-initializer.js", methods=["GET", "HEAD"])
    async def swagger_initializer() -> Response:
        return Response(openapi.DOCS_INITIALIZER, media_type="text/javascript")

    @docs.api_route("/docs/swagger-ui-bundle.js", methods=["GET", "HEAD"])
    async def swagger_bundle() -> FileResponse:
        return FileResponse(
            openapi.SWAGGER_UI / "swagger-ui-bundle.js", media_type="text/javascript"
        )

    @docs.api_route("/docs/swagger-ui.css", methods=["GET", "HEAD"])
    async def swagger_css() -> FileResponse:
        return FileResponse(openapi.SWAGGER_UI / "swagger-ui.css", media_type="text/css")

    return docs
