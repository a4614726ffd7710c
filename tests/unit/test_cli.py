"""The ``callfs`` command as a user runs it: ``dev``, ``config validate``, production refusals,
unknown settings, ``--version``."""

from __future__ import annotations

import json
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from tests.support.dev import CALLFS, chosen_ports, dev_ports, dev_server, environment
from tests.support.servers import free_port, silent_port

STRONG = "a-strong-secret-of-32-characters!"


def run(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CALLFS), *arguments], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_dev_serves_files_and_links_on_its_own_listener(tmp_path: Path) -> None:
    ports = chosen_ports()
    with dev_server(tmp_path / "data", **ports) as (url, key):
        assert url == f"http://{ports['CALLFS_SERVER_LISTEN_ADDR']}"
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=auth, timeout=10) as client:
            assert client.post("/v1/files/docs/hello.txt", content=b"hello").status_code == 201
            assert client.get("/v1/files/docs/hello.txt").content == b"hello"
            link = client.post("/v1/links/generate", json={"path": "/docs/hello.txt"})
            assert link.status_code == 201
            # The link points at the listener the user chose, not a default port.
            assert link.json()["url"].startswith(f"{url}/download/")
            download = httpx.get(link.json()["url"], timeout=10)
            assert download.content == b"hello"
        metrics = httpx.get(f"http://{ports['CALLFS_METRICS_LISTEN_ADDR']}/metrics", timeout=10)
        assert "callfs_http_requests_total" in metrics.text


def test_dev_keeps_its_generated_key_and_data_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ports = dev_ports()
    with dev_server(data, **ports) as (url, key):
        response = httpx.post(
            f"{url}/v1/files/kept.txt",
            content=b"still here",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 201
    assert (data / "api-key").stat().st_mode & 0o777 == 0o600
    with dev_server(data, **ports) as (url, again):
        assert again == key
        response = httpx.get(f"{url}/v1/files/kept.txt", headers={"Authorization": f"Bearer {key}"})
        assert response.content == b"still here"


def test_dev_honours_configured_api_keys(tmp_path: Path) -> None:
    with dev_server(
        tmp_path / "data",
        CALLFS_AUTH_API_KEYS="first-key-0123456789,second-key-0123456789",
        **dev_ports(),
    ) as (url, key):
        assert key == "first-key-0123456789"
        second = httpx.post(
            f"{url}/v1/files/mine.txt",
            content=b"x",
            headers={"Authorization": "Bearer second-key-0123456789"},
        )
        assert second.json()["owner"] == "api-user-2"
    assert not (tmp_path / "data" / "api-key").exists()


def strong_secrets(**variables: str) -> dict[str, str]:
    """The environment of settings every production role accepts, plus ``variables``."""
    return environment(
        CALLFS_AUTH_API_KEYS="visible-nowhere-0123456789",
        CALLFS_AUTH_INTERNAL_PROXY_SECRET=STRONG,
        CALLFS_AUTH_SINGLE_USE_LINK_SECRET=STRONG,
        **variables,
    )


def test_config_validate_prints_settings_with_secrets_masked() -> None:
    env = strong_secrets(
        CALLFS_DLM_REDIS_PASSWORD="redis-password-0123456789",
        CALLFS_SERVER_LISTEN_ADDR=":9443",
    )
    result = run("config", "validate", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "visible-nowhere" not in result.stdout
    assert STRONG not in result.stdout
    assert "redis-password" not in result.stdout
    settings = json.loads(result.stdout)
    assert settings["server"]["listen_addr"] == ":9443"


def test_bad_value_stops_with_one_line_naming_the_setting() -> None:
    result = run("config", "validate", env=environment(CALLFS_SERVER_PROTOCOL="gopher"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "server.protocol" in lines[0] or "CALLFS_SERVER_PROTOCOL" in lines[0]
    assert "Traceback" not in result.stderr


def test_production_roles_refuse_default_secrets() -> None:
    for role in ("gateway", "storage-node", "link-service"):
        result = run(role, env=environment())
        assert result.returncode == 2, role
        assert result.stderr.startswith(f"callfs: refusing to start {role}:"), result.stderr
        assert "Traceback" not in result.stderr


def test_production_roles_refuse_short_secrets() -> None:
    env = environment(
        CALLFS_AUTH_API_KEYS="short",
        CALLFS_AUTH_INTERNAL_PROXY_SECRET=STRONG,
        CALLFS_AUTH_SINGLE_USE_LINK_SECRET=STRONG,
    )
    result = run("config", "validate", "--role", "gateway", env=env)
    assert result.returncode == 1
    assert "16" in result.stderr


def test_config_validate_without_a_role_reports_what_every_role_would_refuse() -> None:
    result = run("config", "validate", env=environment())
    assert result.returncode == 1
    assert json.loads(result.stdout)["server"]["listen_addr"] == ":8443"
    lines = result.stderr.splitlines()
    assert [line.partition(":")[2].partition(" would")[0] for line in lines] == [
        " gateway, storage-node, link-service",
        " gateway, link-service",
        " gateway, link-service",
    ]
    assert "CALLFS_AUTH_INTERNAL_PROXY_SECRET" in lines[0]
    assert "CALLFS_AUTH_SINGLE_USE_LINK_SECRET" in lines[1]
    assert "CALLFS_AUTH_API_KEYS" in lines[2]


def test_config_validate_for_one_role_reports_only_its_refusals() -> None:
    env = environment(CALLFS_AUTH_INTERNAL_PROXY_SECRET=STRONG)
    assert run("config", "validate", "--role", "storage-node", env=env).returncode == 0
    result = run("config", "validate", "--role", "link-service", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("callfs: link-service would refuse to start: ")


def test_a_misspelled_variable_stops_a_role_with_one_line_naming_the_setting() -> None:
    env = strong_secrets(CALLFS_SERVER_LISTEN_ADRR="127.0.0.1:0")
    for arguments in (["gateway"], ["config", "validate"]):
        result = run(*arguments, env=env)
        assert result.returncode == 2, arguments
        assert result.stdout == ""
        assert result.stderr == (
            "callfs: CALLFS_SERVER_LISTEN_ADRR names no setting "
            "(did you mean CALLFS_SERVER_LISTEN_ADDR?)\n"
        )


def test_a_misspelled_config_file_key_stops_with_its_dotted_path(tmp_path: Path) -> None:
    config = tmp_path / "callfs.yaml"
    config.write_text("dlm:\n  redis_adr: redis:6379\n")
    result = run("config", "validate", "--config", str(config), env=strong_secrets())
    assert result.returncode == 2
    assert result.stderr == (
        f"callfs: config file {config}: dlm.redis_adr names no setting "
        "(did you mean dlm.redis_addr?)\n"
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ("--config", "{config}", "config", "validate"),
        ("config", "validate", "--config", "{config}"),
        ("config", "validate", "--config", "{config}", "--role", "gateway"),
    ],
    ids=["before the command", "after the command", "among the options"],
)
def test_config_validate_reads_the_config_file_wherever_it_is_given(
    tmp_path: Path, arguments: tuple[str, ...]
) -> None:
    config = tmp_path / "callfs.yaml"
    config.write_text("server:\n  listen_addr: ':7443'\n")
    argv = [argument.format(config=config) for argument in arguments]
    result = run(*argv, env=strong_secrets())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["server"]["listen_addr"] == ":7443"


def test_version_prints_the_package_version() -> None:
    result = run("--version", env=environment())
    assert result.returncode == 0
    assert result.stdout == f"callfs {version('callfs')}\n"


def test_check_connectivity_reports_postgres_and_redis_answering(
    postgres_dsn: str, redis_url: str
) -> None:
    env = strong_secrets(CALLFS_METADATA_STORE_DSN=postgres_dsn, CALLFS_DLM_REDIS_ADDR=redis_url)
    result = run("config", "validate", "--check-connectivity", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "callfs: PostgreSQL metadata store answers",
        "callfs: Redis answers",
    ]


def test_check_connectivity_reports_each_dependency_that_does_not_answer(
    postgres_dsn: str,
) -> None:
    closed = free_port()
    env = strong_secrets(
        CALLFS_METADATA_STORE_DSN=f"postgres://callfs:pg-password-0123@127.0.0.1:{closed}/callfs",
        CALLFS_DLM_REDIS_ADDR=f"127.0.0.1:{closed}",
        CALLFS_DLM_REDIS_PASSWORD="redis-password-0123",
    )
    started = time.monotonic()
    result = run("config", "validate", "--check-connectivity", env=env)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    postgres, redis = result.stderr.splitlines()
    assert postgres.startswith(
        f"callfs: PostgreSQL metadata store check failed: PostgreSQL at 127.0.0.1:{closed}/callfs: "
    )
    assert redis.startswith(f"callfs: Redis check failed: Redis at 127.0.0.1:{closed}: ")
    assert "pg-password" not in result.stderr and "redis-password" not in result.stderr
    # A database that does not exist is named too, while Redis stays unreachable.
    missing = postgres_dsn.rsplit("/", 1)[0] + "/callfs_never_created"
    result = run(
        "config", "validate", "--check-connectivity",
        env={**env, "CALLFS_METADATA_STORE_DSN": missing},
    )  # fmt: skip
    assert result.returncode == 1
    assert 'database "callfs_never_created" does not exist' in result.stderr


def test_check_connectivity_skips_what_the_settings_do_not_use() -> None:
    env = strong_secrets(CALLFS_METADATA_STORE_TYPE="sqlite", CALLFS_DLM_TYPE="local")
    result = run("config", "validate", "--check-connectivity", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "callfs: the settings use no PostgreSQL, Redis or S3\n"
    # A storage node uses none of them, whatever the settings say.
    env = strong_secrets(CALLFS_METADATA_STORE_DSN=f"postgres://x@127.0.0.1:{free_port()}/x")
    result = run("config", "validate", "--role", "storage-node", "--check-connectivity", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "callfs: a storage node uses no PostgreSQL, Redis or S3\n"


def test_no_subcommand_prints_help_and_fails() -> None:
    result = run(env=environment())
    assert result.returncode == 2
    assert "dev" in result.stderr and "config" in result.stderr


def test_dev_auto_protocol_serves_https_with_a_self_signed_certificate(tmp_path: Path) -> None:
    with dev_server(tmp_path / "data", CALLFS_SERVER_PROTOCOL="auto", **dev_ports()) as (url, key):
        assert url.startswith("https://")
        with httpx.Client(base_url=url, verify=False, timeout=10) as client:
            response = client.get("/v1/files/", headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 200
            assert response.headers["strict-transport-security"].startswith("max-age=")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=10)  # the certificate is self-signed


def role_environment(role: str, tmp_path: Path) -> dict[str, str]:
    """What a role needs to get as far as binding its listeners, on ports the system picks."""
    if role == "dev":
        return dev_ports()
    variables = {
        "CALLFS_AUTH_INTERNAL_PROXY_SECRET": STRONG,
        "CALLFS_STORAGE_NODE_LISTEN_ADDR": "127.0.0.1:0",
        "CALLFS_METRICS_LISTEN_ADDR": "127.0.0.1:0",
        "CALLFS_BACKEND_LOCALFS_ROOT_PATH": str(tmp_path / "volume"),
    }
    if role in ("gateway", "link-service"):
        variables |= {
            **dev_ports(),
            "CALLFS_AUTH_API_KEYS": STRONG,
            "CALLFS_AUTH_SINGLE_USE_LINK_SECRET": STRONG,
            "CALLFS_SERVER_PROTOCOL": "http",
            "CALLFS_METADATA_STORE_TYPE": "sqlite",
            "CALLFS_METADATA_STORE_SQLITE_PATH": str(tmp_path / "metadata.sqlite3"),
            "CALLFS_DLM_TYPE": "local",
        }
    return variables


@pytest.mark.parametrize(
    ("role", "setting"),
    [
        ("dev", "server.listen_addr"),
        ("dev", "metrics.listen_addr"),
        ("gateway", "server.listen_addr"),
        ("gateway", "metrics.listen_addr"),
        ("link-service", "server.listen_addr"),
        ("storage-node", "storage_node.listen_addr"),
        ("storage-node", "metrics.listen_addr"),
    ],
)
def test_a_taken_port_stops_with_one_line_naming_the_setting(
    tmp_path: Path, role: str, setting: str
) -> None:
    arguments = ("dev", "--data-dir", str(tmp_path / "data")) if role == "dev" else (role,)
    variable = "CALLFS_" + setting.upper().replace(".", "_")
    with silent_port() as port:
        taken = f"127.0.0.1:{port}"
        env = environment(**{**role_environment(role, tmp_path), variable: taken})
        result = run(*arguments, env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"callfs: {setting} {taken} is already in use"]


def test_several_workers_are_refused_where_one_process_keeps_the_state(tmp_path: Path) -> None:
    env = environment(**role_environment("gateway", tmp_path), CALLFS_SERVER_WORKERS="2")
    result = run("gateway", env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "callfs: refusing to start gateway: server.workers (CALLFS_SERVER_WORKERS) = 2 runs 2 "
        "processes, which need dlm.type=redis: local locks, rate limits and cache invalidation "
        "are one process's"
    ]
    dev = run(
        "dev",
        "--data-dir",
        str(tmp_path / "data"),
        env=environment(**dev_ports(), CALLFS_SERVER_WORKERS="0"),
    )
    assert dev.returncode == 2
    assert dev.stderr.startswith("callfs: callfs dev runs in one process: server.workers")
    assert not (tmp_path / "data" / "api-key").exists()
