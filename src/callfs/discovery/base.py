"""The node-discovery interface: a live map ``instance_id -> host:port``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

Listener = Callable[[Mapping[str, str]], None]


class Discovery(ABC):
    """Keeps the map of ready storage nodes current."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    @abstractmethod
    def endpoints(self) -> Mapping[str, str]:
        """The ready nodes now: ``instance_id -> "host:port"``."""

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
    """A fixed map from configuration (``CALLFS_INSTANCE_DISCOVERY_PEER_ENDPOINTS``)."""

    def __init__(self, endpoints: Mapping[str, str]) -> None:
        super().__init__()
        self._endpoints = dict(endpoints)

    def endpoints(self) -> Mapping[str, str]:
        return self._endpoints

    def set(self, endpoints: Mapping[str, str]) -> None:
        """Replace the map (used by ``callfs dev`` once its nodes are bound)."""
        self._endpoints = dict(endpoints)
        self._notify()
