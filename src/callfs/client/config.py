"""Where a client finds its server and key: arguments, then environment, then a profile.

Each setting is taken from the first of:

1. the constructor's argument (``url=``, ``api_key=``, ``verify=``, ``timeout=``);
2. the environment: ``CALLFS_URL``, ``CALLFS_API_KEY``;
3. a profile in ``$XDG_CONFIG_HOME/callfs/config.yaml`` (``~/.config/callfs/config.yaml``
   when ``XDG_CONFIG_HOME`` is unset)::

       default_profile: local
       profiles:
         local:
           url: http://127.0.0.1:8443
           api_key: 3vQ...
         prod:
           url: https://callfs.example.com
           api_key: ...
           verify: /etc/ssl/corp-ca.pem   # or false; default true
           timeout: 60

   The profile is the ``profile=`` argument, else ``CALLFS_PROFILE``, else the file's
   ``default_profile``, else one named ``default`` if there is one. Naming a profile
   that does not exist is an error; the file is read only when a setting is still
   missing after 1 and 2, or when a profile is named explicitly.

A profile's ``api_key`` is only ever sent to that profile's ``url``: when the URL came
from an argument or ``CALLFS_URL`` and differs, the profile's key is not used.

PyYAML is imported only when the file is read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from callfs.client.errors import ConfigError

__all__ = ["ENV_API_KEY", "ENV_PROFILE", "ENV_URL", "Settings", "config_file", "resolve"]

ENV_URL = "CALLFS_URL"
ENV_API_KEY = "CALLFS_API_KEY"
ENV_PROFILE = "CALLFS_PROFILE"
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one client."""

    url: str
    api_key: str | None
    verify: bool | str
    timeout: float
    profile: str | None
    """The profile that was read, None when none was."""


def config_file(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/callfs/config.yaml``, or ``~/.config/callfs/config.yaml``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "callfs" / "config.yaml"


def resolve(
    url: str | None = None,
    api_key: str | None = None,
    *,
    profile: str | None = None,
    verify: bool | str | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """The settings from arguments, then ``env`` (default ``os.environ``), then a profile.

    None means "not given" for every argument: ``verify`` then defaults to True and
    ``timeout`` to 30 seconds unless the profile says otherwise.

    Raises:
        ConfigError: no URL anywhere, a bad URL, an unknown profile, an unreadable file.
    """
    env = os.environ if env is None else env
    chosen_url = url or env.get(ENV_URL) or None
    chosen_key = api_key or env.get(ENV_API_KEY) or None
    named = profile or env.get(ENV_PROFILE) or None

    used_profile: str | None = None
    settings: Mapping[str, Any] = {}
    if chosen_url is None or chosen_key is None or named is not None:
        used_profile, settings = _profile(named, env)

    profile_url = _string(settings, "url", used_profile)
    url_from_profile = chosen_url is None and profile_url is not None
    if url_from_profile:
        chosen_url = profile_url
    if chosen_url is None:
        raise ConfigError(
            f"no CallFS URL: pass url=, set {ENV_URL}, or add a profile to {config_file(env)}"
        )
    chosen_url = _normalize_url(chosen_url)

    profile_key = _string(settings, "api_key", used_profile)
    # A profile's key goes to that profile's server only.
    same_server = (
        url_from_profile or profile_url is None or _normalize_url(profile_url) == chosen_url
    )
    if chosen_key is None and profile_key is not None and same_server:
        chosen_key = profile_key

    chosen_verify: bool | str = True
    if verify is not None:
        chosen_verify = verify
    elif "verify" in settings:
        value = settings["verify"]
        if not isinstance(value, bool | str):
            raise ConfigError(f"profile {used_profile!r}: verify must be true, false or a path")
        chosen_verify = value

    chosen_timeout = DEFAULT_TIMEOUT
    if timeout is not None:
        chosen_timeout = timeout
    elif settings.get("timeout") is not None:
        value = settings["timeout"]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"profile {used_profile!r}: timeout must be a number of seconds")
        chosen_timeout = float(value)

    return Settings(
        url=chosen_url,
        api_key=chosen_key,
        verify=chosen_verify,
        timeout=chosen_timeout,
        profile=used_profile,
    )


def _profile(named: str | None, env: Mapping[str, str]) -> tuple[str | None, Mapping[str, Any]]:
    """The chosen profile's name and mapping (``None, {}`` when there is none to use)."""
    path = config_file(env)
    if not path.is_file():
        if named is not None:
            raise ConfigError(f"profile {named!r} requested but {path} does not exist")
        return None, {}
    document = _load(path)
    profiles = document.get("profiles") or {}
    if not isinstance(profiles, Mapping):
        raise ConfigError(f"{path}: 'profiles' must be a mapping of name to settings")
    name = named or document.get("default_profile")
    if name is None:
        if "default" not in profiles:
            return None, {}
        name = "default"
    if not isinstance(name, str):
        raise ConfigError(f"{path}: default_profile must be a profile name")
    chosen = profiles.get(name)
    if chosen is None:
        known = ", ".join(sorted(str(key) for key in profiles)) or "none"
        raise ConfigError(f"{path}: no profile {name!r} (profiles: {known})")
    if not isinstance(chosen, Mapping):
        raise ConfigError(f"{path}: profile {name!r} must be a mapping")
    return name, chosen


def _load(path: Path) -> Mapping[str, Any]:
    import yaml  # only here: a client configured by arguments never imports it

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ConfigError(f"{path}: expected a mapping with 'profiles'")
    return document


def _string(settings: Mapping[str, Any], key: str, profile: str | None) -> str | None:
    value = settings.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"profile {profile!r}: {key} must be a string")
    return value


def _normalize_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"CallFS URL must be http(s)://host[:port][/prefix], got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"CallFS URL must not carry a query or fragment: {url!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
