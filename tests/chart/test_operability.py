"""What the operability values render: image references, pull secrets, each role's escape
hatches, the HTTP roles' NetworkPolicies and the Gateway API HTTPRoute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.rendering import Helm, Manifest, find, one, pod_specs

pytestmark = pytest.mark.chart

DIGEST = "sha256:" + "0123456789abcdef" * 4
SCENARIO = "operability-values.yaml"
WORKLOADS = {
    "gateway": ("Deployment", "callfs-gateway"),
    "linkService": ("Deployment", "callfs-link-service"),
    "storageNode": ("StatefulSet", "callfs-storage-node"),
}


def _pod(manifests: list[Manifest], role: str) -> dict[str, Any]:
    kind, name = WORKLOADS[role]
    spec: dict[str, Any] = one(manifests, kind, name)["spec"]["template"]["spec"]
    return spec


def _container(manifests: list[Manifest], role: str) -> dict[str, Any]:
    container: dict[str, Any] = _pod(manifests, role)["containers"][0]
    return container


def _with_values(helm: Helm, tmp_path: Path, values: dict[str, Any]) -> list[Manifest]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return helm.template("--values", str(path))


def _images(manifests: list[Manifest]) -> dict[str, str]:
    return {
        name: container["image"]
        for name, spec in pod_specs(manifests).items()
        for container in spec["containers"]
    }


# --- images and pull secrets ---------------------------------------------------------------


def test_images_default_to_repository_and_tag(helm: Helm) -> None:
    images = _images(helm.scenario("bundled-values.yaml"))
    assert images["Deployment/callfs-gateway"] == "callfs:0.1.0"
    assert images["StatefulSet/callfs-postgresql"] == "postgres:16-alpine"
    assert images["StatefulSet/callfs-redis"] == "redis:7-alpine"


def test_a_digest_pins_the_image_and_the_global_registry_prefixes_every_image(
    helm: Helm,
) -> None:
    images = _images(helm.scenario(SCENARIO))
    pinned = f"registry.example.com/mirror/callfs@{DIGEST}"
    for name in (
        "Deployment/callfs-gateway",
        "Deployment/callfs-link-service",
        "StatefulSet/callfs-storage-node",
        "Pod/callfs-test-api",
    ):
        assert images[name] == pinned, name
    assert images["StatefulSet/callfs-postgresql"] == (
        "registry.example.com/mirror/postgres@sha256:" + "1" * 64
    )
    assert images["StatefulSet/callfs-redis"] == "registry.example.com/mirror/redis:7-alpine"


def test_a_digest_wins_over_a_tag(helm: Helm) -> None:
    manifests = helm.scenario(
        "default", "--set", "image.tag=9.9.9", "--set", f"image.digest={DIGEST}"
    )
    assert _container(manifests, "gateway")["image"] == f"callfs@{DIGEST}"


def test_pull_secrets_of_global_and_the_chart_reach_every_pod_once(helm: Helm) -> None:
    specs = pod_specs(helm.scenario(SCENARIO))
    assert len(specs) == 6  # three roles, PostgreSQL, Redis, the helm test pod
    for name, spec in specs.items():
        assert spec["imagePullSecrets"] == [
            {"name": "shared-regcred"},
            {"name": "callfs-regcred"},
        ], name
    both = helm.scenario(
        "default",
        "--set",
        "global.imagePullSecrets[0].name=regcred",
        "--set",
        "imagePullSecrets[0].name=regcred",
    )
    for spec in pod_specs(both).values():
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    for spec in pod_specs(helm.scenario("default")).values():
        assert "imagePullSecrets" not in spec


# --- escape hatches of each role ------------------------------------------------------------


def test_default_probes_keep_their_timings(helm: Helm) -> None:
    manifests = helm.scenario("default")
    for role in ("gateway", "linkService"):
        container = _container(manifests, role)
        health = {"path": "/health", "port": "http"}
        assert container["startupProbe"] == {
            "httpGet": health,
            "periodSeconds": 2,
            "failureThreshold": 60,
        }
        assert container["livenessProbe"] == {
            "httpGet": health,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        }
        assert container["readinessProbe"] == {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        }
    node = _container(manifests, "storageNode")
    grpc = {"port": 50051}
    assert node["startupProbe"] == {"grpc": grpc, "periodSeconds": 2, "failureThreshold": 60}
    assert node["readinessProbe"] == {
        "grpc": grpc,
        "periodSeconds": 5,
        "timeoutSeconds": 3,
        "failureThreshold": 2,
    }


def test_probe_timings_are_values_and_the_handlers_stay_the_charts(helm: Helm) -> None:
    manifests = helm.scenario(SCENARIO)
    gateway = _container(manifests, "gateway")
    assert gateway["livenessProbe"] == {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": 20,
        "timeoutSeconds": 5,
        "failureThreshold": 6,
    }
    assert gateway["readinessProbe"]["successThreshold"] == 2
    assert gateway["startupProbe"]["failureThreshold"] == 120
    assert _container(manifests, "storageNode")["startupProbe"] == {
        "grpc": {"port": 50051},
        "periodSeconds": 2,
        "failureThreshold": 300,
    }
    one_knob = helm.scenario("default", "--set", "linkService.probes.liveness.timeoutSeconds=9")
    liveness = _container(one_knob, "linkService")["livenessProbe"]
    assert (liveness["timeoutSeconds"], liveness["periodSeconds"]) == (9, 10)


def test_every_role_takes_priority_env_volumes_and_mounts_after_the_charts_own(
    helm: Helm, tmp_path: Path
) -> None:
    env = [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]
    volumes = [{"name": "ca", "secret": {"secretName": "ca"}}]
    mounts = [{"name": "ca", "mountPath": "/etc/ssl/custom", "readOnly": True}]
    hatches = {
        "priorityClassName": "callfs-critical",
        "extraEnv": env,
        "extraVolumes": volumes,
        "extraVolumeMounts": mounts,
        "podAnnotations": {"example.com/a": "b"},
        "podLabels": {"team": "storage"},
        "nodeSelector": {"pool": "callfs"},
        "tolerations": [{"key": "callfs", "operator": "Exists"}],
    }
    manifests = _with_values(helm, tmp_path, {role: hatches for role in WORKLOADS})
    for role, (kind, name) in WORKLOADS.items():
        workload = one(manifests, kind, name)
        template = workload["spec"]["template"]
        pod = template["spec"]
        assert pod["priorityClassName"] == "callfs-critical", role
        assert pod["nodeSelector"] == {"pool": "callfs"}, role
        assert pod["tolerations"] == hatches["tolerations"], role
        assert template["metadata"]["annotations"]["example.com/a"] == "b", role
        assert template["metadata"]["labels"]["team"] == "storage", role
        (container,) = pod["containers"]
        assert container["env"][-1] == env[0], role
        assert "CALLFS_SECRETS_DIR" in {item["name"] for item in container["env"]}, role
        assert pod["volumes"][-1] == volumes[0], role
        assert {v["name"] for v in pod["volumes"]} >= {"tmp", "secrets", "ca"}, role
        assert container["volumeMounts"][-1] == mounts[0], role
    for spec in pod_specs(helm.scenario("default")).values():
        assert "priorityClassName" not in spec


def test_every_role_takes_its_own_affinity(helm: Helm, tmp_path: Path) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    }
    manifests = _with_values(helm, tmp_path, {role: {"affinity": affinity} for role in WORKLOADS})
    for role in WORKLOADS:
        assert _pod(manifests, role)["affinity"] == affinity, role


def test_services_take_annotations(helm: Helm) -> None:
    manifests = helm.scenario(SCENARIO)
    gateway = one(manifests, "Service", "callfs-gateway")
    assert gateway["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/aws-load-balancer-internal": "true"
    }
    assert gateway["spec"]["type"] == "LoadBalancer"
    nodes = one(manifests, "Service", "callfs-storage-node")
    assert nodes["metadata"]["annotations"] == {"example.com/discovery": "headless"}
    assert "annotations" not in one(manifests, "Service", "callfs-link-service")["metadata"]
    for service in find(helm.scenario("default"), "Service"):
        assert "annotations" not in service["metadata"]


def test_storage_node_claims_are_retained_unless_asked(helm: Helm) -> None:
    default = one(helm.scenario("default"), "StatefulSet", "callfs-storage-node")
    assert default["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    deleting = one(helm.scenario(SCENARIO), "StatefulSet", "callfs-storage-node")
    assert deleting["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Delete",
        "whenScaled": "Retain",
    }


# --- NetworkPolicies of the HTTP roles ------------------------------------------------------


def _pod_labels(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    return {
        m["metadata"]["name"]: m["spec"]["template"]["metadata"]["labels"]
        for m in manifests
        if m["kind"] in ("Deployment", "StatefulSet")
    }


def _selected(selector: dict[str, str], labels: dict[str, dict[str, str]]) -> set[str]:
    return {name for name, pod in labels.items() if selector.items() <= pod.items()}


def _container_ports(manifests: list[Manifest], name: str) -> dict[str, int]:
    specs = pod_specs(manifests)
    (spec,) = [spec for key, spec in specs.items() if key.endswith(f"/{name}")]
    return {p["name"]: p["containerPort"] for p in spec["containers"][0]["ports"]}


@pytest.mark.parametrize("role", ["gateway", "link-service"])
def test_http_roles_accept_their_api_from_anyone_and_metrics_as_configured(
    helm: Helm, role: str
) -> None:
    manifests = helm.scenario("bundled-values.yaml")
    policy = one(manifests, "NetworkPolicy", f"callfs-{role}")
    labels = _pod_labels(manifests)
    assert _selected(policy["spec"]["podSelector"]["matchLabels"], labels) == {f"callfs-{role}"}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in policy["spec"]
    api, metrics = policy["spec"]["ingress"]
    assert api == {"ports": [{"port": "http", "protocol": "TCP"}]}  # no `from`: anyone
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    ports = _container_ports(manifests, f"callfs-{role}")
    assert {"http", "metrics"} <= ports.keys()
    default = one(helm.scenario("default"), "NetworkPolicy", f"callfs-{role}")
    assert default["spec"]["ingress"][1] == {"ports": [{"port": "metrics", "protocol": "TCP"}]}


def test_no_network_policies_when_turned_off(helm: Helm) -> None:
    assert find(helm.scenario("kind-values.yaml"), "NetworkPolicy") == []


@pytest.mark.parametrize("role", ["gateway", "link-service"])
def test_egress_of_http_roles_reaches_dns_storage_nodes_databases_and_extra_rules(
    helm: Helm, role: str
) -> None:
    manifests = helm.scenario(SCENARIO)
    policy = one(manifests, "NetworkPolicy", f"callfs-{role}")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dns, *to_pods, extra = policy["spec"]["egress"]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    labels = _pod_labels(manifests)
    reached: dict[str, int] = {}
    for rule in to_pods:
        ((peer,),) = [rule["to"]]
        ((port,),) = [rule["ports"]]
        assert port["protocol"] == "TCP"
        for name in _selected(peer["podSelector"]["matchLabels"], labels):
            reached[name] = port["port"]
    # Each destination on the port its container really listens on; nothing else of the release.
    assert reached == {
        "callfs-storage-node": _container_ports(manifests, "callfs-storage-node")["grpc"],
        "callfs-postgresql": _container_ports(manifests, "callfs-postgresql")["postgresql"],
        "callfs-redis": _container_ports(manifests, "callfs-redis")["redis"],
    }
    assert extra == {
        "to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    }


def test_egress_without_bundled_databases_leaves_them_to_extra_rules(helm: Helm) -> None:
    manifests = helm.scenario("default", "--set", "networkPolicy.egress.enabled=true")
    egress = one(manifests, "NetworkPolicy", "callfs-gateway")["spec"]["egress"]
    assert len(egress) == 2  # DNS and the storage nodes
    assert egress[1]["ports"] == [{"port": 50051, "protocol": "TCP"}]


# --- HTTPRoute ---------------------------------------------------------------------------


def test_no_httproute_by_default(helm: Helm) -> None:
    assert find(helm.scenario("default"), "HTTPRoute") == []


def test_httproute_sends_links_to_the_link_service_and_the_rest_to_the_gateway(
    helm: Helm,
) -> None:
    manifests = helm.scenario(SCENARIO)
    assert find(manifests, "Ingress") == []
    route = one(manifests, "HTTPRoute", "callfs")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["metadata"]["annotations"] == {"example.com/owner": "storage"}
    spec = route["spec"]
    assert spec["parentRefs"] == [
        {"name": "public", "namespace": "gateway-system", "sectionName": "https"}
    ]
    assert spec["hostnames"] == ["files.example.com"]
    services = {
        s["metadata"]["name"]: {p["name"]: p["port"] for p in s["spec"]["ports"]}
        for s in find(manifests, "Service")
    }
    routes: dict[str, tuple[str, int]] = {}
    for rule in spec["rules"]:
        ((backend,),) = [rule["backendRefs"]]
        assert backend["port"] == services[backend["name"]]["http"]
        for match in rule["matches"]:
            assert match["path"]["type"] == "PathPrefix"
            routes[match["path"]["value"]] = (backend["name"], backend["port"])
    assert routes == {
        "/download/": ("callfs-link-service", 80),
        "/v1/links/": ("callfs-link-service", 80),
        "/": ("callfs-gateway", 80),
    }


def test_httproute_follows_service_ports_and_may_answer_every_host(
    helm: Helm, tmp_path: Path
) -> None:
    manifests = _with_values(
        helm,
        tmp_path,
        {
            "httpRoute": {"enabled": True, "parentRefs": [{"name": "shared"}]},
            "gateway": {"service": {"port": 8080}},
            "linkService": {"service": {"port": 8081}},
        },
    )
    spec = one(manifests, "HTTPRoute", "callfs")["spec"]
    assert "hostnames" not in spec
    assert [rule["backendRefs"][0]["port"] for rule in spec["rules"]] == [8081, 8080]
    assert len(find(manifests, "Ingress")) == 1  # next to the Ingress, not instead
