"""The chart lints, renders and validates: Kubernetes 1.30-1.34 schemas, the monitoring and
Gateway API CRDs."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml

from tests.chart.rendering import (
    CHART,
    KUBERNETES_VERSIONS,
    PROMETHEUSRULE_API,
    ROOT,
    SCENARIOS,
    SERVICEMONITOR_API,
    Helm,
    Manifest,
    find,
    tool,
)

pytestmark = pytest.mark.chart

K8S_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
CRD_GROUPS = ("monitoring.coreos.com/", "gateway.networking.k8s.io/")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict_passes(helm: Helm, scenario: str) -> None:
    values = [] if scenario == "default" else ["--values", str(CHART / "ci" / scenario)]
    result = helm.run("lint", "--strict", str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_objects_are_valid_kubernetes_in_strict_mode(
    helm: Helm, scenario: str, version: str
) -> None:
    apis = ("--api-versions", SERVICEMONITOR_API, "--api-versions", PROMETHEUSRULE_API)
    manifests = helm.scenario(scenario, *apis, kube_version=version)
    assert manifests
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        if manifest["apiVersion"].startswith(CRD_GROUPS):
            # Not a built-in kind: checked against its CRD's schema below.
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(manifest, version, strict=True)
            continue
        try:
            validated = kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{scenario}: {name} is invalid on Kubernetes {version}: {path}: {exc}")
        assert validated == version


def test_strict_validation_rejects_an_unknown_field(helm: Helm) -> None:
    deployment = copy.deepcopy(find(helm.scenario("default"), "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.34", strict=True)


def _crd_validator(kind: str) -> jsonschema.protocols.Validator:
    """A CRD's schema (ServiceMonitor, PrometheusRule, HTTPRoute), made strict like the API
    server.

    The CRD's openAPIV3Schema comes from .tools/ (see scripts/fetch-tools.sh). The API server
    rejects unknown fields under strict field validation, so every object that lists its
    properties gets ``additionalProperties: false``; ``metadata`` is checked against the
    strict ObjectMeta of kubernetes-validate.
    """
    schema: dict[str, Any] = json.loads(tool(f"{kind.lower()}.schema.json").read_text())

    def strict(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: strict(v) for k, v in node.items() if k != "nullable"}
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
        elif isinstance(node, list):
            node = [strict(item) for item in node]
        return node

    schema = strict(schema)
    object_meta = "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    schema["properties"]["metadata"] = {"$ref": K8S_DEFINITIONS_ID + object_meta}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "spec"})
    definitions_file = (
        resources.files("kubernetes_validate")
        / "kubernetes-json-schema"
        / "v1.34.0-local-strict"
        / "_definitions.json"
    )
    definitions = json.loads(definitions_file.read_text())
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(
        K8S_DEFINITIONS_ID, referencing.Resource.from_contents(definitions)
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _monitoring(helm: Helm, kind: str) -> Manifest:
    found = find(helm.scenario("bundled-values.yaml"), kind)
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PrometheusRule"])
def test_monitoring_objects_match_the_prometheus_operator_crds(helm: Helm, kind: str) -> None:
    validator = _crd_validator(kind)
    manifest = _monitoring(helm, kind)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(manifest)]
    assert errors == []


def test_servicemonitor_crd_schema_rejects_a_misspelt_endpoint_field(helm: Helm) -> None:
    monitor = copy.deepcopy(_monitoring(helm, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    monitor["spec"]["endpoints"][0]["port"] = 9090
    messages = [e.message for e in _crd_validator("ServiceMonitor").iter_errors(monitor)]
    assert any("intervall" in message for message in messages)
    assert any("9090" in message for message in messages)


def test_prometheusrule_crd_schema_rejects_a_misspelt_rule_field(helm: Helm) -> None:
    rule = copy.deepcopy(_monitoring(helm, "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["annotation"] = {"summary": "typo"}
    messages = [e.message for e in _crd_validator("PrometheusRule").iter_errors(rule)]
    assert any("annotation" in message for message in messages)


def _httproute(helm: Helm) -> Manifest:
    (route,) = find(helm.scenario("operability-values.yaml"), "HTTPRoute")
    return route


def test_httproute_matches_the_gateway_api_crd(helm: Helm) -> None:
    route = _httproute(helm)
    validator = _crd_validator("HTTPRoute")
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(route)]
    assert errors == []


def test_httproute_crd_schema_rejects_a_misspelt_match(helm: Helm) -> None:
    route = copy.deepcopy(_httproute(helm))
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"  # the Ingress spelling
    route["spec"]["parentRefs"][0]["sectionname"] = "https"
    messages = [e.message for e in _crd_validator("HTTPRoute").iter_errors(route)]
    assert any("Prefix" in message for message in messages)
    assert any("sectionname" in message for message in messages)


def test_an_httproute_without_parent_refs_fails_with_a_clear_message(helm: Helm) -> None:
    result = helm.run("template", "x", str(CHART), "--set", "httpRoute.enabled=true")
    assert result.returncode != 0
    assert "set httpRoute.parentRefs" in result.stderr


def test_a_secret_looking_extra_env_value_fails_with_a_clear_message(helm: Helm) -> None:
    result = helm.run(
        "template",
        "x",
        str(CHART),
        "--set",
        "linkService.extraEnv[0].name=DB_PASSWORD",
        "--set",
        "linkService.extraEnv[0].value=hunter2",
    )
    assert result.returncode != 0
    assert "linkService.extraEnv: DB_PASSWORD looks like a secret" in result.stderr


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ("image.digest=sha256:short", "/image/digest"),
        ("postgresql.image.digest=md5:0123", "/postgresql/image/digest"),
        ("gateway.probes.liveness.periodSecond=5", "/gateway/probes/liveness"),
        ("storageNode.probes.liveness.successThreshold=2", "/storageNode/probes/liveness"),
        ("linkService.extraVolumeMounts[0].name=ca", "/linkService/extraVolumeMounts/0"),
        ("gateway.extraVolumes[0].name=ca", "/gateway/extraVolumes/0"),
        ("storageNode.persistentVolumeClaimRetentionPolicy.whenScaled=Keep", "/storageNode"),
        ("httpRoute.parentRefs[0].nam=public", "/httpRoute/parentRefs/0"),
        ("networkPolicy.egress.extraRules[0].too=x", "/networkPolicy/egress/extraRules/0"),
        ("gateway.priorityClassName=Not_Valid", "/gateway/priorityClassName"),
    ],
)
def test_the_schema_refuses_malformed_escape_hatches(helm: Helm, value: str, where: str) -> None:
    result = helm.run("template", "x", str(CHART), "--set", value)
    assert result.returncode != 0
    assert f"at '{where}" in result.stderr, result.stderr


def test_a_typo_in_values_fails_the_render_naming_it(helm: Helm) -> None:
    result = helm.run("template", "x", str(CHART), "--set", "gateway.replica=3")
    assert result.returncode != 0
    assert "replica" in result.stderr


def test_a_short_secret_in_values_fails_the_render(helm: Helm) -> None:
    result = helm.run("template", "x", str(CHART), "--set", "auth.internalProxySecret=short")
    assert result.returncode != 0
    assert "internalProxySecret" in result.stderr


def test_s3_backend_without_a_bucket_fails_with_a_clear_message(helm: Helm) -> None:
    result = helm.run("template", "x", str(CHART), "--set", "config.defaultBackend=s3")
    assert result.returncode != 0
    assert "set s3.bucket" in result.stderr


def test_a_replication_factor_above_the_storage_nodes_fails_with_a_clear_message(
    helm: Helm,
) -> None:
    result = helm.run(
        "template",
        "x",
        str(CHART),
        "--set",
        "replication.factor=4",
        "--set",
        "storageNode.replicas=3",
    )
    assert result.returncode != 0
    assert "replication.factor (4) exceeds storageNode.replicas (3)" in result.stderr


def test_a_write_quorum_above_the_replication_factor_fails_with_a_clear_message(
    helm: Helm,
) -> None:
    result = helm.run(
        "template",
        "x",
        str(CHART),
        "--set",
        "replication.factor=2",
        "--set",
        "replication.writeQuorum=3",
    )
    assert result.returncode != 0
    assert "replication.writeQuorum (3) exceeds replication.factor (2)" in result.stderr


@pytest.mark.parametrize(("factor", "budget"), [(2, 2), (2, 3), (3, 3)])
def test_a_storage_node_budget_of_the_replication_factor_fails_with_a_clear_message(
    helm: Helm, factor: int, budget: int
) -> None:
    result = helm.run(
        "template",
        "x",
        str(CHART),
        "--set",
        f"replication.factor={factor}",
        "--set",
        f"storageNode.pdb.maxUnavailable={budget}",
    )
    assert result.returncode != 0
    assert (
        f"storageNode.pdb.maxUnavailable ({budget}) must be below replication.factor ({factor})"
    ) in result.stderr
    assert f"set it to at most {factor - 1}" in result.stderr


@pytest.mark.parametrize(
    "values",
    [
        ["replication.factor=3", "storageNode.pdb.maxUnavailable=2"],
        ["replication.factor=1", "storageNode.pdb.maxUnavailable=1"],
        [
            "replication.factor=2",
            "storageNode.pdb.maxUnavailable=2",
            "storageNode.pdb.enabled=false",
        ],
        ["replication.factor=2", "storageNode.pdb.maxUnavailable=50%"],
    ],
    ids=["below-the-factor", "factor-1", "no-budget", "percentage"],
)
def test_storage_node_budgets_that_keep_a_replica_render(helm: Helm, values: list[str]) -> None:
    flags = [part for value in values for part in ("--set", value)]
    result = helm.run("template", "x", str(CHART), *flags)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("flag", "value", "complaint"),
    [
        ("--set", "replication.factor=0", "minimum"),
        ("--set-string", "replication.factor=2", "want integer"),
        ("--set", "replication.writeQuorum=-1", "minimum"),
    ],
)
def test_the_schema_refuses_a_replication_value_out_of_range_or_not_an_integer(
    helm: Helm, flag: str, value: str, complaint: str
) -> None:
    result = helm.run("template", "x", str(CHART), flag, value)
    assert result.returncode != 0
    key = value.split("=")[0].replace(".", "/")
    assert f"at '/{key}'" in result.stderr
    assert complaint in result.stderr


def test_the_schema_refuses_a_negative_min_ready_seconds(helm: Helm) -> None:
    result = helm.run("template", "x", str(CHART), "--set", "storageNode.minReadySeconds=-1")
    assert result.returncode != 0
    assert "at '/storageNode/minReadySeconds'" in result.stderr
    assert "minimum" in result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_storage_node_scheduling_overrides_are_valid_kubernetes(
    helm: Helm, tmp_path: Path, version: str
) -> None:
    values = tmp_path / "scheduling.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "storageNode": {
                    "minReadySeconds": 30,
                    "nodeSelector": {"pool": "disk"},
                    "tolerations": [{"key": "storage", "operator": "Exists"}],
                    "affinity": {
                        "podAntiAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "topologyKey": "kubernetes.io/hostname",
                                    "labelSelector": {
                                        "matchLabels": {
                                            "app.kubernetes.io/component": "storage-node"
                                        }
                                    },
                                }
                            ]
                        }
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "DoNotSchedule",
                            "minDomains": 3,
                            "labelSelector": {
                                "matchLabels": {"app.kubernetes.io/component": "storage-node"}
                            },
                        }
                    ],
                }
            }
        )
    )
    manifests = helm.template("--values", str(values), kube_version=version)
    (nodes,) = [
        m for m in find(manifests, "StatefulSet") if "storage-node" in m["metadata"]["name"]
    ]
    assert kubernetes_validate.validate(nodes, version, strict=True) == version


def test_values_schema_forbids_unknown_keys_at_every_object_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}/{index}")

    walk(schema, "#")
    # `global` is shared with a parent chart, whose own globals must pass: typed, but open.
    assert open_objects == ["#/properties/global"]
    assert schema["additionalProperties"] is False


def _undocumented_values(text: str) -> list[str]:
    """Keys of values.yaml with no ``# --`` comment on them, an ancestor, or all their children."""
    entries: list[tuple[int, str, bool]] = []  # (indent, key, documented directly)
    comment = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = True
            continue
        if not stripped or stripped.startswith("#"):
            continue
        match = re.match(r"^( *)([A-Za-z0-9_.\-/]+):", line)
        if match and not stripped.startswith("- "):
            entries.append((len(match.group(1)), match.group(2), comment))
        comment = False

    undocumented: list[str] = []

    def check(index: int, inherited: bool, path: str) -> tuple[bool, int]:
        indent, _, direct = entries[index]
        documented = inherited or direct
        children_ok = True
        has_children = False
        nxt = index + 1
        while nxt < len(entries) and entries[nxt][0] > indent:
            has_children = True
            ok, nxt = check(nxt, documented, f"{path}.{entries[nxt][1]}")
            children_ok = children_ok and ok
        fine = documented or (has_children and children_ok)
        if not fine and not has_children:
            undocumented.append(path)
        return fine, nxt

    position = 0
    while position < len(entries):
        _, position = check(position, False, entries[position][1])
    return undocumented


def test_every_value_is_documented() -> None:
    assert _undocumented_values((CHART / "values.yaml").read_text()) == []


def test_the_documentation_check_finds_an_undocumented_value() -> None:
    text = "# -- Documented.\na: 1\ngroup:\n  # -- Documented.\n  b: 2\n  c: 3\n"
    assert _undocumented_values(text) == ["group.c"]


def test_committed_manifests_equal_a_fresh_render(helm: Helm) -> None:
    fresh = subprocess.run(
        ["bash", str(ROOT / "scripts" / "render-manifests.sh")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HELM": str(helm.binary)},
    ).stdout
    committed = (ROOT / "k8s" / "callfs.yaml").read_text()
    assert committed == fresh, "k8s/callfs.yaml is stale: run `make manifests`"


def test_committed_manifests_hold_no_secret_and_name_the_one_they_need() -> None:
    text = (ROOT / "k8s" / "callfs.yaml").read_text()
    manifests = [doc for doc in yaml.safe_load_all(text) if doc]
    assert find(manifests, "Secret") == []
    assert {"Deployment", "StatefulSet", "Service", "Ingress", "Role"} <= {
        m["kind"] for m in manifests
    }
    assert "kubectl -n callfs create secret generic callfs-auth" in text
    assert "kubectl -n callfs create secret generic callfs-database" in text


def test_a_missing_tool_fails_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="run `make tools`"):
        tool("helm", tools=tmp_path)
