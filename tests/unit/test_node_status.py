"""``callfs_storage_node_up`` follows discovery: a node that leaves it leaves the gauge."""

from __future__ import annotations

from prometheus_client import generate_latest

from callfs.metrics import Metrics
from callfs.runtime import report_nodes


def series(metrics: Metrics) -> dict[str, float]:
    """The gauge's samples, instance id -> value, as a scrape sees them."""
    text = generate_latest(metrics.registry).decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("callfs_storage_node_up{"):
            labels, value = line.rsplit(" ", 1)
            found[labels.split('"')[1]] = float(value)
    return found


def test_a_node_that_left_discovery_leaves_the_gauge() -> None:
    metrics = Metrics()
    gauge = metrics.storage_node_up
    reported = report_nodes(gauge, {"node-0": True, "node-1": True, "node-2": True}, set())
    assert series(metrics) == {"node-0": 1.0, "node-1": 1.0, "node-2": 1.0}
    # node-2 stops (scale-down): first down, then gone from discovery.
    reported = report_nodes(gauge, {"node-0": True, "node-1": True, "node-2": False}, reported)
    assert series(metrics)["node-2"] == 0.0
    reported = report_nodes(gauge, {"node-0": True, "node-1": False}, reported)
    assert series(metrics) == {"node-0": 1.0, "node-1": 0.0}
    assert reported == {"node-0", "node-1"}
    # A node that comes back is reported again.
    report_nodes(gauge, {"node-0": True, "node-1": True, "node-2": True}, reported)
    assert series(metrics) == {"node-0": 1.0, "node-1": 1.0, "node-2": 1.0}
