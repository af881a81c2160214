"""Framing of PostgreSQL protocol 3.0 messages: reading the client's (bounded), building the server's.

A message is a type byte, an int32 length that counts itself, and a body; the startup packet has no type
byte. Every read is bounded (:data:`MAX_STARTUP_BYTES`, :data:`MAX_MESSAGE_BYTES`): a client that sends
more, or a length that cannot be, gets :class:`ProtocolViolation`, which closes its connection only.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable, Sequence

PROTOCOL_3_0 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
MAX_STARTUP_BYTES = 10_000  # PostgreSQL's own bound on a startup packet
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # one query text, or one Bind with its parameters


class ProtocolViolation(Exception):
    """The client broke the protocol (a length, a missing terminator, a message out of place)."""


async def read_startup(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The startup packet's code (protocol version or a request code) and the rest of its body."""
    header = await reader.readexactly(4)
    (length,) = struct.unpack("!i", header)
    if length < 8 or length > MAX_STARTUP_BYTES:
        raise ProtocolViolation(f"invalid startup packet length {length}")
    body = await reader.readexactly(length - 4)
    (code,) = struct.unpack("!i", body[:4])
    return code, body[4:]


def startup_parameters(body: bytes) -> dict[str, str]:
    """The ``name\\0value\\0...\\0`` pairs of a protocol 3.0 startup packet."""
    parts = body.split(b"\0")
    if len(parts) < 2 or parts[-1] != b"" or parts[-2] != b"":
        raise ProtocolViolation("the startup packet's parameters are not terminated")
    words = [p.decode("utf-8", "replace") for p in parts[:-2]]
    if len(words) % 2:
        raise ProtocolViolation("the startup packet has a parameter without a value")
    return dict(zip(words[::2], words[1::2], strict=True))


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The next message's type byte and body; IncompleteReadError when the client hung up."""
    header = await reader.readexactly(5)
    kind, (length,) = header[:1], struct.unpack("!i", header[1:])
    if length < 4 or length - 4 > MAX_MESSAGE_BYTES:
        raise ProtocolViolation(
            f"invalid length {length} of a {kind!r} message (at most {MAX_MESSAGE_BYTES})"
        )
    return kind, await reader.readexactly(length - 4)


class Body:
    """A cursor over a message body; running past its end is a :class:`ProtocolViolation`."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def cstring(self) -> str:
        end = self._data.find(b"\0", self._at)
        if end < 0:
            raise ProtocolViolation("a string in the message is not terminated")
        text, self._at = self._data[self._at : end], end + 1
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolViolation("a string in the message is not UTF-8") from exc

    def int16(self) -> int:
        return int(self._unpack("!h", 2))

    def int32(self) -> int:
        return int(self._unpack("!i", 4))

    def byte(self) -> bytes:
        return self.take(1)

    def take(self, count: int) -> bytes:
        if count < 0 or self._at + count > len(self._data):
            raise ProtocolViolation("the message is shorter than its fields say")
        chunk, self._at = self._data[self._at : self._at + count], self._at + count
        return chunk

    def _unpack(self, fmt: str, size: int) -> int:
        (value,) = struct.unpack(fmt, self.take(size))
        return int(value)


# --- backend messages ---


def message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def cstr(text: str) -> bytes:
    return text.replace("\0", "").encode("utf-8") + b"\0"


def authentication(code: int) -> bytes:
    """AuthenticationOk (0) or AuthenticationCleartextPassword (3)."""
    return message(b"R", struct.pack("!i", code))


def parameter_status(name: str, value: str) -> bytes:
    return message(b"S", cstr(name) + cstr(value))


def backend_key_data(pid: int, secret: int) -> bytes:
    return message(b"K", struct.pack("!ii", pid, secret))


def ready_for_query(status: bytes) -> bytes:
    return message(b"Z", status)


def command_complete(tag: str) -> bytes:
    return message(b"C", cstr(tag))


def row_description(columns: Sequence[tuple[str, int, int]]) -> bytes:
    """Columns as (name, type oid, type size), all in text format."""
    body = [struct.pack("!h", len(columns))]
    for name, oid, size in columns:
        body.append(cstr(name) + struct.pack("!ihihih", 0, 0, oid, size, -1, 0))
    return message(b"T", b"".join(body))


def data_row(values: Sequence[bytes | None]) -> bytes:
    body = [struct.pack("!h", len(values))]
    for value in values:
        body.append(struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value)
    return message(b"D", b"".join(body))


def parameter_description(oids: Iterable[int]) -> bytes:
    listed = list(oids)
    return message(b"t", struct.pack("!h", len(listed)) + b"".join(struct.pack("!i", o) for o in listed))


def error_response(sqlstate: str, text: str, severity: str = "ERROR", hint: str | None = None) -> bytes:
    return message(b"E", _notice_fields(sqlstate, text, severity, hint))


def notice_response(sqlstate: str, text: str) -> bytes:
    return message(b"N", _notice_fields(sqlstate, text, "WARNING", None))


def _notice_fields(sqlstate: str, text: str, severity: str, hint: str | None) -> bytes:
    fields = [b"S" + cstr(severity), b"V" + cstr(severity), b"C" + cstr(sqlstate), b"M" + cstr(text)]
    if hint:
        fields.append(b"H" + cstr(hint))
    return b"".join(fields) + b"\0"


PARSE_COMPLETE = message(b"1")
BIND_COMPLETE = message(b"2")
CLOSE_COMPLETE = message(b"3")
NO_DATA = message(b"n")
EMPTY_QUERY = message(b"I")
PORTAL_SUSPENDED = message(b"s")
