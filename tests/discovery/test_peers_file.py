"""Static discovery from a peers file: nodes join and leave when the file changes."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from callfs.discovery import build_discovery
from callfs.discovery.base import Domain
from callfs.discovery.peers_file import PeersFileDiscovery, parse_peers
from callfs.settings import InstanceDiscoverySettings, SettingsError, load_settings
from tests.support.polling import wait_until

INTERVAL = 0.01


def _write(path: Path, document: Any) -> None:
    """Replace the file the way a careful operator (or a ConfigMap mount) does: rename."""
    staged = path.with_suffix(".new")
    staged.write_text(document if isinstance(document, str) else json.dumps(document))
    os.replace(staged, path)


async def test_the_map_follows_the_file_and_listeners_hear_each_change(tmp_path: Path) -> None:
    peers = tmp_path / "peers.json"
    _write(peers, {"node-0": "127.0.0.1:5000"})
    discovery = PeersFileDiscovery(peers, interval=INTERVAL, domains={})
    heard: list[Mapping[str, str]] = []
    discovery.on_change(heard.append)
    await discovery.start()
    try:
        assert discovery.endpoints() == {"node-0": "127.0.0.1:5000"}

        _write(peers, {"node-0": "127.0.0.1:5000", "node-1": "127.0.0.1:5001"})
        await wait_until(lambda: len(discovery.endpoints()) == 2, what="node-1 joined")
        _write(peers, {"node-1": "127.0.0.1:5001"})
        await wait_until(lambda: "node-0" not in discovery.endpoints(), what="node-0 left")
    finally:
        await discovery.stop()

    assert heard[-2:] == [
        {"node-0": "127.0.0.1:5000", "node-1": "127.0.0.1:5001"},
        {"node-1": "127.0.0.1:5001"},
    ]


async def test_a_malformed_rewrite_keeps_the_map_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    peers = tmp_path / "peers.json"
    _write(peers, {"node-0": "127.0.0.1:5000"})
    discovery = PeersFileDiscovery(peers, interval=INTERVAL, domains={})
    await discovery.start()
    try:
        with caplog.at_level(logging.WARNING, logger="callfs.discovery.peers_file"):
            _write(peers, '{"node-0": ')
            await wait_until(lambda: "not reloaded" in caplog.text, what="the warning")
        assert discovery.endpoints() == {"node-0": "127.0.0.1:5000"}

        _write(peers, {"node-2": "127.0.0.1:5002"})
        await wait_until(lambda: "node-2" in discovery.endpoints(), what="the good rewrite")
    finally:
        await discovery.stop()


@pytest.mark.parametrize("content", [None, "[]", '{"node-0": 5}', '{"node-0": ""}'])
async def test_an_unusable_file_at_start_is_a_settings_error(
    tmp_path: Path, content: str | None
) -> None:
    peers = tmp_path / "peers.json"
    if content is not None:
        peers.write_text(content)
    discovery = PeersFileDiscovery(peers, interval=INTERVAL, domains={})

    with pytest.raises(SettingsError, match="peers_file"):
        await discovery.start()


def test_entries_may_name_their_failure_domain() -> None:
    endpoints, domains = parse_peers(
        json.dumps(
            {
                "node-0": {"address": "10.0.0.1:50051", "zone": "a", "host": "h1"},
                "node-1": "10.0.0.2:50051",
            }
        )
    )

    assert endpoints == {"node-0": "10.0.0.1:50051", "node-1": "10.0.0.2:50051"}
    assert domains == {"node-0": Domain(zone="a", host="h1")}


async def test_domains_in_the_file_join_those_in_settings(tmp_path: Path) -> None:
    peers = tmp_path / "peers.json"
    _write(peers, {"node-0": {"address": "127.0.0.1:5000", "zone": "b"}, "node-1": "x:1"})
    discovery = PeersFileDiscovery(peers, interval=INTERVAL, domains={"node-1": Domain(zone="a")})
    await discovery.start()
    await discovery.stop()

    assert discovery.domains() == {"node-0": Domain(zone="b"), "node-1": Domain(zone="a")}


def test_settings_choose_the_peers_file(tmp_path: Path) -> None:
    peers = tmp_path / "peers.json"
    settings = InstanceDiscoverySettings(peers_file=str(peers), peers_file_interval="2s")

    discovery = build_discovery(settings)

    assert isinstance(discovery, PeersFileDiscovery)


def test_a_peers_file_and_a_peer_map_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="peers_file"):
        load_settings(
            environ={
                "CALLFS_INSTANCE_DISCOVERY_PEERS_FILE": str(tmp_path / "peers.json"),
                "CALLFS_INSTANCE_DISCOVERY_PEER_ENDPOINTS": '{"node-0": "127.0.0.1:1"}',
            }
        )
