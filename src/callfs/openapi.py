"""The API's description: ``/openapi.json`` (OpenAPI 3.1) and ``/docs`` (Swagger UI).

The routes declare their parameters, bodies and answers with FastAPI's own means
(``responses=``, ``openapi_extra=``, built from the pieces here); :func:`document`
then completes FastAPI's document (:func:`finish`): the schemas the routes name,
``X-Request-ID`` on every answer, no 422 (a request FastAPI cannot parse answers
400 ``BAD_REQUEST``) and no ``null`` for a parameter that may only be left out. A
route serving several methods gives each its own operation id (and whatever else
differs) under ``openapi_extra["x-methods"][method]``. The declarations are
documentation only: requests never read them (and the gateway's file requests are
answered in front of FastAPI, by :mod:`callfs_gateway.fastpath`).

``/docs`` is Swagger UI from the files the ``fastapi-offline`` package ships (no
CDN), started by a script of ours: the page has no inline script or style, so its
Content-Security-Policy (:data:`DOCS_CSP`) allows only what the server itself serves.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from callfs.errors import CallFSError
from callfs.web import _HTTP_CODES

REF = "#/components/schemas/"


def _subclasses(cls: type[CallFSError]) -> Iterator[type[CallFSError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


ERROR_CODES = sorted(
    {CallFSError.code, *(cls.code for cls in _subclasses(CallFSError)), *_HTTP_CODES.values()}
)
"""Every ``code`` an error answer can carry: the domain errors' and the HTTP-level ones'."""

_STRING = {"type": "string"}
_TIME = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"}
_MODE = {"type": "string", "pattern": "^[0-7]{3,4}$", "description": "octal, e.g. `0640`"}
_BACKEND = {"type": "string", "enum": ["localfs", "s3"]}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "Every error answer (`Content-Type: application/json`).",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "enum": ERROR_CODES},
            "message": {"type": "string", "description": "for people; never internals"},
        },
        "additionalProperties": False,
    },
    "Entry": {
        "type": "object",
        "description": "The metadata of a file or a directory.",
        "required": [
            "name",
            "path",
            "type",
            "size",
            "mode",
            "owner",
            "group",
            "mtime",
            "ctime",
            "backend",
            "instance_id",
            "replicas",
        ],
        "properties": {
            "name": _STRING,
            "path": {"type": "string", "description": "absolute, e.g. `/docs/a.txt`"},
            "type": {"type": "string", "enum": ["file", "directory"]},
            "size": {"type": "integer", "minimum": 0, "description": "bytes; 0 for a directory"},
            "mode": {"type": "string", "pattern": "^[0-7]{4}$", "description": "e.g. `0644`"},
            "owner": _STRING,
            "group": _STRING,
            "mtime": _TIME,
            "ctime": _TIME,
            "etag": {
                "type": ["string", "null"],
                "description": "files only (unquoted; the `ETag` header quotes it)",
            },
            "backend": _BACKEND,
            "instance_id": {
                "type": ["string", "null"],
                "description": "the storage node of the first replica; null for S3 and directories",
            },
            "replicas": {
                "type": "array",
                "items": _STRING,
                "description": "the storage nodes holding the file, in placement order",
            },
        },
    },
    "Listing": {
        "type": "object",
        "description": "A directory's entries, sorted by path, in pages of `limit`.",
        "required": ["path", "type", "recursive", "max_depth", "count", "items", "next_cursor"],
        "properties": {
            "path": _STRING,
            "type": {"type": "string", "const": "directory"},
            "recursive": {"type": "boolean"},
            "max_depth": {"type": "integer", "minimum": 0},
            "count": {"type": "integer", "minimum": 0},
            "items": {"type": "array", "items": {"$ref": REF + "Entry"}},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as `cursor` for the next page; null at the end",
            },
        },
    },
    "EntryChange": {
        "description": "One change per request: rename, move, chmod, or move to another backend.",
        "oneOf": [
            {"$ref": REF + "Rename"},
            {"$ref": REF + "Move"},
            {"$ref": REF + "Chmod"},
            {"$ref": REF + "ChangeBackend"},
        ],
    },
    "Rename": {
        "type": "object",
        "description": "Rename in place (same directory).",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "one path segment"},
            "overwrite": {"type": "boolean", "default": False},
            "create_parents": {"type": "boolean", "default": False},
            "backend": _BACKEND,
        },
        "additionalProperties": False,
    },
    "Move": {
        "type": "object",
        "description": "Move (a directory with its subtree); a trailing `/` names a directory.",
        "required": ["destination"],
        "properties": {
            "destination": {"type": "string", "minLength": 1, "description": "absolute path"},
            "overwrite": {"type": "boolean", "default": False},
            "create_parents": {"type": "boolean", "default": False},
            "backend": _BACKEND,
        },
        "additionalProperties": False,
    },
    "Chmod": {
        "type": "object",
        "description": "Change the mode (only the owner or root).",
        "required": ["mode"],
        "properties": {"mode": _MODE},
        "additionalProperties": False,
    },
    "ChangeBackend": {
        "type": "object",
        "description": "Move a file's bytes to another backend, keeping its path.",
        "required": ["backend"],
        "properties": {"backend": _BACKEND},
        "additionalProperties": False,
    },
    "LinkRequest": {
        "type": "object",
        "description": "At most 8 KiB; a flat JSON object.",
        "required": ["path"],
        "properties": {
            "path": {"type": "string", "minLength": 1, "description": "the file, e.g. `/f.txt`"},
            "expiry_seconds": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": 86400,
                "default": 3600,
            },
        },
    },
    "Link": {
        "type": "object",
        "required": ["url", "token", "expires_at", "expires"],
        "properties": {
            "url": {"type": "string", "description": "`GET` it, without auth, once"},
            "token": _STRING,
            "expires_at": _TIME,
            "expires": {**_TIME, "description": "repeats `expires_at` (the original's name)"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "const": "ok"},
            "checks": {
                "type": "object",
                "additionalProperties": {"type": "string", "enum": ["ok", "unavailable"]},
            },
        },
    },
    "Ready": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "const": "ready"}},
    },
    "Cluster": {
        "type": "object",
        "description": "The storage cluster as this gateway sees it (`docs/replication.md`).",
        "required": ["replication", "nodes", "repair"],
        "properties": {
            "replication": {
                "type": "object",
                "required": ["factor", "write_quorum"],
                "properties": {
                    "factor": {"type": "integer", "minimum": 1},
                    "write_quorum": {"type": "integer", "minimum": 1},
                },
            },
            "nodes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "instance_id",
                        "address",
                        "up",
                        "draining",
                        "replicas",
                        "used_bytes",
                        "free_bytes",
                        "total_bytes",
                    ],
                    "properties": {
                        "instance_id": _STRING,
                        "address": {"type": ["string", "null"]},
                        "up": {"type": "boolean"},
                        "draining": {"type": "boolean"},
                        "replicas": {"type": ["integer", "null"]},
                        "used_bytes": {"type": ["integer", "null"]},
                        "free_bytes": {"type": ["integer", "null"]},
                        "total_bytes": {"type": ["integer", "null"]},
                    },
                },
            },
            "repair": {
                "type": "object",
                "required": ["last_pass", "under_replicated"],
                "properties": {
                    "last_pass": {"type": ["number", "null"], "description": "Unix time"},
                    "under_replicated": {"type": ["integer", "null"]},
                },
            },
        },
    },
}

# Answers


def header(description: str, *, required: bool = False, **schema: Any) -> dict[str, Any]:
    """A response header: a string unless ``schema`` says more."""
    return {
        "description": description,
        "required": required,
        "schema": {"type": "string", **schema},
    }


def json_content(schema: str | dict[str, Any]) -> dict[str, Any]:
    """``application/json`` content of the named component (or an inline schema)."""
    return {
        "application/json": {
            "schema": {"$ref": REF + schema} if isinstance(schema, str) else schema
        }
    }


def answer(
    description: str,
    schema: str | dict[str, Any] | None = None,
    *,
    content: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A response object for ``responses=``: JSON of ``schema``, or ``content`` as given."""
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = json_content(schema)
    if content is not None:
        response["content"] = content
    if headers:
        response["headers"] = headers
    return response


_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": header('`Bearer realm="callfs"`', required=True)},
    416: {"Content-Range": header("`bytes */<size>`", required=True)},
    429: {"Retry-After": header("seconds", required=True, pattern="^[0-9]+$")},
}

UNAUTHENTICATED = "no, a malformed or an unknown API key (`AUTHENTICATION_FAILED`)"
UNAVAILABLE = (
    "a storage node, the metadata store or the coordination service does not answer "
    "(`BACKEND_UNAVAILABLE`)"
)


def errors(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """Error answers (the ``Error`` JSON), each with its description."""
    return {
        status: answer(description, "Error", headers=_ERROR_HEADERS.get(status))
        for status, description in described.items()
    }


# The document

TAGS = [
    {"name": "files", "description": "Files and directories by path: `/v1/files/{path}`."},
    {"name": "directories", "description": "Listings, recursive and in pages."},
    {"name": "links", "description": "Single-use download links (served by the link-service)."},
    {"name": "system", "description": "Liveness, readiness, metrics and the cluster's health."},
]

DESCRIPTION = """\
{description}

Every path is under the server's base URL. Authenticate with `Authorization: Bearer <api-key>`
(the `bearer` scheme) everywhere except `/health`, `/ready` and `/download/{{token}}`.
`/v1/links/*` and `/download/*` are the link-service's: an ingress (or `callfs dev`) serves them
at the same base URL.

Errors are always `application/json`: `{{"code": ..., "message": ...}}` (the `Error` schema).
Besides the answers listed per operation, any request may get **500** `INTERNAL_ERROR` (never with
internals) and, when its request line and headers exceed the configured limit, **431**
`BAD_REQUEST`. Every answer carries `X-Request-ID` and the security headers.
`docs/api.md` is the contract in prose.
"""


def document(app: FastAPI, documented: Sequence[APIRouter] = ()) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s routes, plus those of ``documented`` routers that
    ``app`` does not serve itself (routes another role serves at the same base URL).
    """
    with warnings.catch_warnings():
        # A route of several methods has one id until finish() reads its "x-methods".
        warnings.filterwarnings("ignore", "Duplicate Operation ID", UserWarning)
        spec = get_openapi(
            title=app.title,
            version=app.version,
            description=DESCRIPTION.format(description=app.description),
            routes=app.routes,
            tags=TAGS,
        )
        extras = [
            get_openapi(title=app.title, version=app.version, routes=router.routes)
            for router in documented
        ]
    paths: dict[str, Any] = spec.setdefault("paths", {})
    for extra in extras:
        for path, operations in extra.get("paths", {}).items():
            paths.setdefault(path, operations)
        for kind, items in extra.get("components", {}).items():
            spec.setdefault("components", {}).setdefault(kind, {}).update(items)
    return finish(spec)


def finish(spec: dict[str, Any]) -> dict[str, Any]:
    """Complete FastAPI's document (in place, and returned); see the module's docstring."""
    components: dict[str, Any] = spec.setdefault("components", {})
    for path_item in spec.get("paths", {}).values():
        for method, operation in path_item.items():
            _finish_operation(method, operation)
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for name in sorted(_referenced(spec)):
        schemas.setdefault(name, copy.deepcopy(SCHEMAS[name]))
    components["headers"] = {
        "X-Request-ID": header(
            "unique per request; a well-formed incoming `X-Request-ID` is echoed", required=True
        )
    }
    return spec


def _finish_operation(method: str, operation: dict[str, Any]) -> None:
    own: dict[str, Any] = operation.pop("x-methods", {}).get(method, {})
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.update(own.pop("responses", {}))
    operation.update(own)
    responses.pop("422", None)
    for response in responses.values():
        if method == "head":
            response.pop("content", None)  # a HEAD answer has headers only
        for media in response.get("content", {}).values():
            schema = media.get("schema")
            if isinstance(schema, dict) and "$ref" in schema:
                # What a route declares replaces what FastAPI read off its return type.
                media["schema"] = {"$ref": schema["$ref"]}
        response.setdefault("headers", {})["X-Request-ID"] = {
            "$ref": "#/components/headers/X-Request-ID"
        }
    parameters: list[dict[str, Any]] = operation.get("parameters", [])
    for parameter in parameters:
        parameter["schema"] = _without_null(parameter.get("schema", {}))
    parameters.sort(key=lambda parameter: parameter["in"] != "path")


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` → ``X``: a parameter is left out, never sent as null."""
    choices = schema.get("anyOf")
    if not isinstance(choices, list):
        return schema
    kept = [choice for choice in choices if choice != {"type": "null"}]
    if len(kept) != 1:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**kept[0], **rest}


def _referenced(spec: dict[str, Any]) -> set[str]:
    """The components of :data:`SCHEMAS` that ``spec`` names, and those they name."""
    found: set[str] = set()
    pending = [spec]
    while pending:
        node = pending.pop()
        for ref in _refs(node):
            name = ref.removeprefix(REF)
            if ref.startswith(REF) and name in SCHEMAS and name not in found:
                found.add(name)
                pending.append(SCHEMAS[name])
    return found


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def encoded(spec: dict[str, Any]) -> bytes:
    """The document as ``/openapi.json`` serves it."""
    return json.dumps(spec, ensure_ascii=False, separators=(",", ":")).encode()


# /docs

SWAGGER_UI = Path(fastapi_offline.__file__).parent / "static"
"""Swagger UI's bundle and stylesheet, as the ``fastapi-offline`` package ships them."""

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The ``/docs`` page's policy: its scripts, styles and requests are the server's own
(the stylesheet's icons are ``data:`` images); nothing inline, nothing elsewhere."""

# Relative URLs: the page works wherever the base URL puts it (an ingress may add a prefix).
DOCS_HTML = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/swagger-initializer.js"></script>
</body>
</html>
"""

DOCS_INITIALIZER = """\
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.json", document.baseURI).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""
"""Starts Swagger UI on the document (a file, not an inline script: see :data:`DOCS_CSP`);
no validator badge, which would load an image from elsewhere."""
