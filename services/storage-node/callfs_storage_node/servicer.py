"""The StorageNode gRPC service: messages in, Volume calls, messages out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import grpc

from callfs.errors import BadRequest, PreconditionFailed
from callfs.storage.inprocess import InProcessServer
from callfs.storage.v1 import storage_pb2, storage_pb2_grpc
from callfs.storage.wire import SERVICE, encoded_read, write_request
from callfs_storage_node.errors import translated
from callfs_storage_node.metrics import NodeMetrics
from callfs_storage_node.volume import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_FILE_MODE,
    DEFAULT_LIST_BATCH,
    ListedFile,
    Volume,
)

# Room for the message framing around a chunk.
_FRAMING = 1024
# Keeps a List message far below any message size limit, whatever the caller asks.
MAX_LIST_BATCH = 10_000
# Paths one DeleteMany may name (the proto says so).
MAX_DELETE_BATCH = 1000


class StorageNodeServicer(storage_pb2_grpc.StorageNodeServicer):
    """Serves one volume; errors become status codes in ``translated``; bytes read and
    written are counted in ``metrics``, if given."""

    def __init__(
        self,
        volume: Volume,
        *,
        max_message_bytes: int,
        instance_id: str = "",
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.volume = volume
        self.instance_id = instance_id
        self._max_chunk = max_message_bytes - _FRAMING
        self._written = None if metrics is None else metrics.written_bytes
        self._read = None if metrics is None else metrics.read_bytes

    @translated
    async def Write(
        self, request_iterator: AsyncIterator[storage_pb2.WriteRequest | bytes], context: Any
    ) -> storage_pb2.WriteResponse:
        """Store the upload of ``request_iterator``: a header, chunks, an end (each chunk
        as its bytes alone when it came through :func:`add_to_server`)."""
        first = await anext(request_iterator, None)
        if not isinstance(first, storage_pb2.WriteRequest) or first.WhichOneof("payload") != (
            "header"
        ):
            raise BadRequest("the first message must carry the header")
        header = first.header
        stored = await self.volume.write(
            header.path,
            _chunks(request_iterator),
            mode=header.mode or DEFAULT_FILE_MODE,
            overwrite=header.overwrite,
            create_parents=header.create_parents,
            expected_size=header.expected_size if header.HasField("expected_size") else None,
        )
        if self._written is not None:
            self._written.inc(stored.size)
        return storage_pb2.WriteResponse(size=stored.size, sha256=stored.sha256)

    @translated
    async def Read(self, request: storage_pb2.ReadRequest, context: Any) -> AsyncIterator[bytes]:
        """The bytes asked for, a chunk at a time (:func:`add_to_server` sends each as
        a ``ReadResponse``, encoded by :func:`~callfs.storage.wire.encoded_read`)."""
        chunk_size = min(request.chunk_size or DEFAULT_CHUNK_SIZE, self._max_chunk)
        stream = await self.volume.read(
            request.path,
            offset=request.offset,
            length=request.length if request.HasField("length") else None,
            chunk_size=chunk_size,
        )
        async with aclosing(stream):
            async for chunk in stream:
                yield chunk
                if self._read is not None:
                    self._read.inc(len(chunk))

    @translated
    async def Delete(
        self, request: storage_pb2.DeleteRequest, context: Any
    ) -> storage_pb2.DeleteResponse:
        existed = await self.volume.delete(
            request.path, recursive=request.recursive, missing_ok=request.missing_ok
        )
        return storage_pb2.DeleteResponse(existed=existed)

    @translated
    async def DeleteMany(
        self, request: storage_pb2.DeleteManyRequest, context: Any
    ) -> storage_pb2.DeleteManyResponse:
        if len(request.paths) > MAX_DELETE_BATCH:
            raise BadRequest(
                f"{len(request.paths)} paths in one DeleteMany, at most {MAX_DELETE_BATCH}"
            )
        removed = await self.volume.delete_many(request.paths)
        return storage_pb2.DeleteManyResponse(removed=removed)

    @translated
    async def Usage(
        self, request: storage_pb2.UsageRequest, context: Any
    ) -> storage_pb2.UsageResponse:
        # Placement asks before writes: free space as of now, never a wait for a walk.
        usage = await self.volume.space()
        return storage_pb2.UsageResponse(
            used_bytes=usage.used, free_bytes=usage.free, total_bytes=usage.total
        )

    @translated
    async def List(
        self, request: storage_pb2.ListRequest, context: Any
    ) -> AsyncIterator[storage_pb2.ListResponse]:
        if request.instance_id and request.instance_id != self.instance_id:
            raise PreconditionFailed(
                f"this storage node is {self.instance_id!r}, not {request.instance_id!r}"
            )
        batch_size = min(request.batch_size or DEFAULT_LIST_BATCH, MAX_LIST_BATCH)
        async for batch in self.volume.list_files(batch_size=batch_size):
            for objects in _within(batch, self._max_chunk):
                yield storage_pb2.ListResponse(objects=objects)


def _within(batch: list[ListedFile], limit: int) -> list[list[storage_pb2.ListedObject]]:
    """``batch`` as messages' worth of objects, each message under ``limit`` bytes
    (a volume may hold files with very long paths).
    """
    messages: list[list[storage_pb2.ListedObject]] = [[]]
    size = 0
    for listed in batch:
        message = storage_pb2.ListedObject(
            key=listed.key, size=listed.size, mtime_ns=listed.mtime_ns
        )
        weight = message.ByteSize() + 8
        if messages[-1] and size + weight > limit:
            messages.append([])
            size = 0
        messages[-1].append(message)
        size += weight
    return messages


async def _chunks(
    requests: AsyncIterator[storage_pb2.WriteRequest | bytes],
) -> AsyncIterator[bytes]:
    """The chunk payloads up to the ``end`` message.

    Raises:
        BadRequest: the stream ended without ``end`` (a cancelled client can look
            like a clean end), ``end`` counts other bytes, or a second header came.
    """
    received = 0
    async for request in requests:
        if isinstance(request, bytes):
            received += len(request)
            yield request
            continue
        kind = request.WhichOneof("payload")
        if kind == "chunk":
            chunk = request.chunk
            received += len(chunk)
            yield chunk
        elif kind == "end":
            if request.end.size != received:
                raise BadRequest(f"end says {request.end.size} bytes, {received} arrived")
            return
        else:
            raise BadRequest("only the first message may carry a header")
    raise BadRequest("the stream ended without its end message")


def add_to_server(servicer: StorageNodeServicer, server: grpc.aio.Server | InProcessServer) -> None:
    """Serve ``servicer`` on ``server``: the generated registration, but ``Write``'s
    chunks are read by :func:`~callfs.storage.wire.write_request` and ``Read``'s
    encoded by :func:`~callfs.storage.wire.encoded_read`."""
    pb = storage_pb2
    handlers = {
        "Write": grpc.stream_unary_rpc_method_handler(
            servicer.Write, write_request, pb.WriteResponse.SerializeToString
        ),
        "Read": grpc.unary_stream_rpc_method_handler(
            servicer.Read, pb.ReadRequest.FromString, encoded_read
        ),
        "Delete": grpc.unary_unary_rpc_method_handler(
            servicer.Delete, pb.DeleteRequest.FromString, pb.DeleteResponse.SerializeToString
        ),
        "DeleteMany": grpc.unary_unary_rpc_method_handler(
            servicer.DeleteMany,
            pb.DeleteManyRequest.FromString,
            pb.DeleteManyResponse.SerializeToString,
        ),
        "Usage": grpc.unary_unary_rpc_method_handler(
            servicer.Usage, pb.UsageRequest.FromString, pb.UsageResponse.SerializeToString
        ),
        "List": grpc.unary_stream_rpc_method_handler(
            servicer.List, pb.ListRequest.FromString, pb.ListResponse.SerializeToString
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
