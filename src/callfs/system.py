"""What every web role serves besides its own API, and the dependencies they share.

``/health`` (liveness), ``/ready`` (readiness) and ``/metrics`` (authenticated on the
API port; the metrics listener serves the same registry openly) are identical on the
gateway and the link-service, so both include :data:`router`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from callfs.metrics import CONTENT_TYPE
from callfs.permissions import User
from callfs.runtime import Runtime


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
