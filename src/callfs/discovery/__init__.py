"""Which storage nodes are live, and where: a static map (from settings or a file that
may change) or Kubernetes EndpointSlices."""

from __future__ import annotations

from pathlib import Path

from callfs.discovery.base import Discovery, Domain, StaticDiscovery
from callfs.settings import InstanceDiscoverySettings

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def build_discovery(settings: InstanceDiscoverySettings) -> Discovery:
    """The discovery adapter the settings choose (not started yet)."""
    if settings.mode == "kubernetes":
        from callfs.discovery.kubernetes import KubernetesDiscovery

        return KubernetesDiscovery(
            namespace=settings.kubernetes_namespace or pod_namespace(),
            service=settings.kubernetes_service,
            port_name=settings.kubernetes_port_name,
        )
    domains = {
        instance_id: Domain(zone=peer.zone, host=peer.host)
        for instance_id, peer in settings.peer_domains.items()
    }
    if settings.peers_file:
        from callfs.discovery.peers_file import PeersFileDiscovery

        return PeersFileDiscovery(
            Path(settings.peers_file), interval=settings.peers_file_interval, domains=domains
        )
    return StaticDiscovery(settings.peer_endpoints, domains)


def pod_namespace(path: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """This pod's namespace from its service-account mount, else ``default``."""
    try:
        return path.read_text().strip() or "default"
    except OSError:
        return "default"
