"""A ``WriteRequest`` carrying a chunk, to and from its wire bytes by hand.

The messages of an upload are nearly all chunks. Through protobuf each is copied into
a message and out again on both sides; here the sender encodes it once (for every
replica) and the node slices the payload out, one copy each. The bytes are exactly
protobuf's, so either side may still be the generated code.
"""

from __future__ import annotations

from callfs.storage.v1 import storage_pb2

CHUNK_TAG = 0x12
"""``WriteRequest`` field 2 (``chunk``), length-delimited."""
_MAX_VARINT = 10


def encoded_chunk(piece: bytes) -> bytes:
    """``WriteRequest(chunk=piece)`` as its wire bytes."""
    size = len(piece)
    prefix = bytearray((CHUNK_TAG,))
    while size >= 0x80:
        prefix.append((size & 0x7F) | 0x80)
        size >>= 7
    prefix.append(size)
    return b"".join((prefix, piece))


def write_request(data: bytes) -> storage_pb2.WriteRequest | bytes:
    """The ``WriteRequest`` in ``data``; a message that is one chunk and nothing else
    comes as that chunk's bytes alone.

    Raises:
        google.protobuf.message.DecodeError: ``data`` is no ``WriteRequest``.
    """
    if data[:1] == bytes((CHUNK_TAG,)):
        size = shift = 0
        for offset in range(1, min(len(data), 1 + _MAX_VARINT)):
            byte = data[offset]
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if offset + 1 + size == len(data):
                    return data[offset + 1 :]
                break
    message: storage_pb2.WriteRequest = storage_pb2.WriteRequest.FromString(data)
    return message
