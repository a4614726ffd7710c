"""Domain errors to gRPC status codes: the storage node's one translation.

InvalidPath, BadRequest                    INVALID_ARGUMENT
NotFound                                   NOT_FOUND
AlreadyExists                              ALREADY_EXISTS
IsADirectory, NotADirectory,
DirectoryNotEmpty, PreconditionFailed      FAILED_PRECONDITION
ReplicaCorrupted (a block failed its CRC)  DATA_LOSS (logged at ERROR)
OSError ENOSPC / EDQUOT (disk full)        RESOURCE_EXHAUSTED
anything else                              INTERNAL (details stay in the log)

A caller that cancels or disconnects mid-stream is no error: it is logged at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc

from callfs.errors import (
    AlreadyExists,
    BadRequest,
    CallFSError,
    DirectoryNotEmpty,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
    PreconditionFailed,
    ReplicaCorrupted,
)

logger = logging.getLogger(__name__)

Method = TypeVar("Method", bound=Callable[..., Any])

_DOMAIN: tuple[tuple[tuple[type[CallFSError], ...], grpc.StatusCode], ...] = (
    ((InvalidPath, BadRequest), grpc.StatusCode.INVALID_ARGUMENT),
    ((NotFound,), grpc.StatusCode.NOT_FOUND),
    ((AlreadyExists,), grpc.StatusCode.ALREADY_EXISTS),
    (
        (IsADirectory, NotADirectory, DirectoryNotEmpty, PreconditionFailed),
        grpc.StatusCode.FAILED_PRECONDITION,
    ),
    ((ReplicaCorrupted,), grpc.StatusCode.DATA_LOSS),
)
_OS: tuple[tuple[type[OSError], grpc.StatusCode, str], ...] = (
    (FileNotFoundError, grpc.StatusCode.NOT_FOUND, NotFound.default_message),
    (FileExistsError, grpc.StatusCode.ALREADY_EXISTS, AlreadyExists.default_message),
    (IsADirectoryError, grpc.StatusCode.FAILED_PRECONDITION, IsADirectory.default_message),
    (NotADirectoryError, grpc.StatusCode.FAILED_PRECONDITION, NotADirectory.default_message),
)
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# How long a stream whose write failed waits for grpc to report the caller's cancellation.
CANCELLATION_GRACE = 5.0


def status_for(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and the details a caller may see for ``exc``."""
    if isinstance(exc, CallFSError):
        if isinstance(exc, ReplicaCorrupted):
            logger.error("stored data is corrupted: %s", exc.message)
        for kinds, code in _DOMAIN:
            if isinstance(exc, kinds):
                return code, exc.message
    elif isinstance(exc, OSError):
        if exc.errno in _DISK_FULL:
            logger.error("the volume is full: %s", exc)
            return grpc.StatusCode.RESOURCE_EXHAUSTED, "the volume is full"
        for kind, code, message in _OS:
            if isinstance(exc, kind):
                return code, message
    logger.error("storage operation failed", exc_info=exc)
    return grpc.StatusCode.INTERNAL, "internal error"


async def _abort(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    code, details = status_for(exc)
    await context.abort(code, details)


def translated(method: Method) -> Method:
    """Wrap a servicer method so domain and OS errors end the call with their status.

    A streaming method (an async generator) is driven here: its messages are written
    with ``context.write``, so a caller leaving mid-stream is noticed in this module.
    """
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def streaming(self: Any, request: Any, context: Any) -> None:
            async with contextlib.aclosing(method(self, request, context)) as responses:
                while True:
                    try:
                        response = await anext(responses)
                    except StopAsyncIteration:
                        return
                    except grpc.aio.AbortError:
                        raise
                    except Exception as exc:
                        await _abort(context, exc)
                        return
                    await _send(context, response, method.__name__)

        return cast(Method, streaming)

    call = cast(Callable[..., Awaitable[Any]], method)

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        try:
            return await call(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    return cast(Method, unary)


async def _send(context: grpc.aio.ServicerContext, response: Any, name: str) -> None:
    """Write one message of a response stream.

    When the caller cancels or disconnects while a message is on its way, grpc fails
    the write with its internal ``ExecuteBatchError``, at times before it has seen the
    cancellation; raised to grpc then, it is logged as an ERROR with a traceback.
    Waiting lets the cancellation arrive: grpc cancels this call and notes it at
    DEBUG. A write that fails for another reason raises after
    :data:`CANCELLATION_GRACE` seconds.
    """
    try:
        await context.write(response)
    except grpc.aio.AbortError:
        raise
    except Exception as exc:
        logger.debug("%s: the caller left mid-stream (%s)", name, type(exc).__name__)
        await asyncio.sleep(CANCELLATION_GRACE)
        raise
