"""The CallFS Python SDK: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

::

    from callfs.client import Client, NotFound

    with Client() as fs:                        # CALLFS_URL / CALLFS_API_KEY, or a profile
        fs.write("/docs/hello.txt", b"hello")
        print(fs.read("/docs/hello.txt"))
        for entry in fs.list("/docs", recursive=True):
            print(entry.path, entry.size, oct(entry.mode))

Only the standard library, httpx and (to read a profile file, lazily) PyYAML are
imported: nothing of the server. See docs/clients.md.
"""

from callfs.client._async import AsyncByteStream, AsyncClient, AsyncWriteData
from callfs.client._core import DEFAULT_CHUNK_SIZE, DEFAULT_PAGE_SIZE, Range, Retry
from callfs.client._sync import ByteStream, Client, WriteData
from callfs.client.config import Settings, config_file, resolve
from callfs.client.errors import (
    AlreadyExists,
    BadRequest,
    ClientError,
    ConfigError,
    Conflict,
    DirectoryNotEmpty,
    EndpointNotFound,
    Gone,
    InternalError,
    InvalidPath,
    IsADirectory,
    LinkExpired,
    LinkUsed,
    NotADirectory,
    NotFound,
    NotModified,
    PayloadTooLarge,
    PermissionDenied,
    PreconditionFailed,
    RangeNotSatisfiable,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    Unavailable,
)
from callfs.client.models import Entry, EntryType, Link

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_PAGE_SIZE",
    "AlreadyExists",
    "AsyncByteStream",
    "AsyncClient",
    "AsyncWriteData",
    "BadRequest",
    "ByteStream",
    "Client",
    "ClientError",
    "ConfigError",
    "Conflict",
    "DirectoryNotEmpty",
    "EndpointNotFound",
    "Entry",
    "EntryType",
    "Gone",
    "InternalError",
    "InvalidPath",
    "IsADirectory",
    "Link",
    "LinkExpired",
    "LinkUsed",
    "NotADirectory",
    "NotFound",
    "NotModified",
    "PayloadTooLarge",
    "PermissionDenied",
    "PreconditionFailed",
    "Range",
    "RangeNotSatisfiable",
    "RateLimited",
    "Retry",
    "ServerError",
    "Settings",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "WriteData",
    "config_file",
    "resolve",
]
