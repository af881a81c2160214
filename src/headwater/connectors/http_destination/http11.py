"""One HTTP/1.1 connection of the delivery client: sends a request, parses the response as bytes arrive.

The contract between :class:`_Connection` and the
:class:`~headwater.connectors.http_destination.client.HttpClient` that opens it (its *owner*):

- **The transport.** The owner creates the connection and hands it to ``loop.create_connection``; from
  ``connection_made`` on the connection alone writes to, closes and aborts the transport. Whoever closes
  it (the connection itself, the owner through ``close``, or the peer), ``closed`` turns True and the
  owner hears of it through ``owner._forget(connection)``, possibly twice (from ``close``, then from
  ``connection_lost``), so the owner counts only the first; ``lost`` resolves when the transport is gone.
  The owner's ``_heads`` dict caches parsed response heads for all its connections.
- **A send.** ``send(data, read, total, head_only, max_body)`` writes one complete request and returns a
  future, one request at a time (no pipelining). It resolves to a :class:`Response` (body decoded, at
  most ``max_body`` bytes), or fails with :class:`TransportError` (the connection is then closed or
  closing), or with ``_Stale`` when a connection that had served a response before closed without a
  byte of the new one: nothing was answered, the request may be sent again on a new connection.
  ``read`` bounds the seconds without a byte, ``total`` the seconds for the whole response. A caller
  that stops waiting (cancelled) must ``close(abort=True)``: the stream is mid-response.
- **Reuse.** After a response, ``reusable`` says whether the connection may carry another request: the
  server allowed keep-alive (HTTP/1.1 without ``Connection: close``, or HTTP/1.0 with keep-alive) and
  the body was read to its end, not cut at ``max_body``. A connection that may not be reused has
  already closed itself, as has one that receives bytes while no request is waiting for them.

Response lives here so that this module needs nothing of the client's at run time; client.py
re-exports it. TransportError is in errors.py.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from headwater.connectors.http_destination.errors import TransportError

if TYPE_CHECKING:
    from headwater.connectors.http_destination.client import HttpClient, _Pool

MAX_HEAD = 64 * 1024  # status line and headers of one response
_VERSIONS = ("HTTP/1.1 ", "HTTP/1.0 ")
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "content-encoding"})


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]  # names lower-cased, in the order received
    body: bytes  # gzip/deflate decoded; at most max_body bytes
    truncated: bool  # the body was longer than max_body (the connection was closed, not drained)
    elapsed: float  # seconds from sending the request to the end of the body

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key == lowered), None)


class _Stale(Exception):
    """A reused keep-alive connection closed before any byte of the response: send again."""


class _Malformed(Exception):
    pass


_IDLE, _HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(5)
# chunked sub-states (in ``chunk_left`` when not a positive count of data bytes still to read)
_SIZE_LINE, _DATA_END, _TRAILERS = -1, -2, -3


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: sends a request, parses the response as bytes arrive."""

    def __init__(self, client: HttpClient, pool: _Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.client, self.pool, self.loop = client, pool, loop
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = loop.create_future()
        self.closed = False
        self.counted = False  # in the client's count of open connections
        self.is_idle = False
        self.idle_since = 0.0
        self.uses = 0
        self.reusable = False
        self.waiter: asyncio.Future[Response] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.buf = bytearray()
        self.state = _IDLE
        self.head_only = False
        self.got_bytes = False
        self.read = self.started = self.last = self.deadline = self.sent_at = 0.0
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.keep_alive = True
        self.encoding = ""
        self.parts: list[bytes] = []
        self.size = self.cap = self.remaining = self.chunk_left = 0
        self.max_body = 0
        self.truncated = False

    # -- asyncio callbacks -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:
            self.close(abort=True)  # bytes nobody asked for: the stream cannot be trusted any more
            return
        self.last = self.loop.time()
        self.got_bytes = True
        try:
            self._feed(data)
        except _Malformed as exc:
            where = self.pool.where
            self._fail(TransportError("protocol", f"{where} answered something that is not HTTP/1.1: {exc}."))

    def eof_received(self) -> bool | None:
        return None  # close; connection_lost ends a response delimited by the close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(None)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.state == _UNTIL_CLOSE and exc is None:
                self._finish_or_fail()
            elif not self.got_bytes and self.uses and not _tls_failure(exc):
                self._stop_timer()
                waiter.set_exception(_Stale())
            else:
                self._fail(self._lost_error(exc))
        self.waiter = None
        self.client._forget(self)

    # -- one exchange ----------------------------------------------------------------------------

    def send(
        self, data: bytes, read: float, total: float, head_only: bool, max_body: int
    ) -> asyncio.Future[Response]:
        loop = self.loop
        self.waiter = waiter = loop.create_future()
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            error: Exception = _Stale() if self.uses else self._lost_error(None)
            waiter.set_exception(error)
            return waiter
        self.state, self.head_only, self.got_bytes, self.max_body = _HEAD, head_only, False, max_body
        self.read = read
        self.started = self.last = now = loop.time()
        self.sent_at = time.perf_counter()  # for ``elapsed``: uvloop's clock ticks in milliseconds
        self.deadline = now + total
        # the timer of the previous exchange is kept when it fires early enough: _tick re-arms it
        due = min(now + read, self.deadline)
        if self.timer is None or self.timer.when() > due:
            self._stop_timer()
            self.timer = loop.call_at(due, self._tick)
        transport.write(data)
        return waiter

    def close(self, *, abort: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()
        self.client._forget(self)

    def _tick(self) -> None:
        self.timer = None
        now = self.loop.time()
        if self.state == _IDLE:
            return
        if now >= self.deadline:
            total = self.deadline - self.started
            self._fail(
                TransportError(
                    "timeout",
                    f"{self.pool.where} did not finish its response within {total:g} s (it sends too slowly)",
                )
            )
        elif now - self.last >= self.read - 1e-3:
            what = "stopped in the middle of its response" if self.got_bytes else "did not answer"
            self._fail(
                TransportError(
                    "timeout",
                    f"read timeout after {self.read * 1000:.0f} ms: {self.pool.where} {what}; retry later, "
                    "or raise the read timeout if the destination is just slow.",
                )
            )
        else:
            self.timer = self.loop.call_at(min(self.last + self.read, self.deadline), self._tick)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _fail(self, error: TransportError) -> None:
        waiter, self.waiter = self.waiter, None
        self.state = _IDLE
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close(abort=True)

    def _lost_error(self, exc: Exception | None) -> TransportError:
        if isinstance(exc, ssl.SSLError) and _tls_failure(exc):
            return _tls_error(self.pool, exc)
        when = "before the response was complete" if self.got_bytes else "before answering"
        how = "reset" if isinstance(exc, ConnectionResetError) else "closed"
        hint = ""
        if self.pool.scheme == "https" and not self.uses and not self.got_bytes:
            hint = " (a TLS server that wants a client certificate does this: check clientCertificate)"
        return TransportError("connect", f"{self.pool.where} {how} the connection {when}{hint}.")

    # -- parsing ---------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        while True:
            state = self.state
            if state == _HEAD:
                rest = self._feed_head(data)
            elif state == _LENGTH:
                rest = self._feed_length(data)
            elif state == _CHUNKED:
                rest = self._feed_chunked(data)
            elif state == _UNTIL_CLOSE:
                if self._keep(data):
                    self._finish()
                return
            else:  # the response is complete: anything more is out of turn
                if data:
                    self.reusable = False
                    self.close(abort=True)
                return
            if rest is None:
                return
            data = rest

    def _feed_head(self, data: bytes) -> bytes | None:
        buf = self.buf
        if buf:
            start = max(0, len(buf) - 3)
            buf += data
            end = buf.find(b"\r\n\r\n", start)
            if end < 0:
                self._check_head_size()
                return None
            head, rest = bytes(buf[:end]), bytes(buf[end + 4 :])
            buf.clear()
        else:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                buf += data
                self._check_head_size()
                return None
            head, rest = data[:end], data[end + 4 :]
        self._begin(head)
        return rest

    def _check_head_size(self) -> None:
        if len(self.buf) > MAX_HEAD:
            raise _Malformed(f"the response head is longer than {MAX_HEAD // 1024} KiB")

    def _begin(self, head: bytes) -> None:
        heads = self.client._heads
        parsed = heads.get(head)
        if parsed is None:
            parsed = _parse_head(head)
            if len(heads) >= 256:
                heads.clear()
            heads[head] = parsed
        status, headers, keep_alive, length, chunked, encoding = parsed
        if status < 200:
            if status == 101:
                raise _Malformed("101 Switching Protocols to a request that asked for no upgrade")
            return  # an interim response: the real one follows
        self.status, self.headers, self.keep_alive = status, list(headers), keep_alive
        self.encoding, self.parts, self.size, self.truncated = encoding, [], 0, False
        # a compressed body is kept up to the limit plus what deflate adds to incompressible data
        self.cap = self.max_body if not encoding else self.max_body + (self.max_body >> 8) + 64
        if self.head_only or status in (204, 304):
            self._finish()
        elif chunked:
            self.state, self.chunk_left = _CHUNKED, _SIZE_LINE
        elif length is not None:
            self.state, self.remaining = _LENGTH, length
            if length == 0:
                self._finish()
        else:
            self.state, self.keep_alive = _UNTIL_CLOSE, False

    def _feed_length(self, data: bytes) -> bytes | None:
        remaining = self.remaining
        if len(data) < remaining:
            self.remaining = remaining - len(data)
            if self._keep(data):
                self._finish()
            return None
        self._keep(data if len(data) == remaining else data[:remaining])
        self._finish()
        return data[remaining:]

    def _feed_chunked(self, data: bytes) -> bytes | None:
        buf = self.buf
        buf += data
        pos = 0
        while True:
            left = self.chunk_left
            if left > 0:
                take = min(left, len(buf) - pos)
                if take == 0:
                    break
                self.chunk_left = left - take if take < left else _DATA_END
                pos += take
                if self._keep(bytes(buf[pos - take : pos])):
                    buf.clear()
                    self._finish()
                    return None
                continue
            if left == _DATA_END:
                if len(buf) - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise _Malformed("a chunk is longer than its size line says")
                pos += 2
                self.chunk_left = _SIZE_LINE
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if len(buf) - pos > MAX_HEAD:
                    raise _Malformed("a chunk size line or trailer is too long")
                break
            line = bytes(buf[pos:eol])
            pos = eol + 2
            if left == _SIZE_LINE:
                self.chunk_left = _chunk_size(line) or _TRAILERS
            elif not line:  # the empty line after the trailers ends the body
                rest = bytes(buf[pos:])
                buf.clear()
                self._finish()
                return rest
        del buf[:pos]
        return None

    def _keep(self, chunk: bytes) -> bool:
        """Keep ``chunk`` of the body; True when the body passed the limit (the rest is not read)."""
        if self.size + len(chunk) > self.cap:
            chunk = chunk[: self.cap - self.size]
            self.truncated, self.keep_alive = True, False
        self.parts.append(chunk)
        self.size += len(chunk)
        return self.truncated

    def _finish_or_fail(self) -> None:
        try:
            self._finish()
        except _Malformed as exc:
            where = self.pool.where
            self._fail(TransportError("protocol", f"{where} sent a body that cannot be read: {exc}."))

    def _finish(self) -> None:
        parts = self.parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        truncated = self.truncated
        if self.encoding:
            body, truncated = _decode(body, self.encoding, self.max_body, truncated)
        elif len(body) > self.max_body:
            body, truncated = body[: self.max_body], True
        response = Response(self.status, self.headers, body, truncated, time.perf_counter() - self.sent_at)
        self.state, self.parts, self.uses = _IDLE, [], self.uses + 1
        self.reusable = self.keep_alive
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        if not self.reusable:
            self.close(abort=self.truncated)


_Head = tuple[int, list[tuple[str, str]], bool, int | None, bool, str]


def _parse_head(head: bytes) -> _Head:
    """(status, headers, keep_alive, content_length, chunked, content_encoding) of a response head."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0]
    version, code = status[:9], status[9:12]
    if version not in _VERSIONS or not code.isdigit() or status[12:13] not in ("", " "):
        raise _Malformed(f"bad status line {status[:80]!r}")
    headers: list[tuple[str, str]] = []
    framing: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or name[-1:] in (" ", "\t", "") or name[0] in (" ", "\t"):
            _fold(headers, line)
            continue
        name = name.lower()
        headers.append((name, value.strip()))
        if name in _FRAMING:
            framing.append(headers[-1])
    keep_alive, length, chunked, encoding = _framing(framing, version == "HTTP/1.1 ")
    return int(code), headers, keep_alive, length, chunked, encoding


def _fold(headers: list[tuple[str, str]], line: str) -> None:
    """Append an obsolete folded continuation line to the previous header's value."""
    if line[:1] not in (" ", "\t") or not headers:
        raise _Malformed(f"bad header line {line[:80]!r}")
    name, value = headers.pop()
    headers.append((name, f"{value} {line.strip()}"))


def _framing(framing: list[tuple[str, str]], http11: bool) -> tuple[bool, int | None, bool, str]:
    """(keep_alive, content_length, chunked, content_encoding) from the headers that say them."""
    connection: set[str] = set()
    length: int | None = None
    chunked = False
    encoding = ""
    for name, value in framing:
        if name == "content-length":
            if not value.isdigit() or (length is not None and length != int(value)):
                raise _Malformed(f"bad Content-Length {value[:40]!r}")
            length = int(value)
        elif name == "transfer-encoding":
            chunked = value.lower().rsplit(",", 1)[-1].strip() == "chunked"
        elif name == "connection":
            connection.update(token.strip() for token in value.lower().split(","))
        elif value.lower() in ("gzip", "x-gzip", "deflate"):  # content-encoding
            encoding = value.lower()
    keep_alive = "close" not in connection and (http11 or "keep-alive" in connection)
    return keep_alive, None if chunked else length, chunked, encoding


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip()
    if not size or len(size) > 15 or size.strip(b"0123456789abcdefABCDEF"):
        raise _Malformed(f"bad chunk size line {line[:40]!r}")
    return int(size, 16)


def _decode(body: bytes, encoding: str, limit: int, truncated: bool) -> tuple[bytes, bool]:
    """Decompress a gzip or deflate body, keeping at most ``limit`` bytes; a body cut short on the wire
    decodes as far as it goes."""
    wbits = zlib.MAX_WBITS | 16 if encoding != "deflate" else zlib.MAX_WBITS
    decoder = zlib.decompressobj(wbits)
    try:
        try:
            decoded = decoder.decompress(body, limit)
        except zlib.error:
            if encoding != "deflate":
                raise
            decoder = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send it
            decoded = decoder.decompress(body, limit)
    except zlib.error as exc:
        raise _Malformed(f"the {encoding} body does not decode ({exc})") from exc
    if decoder.unconsumed_tail:
        return decoded, True
    if not decoder.eof and not truncated:
        raise _Malformed(f"the {encoding} body ends early")
    return decoded, truncated


def _tls_failure(exc: Exception | None) -> bool:
    """A TLS error that is not just the peer closing (which a plain TCP connection would see as EOF)."""
    return isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError)


def _tls_error(pool: _Pool, exc: ssl.SSLError) -> TransportError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransportError(
            "tls",
            f"the TLS certificate of {pool.where} is not trusted ({exc.verify_message}); give the "
            "destination's CA bundle, or fix its certificate.",
        )
    return TransportError(
        "tls",
        f"TLS with {pool.where} failed ({exc.reason or exc}); if it asks for a client certificate, "
        "configure clientCertificate and clientKey.",
    )
