"""Reading EndpointSlices: which endpoints are live, how slices merge, how retries back off."""

from __future__ import annotations

from typing import Any

from callfs.discovery.base import Domain
from callfs.discovery.kubernetes import Backoff, live_endpoints, live_nodes, merge
from tests.support.k8s_api import endpoint, grpc_ports


def endpoint_slice(endpoints: list[dict[str, Any]], ports: Any = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "storage-a"},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": grpc_ports() if ports is None else ports,
    }


def test_ready_endpoint_maps_pod_name_to_address_and_named_port() -> None:
    item = endpoint_slice([endpoint("node-0", "10.0.0.1")], ports=grpc_ports(7000))

    assert live_endpoints(item, "grpc") == {"node-0": "10.0.0.1:7000"}


def test_missing_ready_condition_counts_as_ready() -> None:
    item = endpoint_slice([endpoint("node-0", "10.0.0.1", ready=None)])
    del item["endpoints"][0]["conditions"]

    assert live_endpoints(item, "grpc") == {"node-0": "10.0.0.1:50051"}


def test_not_ready_and_terminating_endpoints_are_left_out() -> None:
    item = endpoint_slice(
        [
            endpoint("node-0", "10.0.0.1", ready=False),
            endpoint("node-1", "10.0.0.2", ready=True, terminating=True),
            endpoint("node-2", "10.0.0.3", ready=True, terminating=False),
        ]
    )

    assert live_endpoints(item, "grpc") == {"node-2": "10.0.0.3:50051"}


def test_hostname_names_an_endpoint_without_a_target_ref() -> None:
    item = endpoint_slice([endpoint(None, "10.0.0.1", hostname="node-7")])

    assert live_endpoints(item, "grpc") == {"node-7": "10.0.0.1:50051"}


def test_endpoint_without_any_name_or_address_is_skipped() -> None:
    nameless = endpoint(None, "10.0.0.1")
    addressless = endpoint("node-1", "10.0.0.2")
    addressless["addresses"] = []
    item = endpoint_slice([nameless, addressless, endpoint("node-2", "10.0.0.3")])

    assert live_endpoints(item, "grpc") == {"node-2": "10.0.0.3:50051"}


def test_first_address_is_used() -> None:
    item = endpoint_slice([endpoint("node-0", "10.0.0.1")])
    item["endpoints"][0]["addresses"].append("10.0.0.99")

    assert live_endpoints(item, "grpc") == {"node-0": "10.0.0.1:50051"}


def test_ipv6_address_is_bracketed() -> None:
    item = endpoint_slice([endpoint("node-0", "fd00::1")])

    assert live_endpoints(item, "grpc") == {"node-0": "[fd00::1]:50051"}


def test_the_only_port_serves_when_none_has_the_name() -> None:
    item = endpoint_slice([endpoint("node-0", "10.0.0.1")], ports=[{"port": 6000}])

    assert live_endpoints(item, "grpc") == {"node-0": "10.0.0.1:6000"}


def test_slice_without_the_named_port_among_several_gives_nothing() -> None:
    ports = [{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]
    item = endpoint_slice([endpoint("node-0", "10.0.0.1")], ports=ports)

    assert live_endpoints(item, "grpc") == {}


def test_slice_with_null_endpoints_or_ports_gives_nothing() -> None:
    assert live_endpoints(endpoint_slice([], ports=[]) | {"endpoints": None}, "grpc") == {}
    assert live_endpoints(endpoint_slice([endpoint("node-0", "10.0.0.1")], ports=[]), "grpc") == {}


def test_zone_and_node_name_are_the_endpoint_s_domain() -> None:
    item = endpoint_slice(
        [
            endpoint("node-0", "10.0.0.1", zone="eu-1a", node_name="worker-1"),
            endpoint("node-1", "10.0.0.2", zone="eu-1b"),
            endpoint("node-2", "10.0.0.3"),
            endpoint("node-3", "10.0.0.4", ready=False, zone="eu-1a", node_name="worker-2"),
        ]
    )

    assert live_nodes(item, "grpc") == {
        "node-0": ("10.0.0.1:50051", Domain("eu-1a", "worker-1")),
        "node-1": ("10.0.0.2:50051", Domain("eu-1b", "")),
        "node-2": ("10.0.0.3:50051", Domain()),
    }
    assert live_endpoints(item, "grpc") == {
        "node-0": "10.0.0.1:50051",
        "node-1": "10.0.0.2:50051",
        "node-2": "10.0.0.3:50051",
    }


def test_merge_joins_every_slice() -> None:
    merged = merge({"b": {"node-1": "10.0.0.2:1"}, "a": {"node-0": "10.0.0.1:1"}})

    assert merged == {"node-0": "10.0.0.1:1", "node-1": "10.0.0.2:1"}


def test_merge_prefers_the_first_slice_by_name_for_a_duplicate() -> None:
    merged = merge({"b": {"node-0": "10.0.0.2:1"}, "a": {"node-0": "10.0.0.1:1"}})

    assert merged == {"node-0": "10.0.0.1:1"}


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(initial=1.0, cap=8.0)

    delays = [backoff.next() for _ in range(12)]

    assert 0.5 <= delays[0] <= 1.0
    assert 1.0 <= delays[1] <= 2.0
    assert 2.0 <= delays[2] <= 4.0
    assert all(4.0 <= delay <= 8.0 for delay in delays[4:])


def test_backoff_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(initial=1.0, cap=8.0)
    for _ in range(5):
        backoff.next()

    backoff.reset()

    assert 0.5 <= backoff.next() <= 1.0
