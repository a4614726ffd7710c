"""The namespace section's clients: one directory of many small files, listed in pages
and whole, renamed, deleted; latency probes meanwhile; disk usage.

Every request the harness times goes through :class:`Http`, one keep-alive
``http.client`` connection, the same plain client for every server; the server's
own spelling of each operation is in :class:`CallFSNamespace` and
:class:`FilerNamespace`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from benchmarks.load import LoadError
from benchmarks.servers import Endpoint

HTTP_TIMEOUT = 900.0
# The largest page CallFS serves (``limit`` <= 100000); the unpaged listings ask for it.
UNPAGED_LIMIT = 100_000
_PROJECT = Path(__file__).resolve().parents[1]


class Http:
    """One keep-alive HTTP/1.1 connection to a server, with its authentication headers."""

    def __init__(self, base: str, headers: Mapping[str, str]) -> None:
        parts = urllib.parse.urlsplit(base)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port
        self.headers = dict(headers)
        self._connection: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Send one request and read the whole answer: its status and body.

        A GET on a connection the server closed meanwhile is sent again on a new one.
        """
        for attempt in range(2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=HTTP_TIMEOUT
                )
            try:
                self._connection.request(
                    method, target, body=body, headers={**self.headers, **(headers or {})}
                )
                response = self._connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt or method != "GET":
                    raise
        raise AssertionError("unreachable")

    def expect(
        self,
        method: str,
        target: str,
        statuses: Sequence[int],
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """:meth:`request`, the answer's body if its status is one of ``statuses``.

        Raises:
            LoadError: any other status.
        """
        status, answer = self.request(method, target, body, headers)
        if status not in statuses:
            raise LoadError(f"{method} {target} answered {status}: {answer[:300]!r}")
        return answer

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _header_map(endpoint: Endpoint) -> dict[str, str]:
    """The endpoint's ``-H`` values as a header dict."""
    return dict(line.split(": ", 1) for line in endpoint.headers)


def _quote(path: str) -> str:
    return urllib.parse.quote(path, safe="/")


class Namespace:
    """How one server does each namespace operation, over :class:`Http`.

    ``endpoint`` is where wrk creates files; ``data`` the server's data folder (for
    disk usage). Paths are relative, without a leading slash.
    """

    create_method = "PUT"
    create_status = 201
    health_path: str | None = None

    def __init__(self, endpoint: Endpoint, root: str, data: Path) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.root = root
        self.data = data
        self.http = Http(root, _header_map(endpoint))

    def file_target(self, path: str) -> str:
        """The request target of the file ``path``."""
        return urllib.parse.urlsplit(self.endpoint.url(_quote(path))).path

    def put(self, path: str, data: bytes) -> None:
        """Create the file ``path`` holding ``data``."""
        self.http.expect(self.create_method, self.file_target(path), (200, 201), data)

    def get(self, path: str) -> bytes:
        """The content of the file ``path``."""
        return self.http.expect("GET", self.file_target(path), (200,))

    def make_directory(self, path: str) -> None:
        """Create the directory ``path`` where the server has directories of their own."""

    def listing_headers(self) -> dict[str, str]:
        """The headers a listing needs."""
        return {}

    def page(self, directory: str, limit: int, cursor: str | None) -> tuple[int, str | None]:
        """One page of ``directory``'s listing: its entries, and the cursor of the next
        page (None after the last).
        """
        raise NotImplementedError

    def unpaged(self, directory: str) -> dict[str, str]:
        """Each form of listing ``directory`` whole in one request: form -> target."""
        raise NotImplementedError

    def count(self, form: str, body: bytes) -> int:
        """The entries in the answer ``body`` of the unpaged listing ``form``."""
        raise NotImplementedError

    def small_listing(self, directory: str) -> str:
        """The request target of a non-recursive listing of ``directory``."""
        raise NotImplementedError

    def rename(self, directory: str, name: str) -> None:
        """Rename ``directory`` in place to ``name``."""
        raise NotImplementedError

    def delete_tree(self, directory: str) -> None:
        """Delete ``directory`` and everything below it."""
        raise NotImplementedError

    def list_all(self, directory: str, limit: int) -> tuple[int, int]:
        """Follow the pages of ``limit`` through ``directory``: entries and pages read."""
        entries, pages, cursor = 0, 0, None
        while True:
            found, cursor = self.page(directory, limit, cursor)
            entries += found
            pages += 1
            if cursor is None:
                return entries, pages


class CallFSNamespace(Namespace):
    """``callfs dev``: ``/v1/files`` for files, ``/v1/directories`` for listings."""

    create_method = "POST"
    health_path = "/health"

    def make_directory(self, path: str) -> None:
        self.http.expect("POST", self.file_target(path) + "/", (200, 201))

    def page(self, directory: str, limit: int, cursor: str | None) -> tuple[int, str | None]:
        query = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        target = f"/v1/directories/{_quote(directory)}?{urllib.parse.urlencode(query)}"
        listing = json.loads(self.http.expect("GET", target, (200,)))
        return len(listing["items"]), listing["next_cursor"]

    def unpaged(self, directory: str) -> dict[str, str]:
        return {
            "directories": f"/v1/directories/{_quote(directory)}?limit={UNPAGED_LIMIT}",
            "files": self.file_target(directory) + "/",
        }

    def count(self, form: str, body: bytes) -> int:
        listing = json.loads(body)
        return len(listing["items"] if form == "directories" else listing)

    def small_listing(self, directory: str) -> str:
        return f"/v1/directories/{_quote(directory)}"

    def rename(self, directory: str, name: str) -> None:
        body = json.dumps({"name": name}).encode()
        headers = {"Content-Type": "application/json"}
        self.http.expect("PATCH", self.file_target(directory), (200,), body, headers)

    def delete_tree(self, directory: str) -> None:
        self.http.expect("DELETE", self.file_target(directory) + "?recursive=true", (200, 204))


class FilerNamespace(Namespace):
    """The SeaweedFS filer: ``PUT`` creates a file (and its parents), a directory lists as
    JSON with ``Accept: application/json`` in pages of ``limit`` after ``lastFileName``,
    ``POST dst?mv.from=src`` renames.
    """

    health_path = "/healthz"
    _json = {"Accept": "application/json"}

    def _listing(self, directory: str, query: Mapping[str, str]) -> str:
        target = self.file_target(directory) + "/"
        return f"{target}?{urllib.parse.urlencode(query)}" if query else target

    def page(self, directory: str, limit: int, cursor: str | None) -> tuple[int, str | None]:
        query = {"limit": str(limit)} | ({"lastFileName": cursor} if cursor else {})
        target = self._listing(directory, query)
        listing = json.loads(self.http.expect("GET", target, (200,), headers=self._json))
        more = listing.get("ShouldDisplayLoadMore") and listing.get("LastFileName")
        return len(listing.get("Entries") or []), listing["LastFileName"] if more else None

    def unpaged(self, directory: str) -> dict[str, str]:
        # The filer has one form; it is measured next to each of CallFS's.
        target = self._listing(directory, {"limit": str(UNPAGED_LIMIT)})
        return {"directories": target, "files": target}

    def count(self, form: str, body: bytes) -> int:
        return len(json.loads(body).get("Entries") or [])

    def small_listing(self, directory: str) -> str:
        return self._listing(directory, {})

    def rename(self, directory: str, name: str) -> None:
        source = self.file_target(directory)
        target = source.rsplit("/", 1)[0] + "/" + _quote(name)
        query = urllib.parse.urlencode({"mv.from": source})
        self.http.expect("POST", f"{target}?{query}", (200, 201, 204))

    def delete_tree(self, directory: str) -> None:
        self.http.expect("DELETE", self.file_target(directory) + "?recursive=true", (200, 204))

    def listing_headers(self) -> dict[str, str]:
        return dict(self._json)


def timed(namespace: Namespace, target: str) -> tuple[float, bytes]:
    """GET ``target`` (a listing): the seconds until the whole answer was read, and it."""
    headers = namespace.listing_headers()
    start = time.perf_counter()
    body = namespace.http.expect("GET", target, (200,), headers=headers)
    return time.perf_counter() - start, body


def median_ms(namespace: Namespace, target: str, times: int) -> tuple[float, list[float]]:
    """GET ``target`` ``times`` times: the median milliseconds, and every run's."""
    runs = [timed(namespace, target)[0] * 1000 for _ in range(times)]
    return statistics.median(runs), runs


def percentile(values: Sequence[float], percent: float) -> float | None:
    """The nearest-rank ``percent`` percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Sample:
    """One probe request: when it started (perf_counter), how long it took, its status."""

    start: float
    ms: float
    status: int


class Poller:
    """A ``benchmarks.poll`` process GETting one URL every 10 ms while in the ``with``."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        self.command = [
            sys.executable,
            "-m",
            "benchmarks.poll",
            url,
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self.samples: list[Sample] = []
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            self.command,
            cwd=_PROJECT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            self._stop()
            raise LoadError(f"the poller {self.command[3:]} did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            output, _ = process.communicate(input="", timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        lines = output.strip().splitlines()
        if lines:
            self.samples = [Sample(*sample) for sample in json.loads(lines[-1])]

    def between(self, start: float, end: float) -> list[Sample]:
        """The requests that started from ``start`` to ``end`` (perf_counter seconds)."""
        return [sample for sample in self.samples if start <= sample.start <= end]


def probe_summary(samples: Sequence[Sample]) -> dict[str, Any]:
    """Requests, failures, p50, p99 and max (ms) of ``samples``."""
    answered = [sample.ms for sample in samples if 200 <= sample.status < 300]
    return {
        "requests": len(samples),
        "failed": len(samples) - len(answered),
        "p50_ms": _rounded(percentile(answered, 50)),
        "p99_ms": _rounded(percentile(answered, 99)),
        "max_ms": _rounded(max(answered, default=None)),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def disk_usage(root: Path) -> tuple[int, int]:
    """What the files under ``root`` take on disk (allocated blocks, like ``du``), and
    their apparent size, in bytes; files removed meanwhile are skipped.
    """
    blocks = apparent = 0
    for folder, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                info = os.lstat(os.path.join(folder, name))
                blocks += info.st_blocks * 512
                apparent += info.st_size
    return blocks, apparent


def file_count(root: Path) -> int:
    """The regular files under ``root`` (objects, their checksum sidecars, temp files)."""
    return sum(len(names) for _, _, names in os.walk(root))
