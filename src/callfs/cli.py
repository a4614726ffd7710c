"""The ``callfs`` command: one subcommand per role, plus ``dev`` and ``config validate``,
and the client commands (``ls``, ``cp``… in :mod:`callfs.client.cli`).

Only the standard library is imported here: a server role imports the server's
modules when it runs, so that the client commands load nothing of the server, and
``pip install callfs`` (the client alone, without the ``server`` extra) runs them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import secrets
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from fastapi import FastAPI

    from callfs.settings import Settings

logger = logging.getLogger("callfs")
DEV_NODES = ("node-0", "node-1")

# The top-level modules of the ``server`` extra's packages (and of the packages they
# bring, which the server imports too): a server role that cannot import one of them
# runs from ``pip install callfs`` without the extra.
SERVER_MODULES = frozenset(
    {
        "aioboto3",
        "aiobotocore",
        "aiohttp",
        "asyncpg",
        "boto3",
        "botocore",
        "cryptography",
        "fastapi",
        "fastapi_offline",
        "google",  # protobuf
        "grpc",
        "grpc_health",
        "httptools",
        "kubernetes",
        "orjson",
        "prometheus_client",
        "pydantic",
        "pydantic_core",
        "redis",
        "starlette",
        "uvicorn",
        "uvloop",
    }
)
SERVER_EXTRA_HINT = "pip install 'callfs[server]'"
# Tracing (tracing.otlp_endpoint) imports OpenTelemetry's SDK and exporter, of this extra.
OTEL_EXTRA_HINT = "pip install 'callfs[otel]'"
# Seconds each dependency of `config validate --check-connectivity` has to answer.
CHECK_TIMEOUT = 5.0


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a role's main coroutine on uvloop (uvicorn's ``loop`` option cannot apply
    inside a loop that is already running)."""
    import uvloop

    uvloop.run(main)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``callfs`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = args.handler(args)
        return code
    except KeyboardInterrupt:
        return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("callfs")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from callfs import __version__

        return __version__


def missing_server_module(exc: ModuleNotFoundError) -> str | None:
    """The server dependency whose absence ``exc`` reports, else None (any other module)."""
    top = (exc.name or "").partition(".")[0]
    return top if top in SERVER_MODULES else None


def missing_otel_module(exc: ModuleNotFoundError) -> str | None:
    """The OpenTelemetry module whose absence ``exc`` reports, else None (any other)."""
    name = exc.name or ""
    return name if name.partition(".")[0] == "opentelemetry" else None


def _server(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A server subcommand: its settings are loaded (and refused) in the handler.

    Its modules are imported here and in the handler, on first use: when one of the
    server's dependencies is missing (``pip install callfs`` without the ``server``
    extra), or tracing is on without the ``otel`` extra, it ends with one line saying
    what to install, exit 1.
    """

    def run(args: argparse.Namespace) -> int:
        try:
            from callfs.settings import SettingsError

            try:
                return handler(args)
            except SettingsError as exc:
                sys.stderr.write(f"callfs: {exc}\n")
                return 2
        except ModuleNotFoundError as exc:
            command = " ".join(
                part for part in (args.command, getattr(args, "config_command", None)) if part
            )
            if missing := missing_server_module(exc):
                sys.stderr.write(
                    f"callfs: {command} needs the server's dependencies, not installed "
                    f"(no module named {missing!r}): {SERVER_EXTRA_HINT}\n"
                )
            elif missing := missing_otel_module(exc):
                sys.stderr.write(
                    f"callfs: {command} traces (tracing.otlp_endpoint is set) with "
                    f"OpenTelemetry's SDK, not installed (no module named {missing!r}): "
                    f"{OTEL_EXTRA_HINT}\n"
                )
            else:
                raise
            return 1

    return run


def _parser() -> argparse.ArgumentParser:
    from callfs.client.cli import add_commands

    parser = argparse.ArgumentParser(
        prog="callfs",
        description="CallFS: a REST API filesystem. Server roles: gateway, storage-node, "
        "link-service, dev, config. Client commands: ls, stat, cat, cp, mv, rm, mkdir, chmod, "
        "link, du, tree (docs/clients.md).",
    )
    config_help = "a YAML or JSON config file (CALLFS_* variables win)"
    parser.add_argument("--config", help=config_help)
    parser.add_argument("--version", action="version", version=f"callfs {_version()}")
    # --config after a server command too (`callfs config validate --config F`); SUPPRESS
    # keeps one given before the command from being reset by the subcommand's default.
    config_file = argparse.ArgumentParser(add_help=False)
    config_file.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    commands = parser.add_subparsers(dest="command")

    for name, handler, text in (
        ("gateway", _gateway, "serve the public REST API"),
        ("storage-node", _storage_node, "serve one volume over gRPC"),
        ("link-service", _link_service, "serve single-use download links"),
    ):
        sub = commands.add_parser(name, help=text, parents=[config_file])
        sub.set_defaults(handler=_server(handler))

    dev = commands.add_parser(
        "dev", help="run every role in one process on embedded defaults", parents=[config_file]
    )
    dev.add_argument(
        "--data-dir", default="./.callfs-dev", help="where data lives (default ./.callfs-dev)"
    )
    dev.set_defaults(handler=_server(_dev))

    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    validate = config_commands.add_parser(
        "validate",
        help="print the settings, secrets masked, and check them as the roles would",
        parents=[config_file],
    )
    validate.add_argument(
        "--role",
        default=None,
        choices=["gateway", "storage-node", "link-service"],
        help="check what this role would at start-up (default: every role)",
    )
    validate.add_argument(
        "--check-connectivity",
        action="store_true",
        help="also check that PostgreSQL, Redis and S3 answer, those the settings use",
    )
    validate.set_defaults(handler=_server(_validate))
    add_commands(commands)
    return parser


def _load(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Settings:
    from callfs import logs
    from callfs.settings import load_settings

    settings = load_settings(args.config, overrides=overrides)
    logs.configure(settings.log.level, settings.log.format)
    return settings


def _production(args: argparse.Namespace, role: str) -> Settings:
    """The settings of a production role, refused with default or short secrets."""
    from callfs.settings import SettingsError, production_problems

    settings = _load(args)
    problems = production_problems(settings, role)
    if problems:
        raise SettingsError(f"refusing to start {role}: {problems[0]}")
    return settings


def _serving(role: Callable[[], int | None]) -> int:
    """Run a role until it stops; an address already taken ends it with one line, exit 1."""
    from callfs.serving import ListenError

    try:
        return role() or 0
    except ListenError as exc:
        sys.stderr.write(f"callfs: {exc}\n")
        return 1


def _serve_web(app: Callable[[], FastAPI], settings: Settings) -> int:
    """Serve a web role's API listener and its metrics listener until stopped: in this
    process, or in ``server.workers`` processes (:mod:`callfs.workers`). ``app`` builds
    the role's app, once per process."""
    from callfs.serving import api_server, bind_web, metrics_server, serve_all
    from callfs.settings import worker_count

    count = worker_count(settings.server.workers)

    def role() -> int | None:
        api, metrics = bind_web(settings)
        if count > 1:
            from callfs import workers

            return workers.supervise(settings, count, api, metrics, app)
        built = app()
        run_loop(
            serve_all(
                api_server(built, settings, api),
                metrics_server(built.state.metrics, settings, metrics),
            )
        )
        return None

    return _serving(role)


def _gateway(args: argparse.Namespace) -> int:
    settings = _production(args, "gateway")
    from callfs_gateway.app import create_app

    return _serve_web(lambda: create_app(settings), settings)


def _storage_node(args: argparse.Namespace) -> int:
    settings = _production(args, "storage-node")
    from callfs_storage_node.server import serve

    from callfs.serving import bind

    def role() -> None:
        # gRPC binds inside serve(), after logging; a taken address is reported first.
        bind("storage_node.listen_addr", settings.storage_node.listen_addr).close()
        metrics = (
            bind("metrics.listen_addr", settings.metrics.listen_addr)
            if settings.metrics.enabled
            else None
        )
        try:
            run_loop(serve(settings, metrics))
        finally:
            if metrics is not None:
                metrics.close()

    return _serving(role)


def _link_service(args: argparse.Namespace) -> int:
    settings = _production(args, "link-service")
    from callfs_link_service.app import create_app

    return _serve_web(lambda: create_app(settings), settings)


def _validate(args: argparse.Namespace) -> int:
    """Print the settings; report every problem of ``--role`` (else of every role), exit 1."""
    from callfs.settings import PRODUCTION_ROLES, load_settings, masked, production_problems

    settings = load_settings(args.config)
    sys.stdout.write(json.dumps(masked(settings), indent=2) + "\n")
    roles = [args.role] if args.role else list(PRODUCTION_ROLES)
    refused: dict[str, list[str]] = {}
    for role in roles:
        for problem in production_problems(settings, role):
            refused.setdefault(problem, []).append(role)
    for problem, refusing in refused.items():
        sys.stderr.write(f"callfs: {', '.join(refusing)} would refuse to start: {problem}\n")
    answering = not args.check_connectivity or _check_connectivity(settings, roles)
    return 0 if answering and not refused else 1


def _check_connectivity(settings: Settings, roles: list[str]) -> bool:
    """Whether each shared dependency ``roles`` use answers: one line per check on stderr.

    Only the web roles use PostgreSQL, Redis and S3; a storage node keeps its volume.
    """
    import asyncio

    if not {"gateway", "link-service"} & set(roles):
        sys.stderr.write("callfs: a storage node uses no PostgreSQL, Redis or S3\n")
        return True
    checks: dict[str, Coroutine[Any, Any, None]] = {}
    if settings.metadata_store.type == "postgres":
        from callfs.metadata.postgres import check_connectivity as check_postgres

        dsn = settings.metadata_store.dsn.get_secret_value()
        checks["PostgreSQL metadata store"] = check_postgres(dsn, CHECK_TIMEOUT)
    if settings.dlm.type == "redis":
        from callfs.coordination.redis import check_connectivity as check_redis

        checks["Redis"] = check_redis(settings.dlm, CHECK_TIMEOUT)
    if settings.backend.s3_configured:
        from callfs.backends.s3 import check_connectivity as check_s3

        checks["S3 bucket"] = check_s3(settings.backend)
    if not checks:
        sys.stderr.write("callfs: the settings use no PostgreSQL, Redis or S3\n")
        return True

    async def run_all() -> list[BaseException | None]:
        return await asyncio.gather(*checks.values(), return_exceptions=True)

    answering = True
    for name, outcome in zip(checks, asyncio.run(run_all()), strict=True):
        if outcome is None:
            sys.stderr.write(f"callfs: {name} answers\n")
        else:
            answering = False
            reason = str(outcome) or type(outcome).__name__
            sys.stderr.write(f"callfs: {name} check failed: {reason}\n")
    return answering


# callfs dev


def dev_overrides(data_dir: Path) -> dict[str, Any]:
    """The embedded defaults of ``callfs dev``: every one still yields to the file and env."""
    return {
        "server": {
            "listen_addr": "127.0.0.1:8443",
            "protocol": "http",
        },
        "metrics": {"listen_addr": "127.0.0.1:9090"},
        "metadata_store": {"type": "sqlite", "sqlite_path": str(data_dir / "metadata.sqlite3")},
        "dlm": {"type": "local"},
        "log": {"format": "console"},
        "backend": {"localfs_root_path": str(data_dir / "volumes")},
    }


def _dev(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = _load(args, dev_overrides(data_dir))
    if settings.server.workers != 1:
        from callfs.settings import SettingsError

        raise SettingsError(
            "callfs dev runs in one process: server.workers (CALLFS_SERVER_WORKERS) must be "
            "1; the local cluster or the chart runs gateways of several processes"
        )
    settings = _dev_secrets(settings, data_dir)
    return _serving(lambda: run_loop(run_dev(settings, data_dir)))


def _dev_external_url(settings: Settings, port: int) -> None:
    """Links point at the dev listener itself, on the ``port`` it is bound to (the one
    the system picked for port 0), unless ``server.external_url`` says otherwise."""
    from callfs.settings import ServerSettings

    server = settings.server
    if server.external_url == ServerSettings.model_fields["external_url"].default:
        server.external_url = _dev_url(settings, port)


def _dev_secrets(settings: Settings, data_dir: Path) -> Settings:
    """Generate (once, kept under the data dir) whatever secret the user did not set."""
    from pydantic import SecretStr

    from callfs.settings import DEFAULT_INTERNAL_SECRET, DEFAULT_LINK_SECRET

    auth = settings.auth
    if not auth.api_keys and not auth.users:
        key_file = data_dir / "api-key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(24) + "\n")
            key_file.chmod(0o600)
        auth.api_keys = [SecretStr(key_file.read_text().strip())]
    if auth.internal_proxy_secret.get_secret_value() == DEFAULT_INTERNAL_SECRET:
        auth.internal_proxy_secret = SecretStr(secrets.token_urlsafe(32))
    if [s.get_secret_value() for s in auth.single_use_link_secret] == [DEFAULT_LINK_SECRET]:
        secret_file = data_dir / "link-secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(32) + "\n")
            secret_file.chmod(0o600)
        auth.single_use_link_secret = [SecretStr(secret_file.read_text().strip())]
    return settings


async def run_dev(
    settings: Settings, data_dir: Path, *, ready: asyncio.Event | None = None
) -> None:
    """Serve the gateway, the link routes and two storage nodes in this process.

    Raises:
        ListenError: the API or metrics address is taken (before anything starts).
    """
    import asyncio

    from callfs_gateway.app import create_app
    from callfs_storage_node.server import build_server

    from callfs.discovery.base import StaticDiscovery
    from callfs.runtime import Runtime, open_runtime
    from callfs.serving import (
        api_server,
        bind_web,
        bound_port,
        metrics_server,
        settle,
        started,
    )
    from callfs.storage.inprocess import InProcessServer
    from callfs.tracing import open_tracing

    api_socket, metrics_socket = bind_web(settings)
    _dev_external_url(settings, api_socket.getsockname()[1])
    volumes = Path(settings.backend.localfs_root_path)
    nodes = []
    runtime: Runtime | None = None
    node_tracing = None
    try:
        # The nodes' spans are the storage-node service's, the rest the gateway's.
        node_tracing = open_tracing(settings.tracing, "storage-node")
        endpoints: dict[str, str] = {}
        # The gateway calls its nodes in this process without gRPC, unless traced: a
        # trace then shows each call as production has it, through a channel.
        in_process: dict[str, InProcessServer] = {}
        # The embedded nodes are not instrumented: the one metrics listener serves the
        # gateway's families (and the process's), not storage-node ones (docs/api.md).
        for node in DEV_NODES:
            root = volumes / node
            root.mkdir(parents=True, exist_ok=True)
            local = InProcessServer() if node_tracing is None else None
            server, port = build_server(
                settings,
                root=root,
                listen="127.0.0.1:0",
                instance_id=node,
                tracing=node_tracing,
                in_process=local,
            )
            await server.start()
            nodes.append(server)
            endpoints[node] = f"127.0.0.1:{port}"
            if local is not None:
                in_process[endpoints[node]] = local
        runtime = await open_runtime(
            settings,
            discovery=StaticDiscovery(endpoints),
            tracing=open_tracing(settings.tracing, "gateway"),
            in_process=in_process,
        )
        app = create_app(settings, runtime)
        with contextlib.suppress(ImportError):
            from callfs_link_service.app import mount_links

            mount_links(app, settings, runtime)
        api = api_server(app, settings, api_socket)
        metrics = metrics_server(runtime.metrics, settings, metrics_socket)
        tasks = [asyncio.create_task(api.serve())]
        if metrics is not None:
            tasks.append(asyncio.create_task(metrics.serve()))
        if not await started([api], tasks[:1]):
            tasks[0].result()
            return
        metrics_port = None if metrics_socket is None else metrics_socket.getsockname()[1]
        _banner(settings, bound_port(api), metrics_port, data_dir)
        settle()
        if ready is not None:
            ready.set()
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        api.should_exit = True
        if metrics is not None:
            metrics.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if runtime is not None:
            await runtime.close()
        for server in nodes:
            await server.stop(1.0)
        if node_tracing is not None:
            await node_tracing.close()
        api_socket.close()
        if metrics_socket is not None:
            metrics_socket.close()


def _reachable_host(addr: str) -> str:
    """The host of listen address ``addr`` as a client on this machine reaches it."""
    from callfs.settings import split_address

    host, _port = split_address(addr)
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


def _dev_url(settings: Settings, port: int) -> str:
    """The base URL of the dev API listener, bound to ``port``."""
    scheme = "http" if settings.server.protocol == "http" else "https"
    return f"{scheme}://{_reachable_host(settings.server.listen_addr)}:{port}"


def _banner(settings: Settings, port: int, metrics_port: int | None, data_dir: Path) -> None:
    url = _dev_url(settings, port)
    keys = [k.get_secret_value() for k in settings.auth.api_keys] or [
        u.api_key.get_secret_value() for u in settings.auth.users
    ]
    key = keys[0] if keys else "<your key>"
    insecure = "" if settings.server.protocol == "http" else " -k"
    metrics = ""
    if metrics_port is not None:
        metrics_host = _reachable_host(settings.metrics.listen_addr)
        metrics = f"  metrics:  http://{metrics_host}:{metrics_port}/metrics\n"
    sys.stdout.write(
        "\nCallFS dev is running.\n"
        f"  URL:      {url}\n"
        f"  API key:  {key}\n"
        f"  browser:  {url}/ui/ (sign in with the API key)\n"
        f"  data:     {data_dir}\n"
        f"{metrics}\n"
        "Try it:\n"
        f'  curl{insecure} -X POST -H "Authorization: Bearer {key}" --data-binary "hello" '
        f"{url}/v1/files/hello.txt\n"
        f'  curl{insecure} -H "Authorization: Bearer {key}" {url}/v1/files/hello.txt\n\n'
        "Press Ctrl-C to stop.\n"
    )
    sys.stdout.flush()
