"""The SDK stands alone: importing and using it loads nothing of the server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SERVER_SIDE = [
    "fastapi",
    "starlette",
    "uvicorn",
    "grpc",
    "pydantic",
    "redis",
    "asyncpg",
    "aioboto3",
    "kubernetes",
    "prometheus_client",
    "cryptography",
    "callfs.runtime",
    "callfs.settings",
    "callfs.errors",
    "callfs.entry",
    "callfs.paths",
    "callfs_gateway",
    "callfs_link_service",
    "callfs_storage_node",
]

PROBE = """
import json, sys
{setup}
loaded = sorted({{name.split(".")[0] for name in sys.modules}} | set(sys.modules))
print(json.dumps(loaded))
"""


def loaded_after(setup: str, env: dict[str, str] | None = None) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(setup=setup)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return set(json.loads(result.stdout))


def test_import_loads_nothing_of_the_server_nor_yaml() -> None:
    loaded = loaded_after(
        "import callfs.client\n"
        "c = callfs.client.Client('http://127.0.0.1:1', 'key')\n"
        "a = callfs.client.AsyncClient('http://127.0.0.1:1', 'key')"
    )
    assert "httpx" in loaded and "callfs.client" in loaded
    assert not loaded & {*SERVER_SIDE, "yaml"}


def test_reading_a_profile_loads_yaml_only(tmp_path: Path) -> None:
    config = tmp_path / "callfs" / "config.yaml"
    config.parent.mkdir()
    config.write_text("profiles: {default: {url: 'http://127.0.0.1:1', api_key: k}}\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    loaded = loaded_after("import callfs.client\ncallfs.client.Client()", env=env)
    assert "yaml" in loaded
    assert not loaded & set(SERVER_SIDE)
