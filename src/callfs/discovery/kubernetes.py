"""Storage nodes from the EndpointSlices of a Kubernetes Service, kept current by list + watch.

Each endpoint's ``zone`` and ``nodeName`` are its node's failure domain. The
``kubernetes`` client is synchronous, so one daemon thread lists and watches; each
change of the merged live map is handed to the event loop with
``call_soon_threadsafe``, and listeners run there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException

from callfs.discovery.base import Discovery, Domain
from callfs.errors import BackendUnavailable

logger = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
GONE = 410
CONNECT_TIMEOUT = 10.0
LIST_READ_TIMEOUT = 30.0
# The server ends a watch after timeoutSeconds; a silent connection longer than
# this is dead, not idle.
WATCH_READ_GRACE = 30.0
STOP_TIMEOUT = 10.0

T = TypeVar("T")
# One slice's live endpoints: ``instance_id -> (host:port, domain)``.
SliceNodes = dict[str, tuple[str, Domain]]


class ResourceVersionExpired(Exception):
    """The watch's resourceVersion is older than the server's history: list again."""


def live_endpoints(endpoint_slice: Mapping[str, Any], port_name: str) -> dict[str, str]:
    """The ready, non-terminating endpoints of one EndpointSlice: ``instance_id -> host:port``."""
    return {i: address for i, (address, _) in live_nodes(endpoint_slice, port_name).items()}


def live_nodes(endpoint_slice: Mapping[str, Any], port_name: str) -> SliceNodes:
    """:func:`live_endpoints` with each one's domain (its ``zone`` and ``nodeName``)."""
    port = _slice_port(endpoint_slice.get("ports") or [], port_name)
    if port is None:
        return {}
    live: SliceNodes = {}
    for endpoint in endpoint_slice.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        # The API says a missing ``ready`` means ready.
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        addresses = endpoint.get("addresses") or []
        instance_id = (endpoint.get("targetRef") or {}).get("name") or endpoint.get("hostname")
        if not addresses or not instance_id:
            continue
        host = addresses[0]
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        domain = Domain(zone=endpoint.get("zone") or "", host=endpoint.get("nodeName") or "")
        live[instance_id] = (address, domain)
    return live


def _slice_port(ports: list[Mapping[str, Any]], port_name: str) -> int | None:
    for port in ports:
        if (port.get("name") or "") == port_name and port.get("port"):
            return int(port["port"])
    if len(ports) == 1 and ports[0].get("port"):
        return int(ports[0]["port"])
    return None


def merge(slices: Mapping[str, Mapping[str, T]]) -> dict[str, T]:
    """One map from every slice's live endpoints (the first slice by name wins a duplicate)."""
    merged: dict[str, T] = {}
    for name in sorted(slices):
        for instance_id, node in slices[name].items():
            merged.setdefault(instance_id, node)
    return merged


def client_from_environment() -> kubernetes.client.ApiClient:
    """An ApiClient from the in-cluster service account, else from kubeconfig.

    Raises:
        BackendUnavailable: neither configuration is available.
    """
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        try:
            kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (kubernetes.config.ConfigException, OSError) as exc:
            raise BackendUnavailable(
                f"no Kubernetes configuration (not in a cluster, no usable kubeconfig): {exc}"
            ) from exc
    return kubernetes.client.ApiClient(configuration)


class Backoff:
    """Exponential delays with jitter, from ``initial`` up to ``cap`` seconds."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0) -> None:
        self.initial = initial
        self.cap = cap
        self.failures = 0

    def next(self) -> float:
        """The delay before the next attempt; each call doubles the ceiling."""
        ceiling = min(self.cap, self.initial * 2**self.failures)
        self.failures = min(self.failures + 1, 32)
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Start again from ``initial`` (the server answered properly)."""
        self.failures = 0


class KubernetesDiscovery(Discovery):
    """The ready endpoints of a Service's EndpointSlices, by list + watch."""

    def __init__(
        self,
        namespace: str,
        service: str,
        port_name: str = "grpc",
        *,
        api_client: kubernetes.client.ApiClient | None = None,
        watch_timeout: int = 300,
        max_backoff: float = 30.0,
        initial_sync_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        self.namespace = namespace
        self.service = service
        self.port_name = port_name
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.initial_sync_timeout = initial_sync_timeout
        self._api_client = api_client
        self._owns_client = api_client is None
        self._endpoints: dict[str, str] = {}
        self._domains: dict[str, Domain] = {}
        self._stopping = threading.Event()
        self._response_lock = threading.Lock()
        self._response: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._synced = asyncio.Event()
        self._sent: SliceNodes | None = None

    def endpoints(self) -> Mapping[str, str]:
        return self._endpoints

    def domains(self) -> Mapping[str, Domain]:
        return self._domains

    async def start(self) -> None:
        """List the Service's slices, then keep watching them in a background thread.

        Waits up to ``initial_sync_timeout`` for the first list, so a fresh process
        starts with its nodes known; later failures only delay updates.

        Raises:
            BackendUnavailable: no Kubernetes configuration was passed or found.
        """
        if self._thread is not None:
            return
        if self._api_client is None:
            self._api_client = await asyncio.to_thread(client_from_environment)
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"discovery-{self.service}", daemon=True
        )
        self._thread.start()
        try:
            await asyncio.wait_for(self._synced.wait(), self.initial_sync_timeout)
        except TimeoutError:
            logger.warning(
                "no EndpointSlice list for service %s/%s yet; starting with no storage nodes",
                self.namespace,
                self.service,
            )

    async def stop(self) -> None:
        """End the watch thread and close the client this discovery opened."""
        thread = self._thread
        if thread is not None:
            self._stopping.set()
            self._interrupt()
            await asyncio.to_thread(thread.join, STOP_TIMEOUT)
            if thread.is_alive():
                logger.warning("EndpointSlice watch thread did not stop in %ss", STOP_TIMEOUT)
            self._thread = None
        if self._owns_client and self._api_client is not None:
            await asyncio.to_thread(self._api_client.close)
            self._api_client = None

    def _interrupt(self) -> None:
        # Shutting the socket down wakes the thread from a blocking read at once.
        with self._response_lock:
            response = self._response
        if response is not None:
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                response.shutdown()

    # --- the watch thread -------------------------------------------------------------

    def _run(self) -> None:
        api = kubernetes.client.DiscoveryV1Api(self._api_client)
        backoff = Backoff(cap=self.max_backoff)
        slices: dict[str, SliceNodes] = {}
        version: str | None = None
        expired_in_a_row = 0
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._list(api, slices)
                    self._send(slices, synced=True)
                version = self._watch(api, version, slices, backoff)
                expired_in_a_row = 0
            except ResourceVersionExpired:
                logger.info("EndpointSlice resourceVersion %s expired; listing again", version)
                version = None
                expired_in_a_row += 1
                if expired_in_a_row > 1:
                    self._stopping.wait(backoff.next())
            except Exception as exc:
                if self._stopping.is_set():
                    break
                delay = backoff.next()
                logger.warning(
                    "EndpointSlice list/watch for %s/%s failed (%s: %s); retrying in %.1fs",
                    self.namespace,
                    self.service,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                self._stopping.wait(delay)

    def _list(self, api: Any, slices: dict[str, SliceNodes]) -> str:
        response = api.list_namespaced_endpoint_slice(
            self.namespace,
            label_selector=f"{SERVICE_NAME_LABEL}={self.service}",
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT, LIST_READ_TIMEOUT),
        )
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        slices.clear()
        for item in body.get("items") or []:
            slices[item["metadata"]["name"]] = live_nodes(item, self.port_name)
        version: str = body["metadata"]["resourceVersion"]
        return version

    def _watch(
        self, api: Any, version: str, slices: dict[str, SliceNodes], backoff: Backoff
    ) -> str:
        """Apply watch events from ``version`` until the server ends the stream."""
        try:
            response = api.list_namespaced_endpoint_slice(
                self.namespace,
                label_selector=f"{SERVICE_NAME_LABEL}={self.service}",
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=self.watch_timeout,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT, self.watch_timeout + WATCH_READ_GRACE),
            )
        except ApiException as exc:
            if exc.status == GONE:
                raise ResourceVersionExpired from exc
            raise
        with self._response_lock:
            self._response = response
        try:
            if self._stopping.is_set():
                return version
            for line in _lines(response):
                event = json.loads(line)
                version = self._apply_event(event, version, slices)
                backoff.reset()
                self._send(slices)
                if self._stopping.is_set():
                    break
        finally:
            with self._response_lock:
                self._response = None
            response.close()
            response.release_conn()
        return version

    def _apply_event(
        self, event: Mapping[str, Any], version: str, slices: dict[str, SliceNodes]
    ) -> str:
        kind = event.get("type")
        item = event.get("object") or {}
        if kind == "ERROR":
            if item.get("code") == GONE:
                raise ResourceVersionExpired
            raise ApiException(
                status=item.get("code"), reason=f"{item.get('reason')}: {item.get('message')}"
            )
        metadata = item.get("metadata") or {}
        name = metadata.get("name")
        if kind in ("ADDED", "MODIFIED") and name:
            slices[name] = live_nodes(item, self.port_name)
        elif kind == "DELETED" and name:
            slices.pop(name, None)
        elif kind != "BOOKMARK":
            logger.debug("ignoring EndpointSlice watch event %r", kind)
        new_version: str = metadata.get("resourceVersion") or version
        return new_version

    def _send(self, slices: Mapping[str, SliceNodes], *, synced: bool = False) -> None:
        merged = merge(slices)
        if merged == self._sent and not synced:
            return
        self._sent = merged
        endpoints = {i: address for i, (address, _) in merged.items()}
        domains = {i: domain for i, (_, domain) in merged.items() if domain != Domain()}
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._publish, endpoints, domains, synced)
        except RuntimeError:
            # The loop has closed; nobody is left to tell.
            self._stopping.set()

    # --- back on the event loop -------------------------------------------------------

    def _publish(self, endpoints: dict[str, str], domains: dict[str, Domain], synced: bool) -> None:
        # Domains first: a listener told of a new node may place on it at once.
        self._domains = domains
        previous = self._endpoints
        if endpoints != previous:
            for instance_id in sorted(endpoints.keys() - previous.keys()):
                logger.info("storage node %s is ready at %s", instance_id, endpoints[instance_id])
            for instance_id in sorted(previous.keys() - endpoints.keys()):
                logger.info("storage node %s is gone (was %s)", instance_id, previous[instance_id])
            for instance_id in sorted(endpoints.keys() & previous.keys()):
                if endpoints[instance_id] != previous[instance_id]:
                    logger.info(
                        "storage node %s moved from %s to %s",
                        instance_id,
                        previous[instance_id],
                        endpoints[instance_id],
                    )
            self._endpoints = endpoints
            self._notify()
        if synced:
            self._synced.set()


def _lines(response: Any) -> Iterator[str]:
    """The non-empty lines of a streamed response, as each arrives."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=True):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line.decode()
    if buffer.strip():
        yield buffer.decode()
