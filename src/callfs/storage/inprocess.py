"""gRPC without the transport: a server's handlers called from a channel in the same
process and event loop.

``callfs dev`` runs its storage nodes in the gateway's process. Through a real channel,
every call to them crosses gRPC's C core twice, its threads and loopback TCP; through
:class:`InProcessChannel` the same call runs the node's handlers, behind the node's own
interceptors, as a task on the caller's loop. Requests and responses still go through
both sides' serializers, statuses come back as :class:`grpc.aio.AioRpcError`, and a
cancelled call cancels its handler, so the caller cannot tell the two apart.

Only what the storage-node backend uses is here: unary-unary, unary-stream and
stream-unary calls, with metadata, timeouts and cancellation; no compression, flow
control beyond a message or two in flight, or credentials.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from typing import Any, NamedTuple, TypeVar

import grpc

from callfs.storage.wire import INVERSES

logger = logging.getLogger(__name__)

T = TypeVar("T")

Metadata = tuple[tuple[str, str | bytes], ...]
# Messages a stream holds between its two sides: enough that neither waits on the other
# chunk by chunk, and at most a few MiB per stream (about what gRPC's flow control lets
# a stream buffer), however many streams are open.
IN_FLIGHT = 4


class _CallDetails(NamedTuple):
    """What a server interceptor is told of a call (``grpc.HandlerCallDetails``)."""

    method: str
    invocation_metadata: Metadata


class InProcessServer:
    """Where a servicer registers its handlers, as on a ``grpc.aio.Server``, and the
    server's interceptors that every call passes, in the same order."""

    def __init__(self) -> None:
        self._interceptors: list[grpc.aio.ServerInterceptor] = []
        self._generic: list[grpc.GenericRpcHandler] = []

    def add_interceptors(self, interceptors: Sequence[grpc.aio.ServerInterceptor]) -> None:
        """Pass every call through ``interceptors`` too, after those added before."""
        self._interceptors.extend(interceptors)

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        """Nothing to do: the generic handlers registered beside these serve them."""

    async def handler(self, method: str, metadata: Metadata) -> grpc.RpcMethodHandler | None:
        """The handler for ``method`` once every interceptor has had its say (None: no
        such method)."""

        async def lookup(details: _CallDetails) -> grpc.RpcMethodHandler | None:
            for generic in self._generic:
                found = generic.service(details)
                if found is not None:
                    return found
            return None

        continuation: Callable[[_CallDetails], Awaitable[Any]] = lookup
        for interceptor in reversed(self._interceptors):
            continuation = _intercepted(interceptor, continuation)
        return await continuation(_CallDetails(method, metadata))


def _intercepted(
    interceptor: grpc.aio.ServerInterceptor,
    continuation: Callable[[_CallDetails], Awaitable[Any]],
) -> Callable[[_CallDetails], Awaitable[Any]]:
    async def call(details: _CallDetails) -> Any:
        return await interceptor.intercept_service(continuation, details)

    return call


class _Context:
    """The handler's side of a call: its metadata, its status, its response stream."""

    def __init__(self, metadata: Metadata, responses: asyncio.Queue[Any] | None = None) -> None:
        self._metadata = metadata
        self._responses = responses
        self._code: grpc.StatusCode | None = None
        self._details = ""

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def peer(self) -> str:
        return "in-process"

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> None:
        self._code, self._details = code, details
        raise grpc.aio.AbortError()

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def set_trailing_metadata(self, trailing_metadata: Metadata) -> None:
        pass

    async def send_initial_metadata(self, initial_metadata: Metadata) -> None:
        pass

    async def write(self, message: Any) -> None:
        assert self._responses is not None, "only a response stream is written to"
        await self._responses.put(message)

    def error(self) -> grpc.aio.AioRpcError | None:
        """The status the handler set, as the caller sees it (None: OK)."""
        if self._code is None or self._code == grpc.StatusCode.OK:
            return None
        return _rpc_error(self._code, self._details)


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


async def _served(work: Awaitable[Any], context: _Context) -> Any:
    """``work``'s outcome as a call's: an abort or an escaped exception is the error
    the caller gets, as gRPC would report them."""
    try:
        result = await work
    except grpc.aio.AbortError:
        raise context.error() or _rpc_error(grpc.StatusCode.UNKNOWN, "") from None
    except Exception as exc:
        logger.error("in-process call failed", exc_info=exc)
        raise _rpc_error(grpc.StatusCode.UNKNOWN, f"Unexpected {exc!r}") from None
    error = context.error()
    if error is not None:
        raise error
    return result


async def _opened(
    server: InProcessServer,
    method: str,
    metadata: Metadata | None,
    responses: asyncio.Queue[Any] | None = None,
) -> tuple[Any, _Context]:
    """The handler of ``method`` once the interceptors had their say, and the context of
    a call to it (its response stream written to ``responses``)."""
    given = tuple(metadata or ())
    handler = await server.handler(method, given)
    if handler is None:
        raise _rpc_error(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
    return handler, _Context(given, responses)


async def _unless_ended(
    operation: Awaitable[T], call: asyncio.Task[Any]
) -> asyncio.Future[T] | None:
    """``operation`` (a queue's get or put) run until it is done or ``call`` has ended,
    whichever comes first: its finished future, or None once the call ended first (a
    get cancelled so leaves its item in the queue)."""
    pending = asyncio.ensure_future(operation)
    try:
        await asyncio.wait({pending, call}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not pending.done():
            pending.cancel()
    return pending if pending.done() and not pending.cancelled() else None


class InProcessChannel:
    """A ``grpc.aio.Channel`` stand-in whose calls run ``server``'s handlers."""

    def __init__(self, server: InProcessServer) -> None:
        self._server = server
        self._calls: set[asyncio.Task[Any]] = set()

    def unary_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        **_: Any,
    ) -> Callable[..., Any]:
        codec = _Codec(request_serializer, response_deserializer)

        def call(
            request: Any,
            *,
            timeout: float | None = None,
            metadata: Metadata | None = None,
            **_: Any,
        ) -> asyncio.Task[Any]:
            return self._track(self._unary(method, codec, request, timeout, metadata))

        return call

    def unary_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        **_: Any,
    ) -> Callable[..., Any]:
        codec = _Codec(request_serializer, response_deserializer)

        def call(request: Any, *, metadata: Metadata | None = None, **_: Any) -> _ResponseStream:
            stream = _ResponseStream(codec)
            stream.task = self._track(self._stream_out(method, codec, request, metadata, stream))
            return stream

        return call

    def stream_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        **_: Any,
    ) -> Callable[..., Any]:
        codec = _Codec(request_serializer, response_deserializer)

        def call(*, metadata: Metadata | None = None, **_: Any) -> _RequestStream:
            requests = _RequestStream(codec)
            requests.task = self._track(self._stream_in(method, codec, metadata, requests))
            return requests

        return call

    async def close(self, grace: float | None = None) -> None:
        """Let the calls still running end within ``grace`` seconds, then cancel them."""
        calls = set(self._calls)
        if calls and grace:
            await asyncio.wait(calls, timeout=grace)
        for task in calls:
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)

    async def __aenter__(self) -> InProcessChannel:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _track(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        # A task per call, as a gRPC server runs it: what the handler and the
        # interceptors set in context variables stays with the call.
        task = asyncio.ensure_future(work)
        self._calls.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._calls.discard(task)
        if not task.cancelled():
            # Retrieved: a caller that cancelled or left need not have seen it.
            task.exception()

    async def _unary(
        self,
        method: str,
        codec: _Codec,
        request: Any,
        timeout: float | None,
        metadata: Metadata | None,
    ) -> Any:
        try:
            async with asyncio.timeout(timeout):
                handler, context = await _opened(self._server, method, metadata)
                response = await _served(
                    _awaited(handler.unary_unary(codec.request(handler, request), context)),
                    context,
                )
        except TimeoutError:
            raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        return codec.response(handler, response)

    async def _stream_out(
        self,
        method: str,
        codec: _Codec,
        request: Any,
        metadata: Metadata | None,
        stream: _ResponseStream,
    ) -> None:
        handler, context = await _opened(self._server, method, metadata, stream.responses)
        stream.handler = handler
        served = handler.unary_stream(codec.request(handler, request), context)
        if inspect.isasyncgen(served):
            await _served(_drained(served, stream.responses), context)
        else:
            await _served(served, context)

    async def _stream_in(
        self, method: str, codec: _Codec, metadata: Metadata | None, requests: _RequestStream
    ) -> Any:
        handler, context = await _opened(self._server, method, metadata)
        response = await _served(handler.stream_unary(requests.received(handler), context), context)
        return codec.response(handler, response)


async def _awaited(outcome: Any) -> Any:
    return await outcome if inspect.isawaitable(outcome) else outcome


async def _drained(messages: AsyncIterator[Any], into: asyncio.Queue[Any]) -> None:
    async for message in messages:
        await into.put(message)


class _Codec:
    """A call's messages through both sides' serializers, as on the wire, but where a
    pair is known to undo itself (:data:`~callfs.storage.wire.INVERSES`)."""

    def __init__(self, serialize: Any, deserialize: Any) -> None:
        self._serialize = serialize
        self._deserialize = deserialize

    def request(self, handler: Any, request: Any) -> Any:
        data = request if self._serialize is None else self._serialize(request)
        parse = handler.request_deserializer
        return data if parse is None else parse(data)

    def response(self, handler: Any, response: Any) -> Any:
        serialize = handler.response_serializer
        if (serialize, self._deserialize) in INVERSES:
            return response
        data = response if serialize is None else serialize(response)
        return data if self._deserialize is None else self._deserialize(data)


_END = object()


class _ResponseStream:
    """The caller's side of a unary-stream call (``read``, ``cancel``)."""

    def __init__(self, codec: _Codec) -> None:
        self._codec = codec
        self.responses: asyncio.Queue[Any] = asyncio.Queue(IN_FLIGHT)
        self.task: asyncio.Task[None]
        self.handler: Any = None
        self._ended = False

    async def read(self) -> Any:
        """The next message, or ``grpc.aio.EOF`` after the last.

        Raises:
            grpc.aio.AioRpcError: the call ended with an error status.
        """
        if self._ended:
            return grpc.aio.EOF
        if self.responses.empty() and not self.task.done():
            got = await _unless_ended(self.responses.get(), self.task)
            if got is not None:
                return self._codec.response(self.handler, got.result())
        if not self.responses.empty():
            return self._codec.response(self.handler, self.responses.get_nowait())
        self._ended = True
        await self.task
        return grpc.aio.EOF

    def cancel(self) -> bool:
        self._ended = True
        return self.task.cancel()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while (message := await self.read()) is not grpc.aio.EOF:
            yield message


class _RequestStream:
    """The caller's side of a stream-unary call (``write``, ``done_writing``, awaited
    for the response, ``cancel``)."""

    def __init__(self, codec: _Codec) -> None:
        self._codec = codec
        self._requests: asyncio.Queue[Any] = asyncio.Queue(IN_FLIGHT)
        self.task: asyncio.Task[Any]
        self._done_writing = False

    async def write(self, request: Any) -> None:
        """Hand ``request`` to the handler.

        Raises:
            asyncio.InvalidStateError: the call has ended (await it for its status),
                or ``done_writing`` was called.
        """
        if self._done_writing:
            raise asyncio.InvalidStateError("the call is done writing")
        await self._put(request)

    async def done_writing(self) -> None:
        if not self._done_writing:
            self._done_writing = True
            await self._put(_END)

    async def received(self, handler: Any) -> AsyncIterator[Any]:
        """The requests as the handler reads them."""
        while (request := await self._requests.get()) is not _END:
            yield self._codec.request(handler, request)

    def cancel(self) -> bool:
        return self.task.cancel()

    def __await__(self) -> Generator[Any, None, Any]:
        return self.task.__await__()

    async def _put(self, item: Any) -> None:
        if self.task.done():
            raise asyncio.InvalidStateError("the call has ended")
        if not self._requests.full():
            self._requests.put_nowait(item)
            return
        if await _unless_ended(self._requests.put(item), self.task) is None:
            raise asyncio.InvalidStateError("the call has ended")
