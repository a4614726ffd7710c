"""The chart rendered by the real helm binary that ``make tools`` unpacks into .tools/."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "callfs"
TOOLS = ROOT / ".tools"
RELEASE = "callfs"
NAMESPACE = "callfs"
SCENARIOS = ["default", *sorted(path.name for path in (CHART / "ci").glob("*.yaml"))]
KUBERNETES_VERSIONS = ["1.30", "1.31", "1.32", "1.33", "1.34"]
SERVICEMONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
PROMETHEUSRULE_API = "monitoring.coreos.com/v1/PrometheusRule"

Manifest = dict[str, Any]


def tool(name: str, tools: Path = TOOLS) -> Path:
    """A binary or file of .tools/; fails the test (never skips) when ``make tools`` was not run."""
    path = tools / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make tools` (chart checks need it)", pytrace=False)
    return path


class Helm:
    """Runs helm against charts/callfs and parses what it renders."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self._cache: dict[tuple[str, ...], list[Manifest]] = {}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run helm with ``args``; the caller checks the outcome."""
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=60, check=False
        )

    def template(
        self,
        *args: str,
        release: str = RELEASE,
        kube_version: str = "1.34",
    ) -> list[Manifest]:
        """What ``helm template`` renders (hooks included), parsed; cached per arguments."""
        key = (release, kube_version, *args)
        if key not in self._cache:
            result = self.run(
                "template",
                release,
                str(CHART),
                "--namespace",
                NAMESPACE,
                "--kube-version",
                f"{kube_version}.0",
                *args,
            )
            assert result.returncode == 0, result.stderr
            self._cache[key] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return self._cache[key]

    def scenario(self, name: str, *args: str, kube_version: str = "1.34") -> list[Manifest]:
        """The chart rendered with one ci/ values file (or the defaults)."""
        values = [] if name == "default" else ["--values", str(CHART / "ci" / name)]
        return self.template(*values, *args, kube_version=kube_version)


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    """The manifests of one kind (and name)."""
    return [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    """The single manifest of that kind and name."""
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_specs(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    """Every pod spec by ``Kind/name``: workloads' templates and bare Pods (helm test)."""
    specs: dict[str, dict[str, Any]] = {}
    for m in manifests:
        if m["kind"] in ("Deployment", "StatefulSet"):
            specs[f"{m['kind']}/{m['metadata']['name']}"] = m["spec"]["template"]["spec"]
        elif m["kind"] == "Pod":
            specs[f"Pod/{m['metadata']['name']}"] = m["spec"]
    return specs
