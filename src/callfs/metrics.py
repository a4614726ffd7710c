"""Prometheus metrics: the original CallFS's families, kept by name, and ours.

Every role's registry also holds the standard ``process_*`` and ``python_*``
families (:func:`process_registry`). No family exports a ``_created`` series. A
scrape that asks for OpenMetrics (``Accept: application/openmetrics-text``) gets
it; any other gets the Prometheus text format (:func:`exposition`).
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.openmetrics import exposition as openmetrics

__all__ = [
    "CONTENT_TYPE",
    "OPENMETRICS_CONTENT_TYPE",
    "Exposed",
    "Metrics",
    "exposition",
    "process_registry",
]

OPENMETRICS_CONTENT_TYPE: str = openmetrics.CONTENT_TYPE_LATEST

# A ``_created`` series per counter and histogram doubles the series for nothing a
# dashboard uses; the setting is process-wide and read at every scrape.
disable_created_metrics()  # type: ignore[no-untyped-call]


def process_registry() -> CollectorRegistry:
    """A new registry holding the process's ``process_*`` and ``python_*`` families
    (one collector of each kind: a registry refuses a second).
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def wants_openmetrics(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for OpenMetrics (a ``q=0`` refuses it)."""
    for offered in (accept or "").split(","):
        media, *parameters = (part.strip() for part in offered.split(";"))
        if media.lower() != "application/openmetrics-text":
            continue
        refused = any(
            name.strip().lower() == "q" and _quality(value) == 0.0
            for name, _, value in (parameter.partition("=") for parameter in parameters)
        )
        if not refused:
            return True
    return False


def _quality(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 1.0


def exposition(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """``registry``'s families and their content type, in the format ``accept`` asks for:
    OpenMetrics (ending ``# EOF``) if it names ``application/openmetrics-text``, else
    the Prometheus text format.
    """
    if wants_openmetrics(accept):
        body: bytes = openmetrics.generate_latest(registry)  # type: ignore[no-untyped-call]
        return body, OPENMETRICS_CONTENT_TYPE
    return generate_latest(registry), CONTENT_TYPE


class Exposed(Protocol):
    """What a metrics listener serves: a registry, brought up to date before each scrape."""

    registry: CollectorRegistry

    async def refresh(self) -> None:
        """Update whatever is measured at scrape time (quickly: a scrape waits)."""


class Metrics:
    """Every metric family of one process, in its own registry."""

    def __init__(self) -> None:
        self.registry = process_registry()
        r = self.registry
        self.http_requests = Counter(
            "callfs_http_requests_total",
            "HTTP requests",
            ["method", "path", "status_code"],
            registry=r,
        )
        self.http_duration = Histogram(
            "callfs_http_request_duration_seconds",
            "HTTP request duration",
            ["method", "path"],
            registry=r,
        )
        self.file_operations = Counter(
            "callfs_file_operations_total",
            "File operations",
            ["operation", "backend_type"],
            registry=r,
        )
        self.backend_ops = Counter(
            "callfs_backend_ops_total",
            "Backend operations",
            ["backend_type", "operation"],
            registry=r,
        )
        self.backend_duration = Histogram(
            "callfs_backend_op_duration_seconds",
            "Backend operation duration",
            ["backend_type", "operation"],
            registry=r,
        )
        self.db_queries = Counter(
            "callfs_metadata_db_queries_total",
            "Metadata store queries",
            ["operation"],
            registry=r,
        )
        self.db_duration = Histogram(
            "callfs_metadata_db_query_duration_seconds",
            "Metadata store query duration",
            ["operation"],
            registry=r,
        )
        self.link_generations = Counter(
            "callfs_single_use_link_generations_total",
            "Single-use links generated",
            registry=r,
        )
        self.link_consumptions = Counter(
            "callfs_single_use_link_consumptions_total",
            "Single-use link downloads by outcome",
            ["status"],
            registry=r,
        )
        self.lock_operations = Counter(
            "callfs_lock_operations_total",
            "Lock operations",
            ["operation", "status"],
            registry=r,
        )
        self.lock_duration = Histogram(
            "callfs_lock_operation_duration_seconds",
            "Lock operation duration",
            ["operation"],
            registry=r,
        )
        self.active_locks = Gauge("callfs_active_locks", "Locks held now", registry=r)
        self.errors = Counter(
            "callfs_errors_total",
            "Errors by component and type",
            ["component", "error_type"],
            registry=r,
        )
        self.proxy_operations = Counter(
            "callfs_proxy_operations_total",
            "Gateway to storage-node calls",
            ["operation", "result"],
            registry=r,
        )
        self.storage_node_up = Gauge(
            "callfs_storage_node_up",
            "Whether a storage node answers (1) or not (0)",
            ["instance"],
            registry=r,
        )
        self.dependency_up = Gauge(
            "callfs_dependency_up",
            "Whether a shared dependency (metadata_store, coordination) answers (1) or not (0)",
            ["dependency"],
            registry=r,
        )
        self.cache_hits = Counter(
            "callfs_metadata_cache_hits_total", "Metadata cache hits", registry=r
        )
        self.cache_misses = Counter(
            "callfs_metadata_cache_misses_total", "Metadata cache misses", registry=r
        )
        self.object_cache_hits = Counter(
            "callfs_object_cache_hits_total", "Small-object cache hits", registry=r
        )
        self.object_cache_misses = Counter(
            "callfs_object_cache_misses_total", "Small-object cache misses", registry=r
        )
        self.object_cache_bytes = Gauge(
            "callfs_object_cache_bytes", "Bytes held by the small-object cache", registry=r
        )
        self.reclaim_pending = Gauge(
            "callfs_reclaim_pending",
            "Objects of deleted entries this gateway has still to remove in the background",
            registry=r,
        )
        self.rate_limited = Counter(
            "callfs_rate_limited_total",
            "Requests refused by a rate limit",
            ["endpoint"],
            registry=r,
        )
        self.under_replicated = Gauge(
            "callfs_files_under_replicated",
            "Local-volume files with fewer healthy replicas than the replication factor,"
            " as the last repair pass left them",
            registry=r,
        )
        self.replica_write_failures = Counter(
            "callfs_replica_write_failures_total",
            "Replicas dropped from a write because their storage node failed mid-write",
            ["instance"],
            registry=r,
        )
        self.rebalanced_objects = Counter(
            "callfs_rebalance_objects_total",
            "Replicas the repairer copied to move a file onto the nodes its placement names",
            registry=r,
        )
        self.rebalanced_bytes = Counter(
            "callfs_rebalance_bytes_total",
            "Bytes the repairer copied to move files onto the nodes their placement names",
            registry=r,
        )
        self.node_replicas = Gauge(
            "callfs_node_replicas",
            "Replicas each storage node holds, as the metadata recorded them at the last"
            " repair pass (a draining node is empty at 0)",
            ["instance"],
            registry=r,
        )
        self.repair_last_pass = Gauge(
            "callfs_repair_last_pass_timestamp_seconds",
            "When this gateway last finished a repair pass (Unix time)",
            registry=r,
        )
        self.repaired_objects = Counter(
            "callfs_repair_objects_total",
            "Replicas copied to restore a file's replication factor or heal a corrupted one",
            registry=r,
        )
        self.repaired_bytes = Counter(
            "callfs_repair_bytes_total",
            "Bytes copied between storage nodes to repair or heal replicas",
            registry=r,
        )
        self.repair_runs = Counter(
            "callfs_repair_runs_total",
            "Repair passes by result (ok, partial, failed, skipped)",
            ["result"],
            registry=r,
        )
        self.scrub_mismatches = Counter(
            "callfs_scrub_mismatches_total",
            "Replicas found corrupted (checksum or SHA-256 mismatch) by source (read, scrub)",
            ["source"],
            registry=r,
        )
        self.scrub_bytes = Counter(
            "callfs_scrub_bytes_total",
            "Bytes the scrubber read from storage nodes to check replicas",
            registry=r,
        )
        self.scrub_runs = Counter(
            "callfs_scrub_runs_total",
            "Scrub passes by result (ok, partial, failed, skipped)",
            ["result"],
            registry=r,
        )
        self.reconciler_runs = Counter(
            "callfs_reconciler_runs_total",
            "Reconciler passes by result (ok, partial, failed, skipped)",
            ["result"],
            registry=r,
        )
        self.reconciler_orphans_removed = Counter(
            "callfs_reconciler_orphans_removed_total",
            "Stored objects the reconciler removed because no row pointed to them",
            ["backend"],
            registry=r,
        )

    async def refresh(self) -> None:
        """Nothing: every family here is kept up to date as things happen."""

    def render(self) -> bytes:
        """The exposition text of every family."""
        return generate_latest(self.registry)
