"""A server span per RPC, continuing the caller's trace. Imported only when tracing is on."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from callfs.tracing.otel import CARRIED, W3C
from callfs_storage_node.metrics import Record, instrumented


class TracingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A server span for each RPC (``callfs.storage.v1.StorageNode/Write``), the child of
    the gateway's client span that ``traceparent`` in the call's metadata names.

    First among the server's interceptors: the calls the others refuse have spans too.
    The span is recorded once the call ends, from its start and duration.
    """

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        carrier = {
            key: value
            for key, value in handler_call_details.invocation_metadata or ()
            if key in CARRIED and isinstance(value, str)
        }
        name = str(handler_call_details.method).lstrip("/")
        return instrumented(handler, self._record(name, carrier))

    def _record(self, name: str, carrier: dict[str, str]) -> Record:
        service, _, method = name.rpartition("/")

        def record(code: str, seconds: float) -> None:
            ended = time.time_ns()
            span = self._tracer.start_span(
                name,
                context=W3C.extract(carrier),
                kind=SpanKind.SERVER,
                start_time=ended - int(seconds * 1e9),
                attributes={
                    "rpc.system": "grpc",
                    "rpc.service": service,
                    "rpc.method": method,
                    "rpc.grpc.status_code": grpc.StatusCode[code].value[0],
                },
            )
            if code != "OK":
                span.set_attribute("error.type", code)
                span.set_status(StatusCode.ERROR)
            span.end(end_time=ended)

        return record
