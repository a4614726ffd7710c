"""OpenTelemetry tracing, chosen once at start-up: off unless ``tracing.otlp_endpoint`` is
set, and then a role's spans go to that collector over OTLP/HTTP.

Off, nothing of OpenTelemetry's SDK is imported and no layer is wrapped: the request
path is the one without tracing. On, :class:`callfs.tracing.otel.Tracing` wraps each
layer once, as it is built: the HTTP app (a server span per request), the metadata
store (a span per query) and the gRPC channels to storage nodes (a client span per
call, its context sent along in ``traceparent``); a storage node continues that trace
with a server span per RPC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callfs.settings import TracingSettings
    from callfs.tracing.otel import Tracing


def open_tracing(settings: TracingSettings, role: str) -> Tracing | None:
    """``role``'s tracing (its spans named ``callfs-<role>`` unless ``tracing.service_name``
    says otherwise), or None when tracing is off.

    Raises:
        ModuleNotFoundError: tracing is on but the ``otel`` extra is not installed.
    """
    if not settings.enabled:
        return None
    from callfs.tracing.otel import Tracing

    return Tracing(settings, role)
