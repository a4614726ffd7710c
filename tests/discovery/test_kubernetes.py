"""KubernetesDiscovery against a real API server, through the real ``kubernetes`` client."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import kubernetes.config.kube_config
import pytest
import yaml

from callfs.discovery.base import Domain
from callfs.discovery.kubernetes import KubernetesDiscovery
from callfs.errors import BackendUnavailable
from tests.discovery.conftest import SERVICE, Discover
from tests.support.k8s_api import KubernetesAPIServer, endpoint
from tests.support.polling import wait_until


def nodes(*names: str, port: int = 50051) -> dict[str, str]:
    """The expected map for pods ``names`` (pod ``n<i>`` lives at ``10.0.0.<i>``)."""
    return {name: f"10.0.0.{name.removeprefix('n')}:{port}" for name in names}


def ready(*names: str) -> list[dict[str, object]]:
    return [endpoint(name, f"10.0.0.{name.removeprefix('n')}") for name in names]


async def until_endpoints(discovery: KubernetesDiscovery, expected: Mapping[str, str]) -> None:
    await wait_until(
        lambda: dict(discovery.endpoints()) == expected, what=f"endpoints == {expected}"
    )


# --- the initial list -----------------------------------------------------------------


async def test_initial_list_gives_only_ready_endpoints(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice(
        "storage-a",
        service=SERVICE,
        endpoints=[
            endpoint("n1", "10.0.0.1"),
            endpoint("n2", "10.0.0.2", ready=False),
            endpoint("n3", "10.0.0.3", ready=True, terminating=True),
            endpoint("n4", "10.0.0.4", ready=None),
        ],
    )
    k8s_api.apply_slice("other-a", service="something-else", endpoints=ready("n9"))

    discovery = await discover()

    assert discovery.endpoints() == nodes("n1", "n4")


async def test_start_with_no_slices_gives_an_empty_map(discover: Discover) -> None:
    discovery = await discover()

    assert discovery.endpoints() == {}


async def test_slices_in_another_namespace_are_ignored(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"), namespace="other")
    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n2"))

    discovery = await discover()

    assert discovery.endpoints() == nodes("n2")


async def test_zone_and_node_name_of_each_ready_endpoint_are_its_domain(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice(
        "storage-a",
        service=SERVICE,
        endpoints=[
            endpoint("n1", "10.0.0.1", zone="zone-a", node_name="worker-1"),
            endpoint("n2", "10.0.0.2", zone="zone-b", node_name="worker-2"),
            endpoint("n3", "10.0.0.3"),
            endpoint("n4", "10.0.0.4", ready=False, zone="zone-a", node_name="worker-3"),
        ],
    )

    discovery = await discover()

    assert discovery.endpoints() == nodes("n1", "n2", "n3")
    assert discovery.domains() == {
        "n1": Domain("zone-a", "worker-1"),
        "n2": Domain("zone-b", "worker-2"),
    }


# --- watch events ---------------------------------------------------------------------


async def test_domains_follow_the_endpoints(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice(
        "storage-a", service=SERVICE, endpoints=[endpoint("n1", "10.0.0.1", zone="zone-a")]
    )
    discovery = await discover()

    k8s_api.apply_slice(
        "storage-b",
        service=SERVICE,
        endpoints=[endpoint("n2", "10.0.0.2", zone="zone-b", node_name="worker-2")],
    )
    await until_endpoints(discovery, nodes("n1", "n2"))
    assert discovery.domains() == {"n1": Domain("zone-a"), "n2": Domain("zone-b", "worker-2")}

    k8s_api.delete_slice("storage-a")
    await until_endpoints(discovery, nodes("n2"))
    assert discovery.domains() == {"n2": Domain("zone-b", "worker-2")}

    k8s_api.apply_slice(
        "storage-b",
        service=SERVICE,
        endpoints=[endpoint("n2", "10.0.0.2", zone="zone-c", node_name="worker-9")],
    )
    await wait_until(
        lambda: discovery.domains() == {"n2": Domain("zone-c", "worker-9")},
        what="n2's new domain",
    )
    assert discovery.endpoints() == nodes("n2")


async def test_added_slice_brings_its_nodes(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    discovery = await discover()

    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n2", "n3"))

    await until_endpoints(discovery, nodes("n1", "n2", "n3"))


async def test_endpoint_that_becomes_not_ready_disappears(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1", "n2"))
    discovery = await discover()

    k8s_api.apply_slice(
        "storage-a",
        service=SERVICE,
        endpoints=[endpoint("n1", "10.0.0.1"), endpoint("n2", "10.0.0.2", ready=False)],
    )

    await until_endpoints(discovery, nodes("n1"))


async def test_terminating_endpoint_disappears(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1", "n2"))
    discovery = await discover()

    k8s_api.apply_slice(
        "storage-a",
        service=SERVICE,
        endpoints=[
            endpoint("n1", "10.0.0.1"),
            endpoint("n2", "10.0.0.2", ready=True, terminating=True),
        ],
    )

    await until_endpoints(discovery, nodes("n1"))


async def test_deleted_slice_takes_only_its_nodes_away(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n2", "n3"))
    discovery = await discover()
    assert discovery.endpoints() == nodes("n1", "n2", "n3")

    k8s_api.delete_slice("storage-b")

    await until_endpoints(discovery, nodes("n1"))


async def test_modified_slice_keeps_the_other_slices_nodes(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n2"))
    discovery = await discover()
    assert discovery.endpoints() == nodes("n1", "n2")

    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1", "n3"))
    await until_endpoints(discovery, nodes("n1", "n2", "n3"))

    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=[])
    await until_endpoints(discovery, nodes("n2"))


async def test_slices_of_another_service_do_not_change_the_map(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    discovery = await discover()

    k8s_api.apply_slice("other-a", service="something-else", endpoints=ready("n8"))
    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n2"))

    await until_endpoints(discovery, nodes("n1", "n2"))


async def test_endpoint_that_moves_gets_its_new_address(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    discovery = await discover()

    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=[endpoint("n1", "10.0.1.1")])

    await until_endpoints(discovery, {"n1": "10.0.1.1:50051"})


async def test_listeners_hear_each_change_on_the_event_loop_thread(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    discovery = await discover()
    heard: list[tuple[dict[str, str], threading.Thread]] = []
    discovery.on_change(lambda current: heard.append((dict(current), threading.current_thread())))

    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n2"))
    await wait_until(lambda: len(heard) == 1, what="one change heard")
    k8s_api.delete_slice("storage-a")
    await wait_until(lambda: len(heard) == 2, what="two changes heard")

    assert [current for current, _ in heard] == [nodes("n1", "n2"), nodes("n2")]
    assert {thread for _, thread in heard} == {threading.current_thread()}


# --- bookmarks, expiry, reconnection ---------------------------------------------------


async def test_bookmarks_change_nothing(k8s_api: KubernetesAPIServer, discover: Discover) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    discovery = await discover()

    k8s_api.bookmark()
    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n2"))
    k8s_api.bookmark()

    await until_endpoints(discovery, nodes("n1", "n2"))
    assert k8s_api.list_requests == 1
    assert len(k8s_api.watch_requests) == 1


async def test_bookmark_is_where_the_next_watch_resumes(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    discovery = await discover()
    k8s_api.apply_slice("other-a", service="something-else", endpoints=ready("n8"))
    bookmarked = k8s_api.version

    # The unrelated change moved the server past what the client saw; only the
    # bookmark tells it, so resuming from an older version would now be refused.
    k8s_api.bookmark()
    k8s_api.compact()
    k8s_api.end_watches()
    await wait_until(lambda: len(k8s_api.watch_requests) == 2, what="a second watch")

    assert k8s_api.watch_requests[1]["resourceVersion"] == str(bookmarked)
    assert k8s_api.watch_requests[1]["allowWatchBookmarks"] == "true"
    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n2"))
    await until_endpoints(discovery, nodes("n1", "n2"))
    assert k8s_api.list_requests == 1


async def test_gone_error_event_relists_and_catches_up(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1", "n2"))
    discovery = await discover()

    k8s_api.send_gone()
    # Changes the client's watch never carried: only a fresh list shows them.
    k8s_api.apply_slice(
        "storage-a",
        service=SERVICE,
        endpoints=[endpoint("n1", "10.0.0.1"), endpoint("n2", "10.0.0.2", ready=False)],
    )
    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n3"))
    k8s_api.compact()

    await until_endpoints(discovery, nodes("n1", "n3"))
    assert k8s_api.list_requests == 2


@pytest.mark.parametrize("gone_as", ["http", "event"])
async def test_expired_resume_point_relists_and_catches_up(
    k8s_api: KubernetesAPIServer, discover: Discover, gone_as: str
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n2"))
    discovery = await discover()
    k8s_api.gone_as = "http" if gone_as == "http" else "event"

    k8s_api.drop_watches()
    k8s_api.delete_slice("storage-b")
    k8s_api.apply_slice("storage-c", service=SERVICE, endpoints=ready("n3"))
    k8s_api.compact()

    await until_endpoints(discovery, nodes("n1", "n3"))
    assert k8s_api.list_requests == 2


async def test_dropped_watch_reconnects_and_catches_up_without_relisting(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1", "n2"))
    discovery = await discover()

    k8s_api.drop_watches()
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n3"))

    await until_endpoints(discovery, nodes("n1", "n3"))
    assert k8s_api.list_requests == 1
    assert len(k8s_api.watch_requests) == 2


async def test_watch_ended_by_the_server_resumes_without_relisting(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    discovery = await discover(watch_timeout=1)

    await wait_until(lambda: len(k8s_api.watch_requests) >= 3, what="three watches")
    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n2"))

    await until_endpoints(discovery, nodes("n1", "n2"))
    assert k8s_api.list_requests == 1
    assert {query["timeoutSeconds"] for query in k8s_api.watch_requests} == {"1"}


async def test_api_server_restart_is_survived_and_caught_up(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1", "n2"))
    discovery = await discover()

    await k8s_api.stop()
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n2"))
    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n3"))
    assert discovery.endpoints() == nodes("n1", "n2")
    await k8s_api.start()

    await until_endpoints(discovery, nodes("n2", "n3"))


async def test_api_server_restart_with_lost_history_relists(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1", "n2"))
    discovery = await discover()

    await k8s_api.stop()
    k8s_api.delete_slice("storage-a")
    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n3"))
    k8s_api.compact()
    await k8s_api.start()

    await until_endpoints(discovery, nodes("n3"))
    assert k8s_api.list_requests == 2


async def test_start_while_the_api_server_is_down_catches_up_once_it_is_back(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    await k8s_api.stop()

    discovery = await discover(initial_sync_timeout=0.2, watching=False)
    assert discovery.endpoints() == {}
    await k8s_api.start()

    await until_endpoints(discovery, nodes("n1"))


# --- lifecycle and configuration ------------------------------------------------------


async def test_stop_ends_the_watch_thread_and_its_updates(
    k8s_api: KubernetesAPIServer, discover: Discover
) -> None:
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    discovery = await discover()

    await discovery.stop()

    assert not [t for t in threading.enumerate() if t.name == f"discovery-{SERVICE}"]
    witness = await discover(watching=False)
    k8s_api.apply_slice("storage-b", service=SERVICE, endpoints=ready("n2"))
    await until_endpoints(witness, nodes("n1", "n2"))
    assert discovery.endpoints() == nodes("n1")


async def test_kubeconfig_is_used_when_no_client_is_given(
    k8s_api: KubernetesAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(k8s_api.kubeconfig()))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(
        kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig)
    )
    k8s_api.apply_slice("storage-a", service=SERVICE, endpoints=ready("n1"))
    discovery = KubernetesDiscovery("default", SERVICE)

    await discovery.start()
    try:
        assert discovery.endpoints() == nodes("n1")
    finally:
        await discovery.stop()


async def test_start_without_any_kubernetes_configuration_is_backend_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(
        kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "none")
    )
    discovery = KubernetesDiscovery("default", SERVICE)

    with pytest.raises(BackendUnavailable, match="no Kubernetes configuration"):
        await discovery.start()
