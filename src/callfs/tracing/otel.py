"""A role's tracer, exporting to an OTLP/HTTP collector in batches, and the wrappers that
give each layer its spans. Imported only when tracing is on (:mod:`callfs.tracing`).

Spans (attributes after OpenTelemetry's semantic conventions):

``GET /v1/files/{path:path}`` (server)
    One per HTTP request, continuing an incoming ``traceparent``: ``http.request.method``,
    ``http.route``, ``url.path``, ``http.response.status_code`` and ``http.request_id``,
    the CallFS request id (``X-Request-ID``).
``callfs.storage.v1.StorageNode/Read`` (client)
    One per gRPC call to a storage node, its context sent in ``traceparent``:
    ``rpc.system``, ``rpc.service``, ``rpc.method``, ``rpc.grpc.status_code``,
    ``server.address``, ``server.port``, ``callfs.storage_node``.
``metadata get_many`` (client)
    One per query reaching the metadata store (not those its cache answers):
    ``db.system.name``, ``db.operation.name``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callfs import __version__
from callfs.errors import CallFSError
from callfs.metadata.base import MetadataStore
from callfs.metadata.instrumented import InstrumentedMetadataStore
from callfs.metrics import Metrics
from callfs.settings import TracingSettings, split_address
from callfs.web import route_template

W3C = TraceContextTextMapPropagator()
"""W3C Trace Context: how a trace crosses HTTP and gRPC (``traceparent``, ``tracestate``)."""
CARRIED = frozenset(W3C.fields)
_DB_SYSTEMS = {"postgres": "postgresql", "sqlite": "sqlite"}


class Tracing:
    """One role's tracer, and the wrappers that give each of its layers spans."""

    def __init__(self, settings: TracingSettings, role: str) -> None:
        resource = Resource.create(
            {"service.name": settings.service(role), "service.version": __version__}
        )
        self.provider = TracerProvider(
            resource=resource,
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
            shutdown_on_exit=False,
        )
        exporter = OTLPSpanExporter(endpoint=settings.traces_url)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer: Tracer = self.provider.get_tracer("callfs", __version__)

    def requests(self, app: ASGIApp) -> ASGIApp:
        """``app`` with a server span around each HTTP request."""
        return TracedRequests(app, self.tracer)

    def metadata_store(
        self, inner: MetadataStore, metrics: Metrics, store_type: str
    ) -> InstrumentedMetadataStore:
        """``inner``, counted and timed in ``metrics`` and with a span per query."""
        return TracedMetadataStore(inner, metrics, self.tracer, _DB_SYSTEMS.get(store_type, ""))

    def channel_interceptors(self, instance_id: str, address: str) -> list[Any]:
        """The interceptors of a channel to storage node ``instance_id`` at ``address``:
        a client span per call, whatever its shape."""
        attributes: dict[str, str | int] = {
            "rpc.system": "grpc",
            "callfs.storage_node": instance_id,
        }
        try:
            attributes["server.address"], attributes["server.port"] = split_address(address)
        except ValueError:
            attributes["server.address"] = address
        return [
            kind(self.tracer, attributes)
            for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)
        ]

    async def close(self) -> None:
        """Export the spans still buffered, then stop (in a thread: exporting blocks)."""
        await asyncio.to_thread(self.provider.shutdown)


def failed(span: Span, exc: BaseException) -> None:
    """Mark ``span`` with what ended it; an error unless it is the caller's (a 4xx)."""
    span.set_attribute("error.type", type(exc).__qualname__)
    if not (isinstance(exc, CallFSError) and exc.status_code < 500):
        span.set_status(StatusCode.ERROR)


class TracedRequests:
    """A server span around each HTTP request, current while the request is served, so
    that what it calls (metadata queries, gRPC calls) are its children."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name.decode("latin-1") in CARRIED
        }
        parent = W3C.extract(carrier)
        span = self.tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
            },
        )
        status: int | None = None

        async def traced_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"x-request-id":
                        span.set_attribute("http.request_id", value.decode("latin-1"))
            await send(message)

        token = context.attach(trace.set_span_in_context(span, parent))
        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            failed(span, exc)
            raise
        finally:
            context.detach(token)
            route = route_template(scope)
            if route != "unmatched":
                span.set_attribute("http.route", route)
                span.update_name(f"{method} {route}")
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if status is None or status >= 500:
                span.set_status(StatusCode.ERROR)
            span.end()


class TracedMetadataStore(InstrumentedMetadataStore):
    """An instrumented store whose every query is also a span (``metadata get_many``)."""

    def __init__(self, inner: MetadataStore, metrics: Metrics, tracer: Tracer, system: str) -> None:
        super().__init__(inner, metrics)
        self.tracer = tracer
        self.system = system

    @contextmanager
    def _query(self, operation: str) -> Iterator[None]:
        with self.tracer.start_as_current_span(
            f"metadata {operation}",
            kind=SpanKind.CLIENT,
            attributes={"db.system.name": self.system, "db.operation.name": operation},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                with super()._query(operation):
                    yield
            except BaseException as exc:
                failed(span, exc)
                raise


_ending: set[asyncio.Task[None]] = set()


class _ClientSpans:
    """A client span per call of one channel; ``traceparent`` carries it to the node."""

    def __init__(self, tracer: Tracer, attributes: dict[str, str | int]) -> None:
        self.tracer = tracer
        self.attributes = attributes

    def _begin(self, details: Any) -> tuple[Span, Any]:
        method = details.method
        name = (method.decode() if isinstance(method, bytes) else str(method)).lstrip("/")
        service, _, rpc = name.rpartition("/")
        span = self.tracer.start_span(
            name,
            kind=SpanKind.CLIENT,
            attributes={**self.attributes, "rpc.service": service, "rpc.method": rpc},
        )
        carrier: dict[str, str] = {}
        W3C.inject(carrier, context=trace.set_span_in_context(span))
        metadata = grpc.aio.Metadata.from_tuple((*(details.metadata or ()), *carrier.items()))
        return span, details._replace(metadata=metadata)

    async def _call(self, start: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        """Start the call with the span's context in its metadata; end the span with it."""
        span, details = self._begin(details)
        try:
            call = await start(details)
        except BaseException as exc:
            failed(span, exc)
            span.end()
            raise
        call.add_done_callback(lambda done: _end_soon(span, done))
        return call


def _end_soon(span: Span, call: Any) -> None:
    """End ``span`` with the status of ``call``, which has just ended (reading the status
    of an asyncio call is itself a coroutine)."""
    try:
        task = asyncio.get_running_loop().create_task(_end(span, call))
    except RuntimeError:  # no loop runs any more (the channel closed at exit)
        span.end()
        return
    _ending.add(task)
    task.add_done_callback(_ending.discard)


async def _end(span: Span, call: Any) -> None:
    try:
        code = await call.code()
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_attribute("error.type", code.name)
        span.set_status(StatusCode.ERROR)
    span.end()


class _UnaryUnary(_ClientSpans, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._call(lambda traced: continuation(traced, request), details)


class _UnaryStream(_ClientSpans, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._call(lambda traced: continuation(traced, request), details)


class _StreamUnary(_ClientSpans, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await self._call(lambda traced: continuation(traced, requests), details)


class _StreamStream(_ClientSpans, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await self._call(lambda traced: continuation(traced, requests), details)
