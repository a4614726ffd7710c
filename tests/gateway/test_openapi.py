"""``/openapi.json`` tells the truth, and ``/docs`` serves Swagger UI from the package.

The document is read as built (its declarations), served (the docs routes, their
policy, ``server.docs``), and checked against a live ``callfs dev`` by schemathesis:
every answer's status, content type, headers and body are the ones it declares.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from callfs_gateway.app import create_app
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from callfs import openapi
from callfs.errors import CallFSError
from callfs.settings import Settings, load_settings
from tests.support.dev import dev_ports, dev_server
from tests.support.harness import make_settings, running_cluster

# docs/api.md's answers, per operation.
STATUSES = {
    ("get", "/v1/files/{path}"): {200, 206, 304, 400, 401, 403, 404, 416, 503},
    ("head", "/v1/files/{path}"): {200, 206, 304, 400, 401, 403, 404, 416, 503},
    ("post", "/v1/files/{path}"): {200, 201, 400, 401, 403, 409, 413, 503},
    ("put", "/v1/files/{path}"): {200, 201, 400, 401, 403, 412, 413, 503},
    ("patch", "/v1/files/{path}"): {200, 400, 401, 403, 404, 409, 503},
    ("delete", "/v1/files/{path}"): {204, 400, 401, 403, 404, 409, 503},
    ("get", "/v1/directories/{path}"): {200, 400, 401, 403, 404, 503},
    ("get", "/v1/admin/cluster"): {200, 401, 403},
    ("get", "/health"): {200},
    ("get", "/ready"): {200, 503},
    ("get", "/metrics"): {200, 401},
    ("post", "/v1/links/generate"): {201, 400, 401, 403, 404, 429, 503},
    ("get", "/download/{token}"): {200, 404, 410, 429, 503},
}
PUBLIC = {("get", "/health"), ("get", "/ready"), ("get", "/download/{token}")}


def gateway_settings(tmp_path: Path, **server: Any) -> Settings:
    return make_settings(tmp_path, "sqlite", None, server=server)


@pytest.fixture
def document(tmp_path: Path) -> dict[str, Any]:
    """The gateway's document, as built (no server needed)."""
    return create_app(gateway_settings(tmp_path)).openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_the_document_has_every_operation_with_its_real_answers(document: dict[str, Any]) -> None:
    found = {
        (method, path): {int(status) for status in operation["responses"]}
        for method, path, operation in operations(document)
    }
    assert found == STATUSES
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    files = document["paths"]["/v1/files/{path}"]
    assert files["get"]["operationId"] != files["head"]["operationId"]


def test_no_answer_is_a_422_and_every_error_is_the_error_json(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    for method, _, operation in operations(document):
        for status, response in operation["responses"].items():
            assert status != "422"
            if int(status) >= 400 and method != "head":
                assert response["content"] == {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                }
    error = schemas["Error"]
    assert error["required"] == ["code", "message"]
    codes = set(error["properties"]["code"]["enum"])
    assert {"INTERNAL_ERROR", "NOT_FOUND", "RATE_LIMIT_EXCEEDED"} <= codes
    assert {cls.code for cls in CallFSError.__subclasses__()} <= codes


def test_files_and_directories_declare_their_path_and_bodies(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        if path.startswith(("/v1/files/", "/v1/directories/")):
            first = operation["parameters"][0]
            assert (first["name"], first["in"], first["required"]) == ("path", "path", True)
            assert not any(
                choice == {"type": "null"}
                for parameter in operation["parameters"]
                for choice in parameter["schema"].get("anyOf", [])
            ), f"{method} {path}: an optional parameter is never null"
    files = document["paths"]["/v1/files/{path}"]
    octets = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    assert files["post"]["requestBody"]["content"] == octets
    assert files["put"]["requestBody"]["content"] == octets
    change = files["patch"]["requestBody"]["content"]["application/json"]["schema"]
    assert change == {"$ref": "#/components/schemas/EntryChange"}
    forms = document["components"]["schemas"]["EntryChange"]["oneOf"]
    assert {form["$ref"].rsplit("/", 1)[1] for form in forms} == {
        "Rename",
        "Move",
        "Chmod",
        "ChangeBackend",
    }
    move = document["components"]["schemas"]["Move"]["properties"]
    assert {"destination", "overwrite", "create_parents"} <= set(move)
    generate = document["paths"]["/v1/links/generate"]["post"]["requestBody"]
    assert generate["content"]["application/json"]["schema"]["$ref"].endswith("/LinkRequest")
    listing = document["paths"]["/v1/directories/{path}"]["get"]["responses"]["200"]
    assert listing["content"]["application/json"]["schema"]["$ref"].endswith("/Listing")


def test_the_bearer_scheme_guards_every_route_but_the_public_ones(
    document: dict[str, Any],
) -> None:
    assert document["components"]["securitySchemes"] == {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer <api-key>`.",
        }
    }
    for method, path, operation in operations(document):
        expected = [] if (method, path) in PUBLIC else [{"bearer": []}]
        assert operation.get("security", []) == expected, f"{method} {path}"


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)


# Serving the document and /docs


async def test_docs_page_runs_only_its_own_files_under_its_own_policy(tmp_path: Path) -> None:
    app = create_app(gateway_settings(tmp_path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        # Exactly one policy: the page's own, without unsafe-inline or anything elsewhere.
        assert page.headers.get_list("content-security-policy") == [openapi.DOCS_CSP]
        assert "unsafe" not in openapi.DOCS_CSP and "http" not in openapi.DOCS_CSP
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-request-id"]
        # No inline script or style: every script names its file, and nothing is elsewhere.
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.DOTALL)
        assert [attributes for attributes, _ in scripts] == [
            ' src="docs/swagger-ui-bundle.js"',
            ' src="docs/swagger-initializer.js"',
        ]
        assert all(body == "" for _, body in scripts)
        assert "<style" not in page.text and "style=" not in page.text
        assert "//" not in page.text.replace("<!doctype html>", "")
        for asset, content_type in [
            ("docs/swagger-ui-bundle.js", "text/javascript"),
            ("docs/swagger-initializer.js", "text/javascript"),
            ("docs/swagger-ui.css", "text/css"),
        ]:
            answer = await client.get(f"/{asset}")
            assert answer.status_code == 200, asset
            assert answer.headers["content-type"].startswith(content_type)
            assert len(answer.content) > 100
        initializer = (await client.get("/docs/swagger-initializer.js")).text
        assert '"openapi.json"' in initializer and "validatorUrl: null" in initializer
        spec = await client.get("/openapi.json")
        assert spec.status_code == 200
        assert spec.headers["content-type"] == "application/json"
        assert spec.json() == app.openapi()
        # The API's strict policy everywhere else, once.
        assert spec.headers.get_list("content-security-policy") == [
            "default-src 'none'; frame-ancestors 'none'"
        ]


async def test_docs_off_serves_neither_the_document_nor_the_page(tmp_path: Path) -> None:
    app = create_app(gateway_settings(tmp_path, docs="off"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for url in ("/openapi.json", "/docs", "/docs/swagger-ui-bundle.js"):
            answer = await client.get(url)
            assert answer.status_code == 404, url
            assert answer.json()["code"] == "NOT_FOUND"


async def test_authenticated_docs_need_an_api_key(tmp_path: Path) -> None:
    async with running_cluster(gateway_settings(tmp_path, docs="authenticated")) as cluster:
        for url in ("/openapi.json", "/docs", "/docs/swagger-initializer.js"):
            refused = await cluster.client("anonymous").get(url)
            assert refused.status_code == 401, url
            assert refused.json()["code"] == "AUTHENTICATION_FAILED"
            assert (await cluster.client("carol").get(url)).status_code == 200, url


# The document against a live server


def built_document() -> dict[str, Any]:
    """The gateway's document on default settings (building it starts nothing)."""
    return create_app(load_settings(environ={})).openapi()


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """``callfs dev`` (gateway and link routes) holding the examples the document names;
    its URL and credentials."""
    with dev_server(tmp_path_factory.mktemp("openapi") / "data", **dev_ports()) as (url, key):
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=auth, timeout=10) as client:
            # What it serves is the document under test.
            assert client.get("/openapi.json").json() == built_document()
            assert client.post("/v1/files/report.pdf", content=b"%PDF-1.7").status_code == 201
            assert client.post("/v1/files/docs/a.txt", content=b"a").status_code == 201
        yield url, auth


# Loaded when the module is (schemathesis makes one test per operation at collection);
# the requests go to the live server of the `dev` fixture.
schema = schemathesis.openapi.from_dict(
    built_document(),
    config=schemathesis.Config.from_dict(
        {
            "seed": 1204,
            "generation": {"max-examples": 50, "deterministic": True},
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)


@schema.parametrize()
def test_every_answer_is_the_one_the_document_declares(
    case: schemathesis.Case, dev: tuple[str, dict[str, str]]
) -> None:
    """No 5xx, and every status, content type, header and body as declared."""
    url, auth = dev
    case.call_and_validate(
        base_url=url,
        headers=auth,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ],
        timeout=10,
    )
