"""The gateway's REST routes: thin translations between HTTP and :class:`FileSystem`."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Callable
from email.utils import format_datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.routing import Match
from starlette.types import Scope

from callfs import paths, permissions
from callfs.entry import Entry, format_mode, format_time, parse_mode
from callfs.errors import BadRequest, CallFSError, IsADirectory, NotADirectory, PayloadTooLarge
from callfs.paths import RequestPath
from callfs.permissions import User
from callfs.web import PATH_KEY, json_object
from callfs_gateway import admin, spec
from callfs_gateway.deps import CurrentUser, FileSystemDep
from callfs_gateway.filesystem import FileSystem, Listing, etag_matches
from callfs_gateway.ranges import parse_range

FILES_PREFIX = b"/v1/files"
DIRECTORIES_PREFIX = b"/v1/directories"
MAX_PATCH_BODY = 64 * 1024
DEFAULT_MAX_DEPTH = 100
MAX_DEPTH = 1000  # deeper requests are clamped, as the original CallFS did


class EntryRoute(APIRoute):
    """A route whose ``{path:path}`` matches line breaks too.

    Starlette's path convertor is ``.*``, which stops at ``\\n``: a path with ``%0A``
    would match no route and answer 404 instead of 400 ``INVALID_PATH``. When the
    usual match fails, the route's own pattern is tried again with ``.`` matching
    anything (so its router is included without a prefix, as ``build_app`` does).
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.any_character_regex = re.compile(self.path_regex.pattern, re.DOTALL)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE or scope["type"] != "http":
            return match, child_scope
        found = self.any_character_regex.match(get_route_path(scope))
        if found is None:
            return match, child_scope
        params = {
            key: self.param_convertors[key].convert(value)
            for key, value in found.groupdict().items()
        }
        child_scope = {
            "endpoint": self.endpoint,
            "path_params": {**scope.get("path_params", {}), **params},
            "route": self,
        }
        if self.methods and scope["method"] not in self.methods:
            return Match.PARTIAL, child_scope
        return Match.FULL, child_scope


router = APIRouter(route_class=EntryRoute)


def request_path(request: Request, prefix: bytes) -> RequestPath:
    """The validated path named by the URL after ``prefix`` (percent-decoded once), also
    left for the access log.

    The router matched the decoded URL; the path is read from the raw one, where
    ``%2F`` still differs from ``/``. The two agree only when the raw URL spells
    ``prefix`` as written: one that encodes any of it (``/v1%2Ffiles/a``,
    ``/v1/fil%65s/a``) names no endpoint.

    Raises:
        HTTPException: 404, the raw URL does not start with ``prefix`` and a ``/``.
        InvalidPath: the rest breaks a path rule.
    """
    raw: bytes = request.scope.get("raw_path") or quote(request.scope["path"]).encode()
    rest = raw[len(prefix) :]
    if not raw.startswith(prefix) or rest[:1] not in (b"", b"/"):
        raise HTTPException(status_code=404)
    target = paths.from_url(rest)
    request.scope[PATH_KEY] = target.path
    return target


def entry_headers(entry: Entry) -> dict[str, str]:
    """The ``X-CallFS-*`` headers (and validators) describing an entry."""
    headers = {
        "X-CallFS-Type": entry.type,
        "X-CallFS-Size": str(entry.size if not entry.is_dir else 0),
        "X-CallFS-Mode": format_mode(entry.mode),
        "X-CallFS-Owner": entry.owner,
        "X-CallFS-Group": entry.group,
        "X-CallFS-MTime": format_time(entry.mtime),
        "Last-Modified": format_datetime(entry.mtime, usegmt=True),
    }
    if entry.instance_id:
        headers["X-CallFS-Instance-ID"] = entry.instance_id
    if not entry.is_dir:
        headers["X-CallFS-Replicas"] = ",".join(entry.holders)
        # Said outright: a small file kept in the metadata store names no node either.
        headers["X-CallFS-Backend"] = entry.backend
    if entry.etag:
        headers["ETag"] = f'"{entry.etag}"'
    return headers


def _mode(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_mode(value)
    except ValueError as exc:
        raise BadRequest(f"invalid mode: {exc}") from None


def _check_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and limit and int(declared) > limit:
        raise PayloadTooLarge(f"upload of {declared} bytes exceeds the maximum of {limit} bytes")


# Files


@router.api_route("/v1/files", methods=["GET", "HEAD"], include_in_schema=False)
@router.api_route(
    "/v1/files/{path:path}",
    methods=["GET", "HEAD"],
    tags=["files"],
    response_class=Response,
    responses=spec.READ,
    openapi_extra=spec.READ_EXTRA,
)
async def read_entry(
    request: Request,
    user: CurrentUser,
    fs: FileSystemDep,
    if_none_match: Annotated[str | None, Header(description=spec.IF_NONE_MATCH_READ)] = None,
    range_header: Annotated[str | None, Header(alias="range", description=spec.RANGE)] = None,
) -> Response:
    """Download a file (ranges, conditional GET), or list a directory's children."""
    return await answer_read(
        fs,
        user,
        request_path(request, FILES_PREFIX),
        head=request.method == "HEAD",
        if_none_match=if_none_match,
        range_header=range_header,
    )


async def answer_read(
    fs: FileSystem,
    user: User,
    target: RequestPath,
    *,
    head: bool,
    if_none_match: str | None,
    range_header: str | None,
) -> Response:
    """The answer to GET or HEAD of ``target``: the file's bytes (a range of them, or
    304), or the directory's children. Shared by the route and the fast path
    (:mod:`callfs_gateway.fastpath`).
    """
    entry = await fs.stat(user, target.path)
    headers = entry_headers(entry)
    if entry.is_dir:
        listing = fs.listing(user, entry, max_depth=0)
        return StreamingResponse(
            _nothing() if head else _json_array(listing),
            media_type="application/json",
            headers=headers,
        )
    # The permission first: a 304 or 416 to a caller who may not read leaks the ETag or size.
    permissions.require(user, entry, permissions.READ, "read")
    if target.trailing_slash:
        raise NotADirectory(f"{target.path} is not a directory")
    headers["Accept-Ranges"] = "bytes"
    if if_none_match is not None and etag_matches(if_none_match, entry.etag):
        return Response(status_code=304, headers=_validators(headers))
    span = parse_range(range_header, entry.size)
    start, end = span if span else (0, entry.size - 1)
    length = end - start + 1 if entry.size else 0
    headers["Content-Length"] = str(length)
    status = 206 if span else 200
    if span:
        headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
    if head:
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    download = await fs.open_file(user, entry, start, end)
    if length <= fs.settings.server.chunk_size:
        # One chunk at most: answered whole, without a streaming response's task group.
        body = b"".join([chunk async for chunk in download.stream])
        return Response(
            body, status_code=status, headers=headers, media_type="application/octet-stream"
        )
    return StreamingResponse(
        download.stream,
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


def _validators(headers: dict[str, str]) -> dict[str, str]:
    keep = ("ETag", "Last-Modified", "X-CallFS-Type", "X-CallFS-MTime")
    return {key: value for key, value in headers.items() if key in keep}


@router.post("/v1/files", include_in_schema=False)
@router.post(
    "/v1/files/{path:path}",
    status_code=201,
    operation_id="create_entry",
    tags=["files"],
    responses=spec.CREATE_ANSWERS,
    openapi_extra=spec.with_body(spec.CREATE),
)
async def create_entry(
    request: Request,
    user: CurrentUser,
    fs: FileSystemDep,
    mode: Annotated[
        str | None,
        # The pattern documents; answer_create checks (the fast path answers without FastAPI).
        Query(description="octal mode, e.g. 0750", json_schema_extra={"pattern": "^[0-7]{3,4}$"}),
    ] = None,
    backend: Annotated[str | None, spec.BACKEND_HEADER] = None,
) -> JSONResponse:
    """Create a file from the body, or a directory when the path ends in ``/``."""
    return await answer_create(
        fs, user, request_path(request, FILES_PREFIX), request, mode=mode, backend=backend
    )


async def answer_create(
    fs: FileSystem,
    user: User,
    target: RequestPath,
    request: Request,
    *,
    mode: str | None,
    backend: str | None,
) -> JSONResponse:
    """The answer to POST of ``target`` (the body read from ``request``). Shared by the
    route and the fast path (:mod:`callfs_gateway.fastpath`)."""
    chosen_mode = _mode(mode)
    if target.trailing_slash:
        entry, created = await fs.create_directory(user, target.path, chosen_mode)
        return JSONResponse(entry.to_json(), status_code=201 if created else 200)
    _check_length(request, fs.settings.server.max_upload_bytes)
    entry, _ = await fs.write_file(
        user,
        target.path,
        request.stream(),
        replace=False,
        mode=chosen_mode,
        backend_name=_backend(backend),
    )
    return JSONResponse(entry.to_json(), status_code=201)


@router.put("/v1/files", include_in_schema=False)
@router.put(
    "/v1/files/{path:path}",
    operation_id="replace_file",
    tags=["files"],
    responses=spec.REPLACE_ANSWERS,
    openapi_extra=spec.with_body(spec.UPLOAD),
)
async def replace_file(
    request: Request,
    user: CurrentUser,
    fs: FileSystemDep,
    if_match: Annotated[str | None, Header(description=spec.IF_MATCH)] = None,
    if_none_match: Annotated[str | None, Header(description=spec.IF_NONE_MATCH_WRITE)] = None,
    backend: Annotated[str | None, spec.BACKEND_HEADER] = None,
) -> JSONResponse:
    """Replace a file's content atomically (200), or create it (201)."""
    return await answer_replace(
        fs,
        user,
        request_path(request, FILES_PREFIX),
        request,
        if_match=if_match,
        if_none_match=if_none_match,
        backend=backend,
    )


async def answer_replace(
    fs: FileSystem,
    user: User,
    target: RequestPath,
    request: Request,
    *,
    if_match: str | None,
    if_none_match: str | None,
    backend: str | None,
) -> JSONResponse:
    """The answer to PUT of ``target`` (the body read from ``request``). Shared by the
    route and the fast path (:mod:`callfs_gateway.fastpath`)."""
    if target.is_root:
        raise IsADirectory("/ is a directory")
    if target.trailing_slash:
        raise BadRequest("PUT takes a file path; a trailing '/' names a directory")
    _check_length(request, fs.settings.server.max_upload_bytes)
    entry, created = await fs.write_file(
        user,
        target.path,
        request.stream(),
        replace=True,
        backend_name=_backend(backend),
        if_match=if_match,
        if_none_match=if_none_match,
    )
    return JSONResponse(entry.to_json(), status_code=201 if created else 200)


def _backend(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in ("localfs", "s3"):
        raise BadRequest("X-CallFS-Backend must be 'localfs' or 's3'")
    return value


@router.patch("/v1/files", include_in_schema=False)
@router.patch(
    "/v1/files/{path:path}",
    operation_id="change_entry",
    tags=["files"],
    responses=spec.CHANGE_ANSWERS,
    openapi_extra=spec.with_body(spec.CHANGE, spec.OVERWRITE),
)
async def change_entry(request: Request, user: CurrentUser, fs: FileSystemDep) -> JSONResponse:
    """Rename (``name``), move (``destination``), move between backends, or chmod (``mode``)."""
    target = request_path(request, FILES_PREFIX)
    body = await json_object(request, MAX_PATCH_BODY)
    if "mode" in body:
        if any(key in body for key in ("name", "destination")):
            raise BadRequest("change the mode and the name in separate requests")
        if not isinstance(body["mode"], str):
            raise BadRequest('mode must be an octal string such as "0640"')
        mode = _mode(body["mode"])
        assert mode is not None
        entry = await fs.chmod(user, target.path, mode, want_dir=target.trailing_slash)
        return JSONResponse({**entry.to_json(), "path": entry.path})
    # Like the original CallFS, ?overwrite=true works too (the body may also say so).
    overwrite = _flag(body, "overwrite") or request.query_params.get("overwrite") == "true"
    create_parents = _flag(body, "create_parents")
    backend = body.get("backend")
    if backend is not None and backend not in ("localfs", "s3"):
        raise BadRequest("backend must be 'localfs' or 's3'")
    if "name" in body and "destination" in body:
        raise BadRequest("give either name or destination, not both")
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not name or "/" in name:
            raise BadRequest("name must be a single path segment")
        named = paths.normalize(paths.join(paths.parent(target.path), name))
    elif "destination" in body:
        if not isinstance(body["destination"], str) or not body["destination"]:
            raise BadRequest("destination must be a path")
        named = paths.normalize(body["destination"])
    elif backend is not None:
        named = target
    else:
        raise BadRequest("the body needs one of name, destination or mode")
    # A trailing slash names a directory, on either side.
    entry = await fs.move(
        user,
        target.path,
        named.path,
        overwrite=overwrite,
        create_parents=create_parents,
        backend_name=backend,
        source_dir=target.trailing_slash,
        destination_dir=named.trailing_slash,
    )
    return JSONResponse({**entry.to_json(), "path": named.path})


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{key} must be true or false")
    return value


@router.delete("/v1/files", include_in_schema=False, status_code=204)
@router.delete(
    "/v1/files/{path:path}",
    status_code=204,
    operation_id="delete_entry",
    tags=["files"],
    response_class=Response,
    responses=spec.DELETE_ANSWERS,
    openapi_extra=spec.PATH,
)
async def delete_entry(
    request: Request,
    user: CurrentUser,
    fs: FileSystemDep,
    recursive: bool = False,
) -> Response:
    """Delete a file or an empty directory (``?recursive=true``: a whole subtree)."""
    target = request_path(request, FILES_PREFIX)
    await fs.delete(user, target.path, recursive=recursive, want_dir=target.trailing_slash)
    return Response(status_code=204)


# Directories


@router.get("/v1/directories", include_in_schema=False)
@router.get(
    "/v1/directories/{path:path}",
    operation_id="list_directory",
    tags=["directories"],
    response_class=Response,
    responses=spec.LIST_ANSWERS,
    openapi_extra=spec.DIRECTORY,
)
async def list_directory(
    request: Request,
    user: CurrentUser,
    fs: FileSystemDep,
    recursive: bool = False,
    max_depth: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    cursor: str | None = None,
) -> StreamingResponse:
    """List a directory, optionally recursively to ``max_depth``, in pages of ``limit``;
    the body is streamed as the store is read.
    """
    target = request_path(request, DIRECTORIES_PREFIX)
    if not recursive:
        depth = 0
    else:
        depth = min(max_depth, MAX_DEPTH) if max_depth is not None else DEFAULT_MAX_DEPTH
    after = _decode_cursor(cursor) if cursor else None
    listing = await fs.open_listing(user, target.path, max_depth=depth, limit=limit, after=after)
    # Counted first, for the header; the body then stops at that many entries, and an
    # entry added meanwhile only moves the cursor (one removed makes the page shorter).
    count = await listing.count()
    opening = {
        "path": target.path,
        "type": "directory",
        "recursive": recursive,
        "max_depth": depth,
        "count": count,
    }
    return StreamingResponse(
        _listing_body(listing, opening, count),
        media_type="application/json",
        headers={"X-CallFS-Count": str(count), "X-CallFS-Recursive": str(recursive).lower()},
    )


def _dumps(value: Any) -> str:
    """JSON as the API writes it (compact, UTF-8 kept)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def _json_items(listing: Listing, limit: int | None = None) -> AsyncIterator[bytes]:
    """The listing's entries as the comma-separated members of a JSON array, a page at
    a time (each page encoded between two reads of the store).
    """
    separator = b""
    async for page in listing.encoded(limit):
        yield separator + page
        separator = b","


async def _json_array(listing: Listing) -> AsyncIterator[bytes]:
    """A directory's children as ``GET /v1/files/{dir}/`` answers: a JSON array, streamed."""
    yield b"["
    async for chunk in _json_items(listing):
        yield chunk
    yield b"]"


async def _listing_body(
    listing: Listing, opening: dict[str, Any], count: int
) -> AsyncIterator[bytes]:
    """``GET /v1/directories/...``'s object, streamed: ``opening``'s members, the items
    (at most ``count``), then ``next_cursor``.
    """
    yield (_dumps(opening)[:-1] + ',"items":[').encode()
    async for chunk in _json_items(listing, count):
        yield chunk
    cursor = _encode_cursor(listing.next_after) if listing.next_after else None
    yield ('],"next_cursor":' + _dumps(cursor) + "}").encode()


async def _nothing() -> AsyncIterator[bytes]:
    """The body of a HEAD of a directory: none, with the GET's headers (no length)."""
    return
    yield b""


def _encode_cursor(path: str) -> str:
    return base64.urlsafe_b64encode(path.encode()).decode().rstrip("=")


_CURSOR = re.compile(r"[A-Za-z0-9_-]+")


def _decode_cursor(cursor: str) -> str:
    if not _CURSOR.fullmatch(cursor):
        raise BadRequest("invalid cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return paths.normalize(base64.urlsafe_b64decode(padded.encode()).decode()).path
    except (ValueError, binascii.Error, UnicodeDecodeError, CallFSError):
        raise BadRequest("invalid cursor") from None


router.include_router(admin.router)
