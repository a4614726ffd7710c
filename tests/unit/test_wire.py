"""The chunk messages of uploads and downloads, encoded and read by hand exactly as
protobuf encodes and reads them."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError

from callfs.storage.v1 import storage_pb2
from callfs.storage.wire import encoded_chunk, encoded_read, read_chunk, write_request

# Around each length-prefix width (1 to 4 varint bytes) and a whole default chunk.
SIZES = [1, 127, 128, 300, 16_383, 16_384, 2_097_151, 2_097_152, 1024 * 1024]


@pytest.mark.parametrize("size", SIZES)
def test_an_encoded_chunk_is_the_write_request_protobuf_makes(size: int) -> None:
    piece = bytes(range(256)) * (size // 256) + bytes(size % 256)
    encoded = encoded_chunk(piece)
    assert encoded == storage_pb2.WriteRequest(chunk=piece).SerializeToString()
    assert storage_pb2.WriteRequest.FromString(encoded).chunk == piece


@pytest.mark.parametrize("size", SIZES)
def test_a_chunk_message_reads_back_as_its_bytes(size: int) -> None:
    piece = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert write_request(encoded_chunk(piece)) == piece


@pytest.mark.parametrize(
    "message",
    [
        storage_pb2.WriteRequest(header=storage_pb2.WriteHeader(path="a/b", overwrite=True)),
        storage_pb2.WriteRequest(end=storage_pb2.WriteEnd(size=12)),
        storage_pb2.WriteRequest(),
    ],
)
def test_other_messages_read_back_as_protobuf_reads_them(
    message: storage_pb2.WriteRequest,
) -> None:
    found = write_request(message.SerializeToString())
    assert isinstance(found, storage_pb2.WriteRequest) and found == message


def test_a_chunk_with_more_after_it_is_read_by_protobuf() -> None:
    # A chunk, then an end in the same message: the oneof keeps the last one set.
    data = (
        encoded_chunk(b"abc")
        + storage_pb2.WriteRequest(end=storage_pb2.WriteEnd(size=3)).SerializeToString()
    )
    found = write_request(data)
    assert isinstance(found, storage_pb2.WriteRequest)
    assert found.WhichOneof("payload") == "end"
    # A length past the end of the message is protobuf's error, not a short chunk.
    with pytest.raises(DecodeError):
        write_request(encoded_chunk(b"abcdef")[:-2])


@pytest.mark.parametrize("size", SIZES)
def test_a_read_chunk_is_the_read_response_protobuf_makes_and_reads(size: int) -> None:
    piece = bytes(range(256)) * (size // 256) + bytes(size % 256)
    encoded = encoded_read(piece)
    assert encoded == storage_pb2.ReadResponse(chunk=piece).SerializeToString()
    assert read_chunk(encoded) == piece
    assert read_chunk(storage_pb2.ReadResponse(chunk=piece).SerializeToString()) == piece


def test_a_read_response_with_more_than_its_chunk_is_read_by_protobuf() -> None:
    # The chunk twice: protobuf keeps the last one.
    data = encoded_read(b"first") + encoded_read(b"last")
    assert read_chunk(data) == b"last"
    assert read_chunk(b"") == b""
