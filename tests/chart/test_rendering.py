"""What the chart renders: RBAC, storage, probes, routes, secrets, security, settings."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from callfs.settings import ENV_NAMES, load_settings, production_problems, split_address
from tests.chart.rendering import (
    CHART,
    SCENARIOS,
    SERVICEMONITOR_API,
    Helm,
    Manifest,
    find,
    one,
    pod_specs,
)

pytestmark = pytest.mark.chart

ROLES = ("gateway", "storage-node", "link-service")
SECRET_NAME_HINTS = ("SECRET", "PASSWORD", "API_KEYS", "DSN", "ACCESS_KEY")


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item for item in container.get("env", [])}


def _decoded(secret: Manifest) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


# --- RBAC and identity ------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rbac_grants_exactly_get_list_watch_on_endpointslices(helm: Helm, scenario: str) -> None:
    manifests = helm.scenario(scenario)
    role = one(manifests, "Role", "callfs-endpointslice-reader")
    assert role["rules"] == [
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    assert find(manifests, "ClusterRole") == []
    assert find(manifests, "ClusterRoleBinding") == []
    binding = one(manifests, "RoleBinding", "callfs-endpointslice-reader")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "callfs-endpointslice-reader",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "callfs", "namespace": "callfs"}
    ]


def test_only_the_discovering_roles_get_an_api_token(helm: Helm) -> None:
    specs = pod_specs(helm.scenario("bundled-values.yaml"))
    for name in ("Deployment/callfs-gateway", "Deployment/callfs-link-service"):
        assert specs[name]["serviceAccountName"] == "callfs"
        assert specs[name]["automountServiceAccountToken"] is True
    others = [
        name
        for name in specs
        if name.split("/")[1] not in ("callfs-gateway", "callfs-link-service")
    ]
    assert len(others) == 4  # storage nodes, PostgreSQL, Redis, the helm test pod
    for name in others:
        assert specs[name]["automountServiceAccountToken"] is False, name


def test_objects_are_named_after_the_release(helm: Helm) -> None:
    manifests = helm.template(release="prod")
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    assert {
        ("Deployment", "prod-gateway"),
        ("Deployment", "prod-link-service"),
        ("StatefulSet", "prod-storage-node"),
        ("Service", "prod-storage-node"),
        ("Secret", "prod-auth"),
        ("ConfigMap", "prod-config"),
        ("Ingress", "prod"),
    } <= names
    for manifest in manifests:
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "prod"
        assert labels["app.kubernetes.io/name"] == "callfs"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "callfs"


# --- storage nodes -------------------------------------------------------------------------


def test_each_storage_node_gets_its_own_volume_through_volume_claim_templates(helm: Helm) -> None:
    manifests = helm.scenario("default", "--set", "storageNode.persistence.size=50Gi")
    nodes = one(manifests, "StatefulSet", "callfs-storage-node")
    (claim,) = nodes["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    pod = nodes["spec"]["template"]["spec"]
    assert all(volume["name"] != "data" for volume in pod["volumes"])
    (container,) = pod["containers"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert find(manifests, "PersistentVolumeClaim") == []


def test_storage_nodes_start_in_parallel_behind_the_headless_service_discovery_watches(
    helm: Helm,
) -> None:
    manifests = helm.scenario("default")
    nodes = one(manifests, "StatefulSet", "callfs-storage-node")
    assert nodes["spec"]["podManagementPolicy"] == "Parallel"
    assert nodes["spec"]["replicas"] == 3
    service = one(manifests, "Service", nodes["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is False
    ports = {port["name"]: port["port"] for port in service["spec"]["ports"]}
    assert ports == {"grpc": 50051, "metrics": 9090}
    config = one(manifests, "ConfigMap", "callfs-config")["data"]
    assert config["CALLFS_INSTANCE_DISCOVERY_MODE"] == "kubernetes"
    assert config["CALLFS_INSTANCE_DISCOVERY_KUBERNETES_SERVICE"] == service["metadata"]["name"]
    assert config["CALLFS_INSTANCE_DISCOVERY_KUBERNETES_PORT_NAME"] == "grpc"
    (container,) = nodes["spec"]["template"]["spec"]["containers"]
    instance_id = _env(container)["CALLFS_INSTANCE_DISCOVERY_INSTANCE_ID"]
    assert instance_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert container["args"] == ["storage-node"]


def _storage_node_pod(manifests: list[Manifest], release: str = "callfs") -> dict[str, Any]:
    nodes = one(manifests, "StatefulSet", f"{release}-storage-node")
    return nodes["spec"]["template"]["spec"]


def _storage_node_selector(release: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "callfs",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": "storage-node",
    }


@pytest.mark.parametrize("release", ["callfs", "prod"])
def test_storage_nodes_prefer_distinct_hosts_and_zones_by_default(helm: Helm, release: str) -> None:
    manifests = helm.template(release=release)
    nodes = one(manifests, "StatefulSet", f"{release}-storage-node")
    selector = _storage_node_selector(release)
    # The selector the defaults use is the StatefulSet's own: it matches every storage node of
    # this release (whatever its revision) and nothing else.
    assert nodes["spec"]["selector"]["matchLabels"] == selector
    assert selector.items() <= nodes["spec"]["template"]["metadata"]["labels"].items()
    pod = _storage_node_pod(manifests, release)
    assert pod["affinity"] == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": selector},
                    },
                }
            ]
        }
    }
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        }
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
    ]
    # Only the storage nodes get defaults; the other roles stay as their values say.
    for role in ("gateway", "link-service"):
        spec = one(manifests, "Deployment", f"{release}-{role}")["spec"]["template"]["spec"]
        assert "affinity" not in spec
        assert "topologySpreadConstraints" not in spec


def test_storage_node_scheduling_values_replace_the_defaults(helm: Helm, tmp_path: Path) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["disk"]}]}
                ]
            }
        }
    }
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "storage-node"}},
        }
    ]
    tolerations = [{"key": "storage", "operator": "Exists", "effect": "NoSchedule"}]
    values = tmp_path / "scheduling.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "storageNode": {
                    "affinity": affinity,
                    "topologySpreadConstraints": spread,
                    "nodeSelector": {"pool": "disk"},
                    "tolerations": tolerations,
                }
            }
        )
    )
    manifests = helm.template("--values", str(values))
    pod = _storage_node_pod(manifests)
    assert pod["affinity"] == affinity
    assert pod["topologySpreadConstraints"] == spread
    assert pod["nodeSelector"] == {"pool": "disk"}
    assert pod["tolerations"] == tolerations
    # Only the affinity replaces its default: the spread constraints stay when left empty.
    only_affinity = tmp_path / "affinity.yaml"  # a new path: helm.template caches by arguments
    only_affinity.write_text(yaml.safe_dump({"storageNode": {"affinity": affinity}}))
    pod = _storage_node_pod(helm.template("--values", str(only_affinity)))
    assert pod["affinity"] == affinity
    assert [c["topologyKey"] for c in pod["topologySpreadConstraints"]] == [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    ]


def test_storage_node_upgrades_roll_one_ready_pod_at_a_time(helm: Helm) -> None:
    nodes = one(helm.scenario("default"), "StatefulSet", "callfs-storage-node")
    # RollingUpdate with no partition and no maxUnavailable: one pod at a time, each waiting for
    # the previous one to be Ready (its readinessProbe) and then available minReadySeconds.
    assert nodes["spec"]["updateStrategy"] == {"type": "RollingUpdate"}
    assert nodes["spec"]["minReadySeconds"] == 10
    (container,) = nodes["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    readiness = container["readinessProbe"]
    assert readiness["grpc"] == {"port": ports["grpc"]}
    assert readiness["periodSeconds"] <= 10
    slower = helm.scenario("default", "--set", "storageNode.minReadySeconds=30")
    assert one(slower, "StatefulSet", "callfs-storage-node")["spec"]["minReadySeconds"] == 30


def test_the_gateway_and_link_service_watch_their_own_namespace(helm: Helm) -> None:
    specs = pod_specs(helm.scenario("default"))
    for role in ("gateway", "link-service"):
        (container,) = specs[f"Deployment/callfs-{role}"]["containers"]
        namespace = _env(container)["CALLFS_INSTANCE_DISCOVERY_KUBERNETES_NAMESPACE"]
        assert namespace["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        assert container["args"] == [role]


# --- probes and security -------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_long_running_container_has_liveness_and_readiness_probes(
    helm: Helm, scenario: str
) -> None:
    specs = pod_specs(helm.scenario(scenario))
    workloads = {name: spec for name, spec in specs.items() if not name.startswith("Pod/")}
    assert len(workloads) >= 3
    for name, spec in workloads.items():
        for container in _containers(spec):
            assert "livenessProbe" in container, f"{name}/{container['name']}"
            assert "readinessProbe" in container, f"{name}/{container['name']}"


def test_http_roles_probe_health_and_ready_and_storage_nodes_probe_grpc_health(
    helm: Helm,
) -> None:
    specs = pod_specs(helm.scenario("default"))
    for role in ("gateway", "link-service"):
        (container,) = specs[f"Deployment/callfs-{role}"]["containers"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/health"
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports == {"http": 8080, "metrics": 9090}
    (node,) = specs["StatefulSet/callfs-storage-node"]["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert node[probe]["grpc"] == {"port": 50051}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_runs_as_non_root_with_a_read_only_root_and_no_capabilities(
    helm: Helm, scenario: str
) -> None:
    specs = pod_specs(helm.scenario(scenario))
    for name, spec in specs.items():
        pod_context = spec["securityContext"]
        assert pod_context["runAsNonRoot"] is True, name
        assert pod_context["runAsUser"] > 0, name
        assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["enableServiceLinks"] is False, name
        for container in _containers(spec):
            context = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            assert "resources" in container and container["resources"]["limits"], where


def test_callfs_containers_write_only_to_tmp_and_their_volume(helm: Helm) -> None:
    specs = pod_specs(helm.scenario("default"))
    assert (
        pod_specs(helm.scenario("default"))["Deployment/callfs-gateway"]["securityContext"][
            "runAsUser"
        ]
        == 10001
    )
    for role, kind in (
        ("gateway", "Deployment"),
        ("link-service", "Deployment"),
        ("storage-node", "StatefulSet"),
    ):
        spec = specs[f"{kind}/callfs-{role}"]
        (container,) = spec["containers"]
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
        assert volumes[mounts["/tmp"]["name"]]["emptyDir"] == {}
        assert mounts["/etc/callfs/secrets"]["readOnly"] is True
        assert _env(container)["PYTHONDONTWRITEBYTECODE"]["value"] == "1"
        writable = {path for path, mount in mounts.items() if not mount.get("readOnly")}
        assert writable == ({"/tmp", "/data"} if role == "storage-node" else {"/tmp"})


# --- ingress ----------------------------------------------------------------------------


def _routes(ingress: Manifest) -> dict[tuple[str | None, str], tuple[str, str, str]]:
    routes = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            service = path["backend"]["service"]
            routes[(rule.get("host"), path["path"])] = (
                path["pathType"],
                service["name"],
                service["port"]["name"],
            )
    return routes


def test_ingress_sends_links_and_downloads_to_the_link_service_and_the_rest_to_the_gateway(
    helm: Helm,
) -> None:
    manifests = helm.scenario("default")
    routes = _routes(one(manifests, "Ingress", "callfs"))
    assert routes == {
        (None, "/download/"): ("Prefix", "callfs-link-service", "http"),
        (None, "/v1/links/"): ("Prefix", "callfs-link-service", "http"),
        (None, "/"): ("Prefix", "callfs-gateway", "http"),
    }
    for _, service_name, port_name in routes.values():
        service = one(manifests, "Service", service_name)
        assert port_name in {port["name"] for port in service["spec"]["ports"]}


def test_ingress_class_hosts_and_tls_are_configurable(helm: Helm) -> None:
    manifests = helm.scenario("bundled-values.yaml")
    ingress = one(manifests, "Ingress", "callfs")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "callfs-tls", "hosts": ["files.example.com"]}]
    routes = _routes(ingress)
    assert routes[("files.example.com", "/v1/links/")][1] == "callfs-link-service"
    assert routes[("files.example.com", "/")][1] == "callfs-gateway"
    config = one(manifests, "ConfigMap", "callfs-config")["data"]
    assert config["CALLFS_SERVER_EXTERNAL_URL"] == "https://files.example.com"


def test_ingress_can_be_turned_off(helm: Helm) -> None:
    assert find(helm.scenario("default", "--set", "ingress.enabled=false"), "Ingress") == []


# --- secrets and settings --------------------------------------------------------------


def test_no_secret_reaches_a_configmap_or_an_environment_variable(helm: Helm) -> None:
    values = yaml.safe_load((CHART / "ci" / "external-values.yaml").read_text())
    secrets = [
        values["externalPostgresql"]["dsn"],
        "s3cret-password",
        values["externalRedis"]["password"],
        values["auth"]["apiKeys"][0],
    ]
    manifests = helm.scenario("external-values.yaml")
    generated = _decoded(one(manifests, "Secret", "callfs-auth"))
    secrets += [generated["internal-proxy-secret"], generated["single-use-link-secret"]]
    not_secrets = [m for m in manifests if m["kind"] != "Secret"]
    text = yaml.safe_dump_all(not_secrets)
    for secret in secrets:
        assert secret not in text
    for configmap in find(manifests, "ConfigMap"):
        for key in configmap["data"]:
            assert not any(hint in key for hint in SECRET_NAME_HINTS), key
    bundled = helm.scenario("bundled-values.yaml")
    for name, spec in {**pod_specs(manifests), **pod_specs(bundled)}.items():
        for container in _containers(spec):
            for variable, item in _env(container).items():
                if variable != "CALLFS_SECRETS_DIR" and any(
                    h in variable for h in SECRET_NAME_HINTS
                ):
                    assert "value" not in item, (name, variable)
                    assert "secretKeyRef" in item["valueFrom"], (name, variable)


def test_secret_settings_arrive_as_files_in_the_secrets_dir(helm: Helm) -> None:
    specs = pod_specs(helm.scenario("external-values.yaml"))
    expected = {
        "gateway": {
            "CALLFS_AUTH_API_KEYS",
            "CALLFS_AUTH_INTERNAL_PROXY_SECRET",
            "CALLFS_AUTH_SINGLE_USE_LINK_SECRET",
            "CALLFS_METADATA_STORE_DSN",
            "CALLFS_DLM_REDIS_PASSWORD",
        },
        "storage-node": {"CALLFS_AUTH_INTERNAL_PROXY_SECRET"},
    }
    expected["link-service"] = expected["gateway"]
    for role, kind in (
        ("gateway", "Deployment"),
        ("link-service", "Deployment"),
        ("storage-node", "StatefulSet"),
    ):
        spec = specs[f"{kind}/callfs-{role}"]
        (container,) = spec["containers"]
        assert _env(container)["CALLFS_SECRETS_DIR"]["value"] == "/etc/callfs/secrets"
        (volume,) = [v for v in spec["volumes"] if v["name"] == "secrets"]
        files = {
            item["path"]
            for source in volume["projected"]["sources"]
            for item in source["secret"]["items"]
        }
        assert files == expected[role], role


def test_the_s3_scenario_maps_an_existing_secret_and_the_sse_settings(helm: Helm) -> None:
    manifests = helm.scenario("s3-values.yaml")
    assert find(manifests, "Secret") == []
    config = one(manifests, "ConfigMap", "callfs-config")["data"]
    assert config["CALLFS_BACKEND_DEFAULT_BACKEND"] == "s3"
    assert config["CALLFS_BACKEND_S3_BUCKET_NAME"] == "callfs-data"
    assert config["CALLFS_BACKEND_S3_SERVER_SIDE_ENCRYPTION"] == "aws:kms"
    assert config["CALLFS_BACKEND_S3_KMS_KEY_ID"] == "alias/callfs"
    assert config["CALLFS_LINKS_GENERATE_RATE"] == "50"
    (volume,) = [
        v
        for v in pod_specs(manifests)["Deployment/callfs-gateway"]["volumes"]
        if v["name"] == "secrets"
    ]
    sources = {s["secret"]["name"]: s["secret"]["items"] for s in volume["projected"]["sources"]}
    assert sources["callfs-s3-keys"] == [
        {"key": "access-key", "path": "CALLFS_BACKEND_S3_ACCESS_KEY"},
        {"key": "secret-key", "path": "CALLFS_BACKEND_S3_SECRET_KEY"},
    ]
    assert sources["callfs-db"] == [{"key": "url", "path": "CALLFS_METADATA_STORE_DSN"}]
    assert "callfs-keys" in sources


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_callfs_variable_the_chart_sets_is_a_real_setting(helm: Helm, scenario: str) -> None:
    manifests = helm.scenario(scenario)
    names = set(one(manifests, "ConfigMap", "callfs-config")["data"])
    for spec in pod_specs(manifests).values():
        for container in _containers(spec):
            names |= {n for n in _env(container) if n.startswith("CALLFS_")}
        for volume in spec.get("volumes", []):
            for source in volume.get("projected", {}).get("sources", []):
                names |= {item["path"] for item in source["secret"]["items"]}
    unknown = sorted(names - set(ENV_NAMES) - {"CALLFS_SECRETS_DIR"})
    assert unknown == []


def _role_settings_environment(
    manifests: list[Manifest], role: str, kind: str, secrets_dir: Path
) -> dict[str, str]:
    """The environment and secrets dir one role's pod would see."""
    spec = pod_specs(manifests)[f"{kind}/callfs-{role}"]
    (container,) = spec["containers"]
    environ = dict(one(manifests, "ConfigMap", "callfs-config")["data"])
    for name, item in _env(container).items():
        environ[name] = item.get("value", f"from-{name.lower()}")
    environ["CALLFS_SECRETS_DIR"] = str(secrets_dir)
    (volume,) = [v for v in spec["volumes"] if v["name"] == "secrets"]
    for source in volume["projected"]["sources"]:
        data = _decoded(one(manifests, "Secret", source["secret"]["name"]))
        for item in source["secret"]["items"]:
            (secrets_dir / item["path"]).write_text(data[item["key"]])
    return environ


@pytest.mark.parametrize("scenario", ["external-values.yaml", "bundled-values.yaml"])
@pytest.mark.parametrize(
    ("role", "kind"),
    [("gateway", "Deployment"), ("link-service", "Deployment"), ("storage-node", "StatefulSet")],
)
def test_rendered_settings_load_and_pass_the_production_checks(
    helm: Helm, scenario: str, role: str, kind: str, tmp_path: Path
) -> None:
    manifests = helm.scenario(scenario)
    environ = _role_settings_environment(manifests, role, kind, tmp_path)
    settings = load_settings(environ=environ)
    assert production_problems(settings, role) == []
    assert settings.server.protocol == "http"
    assert settings.metadata_store.type == "postgres"
    assert settings.dlm.type == "redis"
    assert settings.instance_discovery.mode == "kubernetes"
    if role != "storage-node":
        assert settings.metadata_store.dsn.get_secret_value().startswith("postgres://")
        assert len(settings.auth.api_keys) >= 1


@pytest.mark.parametrize(
    ("args", "factor", "quorum"),
    [
        ((), "2", "0"),
        (("--set", "replication.factor=3", "--set", "replication.writeQuorum=2"), "3", "2"),
        (("--set", "storageNode.replicas=5", "--set", "replication.factor=5"), "5", "0"),
    ],
)
def test_replication_settings_reach_the_configmap(
    helm: Helm, args: tuple[str, ...], factor: str, quorum: str
) -> None:
    config = one(helm.scenario("default", *args), "ConfigMap", "callfs-config")["data"]
    assert config["CALLFS_REPLICATION_FACTOR"] == factor
    assert config["CALLFS_REPLICATION_WRITE_QUORUM"] == quorum


def test_draining_nodes_reach_the_gateways(helm: Helm) -> None:
    manifests = helm.scenario(
        "default", "--set", "replication.draining={callfs-storage-node-2,callfs-storage-node-1}"
    )
    config = one(manifests, "ConfigMap", "callfs-config")["data"]
    assert config["CALLFS_REPLICATION_DRAINING"] == "callfs-storage-node-2,callfs-storage-node-1"
    environ = {"CALLFS_REPLICATION_DRAINING": config["CALLFS_REPLICATION_DRAINING"]}
    draining = load_settings(environ=environ).replication.draining
    assert draining == ["callfs-storage-node-2", "callfs-storage-node-1"]
    default = one(helm.scenario("default"), "ConfigMap", "callfs-config")["data"]
    assert default["CALLFS_REPLICATION_DRAINING"] == ""


def test_rendered_replication_settings_load_as_two_replicas_written_in_full(
    helm: Helm, tmp_path: Path
) -> None:
    manifests = helm.scenario("external-values.yaml")
    environ = _role_settings_environment(manifests, "gateway", "Deployment", tmp_path)
    replication = load_settings(environ=environ).replication
    assert (replication.factor, replication.write_quorum, replication.quorum) == (2, 0, 2)


def test_bundled_databases_get_generated_credentials_and_their_addresses(helm: Helm) -> None:
    manifests = helm.scenario("bundled-values.yaml")
    postgres = _decoded(one(manifests, "Secret", "callfs-postgresql"))
    assert len(postgres["password"]) >= 32
    assert postgres["dsn"] == (
        f"postgres://callfs:{postgres['password']}@callfs-postgresql:5432/callfs?sslmode=disable"
    )
    kept = one(manifests, "Secret", "callfs-postgresql")["metadata"]["annotations"]
    assert kept["helm.sh/resource-policy"] == "keep"
    redis = _decoded(one(manifests, "Secret", "callfs-redis"))
    assert len(redis["redis-password"]) >= 32
    config = one(manifests, "ConfigMap", "callfs-config")["data"]
    assert config["CALLFS_DLM_REDIS_ADDR"] == "callfs-redis:6379"
    keys = _decoded(one(manifests, "Secret", "callfs-auth"))["api-keys"].split(",")
    assert len(keys) == 3
    assert all(len(key) >= 32 for key in keys)
    for name in ("callfs-postgresql", "callfs-redis"):
        assert one(manifests, "Service", name)["spec"]["clusterIP"] == "None"
        assert one(manifests, "StatefulSet", name)["spec"]["replicas"] == 1


def test_generated_secrets_are_kept_across_upgrades_through_lookup() -> None:
    # `helm template` has no cluster, so lookup is empty offline; the templates must use it.
    for template in ("secrets.yaml", "postgresql/secret.yaml", "redis/secret.yaml"):
        text = (CHART / "templates" / template).read_text()
        assert 'lookup "v1" "Secret" .Release.Namespace $name' in text, template
        assert "callfs.keptRandom" in text, template
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    kept = helpers.split('define "callfs.keptRandom"')[1].split("{{- end }}\n{{- end }}")[0]
    assert "hasKey $data .key" in kept
    assert "index $data .key" in kept


def test_an_existing_auth_secret_replaces_the_generated_one(helm: Helm) -> None:
    manifests = helm.scenario("default", "--set", "auth.existingSecret=mine")
    assert find(manifests, "Secret") == []
    (volume,) = [
        v
        for v in pod_specs(manifests)["Deployment/callfs-gateway"]["volumes"]
        if v["name"] == "secrets"
    ]
    assert volume["projected"]["sources"][0]["secret"]["name"] == "mine"


def test_pods_roll_when_settings_change(helm: Helm) -> None:
    def annotations(*args: str) -> dict[str, str]:
        gateway = one(helm.scenario("default", *args), "Deployment", "callfs-gateway")
        result: dict[str, str] = gateway["spec"]["template"]["metadata"]["annotations"]
        return result

    before = annotations("--set", "auth.existingSecret=a")
    after = annotations("--set", "auth.existingSecret=a", "--set", "config.logLevel=debug")
    assert before["checksum/config"] != after["checksum/config"]
    assert before["checksum/secret"] == after["checksum/secret"]
    other = annotations("--set", "auth.existingSecret=b")
    assert before["checksum/secret"] != other["checksum/secret"]


# --- scaling, disruption, network --------------------------------------------------------


def test_gateway_scales_with_an_hpa_that_owns_its_replica_count(helm: Helm) -> None:
    manifests = helm.scenario("default")
    gateway = one(manifests, "Deployment", "callfs-gateway")
    assert "replicas" not in gateway["spec"]
    hpa = one(manifests, "HorizontalPodAutoscaler", "callfs-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "callfs-gateway",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    fixed = helm.scenario("bundled-values.yaml")
    assert find(fixed, "HorizontalPodAutoscaler") == []
    assert one(fixed, "Deployment", "callfs-gateway")["spec"]["replicas"] == 3


def test_gateway_pods_run_one_process_per_cpu_of_their_limit_unless_told(helm: Helm) -> None:
    def workers(*args: str) -> str:
        gateway = one(helm.scenario("default", *args), "Deployment", "callfs-gateway")
        (container,) = gateway["spec"]["template"]["spec"]["containers"]
        value: str = _env(container)["CALLFS_SERVER_WORKERS"]["value"]
        return value

    assert workers() == "0"
    assert workers("--set", "gateway.workers=3") == "3"
    assert load_settings(environ={"CALLFS_SERVER_WORKERS": workers()}).server.workers == 0


def test_every_role_has_a_disruption_budget_selecting_its_pods(helm: Helm) -> None:
    manifests = helm.scenario("default")
    specs = {
        m["metadata"]["name"]: m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")
    }
    for role in ROLES:
        budget = one(manifests, "PodDisruptionBudget", f"callfs-{role}")
        assert budget["spec"]["maxUnavailable"] == 1
        labels = specs[f"callfs-{role}"]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_storage_nodes_accept_grpc_only_from_the_gateway_and_link_service(helm: Helm) -> None:
    manifests = helm.scenario("bundled-values.yaml")
    policy = one(manifests, "NetworkPolicy", "callfs-storage-node")
    labels = {
        m["metadata"]["name"]: m["spec"]["template"]["metadata"]["labels"]
        for m in manifests
        if m["kind"] in ("Deployment", "StatefulSet")
    }
    assert (
        policy["spec"]["podSelector"]["matchLabels"].items()
        <= labels["callfs-storage-node"].items()
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    grpc, metrics = policy["spec"]["ingress"]
    assert grpc["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    admitted = [peer["podSelector"]["matchLabels"] for peer in grpc["from"]]
    assert len(admitted) == 2
    matched = {
        name
        for name, pod_labels in labels.items()
        for sel in admitted
        if sel.items() <= pod_labels.items()
    }
    assert matched == {"callfs-gateway", "callfs-link-service"}
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    for database in ("callfs-postgresql", "callfs-redis"):
        rule = one(manifests, "NetworkPolicy", database)["spec"]["ingress"][0]
        assert [
            p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in rule["from"]
        ] == [
            "gateway",
            "link-service",
        ]


def test_metrics_of_storage_nodes_are_open_to_anyone_by_default(helm: Helm) -> None:
    policy = one(helm.scenario("default"), "NetworkPolicy", "callfs-storage-node")
    assert policy["spec"]["ingress"][1] == {"ports": [{"port": "metrics", "protocol": "TCP"}]}


# --- ServiceMonitor ----------------------------------------------------------------------


def test_servicemonitor_is_rendered_only_when_enabled_and_the_api_exists_or_forced(
    helm: Helm,
) -> None:
    enabled = ("--set", "serviceMonitor.enabled=true")
    api = ("--api-versions", SERVICEMONITOR_API)
    assert find(helm.scenario("default", *api), "ServiceMonitor") == []
    assert find(helm.scenario("default", *enabled), "ServiceMonitor") == []
    assert len(find(helm.scenario("default", *enabled, *api), "ServiceMonitor")) == 1
    forced = ("--set", "serviceMonitor.force=true")
    assert len(find(helm.scenario("default", *enabled, *forced), "ServiceMonitor")) == 1


def test_servicemonitor_scrapes_every_roles_metrics_port_with_extra_labels(helm: Helm) -> None:
    manifests = helm.scenario("bundled-values.yaml")
    monitor = one(manifests, "ServiceMonitor", "callfs")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [
        {
            "port": "metrics",
            "path": "/metrics",
            "scheme": "http",
            "interval": "15s",
            "scrapeTimeout": "10s",
        }
    ]
    selector = monitor["spec"]["selector"]
    selected = []
    for service in find(manifests, "Service"):
        labels = service["metadata"]["labels"]
        if selector["matchLabels"].items() <= labels.items() and all(
            labels.get(e["key"]) in e["values"] for e in selector["matchExpressions"]
        ):
            selected.append(service["metadata"]["name"])
            assert "metrics" in {port["name"] for port in service["spec"]["ports"]}
    assert sorted(selected) == ["callfs-gateway", "callfs-link-service", "callfs-storage-node"]


@pytest.mark.parametrize(
    ("role", "kind"),
    [("gateway", "Deployment"), ("link-service", "Deployment"), ("storage-node", "StatefulSet")],
)
def test_every_role_serves_metrics_on_the_port_the_servicemonitor_scrapes(
    helm: Helm, role: str, kind: str, tmp_path: Path
) -> None:
    """The Service's ``metrics`` port leads to the container's ``metrics`` port, which is
    the one the role's settings make it listen on (a storage node too)."""
    manifests = helm.scenario("bundled-values.yaml")
    settings = load_settings(environ=_role_settings_environment(manifests, role, kind, tmp_path))
    assert settings.metrics.enabled
    _host, listening = split_address(settings.metrics.listen_addr)
    (container,) = pod_specs(manifests)[f"{kind}/callfs-{role}"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["metrics"] == listening == 9090
    service = one(manifests, "Service", f"callfs-{role}")
    (metrics,) = [port for port in service["spec"]["ports"] if port["name"] == "metrics"]
    assert metrics["targetPort"] == "metrics"
