"""What the gateway's routes declare to the OpenAPI document (:mod:`callfs.openapi`):
their path parameter, bodies and answers, as ``docs/api.md`` states them.

Documentation only: no request reads any of this.
"""

from __future__ import annotations

from typing import Any

from fastapi import Header

from callfs.openapi import UNAUTHENTICATED, UNAVAILABLE, answer, errors, header, json_content


def path_parameter(example: str) -> dict[str, Any]:
    """``{path}`` of ``/v1/files/{path}`` and ``/v1/directories/{path}``: the routes read it
    from the raw URL themselves, so it is declared here rather than as an argument."""
    return {
        "name": "path",
        "in": "path",
        "required": True,
        "description": (
            "The rest of the URL, percent-decoded once: `docs/a.txt`, or `docs/` (a trailing "
            "`/` names a directory). No `.` or `..` segment, empty segment, backslash or "
            "control character; segments ≤ 255 bytes, the whole ≤ 4096 bytes. OpenAPI tools "
            "(Swagger UI too) percent-encode a `/` in a path parameter, and an encoded "
            "separator (`%2F`) answers 400 `INVALID_PATH`: through them, name top-level "
            "entries, or write the URL yourself."
        ),
        "schema": {"type": "string"},
        "example": example,
    }


PATH = {"parameters": [path_parameter("report.pdf")]}
DIRECTORY = {"parameters": [path_parameter("docs")]}

IF_NONE_MATCH_READ = "an ETag (or a list, or `*`): 304 when it matches the file's"
IF_NONE_MATCH_WRITE = "`*`: only create (412 when the file exists)"
IF_MATCH = "the ETag the file must have (412 otherwise)"
RANGE = (
    "one range, `bytes=a-b`, `bytes=a-` or `bytes=-n`: 206 (416 when outside the file); "
    "several, or a malformed one, are ignored"
)
# Documented (json_schema_extra), checked by the route: the fast path answers without FastAPI.
BACKEND_HEADER = Header(
    alias="x-callfs-backend",
    description="where a new file's bytes go (default: `backend.default_backend`)",
    json_schema_extra={"enum": ["localfs", "s3"]},
)


def with_body(body: dict[str, Any], *parameters: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` of a route with ``{path}``, a request body and more ``parameters``
    than the route's arguments declare."""
    return {"parameters": [path_parameter("report.pdf"), *parameters], "requestBody": body}


_UPLOADED = "The file's bytes, streamed (any length up to `server.max_upload_bytes`)."
_OCTETS = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
UPLOAD = {"description": _UPLOADED, "required": True, "content": _OCTETS}
CREATE = {"description": _UPLOADED + " None for `dir/`.", "required": False, "content": _OCTETS}
OVERWRITE = {
    "name": "overwrite",
    "in": "query",
    "required": False,
    "description": "`true`: like the body's `overwrite` (the original CallFS's spelling)",
    "schema": {"type": "boolean", "default": False},
}
CHANGE = {
    "description": "One change; a flat JSON object of at most 64 KiB.",
    "required": True,
    "content": json_content("EntryChange"),
}

_ENTRY = {
    "X-CallFS-Type": header("`file` or `directory`", required=True, enum=["file", "directory"]),
    "X-CallFS-Size": header("bytes (0 for a directory)", required=True, pattern="^[0-9]+$"),
    "X-CallFS-Mode": header("e.g. `0644`", required=True, pattern="^[0-7]{4}$"),
    "X-CallFS-Owner": header("owner", required=True),
    "X-CallFS-Group": header("group", required=True),
    "X-CallFS-MTime": header("RFC 3339 UTC", required=True),
    "Last-Modified": header("HTTP date", required=True),
    "ETag": header("files: the content's ETag, quoted"),
    "X-CallFS-Instance-ID": header("files on a storage node: the node of the first replica"),
    "X-CallFS-Replicas": header("files: the nodes holding it, comma-separated"),
}
_BYTES = {"Accept-Ranges": header("`bytes` (files)"), "Content-Length": header("bytes")}
_RANGE = {"Content-Range": header("`bytes <first>-<last>/<size>`", required=True)}
_VALIDATORS = {
    key: value
    for key, value in _ENTRY.items()
    if key in ("ETag", "Last-Modified", "X-CallFS-Type", "X-CallFS-MTime")
}
_READ_ERRORS = errors(
    {
        400: (
            "a broken path (`INVALID_PATH`), a file named with a trailing `/` "
            "(`NOT_A_DIRECTORY`), or a bad header value (`BAD_REQUEST`)"
        ),
        401: UNAUTHENTICATED,
        403: "no read permission on the file, or no search permission on a parent",
        404: "no such file or directory (`FILE_NOT_FOUND`)",
        416: "`Range` outside the file (`RANGE_NOT_SATISFIABLE`)",
        503: UNAVAILABLE,
    }
)

READ: dict[int | str, dict[str, Any]] = {
    200: answer(
        "A file's bytes, or a directory's children (an array of entries, streamed).",
        content={
            **_OCTETS,
            "application/json": {
                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Entry"}}
            },
        },
        headers={**_ENTRY, **_BYTES},
    ),
    206: answer(
        "The bytes of the one range asked for (`Range: bytes=a-b`).",
        content=_OCTETS,
        headers={**_ENTRY, **_BYTES, **_RANGE},
    ),
    304: answer("`If-None-Match` matches the file's ETag: no body.", headers=_VALIDATORS),
    **_READ_ERRORS,
}
READ_EXTRA = {
    **PATH,
    # One route serves both methods; each is its own operation (callfs.openapi.finish).
    "x-methods": {
        "get": {"operationId": "read_entry"},
        "head": {
            "operationId": "stat_entry",
            "summary": "Headers of a file or a directory",
            "responses": {
                "200": answer("The entry's headers (a file's or a directory's).", headers=_ENTRY),
                "206": answer("The headers of the range asked for.", headers={**_ENTRY, **_RANGE}),
            },
        },
    },
}

CREATE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: answer("`dir/`: the directory was there already (idempotent).", "Entry"),
    201: answer("Created (missing parents too, mode 0755).", "Entry"),
    **errors(
        {
            400: (
                "a broken path (`INVALID_PATH`), a bad `mode` or `X-CallFS-Backend` "
                "(`BAD_REQUEST`), or a parent that is a file (`NOT_A_DIRECTORY`)"
            ),
            401: UNAUTHENTICATED,
            403: "no write and search permission on the parent",
            409: "something exists there already (`FILE_ALREADY_EXISTS`); its content is untouched",
            413: "`Content-Length` over the maximum upload (`PAYLOAD_TOO_LARGE`)",
            503: UNAVAILABLE,
        }
    ),
}

REPLACE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: answer("Replaced atomically.", "Entry"),
    201: answer("Created (missing parents too).", "Entry"),
    **errors(
        {
            400: (
                "a broken path (`INVALID_PATH`), a trailing `/` or a bad `X-CallFS-Backend` "
                "(`BAD_REQUEST`), a directory there (`IS_A_DIRECTORY`), or a parent that is "
                "a file (`NOT_A_DIRECTORY`)"
            ),
            401: UNAUTHENTICATED,
            403: "no write permission on the file (or on its parent, to create it)",
            412: "`If-Match` does not match, or `If-None-Match: *` and the file exists",
            413: "`Content-Length` over the maximum upload (`PAYLOAD_TOO_LARGE`)",
            503: UNAVAILABLE,
        }
    ),
}

CHANGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: answer("Changed: the entry, with its new `path`.", "Entry"),
    **errors(
        {
            400: (
                "a bad body or path (`BAD_REQUEST`, `INVALID_PATH`), a directory moved into "
                "itself, or a type mismatch (`NOT_A_DIRECTORY`, `IS_A_DIRECTORY`)"
            ),
            401: UNAUTHENTICATED,
            403: "no permission (chmod: only the owner or root)",
            404: "no such entry, or no parent for the destination (`FILE_NOT_FOUND`)",
            409: "the destination exists and `overwrite` is not set (`FILE_ALREADY_EXISTS`)",
            503: UNAVAILABLE,
        }
    ),
}

DELETE_ANSWERS: dict[int | str, dict[str, Any]] = {
    204: answer("Deleted."),
    **errors(
        {
            400: (
                "a broken path (`INVALID_PATH`), the root (`BAD_REQUEST`), or a file named "
                "with a trailing `/` (`NOT_A_DIRECTORY`)"
            ),
            401: UNAUTHENTICATED,
            403: "no write and search permission on the parent (or the sticky rule)",
            404: "no such file or directory (`FILE_NOT_FOUND`)",
            409: "a directory with entries and no `recursive=true` (`DIRECTORY_NOT_EMPTY`)",
            503: UNAVAILABLE,
        }
    ),
}

LIST_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: answer(
        "The listing, streamed.",
        "Listing",
        headers={
            "X-CallFS-Count": header("entries in `items`", required=True, pattern="^[0-9]+$"),
            "X-CallFS-Recursive": header(
                "`true` or `false`", required=True, enum=["true", "false"]
            ),
        },
    ),
    **errors(
        {
            400: (
                "a broken path (`INVALID_PATH`), a bad parameter or cursor (`BAD_REQUEST`), or "
                "a file (`NOT_A_DIRECTORY`)"
            ),
            401: UNAUTHENTICATED,
            403: "no read and search permission on the directory",
            404: "no such directory (`FILE_NOT_FOUND`)",
            503: UNAVAILABLE,
        }
    ),
}

CLUSTER_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: answer("The cluster.", "Cluster"),
    **errors({401: UNAUTHENTICATED, 403: "only root may see it (`PERMISSION_DENIED`)"}),
}
