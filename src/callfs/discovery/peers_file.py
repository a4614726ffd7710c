"""Static discovery from a file that may change: nodes join and leave without a restart.

The file holds one JSON object, ``instance_id -> "host:port"`` or ``instance_id ->
{"address": "host:port", "zone": "...", "host": "..."}``. It is read at start (a
missing or malformed file is a configuration error then) and polled for changes; a
malformed rewrite is logged and ignored, so a half-written edit never empties the map.
Write the file by renaming a complete copy over it (as Kubernetes does for a mounted
ConfigMap) and every reader sees either the old map or the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from callfs.discovery.base import Domain, StaticDiscovery
from callfs.settings import SettingsError

logger = logging.getLogger(__name__)

Signature = tuple[int, int, int]


class PeersFileDiscovery(StaticDiscovery):
    """The static map of ``path``, re-read whenever the file changes."""

    def __init__(self, path: Path, *, interval: float, domains: Mapping[str, Domain]) -> None:
        super().__init__({}, domains)
        self._path = path
        self._interval = interval
        self._configured_domains = dict(domains)
        self._seen: Signature | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the file once (raising SettingsError if it cannot be used), then poll it."""
        try:
            self._load()
        except (OSError, ValueError) as exc:
            raise SettingsError(f"instance_discovery.peers_file {self._path}: {exc}") from None
        self._task = asyncio.create_task(self._poll(), name="peers-file")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                self._load()
            except (OSError, ValueError) as exc:
                logger.warning(
                    "peers file %s not reloaded, keeping %d nodes: %s",
                    self._path,
                    len(self.endpoints()),
                    exc,
                )

    def _load(self) -> None:
        """Take the file's map if the file changed since the last read."""
        stat = os.stat(self._path)
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if signature == self._seen:
            return
        endpoints, domains = parse_peers(self._path.read_text(encoding="utf-8"))
        self._seen = signature
        self._domains = self._configured_domains | domains
        if endpoints != self.endpoints():
            logger.info(
                "peers file %s: %d nodes (%s)",
                self._path,
                len(endpoints),
                ", ".join(sorted(endpoints)),
            )
            self.set(endpoints)


def parse_peers(text: str) -> tuple[dict[str, str], dict[str, Domain]]:
    """The endpoints and failure domains a peers file names.

    Raises:
        ValueError: the text is not such a map.
    """
    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object of instance_id -> address")
    endpoints: dict[str, str] = {}
    domains: dict[str, Domain] = {}
    for instance_id, value in document.items():
        if isinstance(value, str):
            endpoints[instance_id] = value
            continue
        if not isinstance(value, dict) or not isinstance(value.get("address"), str):
            raise ValueError(f'{instance_id!r}: expected an address or {{"address": ...}}')
        zone, host = value.get("zone", ""), value.get("host", "")
        if not isinstance(zone, str) or not isinstance(host, str):
            raise ValueError(f"{instance_id!r}: zone and host must be strings")
        endpoints[instance_id] = value["address"]
        if zone or host:
            domains[instance_id] = Domain(zone=zone, host=host)
    if not all(instance_id and address for instance_id, address in endpoints.items()):
        raise ValueError("empty instance id or address")
    return endpoints, domains
