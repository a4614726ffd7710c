"""``GET /v1/admin/cluster``: the storage cluster as this gateway sees it (root only).

The nodes discovery knows, whether each answers, how full its volume is, whether it
is draining and how many replicas it held at the last repair pass on this gateway
(a draining node is empty once that reads 0), the replication settings, and the
under-replicated count of that pass.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from prometheus_client import CollectorRegistry

from callfs.backends.storage_node import StorageNodeBackend
from callfs.errors import CallFSError, PermissionDenied
from callfs.system import CurrentUser, RuntimeDep
from callfs_gateway import spec

router = APIRouter()

USAGE_TIMEOUT = 2.0


@router.get(
    "/v1/admin/cluster",
    operation_id="cluster",
    tags=["system"],
    responses=spec.CLUSTER_ANSWERS,
)
async def cluster(user: CurrentUser, runtime: RuntimeDep) -> dict[str, Any]:
    """Nodes, their usage, the replication factor and the under-replicated count."""
    if not user.is_root:
        raise PermissionDenied("only root may see the cluster's health")
    backend = runtime.nodes
    status = backend.node_status()
    usages = await asyncio.gather(*(_usage(backend, node) for node in status))
    replication = runtime.settings.replication
    registry = runtime.metrics.registry
    last_pass = registry.get_sample_value("callfs_repair_last_pass_timestamp_seconds")
    return {
        "replication": {"factor": replication.factor, "write_quorum": replication.quorum},
        "nodes": [
            {
                "instance_id": node,
                "address": backend.address(node),
                "up": up,
                "draining": node in backend.draining,
                "replicas": _replicas(registry, node) if last_pass else None,
                **usage,
            }
            for (node, up), usage in zip(status.items(), usages, strict=True)
        ],
        "repair": {
            "last_pass": last_pass or None,
            "under_replicated": (
                int(registry.get_sample_value("callfs_files_under_replicated") or 0)
                if last_pass
                else None
            ),
        },
    }


def _replicas(registry: CollectorRegistry, instance_id: str) -> int:
    """Replicas the last repair pass counted on the node."""
    return int(registry.get_sample_value("callfs_node_replicas", {"instance": instance_id}) or 0)


async def _usage(backend: StorageNodeBackend, instance_id: str) -> dict[str, int | None]:
    try:
        async with asyncio.timeout(USAGE_TIMEOUT):
            used, free, total = await backend.usage(instance_id)
    except (CallFSError, TimeoutError):
        return {"used_bytes": None, "free_bytes": None, "total_bytes": None}
    return {"used_bytes": used, "free_bytes": free, "total_bytes": total}
