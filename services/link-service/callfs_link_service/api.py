"""The link-service's routes: thin translations between HTTP and :class:`Links`."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from callfs import paths
from callfs.errors import BadRequest, IsADirectory
from callfs.openapi import UNAUTHENTICATED, UNAVAILABLE, answer, errors, header, json_content
from callfs.web import PATH_KEY, json_object
from callfs_link_service.deps import CurrentUser, LimitsDep, LinksDep
from callfs_link_service.links import expiry_from_json

MAX_GENERATE_BODY = 8 * 1024
# RFC 5987 attr-char beyond letters, digits and "_.-~" (which quote() never escapes).
_ATTR_CHARS = "!#$&+^`|"

router = APIRouter()

_LIMITED = "too many requests (`RATE_LIMIT_EXCEEDED`); `Retry-After` says when to come back"


@router.post(
    "/v1/links/generate",
    status_code=201,
    operation_id="generate_link",
    tags=["links"],
    responses={
        201: answer("The link: `url` downloads the file once, until `expires_at`.", "Link"),
        **errors(
            {
                400: (
                    "a bad body, path or expiry (`BAD_REQUEST`, `INVALID_PATH`), or a directory "
                    "(`IS_A_DIRECTORY`, `NOT_A_DIRECTORY`)"
                ),
                401: UNAUTHENTICATED,
                403: "no read permission on the file",
                404: "no such file (`FILE_NOT_FOUND`)",
                429: _LIMITED + " (per API key, across replicas)",
                503: UNAVAILABLE,
            }
        ),
    },
    openapi_extra={
        "requestBody": {
            "description": "The file and the link's lifetime.",
            "required": True,
            "content": json_content("LinkRequest"),
        }
    },
)
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
    request.scope[PATH_KEY] = target.path
    issued = await links.generate(user, target.path, expiry_from_json(body))
    return JSONResponse(issued.to_json(), status_code=201)


@router.get(
    "/download/{token}",
    operation_id="download",
    tags=["links"],
    response_class=Response,
    responses={
        200: answer(
            "The file's bytes, streamed; the link is used up.",
            content={
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            headers={
                "Content-Disposition": header('`attachment; filename="<name>"`', required=True),
                "Content-Length": header("bytes", required=True, pattern="^[0-9]+$"),
                "ETag": header("the content's ETag, quoted"),
            },
        ),
        **errors(
            {
                404: (
                    "an unknown or tampered token, or the file is gone, re-created or moved "
                    "(`FILE_NOT_FOUND`)"
                ),
                410: "the link was used (`LINK_USED`) or has expired (`LINK_EXPIRED`)",
                429: _LIMITED + " (per client address)",
                503: UNAVAILABLE,
            }
        ),
    },
)
async def download(
    request: Request, token: str, links: LinksDep, limits: LimitsDep
) -> StreamingResponse:
    """Download the file behind a single-use link (no auth: the link is the permission)."""
    peer = request.client.host if request.client else None
    await limits.download(peer, request.headers.getlist("x-forwarded-for"))
    opened = await links.consume(token)
    entry = opened.entry
    request.scope[PATH_KEY] = entry.path
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
