"""Static discovery, and the adapter chosen from settings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from callfs.discovery import build_discovery, pod_namespace
from callfs.discovery.base import Domain, StaticDiscovery
from callfs.discovery.kubernetes import KubernetesDiscovery
from callfs.settings import InstanceDiscoverySettings, load_settings


def test_static_discovery_serves_its_configured_map() -> None:
    discovery = StaticDiscovery({"node-0": "127.0.0.1:5000"})

    assert discovery.endpoints() == {"node-0": "127.0.0.1:5000"}


async def test_static_discovery_start_and_stop_keep_the_map() -> None:
    discovery = StaticDiscovery({"node-0": "127.0.0.1:5000"})

    await discovery.start()
    await discovery.stop()

    assert discovery.endpoints() == {"node-0": "127.0.0.1:5000"}


def test_static_discovery_set_replaces_the_map_and_tells_listeners() -> None:
    discovery = StaticDiscovery({"node-0": "127.0.0.1:5000"})
    heard: list[Mapping[str, str]] = []
    discovery.on_change(heard.append)

    discovery.set({"node-1": "127.0.0.1:5001"})

    assert discovery.endpoints() == {"node-1": "127.0.0.1:5001"}
    assert heard == [{"node-1": "127.0.0.1:5001"}]


def test_static_mode_builds_static_discovery_from_peer_endpoints() -> None:
    settings = InstanceDiscoverySettings(peer_endpoints={"node-0": "10.0.0.1:50051"})

    discovery = build_discovery(settings)

    assert isinstance(discovery, StaticDiscovery)
    assert discovery.endpoints() == {"node-0": "10.0.0.1:50051"}


def test_static_discovery_knows_no_domains_unless_configured() -> None:
    discovery = build_discovery(InstanceDiscoverySettings(peer_endpoints={"node-0": "10.0.0.1:1"}))

    assert discovery.domains() == {}


def test_static_peer_domains_come_from_their_json_variable() -> None:
    settings = load_settings(
        environ={
            "CALLFS_INSTANCE_DISCOVERY_PEER_ENDPOINTS": (
                '{"node-0": "10.0.0.1:1", "node-1": "10.0.0.2:1"}'
            ),
            "CALLFS_INSTANCE_DISCOVERY_PEER_DOMAINS": (
                '{"node-0": {"zone": "a", "host": "h1"}, "node-1": {"zone": "b"}}'
            ),
        }
    )

    discovery = build_discovery(settings.instance_discovery)

    assert discovery.domains() == {"node-0": Domain("a", "h1"), "node-1": Domain("b", "")}
    assert discovery.endpoints() == {"node-0": "10.0.0.1:1", "node-1": "10.0.0.2:1"}


def test_an_empty_peer_domains_variable_is_no_domains() -> None:
    settings = load_settings(environ={"CALLFS_INSTANCE_DISCOVERY_PEER_DOMAINS": " "})

    assert settings.instance_discovery.peer_domains == {}


def test_kubernetes_mode_builds_kubernetes_discovery_from_settings() -> None:
    settings = InstanceDiscoverySettings(
        mode="kubernetes",
        kubernetes_namespace="storage",
        kubernetes_service="callfs-nodes",
        kubernetes_port_name="rpc",
    )

    discovery = build_discovery(settings)

    assert isinstance(discovery, KubernetesDiscovery)
    assert (discovery.namespace, discovery.service, discovery.port_name) == (
        "storage",
        "callfs-nodes",
        "rpc",
    )
    assert discovery.endpoints() == {}


def test_pod_namespace_comes_from_the_service_account_file(tmp_path: Path) -> None:
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("callfs-prod\n")

    assert pod_namespace(namespace_file) == "callfs-prod"


def test_pod_namespace_is_default_outside_a_cluster(tmp_path: Path) -> None:
    assert pod_namespace(tmp_path / "missing") == "default"
