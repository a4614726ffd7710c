"""Request dependencies as ``Annotated`` aliases: the runtime, the caller, the filesystem."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from callfs.permissions import User
from callfs.runtime import Runtime
from callfs_gateway.filesystem import FileSystem


def get_runtime(request: Request) -> Runtime:
    """The process's runtime, opened by the app's lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_user(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> User:
    """The caller, from ``Authorization: Bearer <api-key>``."""
    return runtime.auth.authenticate(request.headers.get("authorization"))


def get_filesystem(request: Request) -> FileSystem:
    """The filesystem over this process's runtime."""
    filesystem: FileSystem = request.app.state.filesystem
    return filesystem


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CurrentUser = Annotated[User, Depends(get_user)]
FileSystemDep = Annotated[FileSystem, Depends(get_filesystem)]
