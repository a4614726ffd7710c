"""Where a client finds its URL and key: arguments, CALLFS_URL/CALLFS_API_KEY, then a
profile in $XDG_CONFIG_HOME/callfs/config.yaml (the autouse fixture points
XDG_CONFIG_HOME at an empty directory of the test's own)."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import yaml

from callfs.client import (
    AsyncClient,
    Client,
    ConfigError,
    TransportError,
    Unauthorized,
    config_file,
    resolve,
)
from tests.client.conftest import Server
from tests.client.transports import Recording


def write_profiles(config_home: Path, document: dict[str, object]) -> Path:
    path = config_home / "callfs" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


def authorization(transport: Recording) -> str | None:
    return transport.requests[-1].headers.get("authorization")


def test_environment_variables_configure_the_client(
    server: Server, home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLFS_URL", server.url + "/")
    monkeypatch.setenv("CALLFS_API_KEY", server.key)
    with Client() as fs:
        assert fs.url == server.url and fs.profile is None
        assert fs.write(f"{home}/env.txt", b"env").owner == "api-user-1"
    # An argument beats the environment.
    with Client(api_key=server.other_key) as fs:
        assert fs.write(f"{home}-second/arg.txt", b"arg").owner == "api-user-2"


async def test_profile_file_configures_the_async_client(
    server: Server, home: str, clean_environment: Path
) -> None:
    write_profiles(
        clean_environment,
        {
            "default_profile": "local",
            "profiles": {
                "local": {"url": server.url, "api_key": server.key},
                "second": {"url": server.url, "api_key": server.other_key, "timeout": 5},
            },
        },
    )
    async with AsyncClient() as fs:
        assert fs.profile == "local"
        assert (await fs.write(f"{home}/p.txt", b"p")).owner == "api-user-1"
    async with AsyncClient(profile="second") as fs:
        assert fs.profile == "second"
        assert (await fs.write(f"{home}-second/q.txt", b"q")).owner == "api-user-2"


def test_profile_chosen_by_argument_then_environment_then_default(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profiles(
        clean_environment,
        {
            "default_profile": "a",
            "profiles": {
                "a": {"url": "http://a.example:1", "api_key": "key-a"},
                "b": {"url": "http://b.example:2", "api_key": "key-b"},
                "c": {"url": "http://c.example:3/prefix/", "api_key": "key-c"},
            },
        },
    )
    assert resolve().url == "http://a.example:1"
    assert resolve().api_key == "key-a"
    monkeypatch.setenv("CALLFS_PROFILE", "b")
    assert (resolve().url, resolve().api_key, resolve().profile) == (
        "http://b.example:2",
        "key-b",
        "b",
    )
    settings = resolve(profile="c")
    assert (settings.url, settings.api_key) == ("http://c.example:3/prefix", "key-c")
    with pytest.raises(ConfigError, match="no profile 'nope'"):
        resolve(profile="nope")


def test_arguments_then_environment_then_profile(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profiles(
        clean_environment,
        {"profiles": {"default": {"url": "http://p.example", "api_key": "key-p"}}},
    )
    assert (resolve().url, resolve().api_key) == ("http://p.example", "key-p")
    monkeypatch.setenv("CALLFS_API_KEY", "key-env")
    assert (resolve().url, resolve().api_key) == ("http://p.example", "key-env")
    monkeypatch.setenv("CALLFS_URL", "http://env.example")
    assert (resolve().url, resolve().api_key) == ("http://env.example", "key-env")
    assert resolve("http://arg.example", "key-arg").api_key == "key-arg"


def test_a_profile_key_never_goes_to_another_server(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profiles(
        clean_environment,
        {"profiles": {"default": {"url": "https://prod.example", "api_key": "prod-key"}}},
    )
    assert resolve("https://prod.example/").api_key == "prod-key"  # the same server
    assert resolve("http://127.0.0.1:8443").api_key is None
    monkeypatch.setenv("CALLFS_URL", "http://elsewhere.example")
    assert resolve().api_key is None
    transport = Recording(connect_errors=1)  # fails before anything leaves the machine
    with Client(transport=transport, retries=0) as fs, pytest.raises(TransportError):
        fs.stat("/")
    assert transport.requests[0].url.host == "elsewhere.example"
    assert authorization(transport) is None


def test_missing_or_broken_configuration_is_a_config_error(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="no CallFS URL"):
        Client()
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(profile="local")  # named, but there is no file
    with pytest.raises(ConfigError, match="http"):
        resolve("ftp://example.com")
    path = write_profiles(clean_environment, {"default_profile": "gone", "profiles": {}})
    with pytest.raises(ConfigError, match="no profile 'gone'"):
        resolve()
    path.write_text("profiles: [not, a, mapping]\n")
    with pytest.raises(ConfigError, match="mapping"):
        resolve()
    path.write_text("profiles: {x: {url: 'http://x', timeout: soon}}\n")
    with pytest.raises(ConfigError, match="timeout"):
        resolve(profile="x")
    path.write_text("{{{{ not yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        resolve()
    # Everything given: the file is not even read.
    assert resolve("http://x.example", "key").profile is None


def test_xdg_config_home_and_home_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_file() == tmp_path / "xdg" / "callfs" / "config.yaml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_file() == tmp_path / "home" / ".config" / "callfs" / "config.yaml"
    write_profiles(tmp_path / "home" / ".config", {"profiles": {"default": {"url": "http://h"}}})
    assert resolve().url == "http://h"


def test_timeout_and_verify_options(
    server: Server, clean_environment: Path, tmp_path: Path
) -> None:
    write_profiles(
        clean_environment,
        {"profiles": {"default": {"url": server.url, "verify": False, "timeout": 7}}},
    )
    settings = resolve()
    assert (settings.verify, settings.timeout) == (False, 7.0)
    assert resolve(timeout=2.5, verify=True).timeout == 2.5
    with Client(timeout=3) as fs:
        assert fs._http.timeout.read == 3
    with Client(timeout=httpx.Timeout(None)) as fs:
        assert fs._http.timeout.read is None
    with Client(server.url, server.key, verify=ssl.create_default_context()) as fs:
        assert fs.health()["status"] == "ok"  # plain http: verify is unused, yet accepted
    with Client(server.url, "wrong-key-0123456789") as fs, pytest.raises(Unauthorized):
        fs.stat("/")
