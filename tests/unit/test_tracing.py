"""Tracing: the spans a traced ``callfs dev`` and ``callfs storage-node`` export to an
OTLP/HTTP collector (a real one of the test's, decoding what it receives), and what an
untraced process does not load.
"""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from callfs.settings import SettingsError, load_settings
from tests.storage_node.conftest import METADATA
from tests.storage_node.test_node_process import SERVE_TIMEOUT, NodeProcess
from tests.support.dev import dev_ports, dev_server, environment

SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
FILE_ROUTE = "/v1/files/{path:path}"
NODE_SERVICE = "callfs.storage.v1.StorageNode"
STRONG = "a-strong-secret-of-32-characters!"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    error: bool


class Collector:
    """An OTLP/HTTP trace receiver on a free loopback port: ``POST /v1/traces``."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                collector.receive(self.path, body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def receive(self, path: str, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        self.paths.append(path)
        for resource in request.resource_spans:
            service = _attributes(resource.resource.attributes)["service.name"]
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes=_attributes(span.attributes),
                            error=span.status.code == 2,  # STATUS_CODE_ERROR
                        )
                    )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    yield receiver
    receiver.close()


def test_a_traced_dev_exports_the_request_its_node_calls_and_its_queries_in_one_trace(
    tmp_path: Path, collector: Collector
) -> None:
    variables = {
        **dev_ports(),
        "CALLFS_TRACING_OTLP_ENDPOINT": collector.url,
        # Every read reaches a node, none is answered from memory.
        "CALLFS_SERVER_OBJECT_CACHE_BYTES": "0",
    }
    with dev_server(tmp_path / "data", **variables) as (url, key):
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=auth, timeout=10) as client:
            put = client.post(
                "/v1/files/docs/hello.txt", content=b"hello", headers={"X-Request-ID": "put-1"}
            )
            get = client.get("/v1/files/docs/hello.txt", headers={"X-Request-ID": "get-1"})
    # Stopped: every span was exported on the way out.
    assert (put.status_code, get.status_code) == (201, 200)
    assert set(collector.paths) == {"/v1/traces"}
    spans = collector.spans

    served = [span for span in spans if span.kind == SERVER and span.service == "callfs-gateway"]
    requests = {span.attributes.get("http.request_id"): span for span in served}
    # One server span per request.
    assert sorted(rid for rid in requests if rid in ("put-1", "get-1")) == ["get-1", "put-1"]
    assert len([span for span in served if span.trace_id == requests["put-1"].trace_id]) == 1
    for rid, method, status in (("put-1", "POST", 201), ("get-1", "GET", 200)):
        request = requests[rid]
        assert request.name == f"{method} {FILE_ROUTE}"
        assert request.parent_id == ""
        assert request.attributes["http.request.method"] == method
        assert request.attributes["http.route"] == FILE_ROUTE
        assert request.attributes["http.response.status_code"] == status
        assert request.attributes["url.path"] == "/v1/files/docs/hello.txt"
        assert not request.error

    def calls(request: ReceivedSpan, method: str) -> list[ReceivedSpan]:
        return [
            span
            for span in spans
            if span.kind == CLIENT
            and span.name == f"{NODE_SERVICE}/{method}"
            and span.parent_id == request.span_id
        ]

    for request, method in ((requests["put-1"], "Write"), (requests["get-1"], "Read")):
        called = calls(request, method)
        assert called, f"no {method} call under {request.name}"
        for call in called:
            assert call.service == "callfs-gateway"
            assert call.trace_id == request.trace_id
            assert call.attributes["rpc.system"] == "grpc"
            assert call.attributes["rpc.service"] == NODE_SERVICE
            assert call.attributes["rpc.method"] == method
            assert call.attributes["rpc.grpc.status_code"] == 0
            assert call.attributes["callfs.storage_node"] in ("node-0", "node-1")
            # The node continued the trace: its server span's parent is this call.
            [on_node] = [
                span for span in spans if span.kind == SERVER and span.parent_id == call.span_id
            ]
            assert on_node.service == "callfs-storage-node"
            assert on_node.name == call.name
            assert on_node.trace_id == request.trace_id
            assert on_node.attributes["rpc.grpc.status_code"] == 0

    queries = [
        span
        for span in spans
        if span.trace_id == requests["put-1"].trace_id and span.name.startswith("metadata ")
    ]
    operations = {span.attributes["db.operation.name"] for span in queries}
    assert "create" in operations, operations
    for query in queries:
        assert query.kind == CLIENT
        assert query.name == f"metadata {query.attributes['db.operation.name']}"
        assert query.attributes["db.system.name"] == "sqlite"
        assert query.parent_id == requests["put-1"].span_id


async def test_a_traced_node_process_continues_the_callers_trace_and_exports_on_sigterm(
    tmp_path: Path, collector: Collector
) -> None:
    node = NodeProcess(
        tmp_path / "volume",
        tmp_path / "node.log",
        CALLFS_TRACING_OTLP_ENDPOINT=f"{collector.url}/v1/traces",
        CALLFS_TRACING_SERVICE_NAME="node-under-test",
    )
    trace_id, caller = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    try:
        async with grpc.aio.insecure_channel(await node.address()) as channel:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(),
                metadata=(*METADATA, ("traceparent", f"00-{trace_id}-{caller}-01")),
                timeout=SERVE_TIMEOUT,
                wait_for_ready=True,
            )
        node.process.send_signal(signal.SIGTERM)
        assert node.process.wait(timeout=30) == 0, node.log.read_text(errors="replace")
    finally:
        node.kill()
    [served] = [span for span in collector.spans if span.trace_id == trace_id]
    assert served.service == "node-under-test"
    assert served.kind == SERVER
    assert served.parent_id == caller
    assert served.name == "grpc.health.v1.Health/Check"
    assert served.attributes["rpc.method"] == "Check"
    assert served.attributes["rpc.grpc.status_code"] == 0


UNTRACED_PROBE = """
import asyncio, contextlib, io, json, re, sys
from pathlib import Path

import httpx

from callfs.cli import dev_overrides, run_dev
from callfs.settings import load_settings

async def main():
    data = Path(sys.argv[1])
    settings = load_settings(overrides=dev_overrides(data))
    ready = asyncio.Event()
    banner = io.StringIO()
    with contextlib.redirect_stdout(banner):
        serving = asyncio.create_task(run_dev(settings, data, ready=ready))
        await ready.wait()
    url = re.search(r"URL:\\s+(\\S+)", banner.getvalue()).group(1)
    auth = {"Authorization": "Bearer " + sys.argv[2]}
    async with httpx.AsyncClient(base_url=url, headers=auth) as client:
        assert (await client.post("/v1/files/a.txt", content=b"a")).status_code == 201
        assert (await client.get("/v1/files/a.txt")).content == b"a"
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)

asyncio.run(main())
print(json.dumps(sorted(sys.modules)))
"""


def test_without_an_endpoint_nothing_of_the_sdk_or_the_tracing_layers_is_loaded(
    tmp_path: Path,
) -> None:
    key = "untraced-key-0123456789"
    result = subprocess.run(
        [sys.executable, "-c", UNTRACED_PROBE, str(tmp_path / "data"), key],
        env=environment(**dev_ports(), CALLFS_AUTH_API_KEYS=key, CALLFS_LOG_LEVEL="warning"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert "callfs_gateway.app" in loaded  # it did serve
    # FastAPI itself imports OpenTelemetry's API (opentelemetry.trace...): not ours to keep out.
    ours = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto")
    assert [name for name in loaded if name.startswith(ours)] == []
    assert "callfs.tracing.otel" not in loaded
    assert "callfs_storage_node.tracing" not in loaded


WITHOUT_THE_SDK = """
import sys
class NotInstalled:
    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname.startswith(("opentelemetry.sdk", "opentelemetry.exporter")):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None
sys.meta_path.insert(0, NotInstalled)
from callfs.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("role", ["gateway", "storage-node", "dev"])
def test_tracing_without_the_otel_extra_says_what_to_install(tmp_path: Path, role: str) -> None:
    arguments = [role, "--data-dir", str(tmp_path / "data")] if role == "dev" else [role]
    env = environment(
        **dev_ports(),
        CALLFS_TRACING_OTLP_ENDPOINT="http://127.0.0.1:4318",
        CALLFS_AUTH_API_KEYS=STRONG,
        CALLFS_AUTH_INTERNAL_PROXY_SECRET=STRONG,
        CALLFS_AUTH_SINGLE_USE_LINK_SECRET=STRONG,
        CALLFS_STORAGE_NODE_LISTEN_ADDR="127.0.0.1:0",
        CALLFS_BACKEND_LOCALFS_ROOT_PATH=str(tmp_path / "volume"),
    )
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_SDK, *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f"callfs: {role} traces (tracing.otlp_endpoint is set) with OpenTelemetry's SDK, "
        "not installed (no module named 'opentelemetry."
    ), line
    assert line.endswith("): pip install 'callfs[otel]'"), line


def test_the_endpoint_is_a_base_or_traces_url_and_anything_else_is_refused() -> None:
    def traced(**variables: str) -> Any:
        return load_settings(environ=variables).tracing

    assert not traced().enabled
    on = traced(CALLFS_TRACING_OTLP_ENDPOINT="http://collector:4318")
    assert on.enabled and on.traces_url == "http://collector:4318/v1/traces"
    assert on.service("gateway") == "callfs-gateway"
    exact = traced(
        CALLFS_TRACING_OTLP_ENDPOINT="https://otel.example/v1/traces",
        CALLFS_TRACING_SERVICE_NAME="files",
    )
    assert exact.traces_url == "https://otel.example/v1/traces"
    assert exact.service("gateway") == "files"
    with pytest.raises(SettingsError, match=r"tracing\.otlp_endpoint.*http:// or https://"):
        traced(CALLFS_TRACING_OTLP_ENDPOINT="collector:4318")
    with pytest.raises(SettingsError, match=r"tracing\.sample_ratio"):
        traced(CALLFS_TRACING_SAMPLE_RATIO="1.5")
