"""The local log's record format: framing, parsing a buffer of records, and finding the next record
after a torn one. A record is::

    magic b"\\xff\\xfeHW" | crc32 u32 | length u32 | appended_ms u64 | payload (length bytes)

little-endian; the CRC covers length, appended_ms and payload.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

from headwater.stores.log.base import LogRecord

MAGIC = b"\xff\xfeHW"
HEADER = struct.Struct("<4sIIQ")  # magic, crc32, length, appended_ms
CRC_FROM = 8  # the CRC covers the header from the length on, and the payload
MAX_PAYLOAD = (1 << 31) - 1

# What parsing a buffer stopped on.
FULL, END, NEED_MORE, BAD = range(4)


def encode(payloads: Sequence[bytes], appended_ms: int) -> list[bytes]:
    """The framed records of ``payloads`` (header, payload, header, payload, ...)."""
    parts: list[bytes] = []
    for payload in payloads:
        tail = struct.pack("<IQ", len(payload), appended_ms)
        crc = zlib.crc32(payload, zlib.crc32(tail))
        parts.append(MAGIC + struct.pack("<I", crc) + tail)
        parts.append(payload)
    return parts


def parse(data: bytes, start: int, out: list[LogRecord], budget: list[int]) -> tuple[int, int, int]:
    """Parse records from the beginning of ``data`` (at offset ``start``) into ``out``.

    Returns (bytes consumed, status, bytes needed for the next record when status is NEED_MORE)."""
    view = memoryview(data)
    end = len(data)
    unpack = HEADER.unpack_from
    hsize = HEADER.size
    crc32 = zlib.crc32
    records, room = budget
    pos = 0
    try:
        while pos + hsize <= end:
            if records <= 0 or room <= 0:
                return pos, FULL, 0
            magic, crc, length, appended_ms = unpack(data, pos)
            stop = pos + hsize + length
            if magic != MAGIC or length > MAX_PAYLOAD:
                return pos, BAD, 0
            if stop > end:
                return pos, NEED_MORE, stop - pos
            if crc32(view[pos + CRC_FROM : stop]) != crc:
                return pos, BAD, 0
            out.append(LogRecord(start + pos, start + stop, data[pos + hsize : stop], appended_ms))
            records -= 1
            room -= length
            pos = stop
        if records <= 0 or room <= 0:
            return pos, FULL, 0
        return pos, (END if pos == end else NEED_MORE), hsize
    finally:
        budget[0], budget[1] = records, room


def resync(data: bytes) -> int | None:
    """Where the first valid record after the (invalid or incomplete) one at the start of ``data`` begins."""
    at = 0
    while (at := data.find(MAGIC, at + 1)) >= 0:
        if at + HEADER.size > len(data):
            return None
        _magic, crc, length, _ms = HEADER.unpack_from(data, at)
        stop = at + HEADER.size + length
        if stop <= len(data) and zlib.crc32(memoryview(data)[at + CRC_FROM : stop]) == crc:
            return at
    return None
