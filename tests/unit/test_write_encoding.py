"""A chunk going to the storage nodes is encoded once, and exactly as protobuf would."""

from __future__ import annotations

import pytest

from callfs.backends.storage_node import encoded_chunk
from callfs.storage.v1 import storage_pb2

# Around each length-prefix width (1 to 4 varint bytes) and a whole default chunk.
SIZES = [1, 127, 128, 300, 16_383, 16_384, 2_097_151, 2_097_152, 1024 * 1024]


@pytest.mark.parametrize("size", SIZES)
def test_an_encoded_chunk_is_the_write_request_protobuf_makes(size: int) -> None:
    piece = bytes(range(256)) * (size // 256) + bytes(size % 256)
    encoded = encoded_chunk(piece)
    assert encoded == storage_pb2.WriteRequest(chunk=piece).SerializeToString()
    assert storage_pb2.WriteRequest.FromString(encoded).chunk == piece
