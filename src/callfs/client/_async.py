"""The asyncio client: :class:`AsyncClient`, the methods of :class:`~callfs.client.Client`
awaited (``list`` is an async iterator, ``stream`` an async context manager)."""

from __future__ import annotations

import asyncio
import inspect
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
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

AsyncWriteData = bytes | bytearray | memoryview | Readable | Iterable[bytes] | AsyncIterable[bytes]
"""What :meth:`AsyncClient.write` uploads: bytes, a binary file object (its ``read`` may
be a coroutine, as aiofiles' is), or a sync or async iterable of bytes."""


class AsyncByteStream(_core.StreamInfo):
    """A download's bytes, chunk by chunk (an async iterator), with what its headers say
    (``status``, ``etag``, ``size``, ``length``, ``content_range``, ``request_id``)."""

    def __init__(self, response: httpx.Response, chunk_size: int) -> None:
        super().__init__(response)
        self._chunks = response.aiter_bytes(chunk_size)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except httpx.TransportError as exc:
            raise TransportError(f"download broke off: {type(exc).__name__}: {exc}") from exc

    async def read(self) -> bytes:
        """Everything left, at once."""
        return b"".join([piece async for piece in self])


class AsyncClient:
    """An asyncio CallFS client (httpx underneath): the arguments of
    :class:`~callfs.client.Client`, with ``transport`` an ``httpx.AsyncBaseTransport``
    and ``sleep`` a coroutine function (default ``asyncio.sleep``). Use it as an async
    context manager, or await :meth:`aclose`.
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
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
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
        self._http = httpx.AsyncClient(
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
        return f"AsyncClient(url={self.url!r}, profile={self.profile!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- metadata ---------------------------------------------------------------

    async def stat(self, path: str) -> Entry:
        """See :meth:`Client.stat <callfs.client.Client.stat>`."""
        response = await self._request(Call("HEAD", _core.files_url(path), idempotent=True))
        return Entry.from_headers(path, response.headers)

    async def exists(self, path: str) -> bool:
        """See :meth:`Client.exists <callfs.client.Client.exists>`."""
        call = Call("HEAD", _core.files_url(path), idempotent=True)
        response = await self._send(call)
        try:
            if response.is_success:
                return True
            if response.status_code == 404:
                return False
            try:
                await self._raise(call, response)
            except NotADirectory:
                return False
        finally:
            await response.aclose()
        raise AssertionError("unreachable")  # pragma: no cover

    async def list(
        self,
        path: str = "/",
        *,
        recursive: bool = False,
        max_depth: int | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Entry]:
        """See :meth:`Client.list <callfs.client.Client.list>`; iterate with ``async for``."""
        cursor: str | None = None
        while True:
            params = _core.listing_params(recursive, max_depth, page_size, cursor)
            call = Call("GET", _core.directories_url(path), params=params, idempotent=True)
            response = await self._request(call)
            body = _core.json_object(response)
            for item in body.get("items") or ():
                yield Entry.from_json(item)
            cursor = body.get("next_cursor")
            if not cursor:
                return

    # --- bytes ------------------------------------------------------------------

    async def read(
        self, path: str, range: Range | None = None, *, if_none_match: str | None = None
    ) -> bytes:
        """See :meth:`Client.read <callfs.client.Client.read>`."""
        async with self.stream(path, range, if_none_match=if_none_match) as chunks:
            return await chunks.read()

    @asynccontextmanager
    async def stream(
        self,
        path: str,
        range: Range | None = None,
        *,
        chunk_size: int | None = None,
        if_none_match: str | None = None,
    ) -> AsyncIterator[AsyncByteStream]:
        """See :meth:`Client.stream <callfs.client.Client.stream>`::

        async with client.stream("/big.iso") as chunks:
            async for chunk in chunks: ...
        """
        headers = {}
        if range is not None:
            headers["Range"] = _core.range_header(range)
        if if_none_match is not None:
            headers["If-None-Match"] = _core.etag_header(if_none_match)
        call = Call("GET", _core.files_url(path), headers=headers, idempotent=True)
        response = await self._request(call, stream=True)
        try:
            if response.headers.get("x-callfs-type") == "directory":
                raise IsADirectory(
                    f"{_core.canonical(path)} is a directory (list() lists it)",
                    status=400,
                    request_id=response.headers.get("x-request-id"),
                )
            yield AsyncByteStream(response, chunk_size or self.chunk_size)
        finally:
            await response.aclose()

    async def write(
        self,
        path: str,
        data: AsyncWriteData,
        *,
        create_only: bool = False,
        if_match: str | None = None,
        if_none_match: str | None = None,
        mode: int | None = None,
    ) -> Entry:
        """See :meth:`Client.write <callfs.client.Client.write>`; ``data`` may also be an
        async iterable of bytes or a file whose ``read`` is a coroutine."""
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
        response = await self._request(replace(call, content=content))
        entry = Entry.from_json(_core.json_object(response))
        if mode is not None and not create_only and response.status_code == 201:
            entry = await self.chmod(entry.path, mode)
        return entry

    # --- namespace --------------------------------------------------------------

    async def mkdir(self, path: str, *, parents: bool = False, mode: int | None = None) -> Entry:
        """See :meth:`Client.mkdir <callfs.client.Client.mkdir>`."""
        target = _core.canonical(path)
        if not parents and target != "/":
            await self._require_parent(target)
        params = {"mode": format_mode(mode)} if mode is not None else {}
        response = await self._request(
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

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        """See :meth:`Client.delete <callfs.client.Client.delete>`."""
        params = {"recursive": "true"} if recursive else {}
        call = Call("DELETE", _core.files_url(path), params=params, idempotent=True)
        await self._request(call)

    async def move(
        self, src: str, dst: str, *, overwrite: bool = False, create_parents: bool = False
    ) -> Entry:
        """See :meth:`Client.move <callfs.client.Client.move>`."""
        body = {
            "destination": _core.as_directory(dst) if dst.endswith("/") else _core.canonical(dst),
            "overwrite": overwrite,
            "create_parents": create_parents,
        }
        return await self._patch(src, body)

    async def rename(self, path: str, new_name: str) -> Entry:
        """See :meth:`Client.rename <callfs.client.Client.rename>`."""
        return await self._patch(path, {"name": new_name})

    async def chmod(self, path: str, mode: int) -> Entry:
        """See :meth:`Client.chmod <callfs.client.Client.chmod>`."""
        return await self._patch(path, {"mode": format_mode(mode)})

    # --- links and system -------------------------------------------------------

    async def link(self, path: str, expiry_seconds: int = 3600) -> Link:
        """See :meth:`Client.link <callfs.client.Client.link>`."""
        body = {"path": _core.canonical(path), "expiry_seconds": expiry_seconds}
        response = await self._request(Call("POST", _core.LINKS, json=body))
        return Link.from_json(_core.json_object(response))

    async def download(self, link: Link | str) -> bytes:
        """See :meth:`Client.download <callfs.client.Client.download>`."""
        async with self.download_stream(link) as chunks:
            return await chunks.read()

    @asynccontextmanager
    async def download_stream(
        self, link: Link | str, *, chunk_size: int | None = None
    ) -> AsyncIterator[AsyncByteStream]:
        """See :meth:`Client.download_stream <callfs.client.Client.download_stream>`."""
        call = Call("GET", _core.download_url(link), authenticated=False)
        response = await self._request(call, stream=True)
        try:
            yield AsyncByteStream(response, chunk_size or self.chunk_size)
        finally:
            await response.aclose()

    async def health(self) -> dict[str, Any]:
        """See :meth:`Client.health <callfs.client.Client.health>`."""
        return _core.json_object(await self._request(Call("GET", "/health", idempotent=True)))

    async def ready(self) -> bool:
        """See :meth:`Client.ready <callfs.client.Client.ready>`."""
        call = Call("GET", "/ready", idempotent=True, retry_statuses=False)
        response = await self._send(call)
        try:
            if response.status_code == 503:
                return False
            if response.is_success:
                return True
            await self._raise(call, response)
        finally:
            await response.aclose()
        raise AssertionError("unreachable")  # pragma: no cover

    async def cluster(self) -> dict[str, Any]:
        """See :meth:`Client.cluster <callfs.client.Client.cluster>`."""
        call = Call("GET", "/v1/admin/cluster", idempotent=True)
        return _core.json_object(await self._request(call))

    # --- plumbing ---------------------------------------------------------------

    async def _patch(self, path: str, body: dict[str, Any]) -> Entry:
        response = await self._request(Call("PATCH", _core.files_url(path), json=body))
        return Entry.from_json(_core.json_object(response))

    async def _require_parent(self, target: str) -> None:
        above = _core.parent(target)
        if above == "/":
            return
        call = Call("HEAD", _core.files_url(above), idempotent=True)
        response = await self._send(call)
        try:
            if response.status_code == 404:
                raise NotFound(
                    f"{above} does not exist (mkdir parents=True creates it)",
                    status=404,
                    request_id=response.headers.get("x-request-id"),
                )
            if not response.is_success:
                await self._raise(call, response)
            if response.headers.get("x-callfs-type") != "directory":
                raise NotADirectory(
                    f"{above} is not a directory",
                    status=400,
                    request_id=response.headers.get("x-request-id"),
                )
        finally:
            await response.aclose()

    def _body(self, data: AsyncWriteData) -> tuple[Any, bool, int | None]:
        """``(content, replayable, length)`` for httpx (streams as async iterators)."""
        if _core.is_bytes(data):
            return bytes(data), True, None  # type: ignore[arg-type]
        if isinstance(data, Readable):
            length = _core.remaining_length(data)
            return _file_chunks(data, self.chunk_size), False, length
        if isinstance(data, AsyncIterable):
            return _async_chunks(data), False, None
        if isinstance(data, Iterable):
            return _sync_chunks(data), False, None
        raise TypeError(f"cannot upload {type(data).__name__}")

    async def _request(self, call: Call, *, stream: bool = False) -> httpx.Response:
        """Send ``call``; the answer if it is a success, else raise its error."""
        response = await self._send(call, stream=stream)
        if response.status_code < 300:
            return response
        try:
            await self._raise(call, response)
        finally:
            await response.aclose()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
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
                response = await self._http.send(request, stream=stream)
            except _core.RETRYABLE_ERRORS as exc:
                if not (call.idempotent and attempt < self.retry.total):
                    raise _core.transport_error(exc, call) from exc
                await self._sleep(_core.retry_delay(self.retry, attempt, None))
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
                await response.aclose()
                await self._sleep(_core.retry_delay(self.retry, attempt, response))
                attempt += 1
                continue
            return response

    async def _raise(self, call: Call, response: httpx.Response) -> None:
        """See ``Client._raise``: a ``HEAD``'s error is asked again as a ``GET``."""
        if call.method == "HEAD" and _core.probe_head_error(response.status_code):
            probe = Call("GET", call.url, params=call.params, idempotent=True)
            again = await self._send(probe, stream=True)
            try:
                if again.status_code >= 300:
                    raise _core.error_from(again, await _error_body(again))
            finally:
                await again.aclose()
            raise _core.error_from(response, b"")
        raise _core.error_from(response, await _error_body(response))


async def _error_body(response: httpx.Response) -> bytes:
    try:
        return response.content[: _core.MAX_ERROR_BODY]
    except httpx.ResponseNotRead:
        pass
    body = b""
    try:
        async for piece in response.aiter_bytes():
            body += piece
            if len(body) >= _core.MAX_ERROR_BODY:
                break
    except httpx.HTTPError:
        pass
    return body[: _core.MAX_ERROR_BODY]


async def _file_chunks(source: Readable, size: int) -> AsyncIterator[bytes]:
    """A file read ``size`` bytes at a time; its ``read`` may be a coroutine (aiofiles)."""
    while True:
        result = source.read(size)
        if inspect.isawaitable(result):
            result = await result
        data = _core.chunk(result)
        if not data:
            return
        yield data


async def _async_chunks(source: AsyncIterable[Any]) -> AsyncIterator[bytes]:
    async for value in source:
        data = _core.chunk(value)
        if data:
            yield data


async def _sync_chunks(source: Iterable[Any]) -> AsyncIterator[bytes]:
    for data in _core.iterable_chunks(source):
        yield data


__all__ = ["AsyncByteStream", "AsyncClient", "AsyncWriteData"]
