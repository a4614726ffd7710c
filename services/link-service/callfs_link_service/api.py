"""The link-service's routes: thin translations between HTTP and :class:`Links`."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from callfs import paths
from callfs.errors import BadRequest, IsADirectory
from callfs.web import json_object
from callfs_link_service.deps import CurrentUser, LimitsDep, LinksDep
from callfs_link_service.links import expiry_from_json

MAX_GENERATE_BODY = 8 * 1024
# RFC 5987 attr-char beyond letters, digits and "_.-~" (which quote() never escapes).
_ATTR_CHARS = "!#$&+^`|"

router = APIRouter()


@router.post("/v1/links/generate", status_code=201)
async def generate_link(
    request: Request, user: CurrentUser, links: LinksDep, limits: LimitsDep
) -> JSONResponse:
    """Issue a single-use download link to a file the caller may read."""
    await limits.generate(user)
    body = await json_object(request, MAX_GENERATE_BODY)
    raw_path = body.get("path")
    if not isinstance(raw_path, str) or not raw_path:
        raise BadRequest("path is required and must be a string")
    target = paths.normalize(raw_path)
    if target.is_root:
        raise IsADirectory("/ is a directory; links name files")
    if target.trailing_slash:
        raise BadRequest("links name files; a trailing '/' names a directory")
    issued = await links.generate(user, target.path, expiry_from_json(body))
    return JSONResponse(issued.to_json(), status_code=201)


@router.get("/download/{token}")
async def download(
    request: Request, token: str, links: LinksDep, limits: LimitsDep
) -> StreamingResponse:
    """Download the file behind a single-use link (no auth: the link is the permission)."""
    peer = request.client.host if request.client else None
    await limits.download(peer, request.headers.getlist("x-forwarded-for"))
    opened = await links.consume(token)
    entry = opened.entry
    headers = {
        "Content-Length": str(entry.size),
        "Content-Disposition": content_disposition(entry.name),
        "Cache-Control": "no-store",
    }
    if entry.etag:
        headers["ETag"] = f'"{entry.etag}"'
    return StreamingResponse(opened.stream, headers=headers, media_type="application/octet-stream")


def content_disposition(name: str) -> str:
    """``attachment`` with the file name: a plain ASCII ``filename`` always, and RFC 6266's
    ``filename*`` (UTF-8, percent-encoded) when the name is not plain ASCII.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    fallback = "".join(
        char if 0x20 <= ord(char) < 0x7F and char not in '"\\' else "_"
        for char in decomposed
        if not unicodedata.combining(char)
    )
    value = f'attachment; filename="{fallback or "download"}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe=_ATTR_CHARS)}"
    return value
