"""Per-block checksums of stored objects, kept in a sidecar file beside each object.

An object at ``<key>`` has its checksums at ``<key>.sums``: the CRC-32 (zlib's,
the polynomial of zip and PNG) of every ``BLOCK_SIZE`` bytes of the object, counted
from its first byte (the last block may be short). The sidecar is binary:

    offset  size  field
    0       20    MAGIC, ``b"CALLFS-SUMS/1 crc32\\n"`` (format version and algorithm)
    20      4     block size in bytes, big-endian
    24      8     object size in bytes, big-endian
    32      4n    the CRC of each of the n = ceil(size / block size) blocks, big-endian

so the CRCs of any run of blocks are read at a known offset.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass

from callfs.errors import ReplicaCorrupted

SUFFIX = ".sums"
BLOCK_SIZE = 1024 * 1024
MAGIC = b"CALLFS-SUMS/1 crc32\n"
HEADER = struct.Struct(f">{len(MAGIC)}sIQ")
_CRC = struct.Struct(">I")


def sidecar_of(path: str) -> str:
    """The path of the sidecar of the object at ``path``."""
    return path + SUFFIX


def is_sidecar(name: str) -> bool:
    """Whether a file name is a sidecar's."""
    return name.endswith(SUFFIX)


def blocks_in(size: int, block_size: int) -> int:
    """How many blocks ``size`` bytes make (the last one may be short)."""
    return -(-size // block_size)


class BlockSums:
    """The running CRCs of an object's blocks, fed its bytes in order as they are written."""

    def __init__(self, block_size: int = BLOCK_SIZE) -> None:
        self.block_size = block_size
        self.size = 0
        self._done = array("I")
        self._crc = 0
        self._filled = 0

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self.block_size - self._filled)
            self._crc = zlib.crc32(view[:take], self._crc)
            self._filled += take
            self.size += take
            view = view[take:]
            if self._filled == self.block_size:
                self._done.append(self._crc)
                self._crc = self._filled = 0

    def encode(self) -> bytes:
        """The sidecar's content for the bytes fed so far."""
        crcs = array("I", self._done)
        if self._filled:
            crcs.append(self._crc)
        if sys.byteorder == "little":
            crcs.byteswap()
        return HEADER.pack(MAGIC, self.block_size, self.size) + crcs.tobytes()


@dataclass(frozen=True)
class Sums:
    """An open sidecar of the object ``key``: the block size and object size it
    records, and the CRCs it holds, read a few blocks' worth at a time.
    """

    fd: int
    key: str
    block_size: int
    size: int

    def crcs(self, first: int, count: int) -> list[int]:
        """The CRCs of blocks ``first`` to ``first + count - 1`` (blocking).

        Raises:
            ReplicaCorrupted: the sidecar ends early.
        """
        data = os.pread(self.fd, count * _CRC.size, HEADER.size + first * _CRC.size)
        if len(data) != count * _CRC.size:
            raise ReplicaCorrupted(f"the checksums of {self.key} are damaged (cut short)")
        return [crc for (crc,) in _CRC.iter_unpack(data)]

    def check(self, index: int, data: bytes, expected: int) -> None:
        """Raise unless ``data``, block ``index``, is whole and its CRC is ``expected``.

        Raises:
            ReplicaCorrupted: naming the key and the block.
        """
        start = index * self.block_size
        length = min(self.block_size, self.size - start)
        if len(data) != length or zlib.crc32(data) != expected:
            raise ReplicaCorrupted(
                f"{self.key}: block {index} (bytes {start}-{start + length - 1}) "
                "does not match its checksum"
            )


def open_sums(path: str, key: str, size: int) -> Sums | None:
    """Open the sidecar of the object ``key`` at ``path`` (``size`` bytes now), or None
    if it has none. The caller closes ``Sums.fd``.

    Raises:
        ReplicaCorrupted: the sidecar is damaged or describes another size.
    """
    try:
        fd = os.open(sidecar_of(path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return _checked_header(fd, key, size)
    except BaseException:
        os.close(fd)
        raise


def _checked_header(fd: int, key: str, size: int) -> Sums:
    header = os.pread(fd, HEADER.size, 0)
    if len(header) != HEADER.size:
        raise ReplicaCorrupted(f"the checksums of {key} are damaged (short header)")
    magic, block_size, recorded = HEADER.unpack(header)
    if magic != MAGIC or block_size <= 0:
        raise ReplicaCorrupted(f"the checksums of {key} are damaged (bad header)")
    if recorded != size:
        raise ReplicaCorrupted(f"{key} holds {size} bytes, its checksums cover {recorded}")
    expected = HEADER.size + blocks_in(size, block_size) * _CRC.size
    if os.fstat(fd).st_size != expected:
        raise ReplicaCorrupted(f"the checksums of {key} are damaged (wrong length)")
    return Sums(fd, key, block_size, size)
