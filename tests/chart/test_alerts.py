"""The chart's PrometheusRule: when it renders, what its values change, and what each alert
does on given series, as `promtool test rules` (from .tools/) evaluates it."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.monitoring import Exported, problems
from tests.chart.rendering import (
    CHART,
    NAMESPACE,
    PROMETHEUSRULE_API,
    Helm,
    Manifest,
    find,
    one,
    tool,
)

pytestmark = pytest.mark.chart

ENABLED = ("--set", "prometheusRule.enabled=true")
API = ("--api-versions", PROMETHEUSRULE_API)


def _rule(helm: Helm, *args: str, scenario: str = "default") -> Manifest:
    return one(helm.scenario(scenario, *ENABLED, *API, *args), "PrometheusRule", "callfs")


def _rules(manifest: Manifest) -> list[dict[str, Any]]:
    (group,) = manifest["spec"]["groups"]
    assert group["name"] == "callfs"
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def _alerts(manifest: Manifest) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules(manifest) if "alert" in rule}


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("promtool")), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def _rule_file(manifest: Manifest, directory: Path) -> Path:
    """The PrometheusRule's groups as the rule file Prometheus loads."""
    path = directory / "callfs.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": manifest["spec"]["groups"]}, sort_keys=False))
    return path


# --- rendering ---------------------------------------------------------------------------


def test_prometheusrule_is_rendered_only_when_enabled_and_the_api_exists_or_forced(
    helm: Helm,
) -> None:
    assert find(helm.scenario("default", *API), "PrometheusRule") == []
    assert find(helm.scenario("default", *ENABLED), "PrometheusRule") == []
    assert len(find(helm.scenario("default", *ENABLED, *API), "PrometheusRule")) == 1
    forced = ("--set", "prometheusRule.force=true")
    assert len(find(helm.scenario("default", *ENABLED, *forced), "PrometheusRule")) == 1


def test_the_rule_carries_the_release_labels_and_the_extra_ones(helm: Helm) -> None:
    manifest = one(helm.scenario("bundled-values.yaml"), "PrometheusRule", "callfs")
    assert manifest["metadata"]["namespace"] == NAMESPACE
    labels = manifest["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack"
    assert labels["app.kubernetes.io/instance"] == "callfs"
    for rule in _rules(manifest):
        assert rule["labels"]["team"] == "storage"
        assert rule["labels"]["severity"] in ("warning", "critical")


def test_thresholds_durations_and_severities_come_from_the_values(helm: Helm) -> None:
    alerts = _alerts(
        _rule(
            helm,
            "--set",
            "prometheusRule.alerts.volumeFull.percent=70",
            "--set",
            "prometheusRule.alerts.volumeFull.for=1h",
            "--set",
            "prometheusRule.alerts.volumeFull.severity=page",
            "--set",
            "prometheusRule.alerts.gatewayErrors.percent=2.5",
            "--set",
            "prometheusRule.alerts.gatewayLatency.p99Seconds=1.5",
            "--set",
            "prometheusRule.alerts.linkServiceErrors.percent=10",
            "--set",
            "prometheusRule.alerts.reconcilerFailing.window=6h",
        )
    )
    volume = alerts["CallFSVolumeAlmostFull"]
    assert volume["expr"].endswith("> 70")
    assert (volume["for"], volume["labels"]["severity"]) == ("1h", "page")
    assert "over 70% full" in volume["annotations"]["description"]
    assert alerts["CallFSGatewayErrorsHigh"]["expr"].endswith("> 2.5")
    assert alerts["CallFSGatewayLatencyHigh"]["expr"].endswith("> 1.5")
    assert alerts["CallFSLinkServiceErrorsHigh"]["expr"].endswith("> 10")
    reconciler = alerts["CallFSReconcilerFailing"]
    assert "offset 6h" in reconciler["expr"] and "[6h]" in reconciler["expr"]
    assert "3h" not in reconciler["expr"] + reconciler["annotations"]["summary"]


def test_alerts_can_be_turned_off_and_rules_added(helm: Helm, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    extra = {"record": "callfs:http_requests:rate5m", "expr": "sum(rate(up[5m]))"}
    values.write_text(
        yaml.safe_dump(
            {
                "prometheusRule": {
                    "alerts": {"gatewayLatency": {"enabled": False}},
                    "additionalRules": [extra],
                }
            }
        )
    )
    manifest = _rule(helm, "--values", str(values))
    assert "CallFSGatewayLatencyHigh" not in _alerts(manifest)
    assert len(_alerts(manifest)) == len(CASES) - 1
    assert _rules(manifest)[-1] == extra


def test_the_schema_refuses_a_bad_duration_or_threshold(helm: Helm) -> None:
    for setting in (
        "prometheusRule.alerts.storageNodeDown.for=5 minutes",
        "prometheusRule.alerts.volumeFull.percent=120",
        "prometheusRule.alerts.gatewayErrors.percent=0",
        "prometheusRule.alerts.underReplicated.severiti=page",
    ):
        result = helm.run("template", "callfs", str(CHART), "--set", setting)
        assert result.returncode != 0, setting
        assert "prometheusRule" in result.stderr, result.stderr


@pytest.mark.parametrize("scenario", ["default", "bundled-values.yaml"])
def test_promtool_accepts_the_rules(helm: Helm, scenario: str, tmp_path: Path) -> None:
    rule_file = _rule_file(_rule(helm, scenario=scenario), tmp_path)
    result = _promtool("check", "rules", rule_file.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(CASES)} rules found" in result.stdout


def test_the_rules_query_only_what_callfs_exports(helm: Helm, exported_series: Exported) -> None:
    found = {
        name: problems(rule["expr"], exported_series) for name, rule in _alerts(_rule(helm)).items()
    }
    assert {name: issues for name, issues in found.items() if issues} == {}


# --- what each alert does: promtool unit tests --------------------------------------------


def target(job: str, pod: str) -> dict[str, str]:
    """The labels the ServiceMonitor gives every series of one pod."""
    return {"namespace": NAMESPACE, "job": job, "pod": pod, "instance": f"{pod}:9090"}


GATEWAY_A = target("gateway", "callfs-gateway-a")
GATEWAY_B = target("gateway", "callfs-gateway-b")
GATEWAY_C = target("gateway", "callfs-gateway-c")
LINKS_A = target("link-service", "callfs-link-service-a")
NODE_0 = target("storage-node", "callfs-storage-node-0")
NODE_1 = target("storage-node", "callfs-storage-node-1")


def series(name: str, labels: dict[str, str], **more: str) -> str:
    """A series in promtool's notation."""
    pairs = ", ".join(f'{key}="{value}"' for key, value in {**labels, **more}.items())
    return f"{name}{{{pairs}}}"


def timeline(changes: dict[int, int], end: int) -> str:
    """promtool values for a series sampled every minute up to minute ``end``: absent
    before the first change, then each value of ``changes`` from its minute on."""
    minutes = sorted(changes)
    parts = [f"_x{minutes[0]}"] if minutes[0] > 0 else []
    for start, stop in zip(minutes, [*minutes[1:], end + 1], strict=True):
        parts.append(f"{changes[start]}x{stop - start - 1}")
    return " ".join(parts)


@dataclass(frozen=True)
class Fired:
    """An alert expected to fire: its labels from the expression, and what its annotations'
    ``{{ $value ... }}`` renders as."""

    labels: dict[str, str]
    value: str = ""


@dataclass(frozen=True)
class Check:
    """What one alert does at one time (``alert`` empty: the case's own)."""

    at: str
    fired: list[Fired] = field(default_factory=list)
    alert: str = ""


@dataclass(frozen=True)
class Case:
    """Series sampled every minute, and what the alerts do on them."""

    description: str
    series: dict[str, str]
    checks: list[Check]


def _node_up(gateway: dict[str, str], node: str, values: str) -> tuple[str, str]:
    return series("callfs_storage_node_up", gateway, exported_instance=node), values


def _requests(pod: dict[str, str], path: str, status: str, values: str) -> tuple[str, str]:
    name = "callfs_http_requests_total"
    return series(name, pod, method="GET", path=path, status_code=status), values


FILES = "/v1/files/{path:path}"
DOWNLOAD = "/download/{token}"
BUCKETS = ("0.25", "0.5", "1.0", "2.5", "5.0", "7.5", "10.0", "+Inf")


def _latency(slowest_empty: str) -> dict[str, str]:
    """Ten gateway requests a minute, none faster than the bucket ``slowest_empty``."""
    empty = BUCKETS[: BUCKETS.index(slowest_empty) + 1]
    return {
        series(
            "callfs_http_request_duration_seconds_bucket",
            GATEWAY_A,
            method="GET",
            path=FILES,
            le=le,
        ): ("0x30" if le in empty else "0+10x30")
        for le in BUCKETS
    }


def _dependency(dependency: str, gateway_a: str, gateway_b: str, links: str) -> dict[str, str]:
    name = "callfs_dependency_up"
    other = "coordination" if dependency == "metadata_store" else "metadata_store"
    return {
        series(name, GATEWAY_A, dependency=dependency): gateway_a,
        series(name, GATEWAY_B, dependency=dependency): gateway_b,
        series(name, LINKS_A, dependency=dependency): links,
        series(name, GATEWAY_A, dependency=other): "1x10",
        series(name, GATEWAY_B, dependency=other): "1x10",
        series(name, LINKS_A, dependency=other): "1x10",
    }


def _runs(pod: dict[str, str], result: str, changes: dict[int, int], end: int) -> tuple[str, str]:
    return series("callfs_reconciler_runs_total", pod, result=result), timeline(changes, end)


HOURLY = {60: 1, 120: 2, 180: 3, 240: 4, 300: 5}


def _repair(pod: dict[str, str], short: str, last_pass: str) -> dict[str, str]:
    return {
        series("callfs_files_under_replicated", pod): short,
        series("callfs_repair_last_pass_timestamp_seconds", pod): last_pass,
    }


NS = {"namespace": NAMESPACE}

CASES: dict[str, list[Case]] = {
    "CallFSStorageNodeDown": [
        Case(
            "every gateway loses a node that still answers Prometheus",
            dict(
                [
                    _node_up(GATEWAY_A, "callfs-storage-node-0", "1x20"),
                    _node_up(GATEWAY_B, "callfs-storage-node-0", "1x20"),
                    _node_up(GATEWAY_A, "callfs-storage-node-1", "0x20"),
                    _node_up(GATEWAY_B, "callfs-storage-node-1", "0x20"),
                    (series("up", NODE_0), "1x20"),
                    (series("up", NODE_1), "1x20"),
                ]
            ),
            [
                Check("4m"),
                Check("10m", [Fired({**NS, "storage_node": "callfs-storage-node-1"})]),
            ],
        ),
        Case(
            "one gateway alone loses a node",
            dict(
                [
                    _node_up(GATEWAY_A, "callfs-storage-node-1", "0x20"),
                    _node_up(GATEWAY_B, "callfs-storage-node-1", "1x20"),
                    (series("up", NODE_1), "1x20"),
                ]
            ),
            [Check("10m")],
        ),
        Case(
            "Prometheus cannot scrape a node the gateways last saw up",
            dict(
                [
                    _node_up(GATEWAY_A, "callfs-storage-node-0", "1x20"),
                    _node_up(GATEWAY_A, "callfs-storage-node-1", "1x20"),
                    (series("up", NODE_0), "1x20"),
                    (series("up", NODE_1), "0x20"),
                ]
            ),
            [Check("10m", [Fired({**NS, "storage_node": "callfs-storage-node-1"})])],
        ),
        Case(
            "a node comes back",
            dict(
                [
                    _node_up(GATEWAY_A, "callfs-storage-node-1", "0x7 1x12"),
                    _node_up(GATEWAY_B, "callfs-storage-node-1", "0x7 1x12"),
                    (series("up", NODE_1), "1x20"),
                ]
            ),
            [
                Check("6m", [Fired({**NS, "storage_node": "callfs-storage-node-1"})]),
                Check("12m"),
            ],
        ),
    ],
    "CallFSVolumeAlmostFull": [
        Case(
            "one volume 90 % full, one 80 %",
            {
                series("callfs_storage_node_volume_capacity_bytes", NODE_0): "10737418240x30",
                series("callfs_storage_node_volume_free_bytes", NODE_0): "1073741824x30",
                series("callfs_storage_node_volume_capacity_bytes", NODE_1): "10737418240x30",
                series("callfs_storage_node_volume_free_bytes", NODE_1): "2147483648x30",
            },
            [Check("10m"), Check("20m", [Fired(NODE_0, "90")])],
        ),
    ],
    "CallFSGatewayErrorsHigh": [
        Case(
            "one gateway answer in ten is a 503",
            dict(
                [
                    _requests(GATEWAY_A, FILES, "200", "0+90x30"),
                    _requests(GATEWAY_A, FILES, "503", "0+10x30"),
                    _requests(LINKS_A, DOWNLOAD, "200", "0+10x30"),
                ]
            ),
            [
                Check("5m"),
                Check("15m", [Fired(NS, "10")]),
                Check("15m", alert="CallFSLinkServiceErrorsHigh"),
            ],
        ),
        Case(
            "one answer in a hundred is a 500",
            dict(
                [
                    _requests(GATEWAY_A, FILES, "200", "0+99x30"),
                    _requests(GATEWAY_B, FILES, "500", "0+1x30"),
                ]
            ),
            [Check("15m")],
        ),
        Case(
            "client errors and disconnects are no 5xx",
            dict(
                [
                    _requests(GATEWAY_A, FILES, "200", "0+50x30"),
                    _requests(GATEWAY_A, FILES, "404", "0+40x30"),
                    _requests(GATEWAY_A, FILES, "499", "0+10x30"),
                ]
            ),
            [Check("15m")],
        ),
    ],
    "CallFSGatewayLatencyHigh": [
        Case(
            "every request takes over 7.5 s",
            _latency("7.5"),
            [Check("10m"), Check("20m", [Fired(NS, "9.975s")])],
        ),
        Case("every request takes under 0.5 s", _latency("0.25"), [Check("20m")]),
    ],
    "CallFSLinkServiceErrorsHigh": [
        Case(
            "one download in ten is a 503",
            dict(
                [
                    _requests(LINKS_A, DOWNLOAD, "200", "0+90x30"),
                    _requests(LINKS_A, DOWNLOAD, "503", "0+10x30"),
                    _requests(GATEWAY_A, FILES, "200", "0+10x30"),
                ]
            ),
            [
                Check("5m"),
                Check("15m", [Fired(NS, "10")]),
                Check("15m", alert="CallFSGatewayErrorsHigh"),
            ],
        ),
        Case(
            "expired and used links are no 5xx",
            dict(
                [
                    _requests(LINKS_A, DOWNLOAD, "200", "0+50x30"),
                    _requests(LINKS_A, DOWNLOAD, "404", "0+30x30"),
                    _requests(LINKS_A, DOWNLOAD, "410", "0+20x30"),
                ]
            ),
            [Check("15m")],
        ),
    ],
    "CallFSReconcilerFailing": [
        Case(
            "a clean pass every hour",
            dict(
                [
                    _runs(GATEWAY_A, "ok", HOURLY, 360),
                    _runs(GATEWAY_B, "skipped", HOURLY, 360),
                ]
            ),
            [Check("200m"), Check("330m")],
        ),
        Case(
            "every pass fails after a clean first one",
            dict(
                [
                    _runs(GATEWAY_A, "ok", {60: 1}, 360),
                    _runs(GATEWAY_A, "failed", {120: 1, 180: 2, 240: 3, 300: 4}, 360),
                    _runs(GATEWAY_B, "skipped", HOURLY, 360),
                ]
            ),
            [Check("230m"), Check("260m", [Fired(NS)]), Check("330m", [Fired(NS)])],
        ),
        Case(
            "a first clean pass ends it",
            dict(
                [
                    _runs(GATEWAY_A, "failed", HOURLY, 360),
                    _runs(GATEWAY_A, "ok", {330: 1}, 360),
                    _runs(GATEWAY_B, "partial", HOURLY, 360),
                ]
            ),
            [Check("280m", [Fired(NS)]), Check("340m")],
        ),
        Case(
            "a new deployment's first passes fail",
            dict([_runs(GATEWAY_A, "failed", {60: 1, 120: 2}, 170)]),
            [Check("170m")],
        ),
    ],
    "CallFSMetadataStoreUnavailable": [
        Case(
            "no gateway or link-service reaches it",
            _dependency("metadata_store", "0x10", "0x10", "0x10"),
            [
                Check("1m"),
                Check("5m", [Fired(NS)]),
                Check("5m", alert="CallFSRedisUnavailable"),
            ],
        ),
        Case(
            "one pod alone does not reach it",
            _dependency("metadata_store", "0x10", "1x10", "1x10"),
            [Check("5m")],
        ),
    ],
    "CallFSRedisUnavailable": [
        Case(
            "no gateway or link-service reaches it",
            _dependency("coordination", "0x10", "0x10", "0x10"),
            [
                Check("1m"),
                Check("5m", [Fired(NS)]),
                Check("5m", alert="CallFSMetadataStoreUnavailable"),
            ],
        ),
        Case(
            "one pod alone does not reach it",
            _dependency("coordination", "1x10", "1x10", "0x10"),
            [Check("5m")],
        ),
    ],
    "CallFSFilesUnderReplicated": [
        Case(
            "the latest repair pass left files short",
            {
                **_repair(GATEWAY_A, "3x50", "1700000000+60x50"),
                **_repair(GATEWAY_B, "0x50", "1699990000x50"),
                **_repair(GATEWAY_C, "0x50", "0x50"),
            },
            [Check("20m"), Check("40m", [Fired(NS, "3")])],
        ),
        Case(
            "only an older pass found files short",
            {
                **_repair(GATEWAY_A, "5x50", "1699990000x50"),
                **_repair(GATEWAY_B, "0x50", "1700000000+60x50"),
            },
            [Check("40m")],
        ),
        Case(
            "no repair pass yet",
            {**_repair(GATEWAY_A, "0x50", "0x50"), **_repair(GATEWAY_B, "0x50", "0x50")},
            [Check("40m")],
        ),
    ],
}


def _expanded(template: str, fired: Fired, labels: dict[str, str]) -> str:
    """An annotation as Prometheus renders it for ``fired``."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)
    text = re.sub(r"\{\{ \$value( \| \w+)? \}\}", lambda _: fired.value, text)
    assert "{{" not in text, f"unexpected template in {template!r}"
    return text


def _alert_test(check: Check, alert: str, alerts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    name = check.alert or alert
    rule = alerts[name]
    expected = []
    for fired in check.fired:
        labels = {**fired.labels, **rule["labels"]}
        annotations = {
            key: _expanded(value, fired, labels) for key, value in rule["annotations"].items()
        }
        expected.append({"exp_labels": labels, "exp_annotations": annotations})
    return {"eval_time": check.at, "alertname": name, "exp_alerts": expected}


def test_every_alert_has_cases_where_it_fires_and_where_it_does_not(helm: Helm) -> None:
    assert sorted(_alerts(_rule(helm))) == sorted(CASES)
    for alert, cases in CASES.items():
        checks = [check for case in cases for check in case.checks if not check.alert]
        assert any(check.fired for check in checks), alert
        assert any(not check.fired for check in checks), alert


def test_the_cases_feed_series_callfs_exports(exported_series: Exported) -> None:
    found = {
        name: problems(name, exported_series)
        for cases in CASES.values()
        for case in cases
        for name in case.series
    }
    assert {name: issues for name, issues in found.items() if issues} == {}


@pytest.mark.parametrize("alert", sorted(CASES))
def test_alert_fires_when_it_should_and_only_then(helm: Helm, alert: str, tmp_path: Path) -> None:
    manifest = _rule(helm)
    rule_file = _rule_file(manifest, tmp_path)
    alerts = _alerts(manifest)
    tests = {
        "rule_files": [rule_file.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": f"{alert}: {case.description}",
                "interval": "1m",
                "input_series": [
                    {"series": name, "values": values} for name, values in case.series.items()
                ],
                "alert_rule_test": [_alert_test(check, alert, alerts) for check in case.checks],
            }
            for case in CASES[alert]
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = _promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
