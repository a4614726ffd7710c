"""The internal secret: every call but health checks must carry it."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

logger = logging.getLogger(__name__)

SECRET_HEADER = "x-callfs-internal-secret"
# kubelet's gRPC probes carry no secret.
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


class InternalSecretInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Answer UNAUTHENTICATED unless metadata ``x-callfs-internal-secret`` matches."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        if self._carries_secret(handler_call_details.invocation_metadata or ()):
            return handler
        logger.warning("refused %s: missing or wrong internal secret", method)
        return _denied(handler)

    def _carries_secret(self, metadata: Any) -> bool:
        for key, value in metadata:
            if key == SECRET_HEADER:
                given = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(given, self._secret)
        return False


async def _deny(request: Any, context: Any) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong internal secret")


def _denied(handler: Any) -> Any:
    """A handler of the same shape as ``handler`` that refuses the call."""
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_deny, **codec)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_deny, **codec)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_deny, **codec)
    return grpc.unary_unary_rpc_method_handler(_deny, **codec)
