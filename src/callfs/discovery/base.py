"""The node-discovery interface: a live map ``instance_id -> host:port``, and each
node's failure domain.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Listener = Callable[[Mapping[str, str]], None]


@dataclass(frozen=True)
class Domain:
    """Where a node runs: its zone and its host (``""``: not known)."""

    zone: str = ""
    host: str = ""


class Discovery(ABC):
    """Keeps the map of ready storage nodes current."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    @abstractmethod
    def endpoints(self) -> Mapping[str, str]:
        """The ready nodes now: ``instance_id -> "host:port"``."""

    def domains(self) -> Mapping[str, Domain]:
        """The failure domain of each node whose domain is known (none by default)."""
        return {}

    async def start(self) -> None:
        """Begin watching (static discovery has nothing to watch)."""

    async def stop(self) -> None:
        """Stop watching."""

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(endpoints)`` whenever the live map changes."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        current = dict(self.endpoints())
        for listener in self._listeners:
            listener(current)


class StaticDiscovery(Discovery):
    """A fixed map from configuration (``CALLFS_INSTANCE_DISCOVERY_PEER_ENDPOINTS``,
    with domains from ``CALLFS_INSTANCE_DISCOVERY_PEER_DOMAINS``).
    """

    def __init__(
        self, endpoints: Mapping[str, str], domains: Mapping[str, Domain] | None = None
    ) -> None:
        super().__init__()
        self._endpoints = dict(endpoints)
        self._domains = dict(domains or {})

    def endpoints(self) -> Mapping[str, str]:
        return self._endpoints

    def domains(self) -> Mapping[str, Domain]:
        return self._domains

    def set(self, endpoints: Mapping[str, str]) -> None:
        """Replace the map (used by ``callfs dev`` once its nodes are bound)."""
        self._endpoints = dict(endpoints)
        self._notify()
