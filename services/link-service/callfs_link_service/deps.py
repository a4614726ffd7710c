"""Request dependencies as ``Annotated`` aliases: the runtime, the caller, links and limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from callfs.system import CurrentUser, RuntimeDep
from callfs_link_service.limits import LinkLimits
from callfs_link_service.links import Links

__all__ = ["CurrentUser", "LimitsDep", "LinksDep", "RuntimeDep"]


async def get_links(request: Request) -> Links:
    """The links of this process's runtime."""
    links: Links = request.app.state.links
    return links


async def get_limits(request: Request) -> LinkLimits:
    """The link rate limits of this process's runtime."""
    limits: LinkLimits = request.app.state.link_limits
    return limits


LinksDep = Annotated[Links, Depends(get_links)]
LimitsDep = Annotated[LinkLimits, Depends(get_limits)]
