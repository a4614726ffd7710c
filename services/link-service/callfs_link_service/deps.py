"""Request dependencies as ``Annotated`` aliases: the runtime, the caller, links and limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from callfs.permissions import User
from callfs.runtime import Runtime
from callfs_link_service.limits import LinkLimits
from callfs_link_service.links import Links


def get_runtime(request: Request) -> Runtime:
    """The process's runtime, opened by the app's lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_user(request: Request) -> User:
    """The caller, from ``Authorization: Bearer <api-key>``."""
    links: Links = request.app.state.links
    return links.rt.auth.authenticate(request.headers.get("authorization"))


def get_links(request: Request) -> Links:
    """The links of this process's runtime."""
    links: Links = request.app.state.links
    return links


def get_limits(request: Request) -> LinkLimits:
    """The link rate limits of this process's runtime."""
    limits: LinkLimits = request.app.state.link_limits
    return limits


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CurrentUser = Annotated[User, Depends(get_user)]
LinksDep = Annotated[Links, Depends(get_links)]
LimitsDep = Annotated[LinkLimits, Depends(get_limits)]
