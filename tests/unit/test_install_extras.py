"""``pip install callfs`` is the client alone; the server roles need ``callfs[server]``.

Two checks, both without building or installing anything (no network, a few seconds):

* the declared requirements (pyproject.toml, which setuptools copies into the wheel's
  metadata as they are): the unconditional ones are exactly the client's, every server
  package is under the ``server`` extra, tracing's under ``otel``, and ``dev`` pulls in
  ``server``, ``fsspec`` and ``otel``;
* the client as that install leaves it: a fresh interpreter in which only the standard
  library, CallFS's own packages and the distributions that ``pip install callfs``
  brings (the client's requirements and theirs, read from the installed metadata) can be
  imported; every other module fails as an absent one does. There, the SDK, the fsspec
  filesystem and the client commands work, and every server subcommand ends with one
  line naming ``callfs[server]``.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from callfs import cli
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CLIENT = {"httpx", "tqdm", "pyyaml"}
SERVER = {
    "fastapi",
    "fastapi-offline",
    "uvicorn",
    "uvloop",
    "httptools",
    "orjson",
    "grpcio",
    "grpcio-health-checking",
    "protobuf",
    "asyncpg",
    "redis",
    "pydantic",
    "prometheus-client",
    "aioboto3",
    "kubernetes",
    "cryptography",
}
OTEL = {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"}


def declared() -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {
        name: [Requirement(line) for line in lines]
        for name, lines in project["optional-dependencies"].items()
    }
    return [Requirement(line) for line in project["dependencies"]], extras


def names(requirements: Iterable[Requirement]) -> set[str]:
    return {canonicalize_name(requirement.name) for requirement in requirements}


def closure(requirements: Iterable[Requirement]) -> set[str]:
    """The installed distributions that ``requirements`` bring, transitively, without
    extras (markers evaluated for this interpreter)."""
    found: set[str] = set()
    pending = list(requirements)
    while pending:
        requirement = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found.add(name)
        pending.extend(Requirement(line) for line in metadata.requires(name) or [])
    return found


def top_level_modules(distributions: set[str]) -> set[str]:
    return {
        module
        for module, owners in metadata.packages_distributions().items()
        if any(canonicalize_name(owner) in distributions for owner in owners)
    }


def test_a_plain_install_requires_the_client_alone() -> None:
    dependencies, extras = declared()
    assert names(dependencies) == CLIENT
    assert all(requirement.marker is None for requirement in dependencies)
    assert names(extras["server"]) == SERVER
    assert names(extras["fsspec"]) == {"fsspec"}
    assert names(extras["otel"]) == OTEL
    itself = [r for r in extras["dev"] if canonicalize_name(r.name) == "callfs"]
    assert len(itself) == 1 and itself[0].extras == {"server", "fsspec", "otel"}
    # The server's and tracing's packages are declared once, under their extra.
    assert not names(extras["dev"]) & (SERVER | OTEL)


def test_the_hint_knows_every_server_package_and_no_client_one() -> None:
    dependencies, extras = declared()
    server_modules = top_level_modules(names(extras["server"]))
    assert server_modules <= cli.SERVER_MODULES, server_modules - cli.SERVER_MODULES
    client_modules = top_level_modules(closure(dependencies))
    assert {"httpx", "tqdm", "yaml"} <= client_modules
    assert not client_modules & cli.SERVER_MODULES


def test_a_missing_server_module_is_one_line_and_any_other_is_raised(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def needs(module: str) -> int:
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    args = argparse.Namespace(command="config", config_command="validate")
    assert cli._server(lambda _: needs("pydantic_core._pydantic_core"))(args) == 1
    assert capsys.readouterr().err == (
        "callfs: config validate needs the server's dependencies, not installed "
        "(no module named 'pydantic_core'): pip install 'callfs[server]'\n"
    )
    for module in ("callfs_gateway.app", "yaml", "not_a_server_module"):
        with pytest.raises(ModuleNotFoundError):
            cli._server(lambda _, module=module: needs(module))(args)
    assert cli.missing_server_module(ModuleNotFoundError("no name")) is None


def test_a_missing_opentelemetry_module_is_one_line_naming_the_otel_extra(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def needs(module: str) -> int:
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    args = argparse.Namespace(command="gateway")
    assert cli._server(lambda _: needs("opentelemetry.sdk"))(args) == 1
    assert capsys.readouterr().err == (
        "callfs: gateway traces (tracing.otlp_endpoint is set) with OpenTelemetry's SDK, "
        "not installed (no module named 'opentelemetry.sdk'): pip install 'callfs[otel]'\n"
    )
    # The server's hint never claims them: FastAPI brings OpenTelemetry's API, not its SDK.
    assert "opentelemetry" not in cli.SERVER_MODULES


# --- the client as `pip install callfs` leaves it -------------------------------------

ONLY_INSTALLED = """
import sys
allowed = set({allowed!r})
class NotInstalled:
    @staticmethod
    def find_spec(fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if (
            top in allowed
            or top in sys.stdlib_module_names
            or top.startswith(("callfs", "__editable__"))
        ):
            return None
        raise ModuleNotFoundError(f"No module named {{fullname!r}}", name=fullname)
sys.meta_path.insert(0, NotInstalled)
"""

CLIENT_PROBE = """
import asyncio, json
from callfs.cli import main

absent = []
for module in ("fastapi", "pydantic", "grpc", "uvicorn", "asyncpg", "kubernetes"):
    try:
        __import__(module)
    except ModuleNotFoundError:
        absent.append(module)

try:
    main(["--help"])
except SystemExit as exit:
    help_code = exit.code

import callfs.client
with callfs.client.Client() as client:  # the profile file's URL and key
    url = client.url

async def use_async():
    async with callfs.client.AsyncClient(retries=0) as client:
        try:
            await client.stat("/x")
        except callfs.client.TransportError as error:
            return error.code

async_error = asyncio.run(use_async())

import fsspec
fs = fsspec.filesystem("callfs", skip_instance_cache=True)
fsspec_class = type(fs).__module__ + "." + type(fs).__name__

ls_code = main(["ls", "/"])
print(json.dumps([absent, help_code, url, async_error, fsspec_class, ls_code]))
"""


def run_client_only(
    code: str, *arguments: str, home: Path, extra: Iterable[str] = ()
) -> subprocess.CompletedProcess[str]:
    dependencies, _ = declared()
    installed = closure([*dependencies, *(Requirement(name) for name in extra)])
    allowed = sorted(top_level_modules(installed))
    program = ONLY_INSTALLED.format(allowed=allowed) + code
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", program, *arguments],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_client_runs_without_the_server_packages(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = tmp_path / ".config" / "callfs" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"profiles: {{default: {{url: '{url}', api_key: k}}}}\n")
    result = run_client_only(CLIENT_PROBE, home=tmp_path, extra=["fsspec"])
    assert result.returncode == 0, result.stderr
    absent, help_code, configured, async_error, fsspec_class, ls_code = json.loads(
        result.stdout.splitlines()[-1]
    )
    assert len(absent) == 6  # what the server needs cannot be imported here
    assert help_code == 0
    assert configured == url
    assert async_error == "TRANSPORT_ERROR"
    assert fsspec_class == "callfs.client.fsspec.CallFSFileSystem"
    # The client's own error for an unreachable server, not an ImportError.
    assert ls_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("callfs ls: /: TRANSPORT_ERROR: "), line


@pytest.mark.parametrize(
    "command",
    [
        ["gateway"],
        ["storage-node"],
        ["link-service"],
        ["dev", "--data-dir", "data"],
        ["config", "validate"],
        ["config", "validate", "--role", "gateway", "--check-connectivity"],
    ],
    ids=lambda command: " ".join(command),
)
def test_a_server_role_without_the_server_extra_says_what_to_install(
    tmp_path: Path, command: list[str]
) -> None:
    code = "import sys\nfrom callfs.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    result = run_client_only(code, *command, home=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    name = " ".join(word for word in command[:2] if not word.startswith("-"))
    assert result.stderr == (
        f"callfs: {name} needs the server's dependencies, not installed "
        "(no module named 'pydantic'): pip install 'callfs[server]'\n"
    )
