"""The chunk messages of the byte streams, to and from their wire bytes by hand.

An upload's ``WriteRequest`` messages and a download's ``ReadResponse`` messages are
nearly all one chunk each. Through protobuf each chunk is copied into a message and out
again on both sides; here the sender encodes it with one copy (an upload once for all
its replicas) and the receiver slices the payload out with one. The bytes are exactly
protobuf's, so either side may still be the generated code.
"""

from __future__ import annotations

from callfs.storage.v1 import storage_pb2

SERVICE = storage_pb2.DESCRIPTOR.services_by_name["StorageNode"].full_name
"""``callfs.storage.v1.StorageNode``, as the generated code names it."""
WRITE_METHOD = f"/{SERVICE}/Write"
READ_METHOD = f"/{SERVICE}/Read"

WRITE_CHUNK = 0x12
"""The tag of ``WriteRequest`` field 2 (``chunk``), length-delimited."""
READ_CHUNK = 0x0A
"""The tag of ``ReadResponse`` field 1 (``chunk``), length-delimited."""
_MAX_VARINT = 10


def encoded_chunk(piece: bytes) -> bytes:
    """``WriteRequest(chunk=piece)`` as its wire bytes."""
    return _encoded(WRITE_CHUNK, piece)


def encoded_read(piece: bytes) -> bytes:
    """``ReadResponse(chunk=piece)`` as its wire bytes."""
    return _encoded(READ_CHUNK, piece)


def write_request(data: bytes) -> storage_pb2.WriteRequest | bytes:
    """The ``WriteRequest`` in ``data``; a message that is one chunk and nothing else
    comes as that chunk's bytes alone.

    Raises:
        google.protobuf.message.DecodeError: ``data`` is no ``WriteRequest``.
    """
    piece = _payload(WRITE_CHUNK, data)
    if piece is not None:
        return piece
    message: storage_pb2.WriteRequest = storage_pb2.WriteRequest.FromString(data)
    return message


def read_chunk(data: bytes) -> bytes:
    """The chunk of the ``ReadResponse`` in ``data``.

    Raises:
        google.protobuf.message.DecodeError: ``data`` is no ``ReadResponse``.
    """
    piece = _payload(READ_CHUNK, data)
    if piece is not None:
        return piece
    chunk: bytes = storage_pb2.ReadResponse.FromString(data).chunk
    return chunk


def as_is(message: bytes) -> bytes:
    """The serializer of a message given as its wire bytes already."""
    return message


INVERSES = frozenset({(encoded_read, read_chunk)})
"""(serializer, deserializer) pairs where the deserializer gives back what the
serializer was given: a call that needs no wire (an in-process one) skips both."""


def _encoded(tag: int, piece: bytes) -> bytes:
    size = len(piece)
    prefix = bytearray((tag,))
    while size >= 0x80:
        prefix.append((size & 0x7F) | 0x80)
        size >>= 7
    prefix.append(size)
    return b"".join((prefix, piece))


def _payload(tag: int, data: bytes) -> bytes | None:
    """The payload of ``data`` when it is one length-delimited field ``tag`` and
    nothing else, else None (for protobuf to read)."""
    if not data or data[0] != tag:
        return None
    size = shift = 0
    for offset in range(1, min(len(data), 1 + _MAX_VARINT)):
        byte = data[offset]
        size |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return data[offset + 1 :] if offset + 1 + size == len(data) else None
    return None
