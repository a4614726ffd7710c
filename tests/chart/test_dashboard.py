"""The Grafana dashboard the chart ships: its ConfigMap, its panels, and queries that ask only
for what CallFS exports (the same check the alerts pass)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.monitoring import Exported, Selector, problems, selectors
from tests.chart.rendering import CHART, NAMESPACE, Helm, find, one, tool

pytestmark = pytest.mark.chart

DASHBOARD = CHART / "files" / "dashboard.json"
ENABLED = ("--set", "grafanaDashboard.enabled=true")
# What Grafana puts in place of its variables before Prometheus sees a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": NAMESPACE}


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _queries() -> dict[str, str]:
    """Every query of every panel, by ``panel title/refId``."""
    return {
        f"{panel['title']}/{target['refId']}": target["expr"]
        for panel in _panels(_dashboard()["panels"])
        for target in panel.get("targets", [])
    }


def test_the_dashboard_configmap_is_rendered_only_when_enabled(helm: Helm) -> None:
    assert find(helm.scenario("default"), "ConfigMap", "callfs-dashboard") == []
    configmap = one(helm.scenario("default", *ENABLED), "ConfigMap", "callfs-dashboard")
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in configmap["metadata"]


def test_the_sidecar_label_namespace_and_annotations_are_configurable(helm: Helm) -> None:
    configmap = one(helm.scenario("bundled-values.yaml"), "ConfigMap", "callfs-dashboard")
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Storage"}
    relabelled = one(
        helm.scenario(
            "default",
            *ENABLED,
            "--set",
            "grafanaDashboard.label=dashboards.example.com/grafana",
            "--set",
            "grafanaDashboard.labelValue=callfs",
        ),
        "ConfigMap",
        "callfs-dashboard",
    )
    labels = relabelled["metadata"]["labels"]
    assert labels["dashboards.example.com/grafana"] == "callfs"
    assert "grafana_dashboard" not in labels


def test_the_configmap_ships_the_dashboard_file(helm: Helm) -> None:
    configmap = one(helm.scenario("default", *ENABLED), "ConfigMap", "callfs-dashboard")
    assert list(configmap["data"]) == ["callfs.json"]
    assert json.loads(configmap["data"]["callfs.json"]) == _dashboard()


def test_the_dashboard_has_the_panels_operators_look_for() -> None:
    dashboard = _dashboard()
    assert (dashboard["uid"], dashboard["title"]) == ("callfs", "CallFS")
    queries = "\n".join(_queries().values())
    for metric in (
        "callfs_http_requests_total",
        "callfs_http_request_duration_seconds_bucket",
        "callfs_storage_node_written_bytes_total",
        "callfs_storage_node_read_bytes_total",
        "callfs_errors_total",
        "callfs_storage_node_volume_free_bytes",
        "callfs_storage_node_volume_used_bytes",
        "callfs_object_cache_hits_total",
        "callfs_active_locks",
        "callfs_lock_operations_total",
    ):
        assert metric in queries, metric
    assert "histogram_quantile(0.5," in queries and "histogram_quantile(0.99," in queries
    assert "by (component, error_type)" in queries


def test_every_panel_reads_the_chosen_data_source_and_namespace() -> None:
    dashboard = _dashboard()
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${datasource}"}
    ids = []
    for panel in _panels(dashboard["panels"]):
        ids.append(panel["id"])
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == source, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == source, panel["title"]
            for selector in selectors(target["expr"]):
                assert selector.matchers.get("namespace") == ("=", "$namespace"), panel["title"]
    assert len(ids) == len(set(ids))


def test_the_dashboard_queries_only_what_callfs_exports(exported_series: Exported) -> None:
    found = {name: problems(expr, exported_series) for name, expr in _queries().items()}
    assert {name: issues for name, issues in found.items() if issues} == {}
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        metric, label = match.groups()
        assert problems(metric, exported_series) == []
        assert label in exported_series["gateway"][metric]


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    rules = []
    for index, expr in enumerate(_queries().values()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [str(tool("promtool")), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the check itself ---------------------------------------------------------------------


def test_selectors_skip_functions_groupings_ranges_and_strings() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(x_bucket{job="gateway", path=~"/v1/.+"}'
        "[$__rate_interval]))) > on (job) group_left () max(y offset 3h) or label_replace(up, "
        '"node", "$1", "pod", "(.+)") unless {__name__="z"}'
    )
    assert selectors(expr) == [
        Selector("x_bucket", {"job": ("=", "gateway"), "path": ("=~", "/v1/.+")}),
        Selector("y"),
        Selector("up"),
        Selector("z"),
    ]


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(callfs_http_request_total[5m])", "callfs_http_request_total is not exported"),
        ("callfs_http_requests", "callfs_http_requests is not exported"),
        ('callfs_http_requests_total{status="500"}', "has no label status"),
        (
            'callfs_storage_node_volume_free_bytes{job="gateway"}',
            "callfs_storage_node_volume_free_bytes is not exported by gateway",
        ),
        ('up{job="storage"}', "job 'storage' is no CallFS role"),
    ],
)
def test_a_misspelt_metric_label_or_role_is_found(
    exported_series: Exported, expr: str, problem: str
) -> None:
    found = problems(expr, exported_series)
    assert any(problem in issue for issue in found), found


def test_labels_are_checked_as_prometheus_stores_them(
    exported_series: Exported,
) -> None:
    assert problems('callfs_storage_node_up{exported_instance="node-0"}', exported_series) == []
    assert problems('callfs_node_replicas{exported_instance="node-0"}', exported_series) == []
    bucket = 'callfs_lock_operation_duration_seconds_bucket{le="1.0"}'
    assert problems(bucket, exported_series) == []
    count = 'callfs_lock_operation_duration_seconds_count{le="1.0"}'
    assert problems(count, exported_series) == [
        "callfs_lock_operation_duration_seconds_count has no label le"
    ]
