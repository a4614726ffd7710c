"""Settings: precedence, original variable names, one-line errors, masking."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from callfs import settings
from callfs.settings import (
    SettingsError,
    load_settings,
    masked,
    production_problems,
    unknown_variables,
    worker_count,
)


def test_defaults_match_the_original() -> None:
    settings = load_settings(environ={})
    assert settings.server.listen_addr == ":8443"
    assert settings.metrics.listen_addr == ":9090"
    assert settings.backend.default_backend == "localfs"
    assert settings.server.read_timeout == 30.0


def test_environment_beats_file_beats_defaults(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  listen_addr: ':7000'\n  protocol: http\nlog:\n  level: debug\n")
    settings = load_settings(str(config), environ={"CALLFS_SERVER_LISTEN_ADDR": "127.0.0.1:7001"})
    assert settings.server.listen_addr == "127.0.0.1:7001"
    assert settings.server.protocol == "http"
    assert settings.log.level == "debug"


def test_json_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"backend": {"default_backend": "s3"}}))
    assert load_settings(str(config), environ={}).backend.default_backend == "s3"


def test_original_variable_names() -> None:
    env = {
        "CALLFS_SERVER_PROTOCOL": "auto",
        "CALLFS_SERVER_CERT_FILE": "/c.pem",
        "CALLFS_AUTH_API_KEYS": "k1,k2",
        "CALLFS_AUTH_INTERNAL_PROXY_SECRET": "s" * 20,
        "CALLFS_AUTH_SINGLE_USE_LINK_SECRET": "l" * 20,
        "CALLFS_METRICS_LISTEN_ADDR": ":9999",
        "CALLFS_BACKEND_LOCALFS_ROOT_PATH": "/data",
        "CALLFS_METADATA_STORE_DSN": "postgres://x@y/z",
        "CALLFS_DLM_REDIS_ADDR": "redis:6379",
        "CALLFS_DLM_REDIS_PASSWORD": "pw",
        "CALLFS_INSTANCE_DISCOVERY_INSTANCE_ID": "node-7",
        "CALLFS_INSTANCE_DISCOVERY_PEER_ENDPOINTS": '{"node-7": "10.0.0.7:50051"}',
        "CALLFS_LOG_LEVEL": "DEBUG",
        "CALLFS_LOG_FORMAT": "console",
        "CALLFS_SERVER_WRITE_TIMEOUT": "2m",
        "CALLFS_SERVER_FILE_OP_TIMEOUT": "1500ms",
    }
    s = load_settings(environ=env)
    assert s.server.protocol == "auto"
    assert [k.get_secret_value() for k in s.auth.api_keys] == ["k1", "k2"]
    assert s.metrics.listen_addr == ":9999"
    assert s.instance_discovery.peer_endpoints == {"node-7": "10.0.0.7:50051"}
    assert s.log.level == "debug"
    assert s.server.write_timeout == 120.0
    assert s.server.file_op_timeout == 1.5
    assert s.dlm.redis_password.get_secret_value() == "pw"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CALLFS_SERVER_PROTOCOL", "ftp"),
        ("CALLFS_SERVER_LISTEN_ADDR", "nowhere"),
        ("CALLFS_SERVER_READ_TIMEOUT", "soon"),
        ("CALLFS_INSTANCE_DISCOVERY_PEER_ENDPOINTS", "{broken"),
        ("CALLFS_BACKEND_DEFAULT_BACKEND", "floppy"),
        ("CALLFS_AUTH_DEFAULT_FILE_MODE", "999"),
        ("CALLFS_RECONCILER_INTERVAL", "hourly"),
        ("CALLFS_RECONCILER_GRACE", "10s"),
        ("CALLFS_BACKEND_S3_MAX_ATTEMPTS", "0"),
        ("CALLFS_BACKEND_S3_MAX_ATTEMPTS", "twice"),
        ("CALLFS_SERVER_WORKERS", "-1"),
        ("CALLFS_SERVER_WORKERS", "many"),
    ],
)
def test_bad_values_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={name: value})
    message = str(caught.value)
    assert name in message
    assert "\n" not in message


def test_s3_max_attempts_defaults_to_three_and_is_set_by_its_variable() -> None:
    assert load_settings(environ={}).backend.s3_max_attempts == 3
    chosen = load_settings(environ={"CALLFS_BACKEND_S3_MAX_ATTEMPTS": "1"})
    assert chosen.backend.s3_max_attempts == 1
    assert unknown_variables({"CALLFS_BACKEND_S3_MAX_ATTEMPTS": "1"}) == []


def test_reconciler_settings_default_to_an_hour_and_take_durations() -> None:
    defaults = load_settings(environ={}).reconciler
    assert (defaults.interval, defaults.grace) == (3600.0, 3600.0)
    chosen = load_settings(
        environ={"CALLFS_RECONCILER_INTERVAL": "0", "CALLFS_RECONCILER_GRACE": "6h"}
    ).reconciler
    assert (chosen.interval, chosen.grace) == (0.0, 6 * 3600.0)


def test_secrets_dir(tmp_path: Path) -> None:
    (tmp_path / "CALLFS_AUTH_API_KEYS").write_text("from-a-file\n")
    s = load_settings(environ={"CALLFS_SECRETS_DIR": str(tmp_path)})
    assert [k.get_secret_value() for k in s.auth.api_keys] == ["from-a-file"]


def test_masked_hides_every_secret() -> None:
    s = load_settings(
        environ={"CALLFS_AUTH_API_KEYS": "topsecretkey", "CALLFS_DLM_REDIS_PASSWORD": "pw123"}
    )
    text = json.dumps(masked(s))
    assert "topsecretkey" not in text and "pw123" not in text and "change-me" not in text
    assert "********" in text


def test_production_refuses_default_and_short_secrets() -> None:
    assert production_problems(load_settings(environ={}), "gateway")
    good = {
        "CALLFS_AUTH_API_KEYS": "a" * 20,
        "CALLFS_AUTH_INTERNAL_PROXY_SECRET": "b" * 20,
        "CALLFS_AUTH_SINGLE_USE_LINK_SECRET": "c" * 20,
    }
    assert production_problems(load_settings(environ=good), "gateway") == []
    short = {**good, "CALLFS_AUTH_API_KEYS": "short"}
    assert production_problems(load_settings(environ=short), "gateway")


def test_workers_above_one_need_redis_and_postgresql() -> None:
    good = {
        "CALLFS_AUTH_API_KEYS": "a" * 20,
        "CALLFS_AUTH_INTERNAL_PROXY_SECRET": "b" * 20,
        "CALLFS_AUTH_SINGLE_USE_LINK_SECRET": "c" * 20,
        "CALLFS_SERVER_WORKERS": "4",
    }
    assert production_problems(load_settings(environ=good), "gateway") == []
    local = {**good, "CALLFS_DLM_TYPE": "local", "CALLFS_METADATA_STORE_TYPE": "sqlite"}
    problems = production_problems(load_settings(environ=local), "link-service")
    assert len(problems) == 2
    assert all(p.startswith("server.workers (CALLFS_SERVER_WORKERS) = 4 runs 4") for p in problems)
    assert "dlm.type=redis" in problems[0] and "metadata_store.type=postgres" in problems[1]
    one = {**local, "CALLFS_SERVER_WORKERS": "1"}
    assert production_problems(load_settings(environ=one), "gateway") == []
    # A storage node serves no HTTP API: the setting is not its.
    assert production_problems(load_settings(environ=local), "storage-node") == []


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000", 3), ("150000 100000", 2), ("50000 100000", 1), ("broken", 3), (None, 3)],
)
def test_zero_workers_means_one_per_cpu_this_process_may_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_max: str | None, expected: int
) -> None:
    limit = tmp_path / "cpu.max"
    if cpu_max is not None:
        limit.write_text(cpu_max + "\n")
    monkeypatch.setattr(settings, "CGROUP_CPU_MAX", str(limit))
    monkeypatch.setattr(settings.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert worker_count(0) == expected
    assert worker_count(5) == 5


def test_replication_factor_and_quorum() -> None:
    assert load_settings(environ={}).replication.quorum == 1
    replicated = load_settings(environ={"CALLFS_REPLICATION_FACTOR": "3"}).replication
    assert (replicated.factor, replicated.quorum) == (3, 3)
    env = {"CALLFS_REPLICATION_FACTOR": "3", "CALLFS_REPLICATION_WRITE_QUORUM": "2"}
    assert load_settings(environ=env).replication.quorum == 2
    with pytest.raises(SettingsError, match="replication"):
        load_settings(environ={"CALLFS_REPLICATION_WRITE_QUORUM": "2"})
    with pytest.raises(SettingsError, match="replication"):
        load_settings(environ={"CALLFS_REPLICATION_FACTOR": "0"})


# --- names that are no setting ---------------------------------------------------------

REPOSITORY = Path(__file__).resolve().parents[2]


def refusal(environ: dict[str, str], config: Path | None = None) -> str:
    """The one-line message ``load_settings`` refuses ``environ`` (and ``config``) with."""
    with pytest.raises(SettingsError) as caught:
        load_settings(str(config) if config else None, environ=environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_misspelled_variable_is_refused_naming_the_setting_it_meant() -> None:
    message = refusal({"CALLFS_SERVER_LISTEN_ADRR": ":9000"})
    assert message == (
        "CALLFS_SERVER_LISTEN_ADRR names no setting (did you mean CALLFS_SERVER_LISTEN_ADDR?)"
    )


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("CALLFS_SERVER__LISTEN_ADRR", "CALLFS_SERVER__LISTEN_ADDR"),
        ("CALLFS_REDIS_ADDR", "CALLFS_DLM_REDIS_ADDR"),
        ("CALLFS_METADATA_STORE_DNS", "CALLFS_METADATA_STORE_DSN"),
        ("CALLFS_STORAGENODE_LISTEN_ADDR", "CALLFS_STORAGE_NODE_LISTEN_ADDR"),
    ],
)
def test_the_suggestion_is_the_closest_setting_in_the_same_form(name: str, meant: str) -> None:
    assert refusal({name: "x"}).endswith(f"(did you mean {meant}?)")


def test_an_unknown_variable_close_to_nothing_is_named_alone() -> None:
    assert refusal({"CALLFS_NONSENSE": "1"}) == "CALLFS_NONSENSE names no setting"


def test_every_unknown_variable_is_named_in_one_line() -> None:
    message = refusal({"CALLFS_LOG_LEVL": "debug", "CALLFS_AUTH_APIKEYS": "k", "HOME": "/"})
    assert message == (
        "CALLFS_AUTH_APIKEYS names no setting (did you mean CALLFS_AUTH_API_KEYS?); "
        "CALLFS_LOG_LEVL names no setting (did you mean CALLFS_LOG_LEVEL?)"
    )


def test_an_unknown_name_is_reported_before_a_bad_value() -> None:
    message = refusal({"CALLFS_SERVER_PROTOCOL": "gopher", "CALLFS_SERVER_PROTOCL": "http"})
    assert message.startswith("CALLFS_SERVER_PROTOCL names no setting")


@pytest.mark.parametrize(
    "name",
    [
        "CALLFS_URL",
        "CALLFS_API_KEY",
        "CALLFS_PROFILE",
        "CALLFS_URL2",
        "CALLFS_API_KEYS",
        "CALLFS_METRICS",
        "CALLFS_CLUSTER_DIR",
        "CALLFS_CLUSTER_NODES",
        "CALLFS_BENCH_SIZE_MIB",
        "CALLFS_TEST_POSTGRES_DSN",
        "CALLFS_TEST_REDIS_URL",
        # What Kubernetes adds for a Service named callfs-gateway with service links on.
        "CALLFS_GATEWAY_SERVICE_HOST",
        "CALLFS_GATEWAY_SERVICE_PORT",
        "CALLFS_GATEWAY_SERVICE_PORT_HTTP",
        "CALLFS_GATEWAY_PORT_8080_TCP",
        "CALLFS_GATEWAY_PORT_8080_TCP_ADDR",
    ],
)
def test_variables_read_by_others_are_no_error(name: str) -> None:
    load_settings(environ={name: "10.0.0.1"})


def test_a_service_link_port_is_no_error_but_a_port_setting_is() -> None:
    load_settings(environ={"CALLFS_GATEWAY_PORT": "tcp://10.0.0.1:8080"})
    assert refusal({"CALLFS_SERVER_PORT": "8080"}).startswith("CALLFS_SERVER_PORT names no setting")


def test_the_image_and_the_manifests_set_only_settings() -> None:
    names = set()
    for file in ("Dockerfile", "k8s/callfs.yaml"):
        names |= set(re.findall(r"\bCALLFS_[A-Z0-9_]+\b", (REPOSITORY / file).read_text()))
    assert "CALLFS_LOG_FORMAT" in names
    assert unknown_variables(dict.fromkeys(names, "")) == []


def test_a_misspelled_file_key_is_refused_with_its_dotted_path(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  listen_adrr: ':7000'\n")
    assert refusal({}, config) == (
        f"config file {config}: server.listen_adrr names no setting "
        "(did you mean server.listen_addr?)"
    )


def test_every_unknown_file_key_is_named_however_deep(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "sever": {"listen_addr": ":1"},
                "server": {"redis_addr": "redis:6379"},
                "auth": {"users": [{"name": "ann", "api_key": "k" * 20, "grups": ["x"]}]},
                "instance_discovery": {
                    "peer_endpoints": {"any-name": "10.0.0.1:50051"},
                    "peer_domains": {"any-name": {"zoen": "a"}},
                },
            }
        )
    )
    assert refusal({"CALLFS_NONSENSE": "1"}, config) == (
        f"config file {config}: "
        "sever names no setting (did you mean server?); "
        "server.redis_addr names no setting (did you mean dlm.redis_addr?); "
        "auth.users[0].grups names no setting (did you mean auth.users[0].groups?); "
        "instance_discovery.peer_domains.any-name.zoen names no setting "
        "(did you mean instance_discovery.peer_domains.any-name.zone?); "
        "CALLFS_NONSENSE names no setting"
    )


def test_keys_of_maps_are_names_not_settings(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "instance_discovery:\n"
        "  peer_endpoints: {node-a: '10.0.0.1:50051'}\n"
        "  peer_domains: {node-a: {zone: z1, host: h1}}\n"
    )
    settings = load_settings(str(config), environ={})
    assert settings.instance_discovery.peer_domains["node-a"].zone == "z1"
