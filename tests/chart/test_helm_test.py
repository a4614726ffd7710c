"""`helm test`: the rendered test pod targets the release's Services and Secret, and the script
it ships (charts/callfs/files/helm-test.py) passes against a real ``callfs dev``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chart.rendering import CHART, Helm, Manifest, find, one
from tests.support.dev import dev_ports, dev_server

pytestmark = pytest.mark.chart

KEYS = "helm-test-first-key-0123456789,helm-test-second-key-0123456789"


def _test_pod(manifests: list[Manifest]) -> Manifest:
    (pod,) = find(manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    return pod


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


def _http_port(manifests: list[Manifest], service: str) -> int:
    ports = one(manifests, "Service", service)["spec"]["ports"]
    (port,) = [p["port"] for p in ports if p["name"] == "http"]
    return int(port)


@pytest.mark.parametrize(
    ("args", "secret", "gateway_port", "links_port"),
    [
        ((), "callfs-auth", 80, 80),
        (
            (
                "--set",
                "auth.existingSecret=my-keys",
                "--set",
                "gateway.service.port=8080",
                "--set",
                "linkService.service.port=8081",
            ),
            "my-keys",
            8080,
            8081,
        ),
    ],
)
def test_the_test_pod_runs_the_shipped_script_against_the_services_with_an_api_key(
    helm: Helm, args: tuple[str, ...], secret: str, gateway_port: int, links_port: int
) -> None:
    manifests = helm.scenario("default", *args)
    pod = _test_pod(manifests)
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["command"] == [
        "python",
        "-c",
        (CHART / "files" / "helm-test.py").read_text(),
    ]
    env = _env(container)
    assert env["GATEWAY_URL"] == f"http://callfs-gateway:{gateway_port}"
    assert env["LINKS_URL"] == f"http://callfs-link-service:{links_port}"
    assert _http_port(manifests, "callfs-gateway") == gateway_port
    assert _http_port(manifests, "callfs-link-service") == links_port
    # The key file is the auth Secret's `api-keys`, mounted where KEY_FILE points.
    (mount,) = container["volumeMounts"]
    (volume,) = spec["volumes"]
    assert mount["name"] == volume["name"]
    assert volume["secret"]["secretName"] == secret
    (item,) = volume["secret"]["items"]
    assert item["key"] == "api-keys"
    assert env["KEY_FILE"] == f"{mount['mountPath']}/{item['path']}"
    if secret == "callfs-auth":
        assert "api-keys" in one(manifests, "Secret", secret)["data"]


def test_the_test_pod_reaches_both_services_through_their_network_policies(helm: Helm) -> None:
    manifests = helm.scenario("bundled-values.yaml")
    labels = _test_pod(manifests)["metadata"]["labels"]
    for role in ("gateway", "link-service"):
        (api, _metrics) = one(manifests, "NetworkPolicy", f"callfs-{role}")["spec"]["ingress"]
        assert "from" not in api  # anyone, the test pod (labels below) included
    assert labels["app.kubernetes.io/component"] == "test"


def test_no_test_pod_when_turned_off(helm: Helm) -> None:
    assert find(helm.scenario("default", "--set", "tests.enabled=false"), "Pod") == []


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``callfs dev`` with :data:`KEYS`; its URL stands for both Services."""
    data = tmp_path_factory.mktemp("helm-test") / "data"
    with dev_server(data, CALLFS_AUTH_API_KEYS=KEYS, **dev_ports()) as (url, _key):
        yield url


def _run_script(
    helm: Helm, url: str, keys: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """The rendered pod's command, run here with its Service URLs pointed at ``url``."""
    (container,) = _test_pod(helm.scenario("default"))["spec"]["containers"]
    _python, flag, script = container["command"]
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(keys)
    env = {"GATEWAY_URL": url, "LINKS_URL": url, "KEY_FILE": str(keys_file)}
    return subprocess.run(
        [sys.executable, flag, script],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_test_script_passes_against_a_real_callfs(helm: Helm, dev: str, tmp_path: Path) -> None:
    result = _run_script(helm, dev, KEYS, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [line.rsplit(":", 1)[0] for line in result.stdout.splitlines()]
    assert steps == [
        f"health {dev}",
        f"health {dev}",
        "upload",
        "download",
        "list",
        "link generate",
        "link download",
        "link reuse refused",
        "delete",
        "deleted file is gone",
        "CallFS API test passed",
    ]
    # It cleaned up after itself: nothing of it is left at the root.
    headers = {"Authorization": f"Bearer {KEYS.split(',')[0]}"}
    root = httpx.get(f"{dev}/v1/directories/", headers=headers, timeout=30)
    assert root.status_code == 200
    assert not [i for i in root.json()["items"] if i["path"].startswith("/helm-test-")]


def test_the_test_script_fails_naming_the_step_when_the_api_refuses(
    helm: Helm, dev: str, tmp_path: Path
) -> None:
    result = _run_script(helm, dev, "not-a-key-of-this-server-0123456789", tmp_path)
    assert result.returncode == 1
    assert "FAILED: upload: expected 201, got 401" in result.stderr
