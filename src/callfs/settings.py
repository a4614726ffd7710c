"""Settings: defaults, then a config file (YAML or JSON), then ``CALLFS_*`` variables.

Every field of a section is reachable from the environment as
``CALLFS_<SECTION>_<FIELD>`` (the original CallFS names, e.g.
``CALLFS_SERVER_LISTEN_ADDR``) and as ``CALLFS_<SECTION>__<FIELD>``. Secrets may
also come from files named like the variable in ``CALLFS_SECRETS_DIR`` (a
Kubernetes Secret volume). A ``CALLFS_*`` variable or a config-file key that names
no setting is an error, so a misspelled name never goes unnoticed. Settings are
read once, by :func:`load_settings`; no other module reads ``os.environ``.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from callfs.entry import parse_mode

ENV_PREFIX = "CALLFS_"
DEFAULT_INTERNAL_SECRET = "change-me-internal-secret"
DEFAULT_LINK_SECRET = "change-me-link-secret"
# A cgroup v2 container's CPU limit: "<quota> <period>" in microseconds, or "max ...".
CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"
DEFAULT_API_KEY = "default-api-key"
MIN_SECRET_LENGTH = 16
# The roles that refuse to start on bad secrets (production_problems).
PRODUCTION_ROLES = ("gateway", "storage-node", "link-service")

# CALLFS_* variables that are not settings but are read elsewhere, so that a shell or
# a local cluster role that has them set still starts.
NOT_SETTINGS = frozenset(
    {
        "CALLFS_SECRETS_DIR",  # read by load_settings: where secret files live
        # The client (callfs.client.config).
        "CALLFS_URL",
        "CALLFS_API_KEY",
        "CALLFS_PROFILE",
        # tests/e2e's target, as the local cluster prints it and scripts/e2e-kind.sh
        # exports it; the local cluster hands its caller's environment to every role.
        "CALLFS_URL2",
        "CALLFS_API_KEYS",
        "CALLFS_METRICS",
        "CALLFS_CLUSTER_DIR",
        "CALLFS_CLUSTER_NODES",
    }
)
# benchmarks/run.py's knobs; the test suite's PostgreSQL and Redis (tests/conftest.py).
NOT_SETTINGS_PREFIXES = ("CALLFS_BENCH_", "CALLFS_TEST_")
# What Kubernetes adds for a Service named callfs-… when a pod leaves enableServiceLinks
# on (the chart turns it off): CALLFS_X_SERVICE_HOST, CALLFS_X_PORT_8080_TCP_ADDR, ….
_SERVICE_LINK = re.compile(
    r"^CALLFS_[A-Z0-9_]*?(_SERVICE_HOST|_SERVICE_PORT(_[A-Z0-9_]+)?"
    r"|_PORT_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)$"
)
_SERVICE_LINK_URL = re.compile(r"^(tcp|udp|sctp)://")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class SettingsError(ValueError):
    """A setting has a bad value; the message names it in one line."""


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Go-style duration (``30s``, ``5m``, ``250ms``, ``1h``)."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or like '30s'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 5m, 250ms)")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration must not be negative")
    return seconds


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
CommaList = Annotated[list[str], BeforeValidator(_split_list)]
SecretList = Annotated[list[SecretStr], BeforeValidator(_split_list)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerSettings(Section):
    """The public HTTP listener (gateway and link-service)."""

    listen_addr: str = ":8443"
    protocol: Literal["http", "https", "auto"] = "https"
    cert_file: str = ""
    key_file: str = ""
    external_url: str = "localhost:8443"
    # Per connection (callfs.connections): headers whole, and no body byte missing, for
    # read_timeout; a response left unread for write_timeout; idle between requests.
    read_timeout: Duration = 30.0
    write_timeout: Duration = 30.0
    idle_timeout: Duration = 60.0
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # How long a stopping server lets requests in flight finish.
    shutdown_timeout: Duration = 30.0
    # Processes serving the listener (callfs.workers); 0: one per CPU the process may use.
    workers: int = Field(default=1, ge=0, le=256)
    # With several: a worker whose event loop has not run for this long is killed and
    # replaced (0: never).
    worker_timeout: Duration = 30.0
    file_op_timeout: Duration = 10.0
    metadata_op_timeout: Duration = 5.0
    max_upload_bytes: int = Field(default=10 * 1024**3, ge=0)
    chunk_size: int = Field(default=1024 * 1024, ge=4096, le=64 * 1024 * 1024)
    # Whole small objects kept in memory (callfs.objectcache); 0 turns the cache off.
    object_cache_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    object_cache_max_object: int = Field(default=64 * 1024, ge=1)
    trusted_proxies: CommaList = Field(default_factory=list)
    # /openapi.json and /docs (Swagger UI): served to anyone, only with an API key, or not.
    docs: Literal["public", "authenticated", "off"] = "public"

    @field_validator("listen_addr")
    @classmethod
    def _check_addr(cls, value: str) -> str:
        split_address(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value


class UserSettings(Section):
    """One user of ``auth.users``: an API key, a name, groups."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    api_key: SecretStr
    groups: list[str] = Field(default_factory=list)


class AuthSettings(Section):
    """API keys, users and the service secrets."""

    api_keys: SecretList = Field(default_factory=list)
    users: list[UserSettings] = Field(default_factory=list)
    internal_proxy_secret: SecretStr = SecretStr(DEFAULT_INTERNAL_SECRET)
    single_use_link_secret: SecretList = Field(
        default_factory=lambda: [SecretStr(DEFAULT_LINK_SECRET)]
    )
    default_file_mode: str = "0644"
    default_dir_mode: str = "0755"

    @field_validator("default_file_mode", "default_dir_mode")
    @classmethod
    def _check_mode(cls, value: str) -> str:
        parse_mode(value)
        return value


class MetricsSettings(Section):
    """The dedicated, unauthenticated metrics listener."""

    listen_addr: str = ":9090"
    enabled: bool = True

    @field_validator("listen_addr")
    @classmethod
    def _check_addr(cls, value: str) -> str:
        split_address(value)
        return value


class BackendSettings(Section):
    """Where bytes live: storage nodes (``localfs``) or S3."""

    default_backend: Literal["localfs", "s3"] = "localfs"
    localfs_root_path: str = "/var/lib/callfs"
    # A localfs file of at most this many bytes is kept in the metadata store, in the
    # transaction that commits its entry, instead of on storage nodes; 0: never.
    inline_max_bytes: int = Field(default=0, ge=0, le=1024 * 1024)
    s3_access_key: SecretStr = SecretStr("")
    s3_secret_key: SecretStr = SecretStr("")
    s3_region: str = "us-east-1"
    s3_bucket_name: str = ""
    s3_endpoint: str = ""
    s3_server_side_encryption: Literal["", "AES256", "aws:kms"] = ""
    s3_kms_key_id: str = ""
    s3_acl: str = "private"
    s3_part_size: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024)
    # Attempts per S3 request, the first included (botocore's standard retries); 1: none.
    s3_max_attempts: int = Field(default=3, ge=1)

    @property
    def s3_configured(self) -> bool:
        return bool(self.s3_bucket_name)


class MetadataStoreSettings(Section):
    """The namespace store: PostgreSQL in production, SQLite embedded."""

    type: Literal["postgres", "sqlite"] = "postgres"
    dsn: SecretStr = SecretStr("postgres://callfs:callfs@localhost/callfs?sslmode=disable")
    sqlite_path: str = "./callfs.sqlite3"
    pool_min_size: int = Field(default=2, ge=1)
    pool_max_size: int = Field(default=20, ge=1)
    cache_ttl: Duration = 300.0
    cache_size: int = Field(default=1000, ge=0)


class DLMSettings(Section):
    """Locks, rate limits and the cache bus: Redis in production, in-process embedded."""

    type: Literal["redis", "local"] = "redis"
    redis_addr: str = "localhost:6379"
    redis_password: SecretStr = SecretStr("")
    redis_db: int = Field(default=0, ge=0)
    lock_ttl: Duration = 30.0
    lock_wait_timeout: Duration = 30.0


class PeerDomain(Section):
    """A static peer's failure domain (``""``: not known)."""

    zone: str = ""
    host: str = ""


class InstanceDiscoverySettings(Section):
    """Which storage nodes exist and where: a static map or Kubernetes EndpointSlices."""

    mode: Literal["static", "kubernetes"] = "static"
    instance_id: str = "callfs-instance-1"
    peer_endpoints: dict[str, str] = Field(default_factory=dict)
    peer_domains: dict[str, PeerDomain] = Field(default_factory=dict)
    # A JSON file holding the static map instead, re-read when it changes.
    peers_file: str = ""
    peers_file_interval: Duration = Field(default=5.0, gt=0)
    kubernetes_namespace: str = ""
    kubernetes_service: str = "callfs-storage-node"
    kubernetes_port_name: str = "grpc"

    @field_validator("peer_endpoints", "peer_domains", mode="before")
    @classmethod
    def _parse_map(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @model_validator(mode="after")
    def _one_static_map(self) -> InstanceDiscoverySettings:
        if self.peers_file and self.peer_endpoints:
            raise ValueError("set peer_endpoints or peers_file, not both")
        return self


class StorageNodeSettings(Section):
    """The storage-node role: its gRPC listener and volume."""

    listen_addr: str = ":50051"
    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024 * 1024)
    grace_period: Duration = 10.0
    # A running node removes temp files of interrupted uploads untouched this long;
    # a starting node removes them all.
    temp_grace: Duration = Field(default=600.0, ge=60.0)


class LinkSettings(Section):
    """Single-use links: rate limits and the cleanup worker."""

    generate_rate: float = Field(default=100.0, gt=0)
    generate_burst: int = Field(default=10, ge=1)
    download_rate: float = Field(default=10.0, gt=0)
    download_burst: int = Field(default=5, ge=1)
    cleanup_interval: Duration = 60.0
    cleanup_batch: int = Field(default=1000, ge=1)


class ReconcilerSettings(Section):
    """The gateway's reconciler, which removes stored objects no row points to."""

    # Seconds between passes on each gateway replica; 0 turns the reconciler off.
    interval: Duration = 3600.0
    # Objects written more recently are never removed: they may be uploads whose
    # metadata is not committed yet. S3 dates a multipart upload from its start, so
    # this must exceed the longest upload.
    grace: Duration = Field(default=3600.0, ge=60.0)


class ReplicationSettings(Section):
    """How many storage nodes hold each local-volume file (S3 keeps its own copies)."""

    # Replicas of every object; more than there are storage nodes makes writes 503.
    factor: int = Field(default=1, ge=1, le=16)
    # Replicas that must hold the whole object before a write succeeds; 0 means all.
    write_quorum: int = Field(default=0, ge=0, le=16)
    # Seconds between repair passes on each gateway replica; 0 turns repair off.
    repair_interval: Duration = 60.0
    # A replica on a node that has not answered for this long is copied elsewhere.
    repair_after: Duration = Field(default=600.0, ge=0.0)
    # Bytes per second one repair pass copies at most, so repair never starves clients.
    repair_rate: int = Field(default=50 * 1024 * 1024, ge=1024 * 1024)
    # Seconds between scrub passes (every replica read and checked); 0 turns scrubbing off.
    scrub_interval: Duration = 24 * 3600.0
    # Bytes per second one scrub pass reads at most (its heals included).
    scrub_rate: int = Field(default=20 * 1024 * 1024, ge=1024 * 1024)
    # Move files onto the nodes their placement names now (a node joined, a domain
    # changed), at repair_rate, as part of each repair pass.
    rebalance: bool = True
    # Nodes being emptied before they are removed: they take no new replicas, and each
    # repair pass moves their files to other nodes (comma-separated instance ids).
    draining: CommaList = Field(default_factory=list)

    @model_validator(mode="after")
    def _quorum_within_factor(self) -> ReplicationSettings:
        if self.write_quorum > self.factor:
            raise ValueError(
                f"write_quorum ({self.write_quorum}) cannot exceed factor ({self.factor})"
            )
        return self

    @property
    def quorum(self) -> int:
        """Replicas a write needs: ``write_quorum``, or every one when it is 0."""
        return self.write_quorum or self.factor


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class TracingSettings(Section):
    """OpenTelemetry tracing, exported over OTLP/HTTP; off while no endpoint is set."""

    # The collector's OTLP/HTTP address (http://collector:4318, /v1/traces added unless
    # the path ends so); empty: no tracing, and nothing of OpenTelemetry's SDK is loaded.
    otlp_endpoint: str = ""
    # The spans' service.name; empty: callfs-<role> (callfs-gateway, callfs-storage-node…).
    service_name: str = ""
    # The share of traces kept, decided where a trace starts; the rest of it follows.
    sample_ratio: float = Field(default=1.0, ge=0, le=1)

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if value:
            parsed = urlsplit(value)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError("must be an http:// or https:// URL (or empty: off)")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.otlp_endpoint)

    @property
    def traces_url(self) -> str:
        """Where spans are posted: the endpoint, with ``/v1/traces`` unless it ends so."""
        base = self.otlp_endpoint.rstrip("/")
        return base if base.endswith("/v1/traces") else f"{base}/v1/traces"

    def service(self, role: str) -> str:
        """The service name of ``role``'s spans."""
        return self.service_name or f"callfs-{role}"


class Settings(BaseModel):
    """Every CallFS setting, one section per concern."""

    model_config = ConfigDict(extra="forbid")

    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    backend: BackendSettings = Field(default_factory=BackendSettings)
    metadata_store: MetadataStoreSettings = Field(default_factory=MetadataStoreSettings)
    dlm: DLMSettings = Field(default_factory=DLMSettings)
    instance_discovery: InstanceDiscoverySettings = Field(default_factory=InstanceDiscoverySettings)
    storage_node: StorageNodeSettings = Field(default_factory=StorageNodeSettings)
    links: LinkSettings = Field(default_factory=LinkSettings)
    reconciler: ReconcilerSettings = Field(default_factory=ReconcilerSettings)
    replication: ReplicationSettings = Field(default_factory=ReplicationSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    def link_secrets(self) -> list[bytes]:
        """The link-signing secrets: the first signs, every one verifies."""
        return [s.get_secret_value().encode() for s in self.auth.single_use_link_secret]


def split_address(addr: str) -> tuple[str, int]:
    """``":8443"`` → ``("0.0.0.0", 8443)``; ``"127.0.0.1:0"`` → ``("127.0.0.1", 0)``.

    Raises:
        ValueError: not ``[host]:port`` with a port in 0..65535.
    """
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{addr!r} is not [host]:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _env_names() -> dict[str, tuple[str, str]]:
    names: dict[str, tuple[str, str]] = {}
    for section, info in Settings.model_fields.items():
        model = info.default_factory() if info.default_factory else None  # type: ignore[call-arg]
        assert isinstance(model, BaseModel)
        for field_name in type(model).model_fields:
            for sep in ("_", "__"):
                names[f"{ENV_PREFIX}{section.upper()}{sep}{field_name.upper()}"] = (
                    section,
                    field_name,
                )
    return names


ENV_NAMES = _env_names()


def _not_a_setting(name: str, value: str) -> bool:
    """Whether a ``CALLFS_*`` variable that names no setting is someone else's."""
    if name in NOT_SETTINGS or name.startswith(NOT_SETTINGS_PREFIXES):
        return True
    if _SERVICE_LINK.match(name):
        return True
    return name.endswith("_PORT") and bool(_SERVICE_LINK_URL.match(value))


def _suggest(name: str, *tiers: Mapping[str, str]) -> str:
    """`` (did you mean X?)`` naming the closest candidate, if one is close.

    Each tier maps the text ``name`` is compared with to the name shown; a later tier
    is searched only when an earlier one has nothing close.
    """
    for tier in tiers:
        close = difflib.get_close_matches(name, list(tier), n=1, cutoff=0.75)
        if close:
            return f" (did you mean {tier[close[0]]}?)"
    return ""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One problem per ``CALLFS_*`` variable of ``environ`` that names no setting."""
    problems = []
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in ENV_NAMES or _not_a_setting(name, value):
            continue
        style = "__" if "__" in name else "_"
        # Compared without the prefix, which would make any two names look alike.
        candidates = {
            f"{section.upper()}{style}{field_name.upper()}": (
                f"{ENV_PREFIX}{section.upper()}{style}{field_name.upper()}"
            )
            for section, field_name in ENV_NAMES.values()
        }
        hint = _suggest(name.removeprefix(ENV_PREFIX), candidates)
        problems.append(f"{name} names no setting{hint}")
    return problems


def unknown_keys(data: Mapping[str, Any]) -> list[str]:
    """One problem per key of a config file's ``data`` that names no setting (dotted)."""
    return [
        f"{path} names no setting{_suggest(key, *tiers)}"
        for path, key, tiers in _walk_keys(data, Settings, "")
    ]


_Unknown = tuple[str, str, tuple[dict[str, str], ...]]


def _walk_keys(data: Any, annotation: Any, path: str) -> Iterator[_Unknown]:
    """The unknown keys under ``path`` of ``data`` (of type ``annotation``): each one's
    dotted path, the key itself, and the names it may have meant."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(data, Mapping):
            return
        fields = annotation.model_fields
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if key in fields:
                yield from _walk_keys(value, fields[key].annotation, where)
                continue
            here = {name: f"{path}.{name}" if path else name for name in fields}
            if path in Settings.model_fields:
                # A section's key may belong to another section.
                yield where, str(key), (here, _section_keys())
            else:
                yield where, str(key), (here,)
    elif get_origin(annotation) is list and isinstance(data, list):
        (item,) = get_args(annotation)
        for index, value in enumerate(data):
            yield from _walk_keys(value, item, f"{path}[{index}]")
    elif get_origin(annotation) is dict and isinstance(data, Mapping):
        _, item = get_args(annotation)
        for key, value in data.items():
            yield from _walk_keys(value, item, f"{path}.{key}")


def _section_keys() -> dict[str, str]:
    """Every section's field name → its dotted path (the first section, for a shared name)."""
    keys: dict[str, str] = {}
    for section, field_name in ENV_NAMES.values():
        keys.setdefault(field_name, f"{section}.{field_name}")
    return keys


def _from_environment(environ: Mapping[str, str], secrets_dir: str | None) -> dict[str, Any]:
    values: dict[str, dict[str, Any]] = {}
    if secrets_dir and Path(secrets_dir).is_dir():
        for env_name, (section, field_name) in ENV_NAMES.items():
            candidate = Path(secrets_dir) / env_name
            if candidate.is_file():
                values.setdefault(section, {})[field_name] = candidate.read_text().strip()
    for env_name, value in environ.items():
        if env_name in ENV_NAMES:
            section, field_name = ENV_NAMES[env_name]
            values.setdefault(section, {})[field_name] = value
    return values


def _read_file(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise SettingsError(f"config file {path}: not found")
    try:
        text = file.read_text()
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise SettingsError(f"config file {path}: cannot be parsed ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path}: must hold a mapping of sections")
    return data


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def load_settings(
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Read settings once: defaults < ``overrides`` < config file < environment.

    ``overrides`` carries a role's own defaults (``callfs dev`` uses it for its
    embedded adapters), so the file and the environment still win over them.

    Raises:
        SettingsError: a value is invalid, or a ``CALLFS_*`` variable or a key of the
            file names no setting; the message names each one, on one line.
    """
    env = os.environ if environ is None else environ
    data: dict[str, Any] = dict(overrides or {})
    unknown: list[str] = []
    if config_file:
        from_file = _read_file(config_file)
        if problems := unknown_keys(from_file):
            unknown.append(f"config file {config_file}: {'; '.join(problems)}")
        data = _merge(data, from_file)
    unknown += unknown_variables(env)
    if unknown:
        raise SettingsError("; ".join(unknown))
    data = _merge(data, _from_environment(env, env.get("CALLFS_SECRETS_DIR")))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
        env_hint = ""
        parts = [str(p) for p in error["loc"]]
        if len(parts) >= 2:
            env_hint = f" ({ENV_PREFIX}{parts[0].upper()}_{parts[1].upper()})"
        raise SettingsError(f"invalid setting {location}{env_hint}: {error['msg']}") from exc
    except json.JSONDecodeError as exc:
        raise SettingsError(f"invalid setting: not valid JSON ({exc})") from exc


def production_problems(settings: Settings, role: str) -> list[str]:
    """Why a production role must refuse to start: default or short secrets and keys."""
    problems: list[str] = []
    internal = settings.auth.internal_proxy_secret.get_secret_value()
    if internal == DEFAULT_INTERNAL_SECRET or len(internal) < MIN_SECRET_LENGTH:
        problems.append(
            "auth.internal_proxy_secret (CALLFS_AUTH_INTERNAL_PROXY_SECRET) must be set to "
            f"a non-default value of at least {MIN_SECRET_LENGTH} characters"
        )
    if role in ("gateway", "link-service"):
        problems += _workers_problems(settings)
        for secret in settings.auth.single_use_link_secret:
            value = secret.get_secret_value()
            if value == DEFAULT_LINK_SECRET or len(value) < MIN_SECRET_LENGTH:
                problems.append(
                    "auth.single_use_link_secret (CALLFS_AUTH_SINGLE_USE_LINK_SECRET) must be "
                    f"set to non-default values of at least {MIN_SECRET_LENGTH} characters"
                )
                break
        keys = [k.get_secret_value() for k in settings.auth.api_keys]
        keys += [u.api_key.get_secret_value() for u in settings.auth.users]
        if not keys:
            problems.append("auth.api_keys (CALLFS_AUTH_API_KEYS) must hold at least one key")
        for key in keys:
            if key == DEFAULT_API_KEY or len(key) < MIN_SECRET_LENGTH:
                problems.append(
                    f"auth.api_keys: every key must be non-default and at least "
                    f"{MIN_SECRET_LENGTH} characters"
                )
                break
    return problems


def worker_count(workers: int) -> int:
    """The processes ``server.workers`` asks for: itself, or for 0 one per CPU this
    process may use (its CPU affinity, capped by a cgroup v2 CPU limit, rounded up)."""
    if workers > 0:
        return workers
    count = len(os.sched_getaffinity(0))
    try:
        quota, period = Path(CGROUP_CPU_MAX).read_text().split()
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def _workers_problems(settings: Settings) -> list[str]:
    """Why a web role cannot run ``server.workers`` processes: what one process keeps
    to itself (locks, rate limits, cache invalidation, an SQLite writer) cannot be shared."""
    count = worker_count(settings.server.workers)
    if count == 1:
        return []
    problems = []
    workers = f"server.workers (CALLFS_SERVER_WORKERS) = {settings.server.workers}"
    if settings.dlm.type == "local":
        problems.append(
            f"{workers} runs {count} processes, which need dlm.type=redis: local locks, "
            "rate limits and cache invalidation are one process's"
        )
    if settings.metadata_store.type == "sqlite":
        problems.append(
            f"{workers} runs {count} processes, which need metadata_store.type=postgres: "
            "an SQLite database is one process's"
        )
    return problems


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret replaced by ``********``."""
    data = settings.model_dump(mode="json")

    def mask(value: Any, template: Any) -> Any:
        if isinstance(template, SecretStr):
            return "********" if template.get_secret_value() else ""
        if isinstance(template, BaseModel):
            return {k: mask(value[k], getattr(template, k)) for k in value}
        if isinstance(template, list):
            return [mask(v, t) for v, t in zip(value, template, strict=True)]
        return value

    result: dict[str, Any] = mask(data, settings)
    return result
