"""The blocking client: :class:`Client`."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

import httpx

from callfs.client import _core
from callfs.client._core import Call, Range, Readable, Retry
from callfs.client.config import resolve
from callfs.client.errors import (
    AlreadyExists,
    IsADirectory,
    NotADirectory,
    NotFound,
    TransportError,
)
from callfs.client.models import Entry, Link, format_mode

WriteData = bytes | bytearray | memoryview | Readable | Iterable[bytes]
"""What :meth:`Client.write` uploads: bytes, a binary file object, or an iterable of bytes."""


class ByteStream(_core.StreamInfo):
    """A download's bytes, chunk by chunk (an iterator), with what its headers say
    (``status``, ``etag``, ``size``, ``length``, ``content_range``, ``request_id``)."""

    def __init__(self, response: httpx.Response, chunk_size: int) -> None:
        super().__init__(response)
        self._chunks = response.iter_bytes(chunk_size)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except httpx.TransportError as exc:
            raise TransportError(f"download broke off: {type(exc).__name__}: {exc}") from exc

    def read(self) -> bytes:
        """Everything left, at once."""
        return b"".join(self)


class Client:
    """A blocking CallFS client (httpx underneath). Use it as a context manager, or
    call :meth:`close`.

    Args:
        url: the gateway's base URL (``http://127.0.0.1:8443``); else ``CALLFS_URL``,
            else the profile's (see :mod:`callfs.client.config`).
        api_key: the key sent as ``Authorization: Bearer``; else ``CALLFS_API_KEY``,
            else the profile's.
        profile: the profile of ``~/.config/callfs/config.yaml`` to use (else
            ``CALLFS_PROFILE``, else the file's ``default_profile``).
        timeout: seconds per connect/read/write/pool wait (default 30, or the profile's),
            or an ``httpx.Timeout`` (``httpx.Timeout(None)``: none).
        verify: TLS verification: True, False, a CA bundle path, or an ``ssl.SSLContext``.
        retries: retries of idempotent requests (int), or a :class:`Retry`; 0 or None: none.
        chunk_size: bytes per upload chunk read from a file, and per downloaded chunk.
        transport: an ``httpx.BaseTransport`` to send through (tests, proxies).
        sleep: how to wait between retries (default ``time.sleep``).
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        profile: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        verify: bool | str | ssl.SSLContext | None = None,
        retries: int | Retry | None = 3,
        chunk_size: int = _core.DEFAULT_CHUNK_SIZE,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        settings = resolve(
            url,
            api_key,
            profile=profile,
            verify=verify if isinstance(verify, bool | str) else None,
            timeout=timeout if isinstance(timeout, int | float) else None,
        )
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.url = settings.url
        self.profile = settings.profile
        self.retry = Retry.of(retries)
        self.chunk_size = chunk_size
        self._sleep = sleep
        self._auth = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        tls = verify if isinstance(verify, ssl.SSLContext) else settings.verify
        self._http = httpx.Client(
            base_url=self.url + "/",
            headers={"User-Agent": _core.USER_AGENT},
            timeout=_core.timeout_option(
                timeout if isinstance(timeout, httpx.Timeout) else settings.timeout
            ),
            verify=_core.verify_option(tls),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, profile={self.profile!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- metadata ---------------------------------------------------------------

    def stat(self, path: str) -> Entry:
        """The metadata of a file or directory (a ``HEAD``; see :class:`Entry` on ctime).

        Raises:
            NotFound, PermissionDenied (reading a file's metadata needs read permission
            on it), NotADirectory (``"file/"``), InvalidPath…
        """
        response = self._request(Call("HEAD", _core.files_url(path), idempotent=True))
        return Entry.from_headers(path, response.headers)

    def exists(self, path: str) -> bool:
        """Whether ``path`` names an entry (False too for ``"file/"``).

        Raises:
            PermissionDenied: the entry may exist but the caller may not see it.
        """
        call = Call("HEAD", _core.files_url(path), idempotent=True)
        response = self._send(call)
        with closing(response):
            if response.is_success:
                return True
            if response.status_code == 404:
                return False
            try:
                self._raise(call, response)
            except NotADirectory:
                return False
        raise AssertionError("unreachable")  # pragma: no cover

    def list(
        self,
        path: str = "/",
        *,
        recursive: bool = False,
        max_depth: int | None = None,
        page_size: int | None = None,
    ) -> Iterator[Entry]:
        """The entries of a directory sorted by path, fetched a page at a time as the
        iteration goes (``page_size`` entries per request, default 1000).

        ``recursive`` lists the whole subtree, to ``max_depth`` levels below ``path``
        (0: children only; default: the server's limit). Errors are raised by the
        iteration (the first page is asked for by the first ``next``).
        """
        cursor: str | None = None
        while True:
            params = _core.listing_params(recursive, max_depth, page_size, cursor)
            call = Call("GET", _core.directories_url(path), params=params, idempotent=True)
            response = self._request(call)
            body = _core.json_object(response)
            for item in body.get("items") or ():
                yield Entry.from_json(item)
            cursor = body.get("next_cursor")
            if not cursor:
                return

    # --- bytes ------------------------------------------------------------------

    def read(
        self, path: str, range: Range | None = None, *, if_none_match: str | None = None
    ) -> bytes:
        """A file's bytes, whole or ``range`` (``(start, end)`` inclusive, ``start``, or
        ``-n`` for the last n bytes).

        Raises:
            NotModified: ``if_none_match`` names the file's current ETag (or is ``*``).
            IsADirectory: ``path`` is a directory.
            RangeNotSatisfiable: the range starts past the end (``.size`` tells the size).
        """
        with self.stream(path, range, if_none_match=if_none_match) as chunks:
            return chunks.read()

    @contextmanager
    def stream(
        self,
        path: str,
        range: Range | None = None,
        *,
        chunk_size: int | None = None,
        if_none_match: str | None = None,
    ) -> Iterator[ByteStream]:
        """A file's bytes as an iterator of chunks, never held whole::

            with client.stream("/big.iso", range=(0, 1023)) as chunks:
                for chunk in chunks: ...

        Opening it is retried like any GET; a download that breaks off midway raises
        :class:`TransportError` from the iteration (resume with ``range``).
        """
        headers = {}
        if range is not None:
            headers["Range"] = _core.range_header(range)
        if if_none_match is not None:
            headers["If-None-Match"] = _core.etag_header(if_none_match)
        call = Call("GET", _core.files_url(path), headers=headers, idempotent=True)
        response = self._request(call, stream=True)
        try:
            if response.headers.get("x-callfs-type") == "directory":
                raise IsADirectory(
                    f"{_core.canonical(path)} is a directory (list() lists it)",
                    status=400,
                    request_id=response.headers.get("x-request-id"),
                )
            yield ByteStream(response, chunk_size or self.chunk_size)
        finally:
            response.close()

    def write(
        self,
        path: str,
        data: WriteData,
        *,
        create_only: bool = False,
        if_match: str | None = None,
        if_none_match: str | None = None,
        mode: int | None = None,
    ) -> Entry:
        """Create or replace a file with ``data`` (``PUT``), atomically; returns the entry.

        ``data`` is bytes (retried like any idempotent request), a binary file object
        (read ``chunk_size`` at a time) or an iterable of bytes (sent as it yields):
        never read whole. Missing parent directories are created (0755).

        Args:
            create_only: create, never replace (``POST``): :class:`AlreadyExists` if
                anything is there. Never retried.
            if_match: replace only if the file's ETag is this one (else
                :class:`PreconditionFailed`; also when the file is absent).
            if_none_match: ``"*"``: create only (412 :class:`PreconditionFailed`, unlike
                ``create_only``'s 409), or an ETag the file must not have.
            mode: the new file's mode (``0o600``). With ``create_only`` it is set at
                creation; with ``PUT`` it is applied by a ``chmod`` right after the file
                was created (a replaced file keeps its mode, as with ``open(2)``).
        """
        _core.check_data(data)
        if path.endswith("/"):
            raise ValueError(f"write() takes a file path, not a directory: {path!r}")
        if create_only and (if_match is not None or if_none_match is not None):
            raise ValueError("create_only cannot be combined with if_match/if_none_match")
        content, replayable, length = self._body(data)
        headers = {"Content-Type": "application/octet-stream"}
        if length is not None:
            headers["Content-Length"] = str(length)
        if create_only:
            params = {"mode": format_mode(mode)} if mode is not None else {}
            call = Call("POST", _core.files_url(path), params=params, headers=headers)
        else:
            if if_match is not None:
                headers["If-Match"] = _core.etag_header(if_match)
            if if_none_match is not None:
                headers["If-None-Match"] = _core.etag_header(if_none_match)
            call = Call("PUT", _core.files_url(path), headers=headers, idempotent=replayable)
        response = self._request(replace(call, content=content))
        entry = Entry.from_json(_core.json_object(response))
        if mode is not None and not create_only and response.status_code == 201:
            entry = self.chmod(entry.path, mode)
        return entry

    # --- namespace --------------------------------------------------------------

    def mkdir(self, path: str, *, parents: bool = False, mode: int | None = None) -> Entry:
        """Create a directory, like ``mkdir`` (``parents=True``: like ``mkdir -p``).

        The API always creates missing parents and answers 200 for an existing
        directory; the client gives ``mkdir``'s answers: without ``parents``, a missing
        parent raises :class:`NotFound` (checked first, by a ``HEAD``) and an existing
        directory :class:`AlreadyExists`. ``mode`` applies to ``path`` (parents created
        by ``parents=True`` get the server's default, 0755).
        """
        target = _core.canonical(path)
        if not parents and target != "/":
            self._require_parent(target)
        params = {"mode": format_mode(mode)} if mode is not None else {}
        response = self._request(
            Call("POST", _core.files_url(_core.as_directory(target)), params=params)
        )
        entry = Entry.from_json(_core.json_object(response))
        if response.status_code == 200 and not parents:
            raise AlreadyExists(
                f"{target} already exists (a directory)",
                status=409,
                request_id=response.headers.get("x-request-id"),
            )
        return entry

    def delete(self, path: str, *, recursive: bool = False) -> None:
        """Delete a file or an empty directory; ``recursive`` deletes a whole subtree.

        Raises:
            DirectoryNotEmpty: a directory with entries, without ``recursive``.
            NotFound: nothing there (also when a retried attempt follows one whose
                answer was lost after it deleted).
        """
        params = {"recursive": "true"} if recursive else {}
        self._request(Call("DELETE", _core.files_url(path), params=params, idempotent=True))

    def move(
        self, src: str, dst: str, *, overwrite: bool = False, create_parents: bool = False
    ) -> Entry:
        """Move ``src`` (a whole subtree for a directory) to the path ``dst``, atomically.

        Raises:
            AlreadyExists: ``dst`` exists and not ``overwrite``.
            NotFound: ``src`` is absent, or ``dst``'s parent is and not ``create_parents``.
            BadRequest: a directory into itself.
        """
        body = {
            "destination": _core.as_directory(dst) if dst.endswith("/") else _core.canonical(dst),
            "overwrite": overwrite,
            "create_parents": create_parents,
        }
        return self._patch(src, body)

    def rename(self, path: str, new_name: str) -> Entry:
        """Rename ``path`` within its directory to ``new_name`` (one segment)."""
        return self._patch(path, {"name": new_name})

    def chmod(self, path: str, mode: int) -> Entry:
        """Set the permission bits (``0o640``); only the owner (or root) may."""
        return self._patch(path, {"mode": format_mode(mode)})

    # --- links and system -------------------------------------------------------

    def link(self, path: str, expiry_seconds: int = 3600) -> Link:
        """A single-use download link to a file (1..86400 seconds)."""
        body = {"path": _core.canonical(path), "expiry_seconds": expiry_seconds}
        response = self._request(Call("POST", _core.LINKS, json=body))
        return Link.from_json(_core.json_object(response))

    def download(self, link: Link | str) -> bytes:
        """Consume a single-use link (a :class:`Link`, its URL or its token): the file's
        bytes. Sent without the API key, and never retried: a link serves once."""
        with self.download_stream(link) as chunks:
            return chunks.read()

    @contextmanager
    def download_stream(
        self, link: Link | str, *, chunk_size: int | None = None
    ) -> Iterator[ByteStream]:
        """:meth:`download` as an iterator of chunks (see :meth:`stream`)."""
        call = Call("GET", _core.download_url(link), authenticated=False)
        response = self._request(call, stream=True)
        try:
            yield ByteStream(response, chunk_size or self.chunk_size)
        finally:
            response.close()

    def health(self) -> dict[str, Any]:
        """``GET /health``: ``{"status": "ok", "checks": {...}}``."""
        return _core.json_object(self._request(Call("GET", "/health", idempotent=True)))

    def ready(self) -> bool:
        """``GET /ready``: whether the gateway can serve reads (503 is False, not an error)."""
        call = Call("GET", "/ready", idempotent=True, retry_statuses=False)
        with closing(self._send(call)) as response:
            if response.status_code == 503:
                return False
            if response.is_success:
                return True
            self._raise(call, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def cluster(self) -> dict[str, Any]:
        """``GET /v1/admin/cluster`` (root only): nodes, replication, repair."""
        call = Call("GET", "/v1/admin/cluster", idempotent=True)
        return _core.json_object(self._request(call))

    # --- plumbing ---------------------------------------------------------------

    def _patch(self, path: str, body: dict[str, Any]) -> Entry:
        response = self._request(Call("PATCH", _core.files_url(path), json=body))
        return Entry.from_json(_core.json_object(response))

    def _require_parent(self, target: str) -> None:
        """Raise NotFound when ``target``'s parent directory does not exist."""
        above = _core.parent(target)
        if above == "/":
            return
        call = Call("HEAD", _core.files_url(above), idempotent=True)
        with closing(self._send(call)) as response:
            if response.status_code == 404:
                raise NotFound(
                    f"{above} does not exist (mkdir parents=True creates it)",
                    status=404,
                    request_id=response.headers.get("x-request-id"),
                )
            if not response.is_success:
                self._raise(call, response)
            if response.headers.get("x-callfs-type") != "directory":
                raise NotADirectory(
                    f"{above} is not a directory",
                    status=400,
                    request_id=response.headers.get("x-request-id"),
                )

    def _body(self, data: WriteData) -> tuple[Any, bool, int | None]:
        """``(content, replayable, length)`` for httpx."""
        if _core.is_bytes(data):
            return bytes(data), True, None  # type: ignore[arg-type]
        if isinstance(data, Readable):
            length = _core.remaining_length(data)
            return _core.file_chunks(data, self.chunk_size), False, length
        if isinstance(data, Iterable):
            return _core.iterable_chunks(data), False, None
        raise TypeError(f"cannot upload {type(data).__name__}")

    def _request(self, call: Call, *, stream: bool = False) -> httpx.Response:
        """Send ``call``; the answer if it is a success, else raise its error."""
        response = self._send(call, stream=stream)
        if response.status_code < 300:
            return response
        with closing(response):
            self._raise(call, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        """Send ``call``, again after retryable failures when it is idempotent."""
        headers = {**(self._auth if call.authenticated else {}), **call.headers}
        attempt = 0
        while True:
            request = self._http.build_request(
                call.method,
                call.url,
                params=call.params or None,
                headers=headers,
                content=call.content,
                json=call.json,
            )
            try:
                response = self._http.send(request, stream=stream)
            except _core.RETRYABLE_ERRORS as exc:
                if not (call.idempotent and attempt < self.retry.total):
                    raise _core.transport_error(exc, call) from exc
                self._sleep(_core.retry_delay(self.retry, attempt, None))
                attempt += 1
                continue
            except httpx.HTTPError as exc:
                raise _core.transport_error(exc, call) from exc
            if (
                call.idempotent
                and call.retry_statuses
                and response.status_code in self.retry.statuses
                and attempt < self.retry.total
            ):
                response.close()
                self._sleep(_core.retry_delay(self.retry, attempt, response))
                attempt += 1
                continue
            return response

    def _raise(self, call: Call, response: httpx.Response) -> None:
        """Raise the error ``response`` (an error answer to ``call``) stands for.

        A ``HEAD`` answer has no body, hence no code: the same request is sent as a
        ``GET`` to learn it (its body, if it succeeds after all, is not read).
        """
        if call.method == "HEAD" and _core.probe_head_error(response.status_code):
            probe = Call("GET", call.url, params=call.params, idempotent=True)
            with closing(self._send(probe, stream=True)) as again:
                if again.status_code >= 300:
                    raise _core.error_from(again, self._error_body(again))
            raise _core.error_from(response, b"")
        raise _core.error_from(response, self._error_body(response))

    @staticmethod
    def _error_body(response: httpx.Response) -> bytes:
        try:
            return response.content[: _core.MAX_ERROR_BODY]
        except httpx.ResponseNotRead:
            pass
        body = b""
        try:
            for piece in response.iter_bytes():
                body += piece
                if len(body) >= _core.MAX_ERROR_BODY:
                    break
        except httpx.HTTPError:
            pass
        return body[: _core.MAX_ERROR_BODY]


__all__ = ["ByteStream", "Client", "WriteData"]
