"""A small real Kubernetes API server: EndpointSlice list and watch over HTTP, with fault controls.

It speaks the wire protocol the ``kubernetes`` client uses for
``/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices``: a list answers an
``EndpointSliceList`` with ``metadata.resourceVersion``; a watch streams chunked JSON
lines ``{"type": ..., "object": ...}`` from the requested resourceVersion. Like etcd,
it keeps a history of changes, which ``compact()`` forgets: a watch from before the
compaction is refused with 410 Gone, as an ERROR event or as an HTTP 410.

It runs on the test's event loop; the client under test runs in its own thread.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import kubernetes.client
from aiohttp import web

ENDPOINTSLICES = "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

_END = "end"
_DROP = "drop"


def endpoint(
    pod: str | None,
    address: str,
    *,
    ready: bool | None = True,
    terminating: bool | None = None,
    hostname: str | None = None,
    zone: str | None = None,
    node_name: str | None = None,
) -> dict[str, Any]:
    """One EndpointSlice endpoint; ``None`` conditions and fields are left out, as the API
    allows.
    """
    conditions: dict[str, bool] = {}
    if ready is not None:
        conditions["ready"] = ready
        conditions["serving"] = ready
    if terminating is not None:
        conditions["terminating"] = terminating
    item: dict[str, Any] = {"addresses": [address], "conditions": conditions}
    if pod is not None:
        item["targetRef"] = {"kind": "Pod", "name": pod, "namespace": "default"}
    if hostname is not None:
        item["hostname"] = hostname
    if zone is not None:
        item["zone"] = zone
    if node_name is not None:
        item["nodeName"] = node_name
    return item


def grpc_ports(port: int = 50051) -> list[dict[str, Any]]:
    """The ports of a storage-node slice: a named ``grpc`` port and a metrics port."""
    return [
        {"name": "metrics", "port": 9090, "protocol": "TCP"},
        {"name": "grpc", "port": port, "protocol": "TCP"},
    ]


def _gone(requested: int, oldest: int) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"too old resource version: {requested} ({oldest})",
        "reason": "Expired",
        "code": 410,
    }


def _selected(item: dict[str, Any], namespace: str, selector: dict[str, str]) -> bool:
    metadata = item["metadata"]
    labels = metadata.get("labels") or {}
    return metadata["namespace"] == namespace and all(
        labels.get(key) == value for key, value in selector.items()
    )


def _parse_selector(text: str) -> dict[str, str]:
    selector: dict[str, str] = {}
    for term in filter(None, text.split(",")):
        key, _, value = term.replace("==", "=").partition("=")
        selector[key.strip()] = value.strip()
    return selector


@dataclass(eq=False)
class _Watch:
    namespace: str
    selector: dict[str, str]
    bookmarks: bool
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | str] = field(default_factory=asyncio.Queue)


class KubernetesAPIServer:
    """An EndpointSlice list/watch API on 127.0.0.1, restartable on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self.version = 1
        self.compacted = 0
        self.gone_as: Literal["event", "http"] = "event"
        self.list_requests = 0
        self.watch_requests: list[dict[str, str]] = []
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._history: list[tuple[int, str, dict[str, Any]]] = []
        self._watches: set[_Watch] = set()
        self._runner: web.AppRunner | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (on the same port as before, after a stop)."""
        app = web.Application()
        app.router.add_get(ENDPOINTSLICES, self._endpointslices)
        runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Drop every watch and stop listening; the stored slices survive, as in etcd."""
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self) -> None:
        """Stop and start again on the same port."""
        await self.stop()
        await self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api_client(self) -> kubernetes.client.ApiClient:
        """A real ``kubernetes`` client for this server (the caller closes it)."""
        configuration = kubernetes.client.Configuration(host=self.url)
        return kubernetes.client.ApiClient(configuration)

    def kubeconfig(self) -> dict[str, Any]:
        """A kubeconfig document pointing at this server."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": "test-token"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            "current-context": "test",
        }

    # --- changes ------------------------------------------------------------------------

    def apply_slice(
        self,
        name: str,
        *,
        service: str,
        endpoints: list[dict[str, Any]],
        ports: list[dict[str, Any]] | None = None,
        namespace: str = "default",
    ) -> dict[str, Any]:
        """Create or replace an EndpointSlice of ``service`` (ADDED or MODIFIED)."""
        key = (namespace, name)
        kind = "MODIFIED" if key in self._objects else "ADDED"
        self.version += 1
        item = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": str(self.version),
                "labels": {SERVICE_NAME_LABEL: service},
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": grpc_ports() if ports is None else ports,
        }
        self._objects[key] = item
        self._record(kind, item)
        return item

    def delete_slice(self, name: str, namespace: str = "default") -> None:
        """Delete an EndpointSlice (DELETED carries its last state)."""
        item = self._objects.pop((namespace, name))
        self.version += 1
        gone = json.loads(json.dumps(item))
        gone["metadata"]["resourceVersion"] = str(self.version)
        self._record("DELETED", gone)

    def bookmark(self) -> None:
        """Send a BOOKMARK at the current resourceVersion to every watch that allows them."""
        event = {
            "kind": "EndpointSlice",
            "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"resourceVersion": str(self.version)},
        }
        for watch in self._watches:
            if watch.bookmarks:
                watch.queue.put_nowait(("BOOKMARK", event))

    def compact(self) -> None:
        """Forget the history: a watch from an older resourceVersion gets 410 Gone."""
        self.compacted = self.version
        self._history.clear()

    def send_gone(self) -> None:
        """End every open watch with an ERROR event carrying a 410 Status."""
        for watch in self._watches:
            watch.queue.put_nowait(("ERROR", _gone(self.compacted, self.version)))
            watch.queue.put_nowait(_END)
        self._watches.clear()

    def end_watches(self) -> None:
        """End every open watch cleanly, as the server does at ``timeoutSeconds``."""
        for watch in self._watches:
            watch.queue.put_nowait(_END)
        self._watches.clear()

    def drop_watches(self) -> None:
        """Cut every open watch connection without ending its stream properly."""
        for watch in self._watches:
            watch.queue.put_nowait(_DROP)
        self._watches.clear()

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    def _record(self, kind: str, item: dict[str, Any]) -> None:
        self._history.append((self.version, kind, item))
        for watch in self._watches:
            if _selected(item, watch.namespace, watch.selector):
                watch.queue.put_nowait((kind, item))

    # --- HTTP ---------------------------------------------------------------------------

    async def _endpointslices(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        query = request.query
        selector = _parse_selector(query.get("labelSelector", ""))
        if query.get("watch") not in ("true", "1"):
            self.list_requests += 1
            items = [
                item
                for (ns, _), item in sorted(self._objects.items())
                if _selected(item, namespace, selector)
            ]
            return web.json_response(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSliceList",
                    "metadata": {"resourceVersion": str(self.version)},
                    "items": items,
                }
            )
        self.watch_requests.append(dict(query))
        return await self._watch(request, namespace, selector)

    async def _watch(
        self, request: web.Request, namespace: str, selector: dict[str, str]
    ) -> web.StreamResponse:
        query = request.query
        requested = query.get("resourceVersion", "")
        if requested in ("", "0"):
            backlog = [
                ("ADDED", item)
                for item in self._objects.values()
                if _selected(item, namespace, selector)
            ]
        else:
            since = int(requested)
            if since < self.compacted:
                return await self._refuse_gone(request, since)
            backlog = [
                (kind, item)
                for version, kind, item in self._history
                if version > since and _selected(item, namespace, selector)
            ]
        # Snapshot and registration happen with no await between: no change is lost.
        watch = _Watch(namespace, selector, query.get("allowWatchBookmarks") in ("true", "1"))
        self._watches.add(watch)
        timeout = float(query.get("timeoutSeconds", "1800"))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            for kind, item in backlog:
                await _send(response, kind, item)
            async with asyncio.timeout(timeout):
                while True:
                    entry = await watch.queue.get()
                    if entry == _END:
                        break
                    if entry == _DROP:
                        if request.transport is not None:
                            request.transport.abort()
                        return response
                    assert isinstance(entry, tuple)
                    await _send(response, *entry)
        except TimeoutError:
            pass
        except ConnectionError:
            return response
        finally:
            self._watches.discard(watch)
        await response.write_eof()
        return response

    async def _refuse_gone(self, request: web.Request, since: int) -> web.StreamResponse:
        status = _gone(since, self.compacted)
        if self.gone_as == "http":
            return web.json_response(status, status=410)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await _send(response, "ERROR", status)
        await response.write_eof()
        return response


async def _send(response: web.StreamResponse, kind: str, item: dict[str, Any]) -> None:
    await response.write(json.dumps({"type": kind, "object": item}).encode() + b"\n")
