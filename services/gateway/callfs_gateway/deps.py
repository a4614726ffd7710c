"""Request dependencies as ``Annotated`` aliases: the runtime, the caller, the filesystem."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from callfs.system import CurrentUser, RuntimeDep
from callfs_gateway.filesystem import FileSystem

__all__ = ["CurrentUser", "FileSystemDep", "RuntimeDep"]


async def get_filesystem(request: Request) -> FileSystem:
    """The filesystem over this process's runtime."""
    filesystem: FileSystem = request.app.state.filesystem
    return filesystem


FileSystemDep = Annotated[FileSystem, Depends(get_filesystem)]
