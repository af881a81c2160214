"""A lean HTTP/1.1 keep-alive client for deliveries: one record, one request, thousands a second.

httpx.AsyncClient manages a few hundred requests a second on the project machine, fewer as concurrency
grows; this client speaks HTTP/1.1 over asyncio transports with a hand-written response parser
(http11.py, which states a connection's contract), one request per connection at a time (no
pipelining), and keeps up with a local sink's several thousand (``python -m tests.test_delivery_client``
measures both). It checks every new connection against the outbound policy and connects to the
addresses the policy checked, never resolving the name again. It does not follow redirects, retry
(except a request that met a keep-alive connection the server had just closed), or add headers beyond
``Host`` and ``Content-Length``.

    TransportError        no HTTP response was obtained (errors.py); ``transient`` says whether trying
                          again may help
        kind "connect"    refused, reset or closed before the response was complete (transient)
        kind "timeout"    connect (TCP + TLS) or read timeout (transient)
        kind "protocol"   the answer was not HTTP/1.1 (transient)
        kind "tls"        certificate not trusted or TLS refused (terminal: fix the CA or the client cert)
        kind "refused"    the outbound policy forbids the URL (terminal: HEADWATER_OUTBOUND_ALLOW)

A request whose headers cannot be sent as given (a line break in a value, a name that is not a token,
text that is not Latin-1) raises ``ValueError`` before anything is sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from headwater.connectors.errors import OutboundRefused
from headwater.connectors.http_destination.errors import TransportError
from headwater.connectors.http_destination.http11 import MAX_HEAD as MAX_HEAD
from headwater.connectors.http_destination.http11 import Response as Response
from headwater.connectors.http_destination.http11 import _Connection, _Head, _Stale, _tls_error
from headwater.connectors.outbound import Address, OutboundPolicy

RESOLVE_SECONDS = 30.0  # how long a policy-checked resolution is reused for new connections
# a response never takes longer than max(TOTAL_SECONDS, TOTAL_READS x the read timeout): a server that
# drips a byte now and then cannot hold a request forever
TOTAL_SECONDS, TOTAL_READS = 30.0, 10
_MANAGED = frozenset({"host", "content-length", "transfer-encoding"})  # framing is the client's job
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 1.0  # seconds: DNS + TCP connect + TLS handshake
    read: float = 1.0  # seconds without a byte while waiting for, or reading, the response


class HttpClient:
    """Keep-alive pools keyed by (scheme, host, port), at most ``max_connections`` connections in all.

    Safe for many tasks of one event loop at once (use it from that loop only, and ``aclose()`` it before
    the loop ends); a request waits for a free connection when all are busy (that wait is not part of the
    connect timeout). Idle connections close after ``idle_seconds``.
    """

    def __init__(
        self,
        outbound: OutboundPolicy,
        *,
        max_connections: int = 64,
        ssl_context: ssl.SSLContext | None = None,
        max_body: int = 1 << 20,
        idle_seconds: float = 30.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._policy = outbound
        self._max = max_connections
        self._ssl = ssl_context
        self.max_body = max_body
        self._idle_seconds = idle_seconds
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._open = 0  # connections open or being opened
        self._connections: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._origins: dict[str, _Pool] = {}  # "scheme://host:port" as URLs spell it
        self._names: dict[str, bool] = {}  # header names checked so far -> sent (False: the client's own)
        # a server's response heads repeat (the Date changes once a second): each is parsed once
        self._heads: dict[bytes, _Head] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    async def request(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        timeouts: Timeouts = Timeouts(),
    ) -> Response:
        """Send one request and read its response (3xx included: redirects are not followed).

        Raises :class:`TransportError` when no response was obtained, ``ValueError`` for headers that
        cannot be sent. Caller headers named Host, Content-Length or Transfer-Encoding are dropped."""
        if self._closed:
            raise RuntimeError("the HttpClient is closed")
        pool, target = self._route(url)
        data = self._encode(method, target, pool.host_header, headers, body)
        head_only = method == "HEAD"
        read = timeouts.read
        total = max(TOTAL_SECONDS, TOTAL_READS * read)
        connection = self._take_idle(pool) or await self._acquire(pool, url, timeouts, fresh=False)
        try:
            response = await connection.send(data, read, total, head_only, self.max_body)
        except _Stale:
            # the server closed the idle connection as we sent: once more, on a new connection
            connection = await self._acquire(pool, url, timeouts, fresh=True)
            return await self._exchange(connection, data, read, total, head_only)
        except BaseException:
            connection.close(abort=True)  # a timed-out or cancelled exchange leaves the stream unusable
            raise
        self._release(connection)
        return response

    async def aclose(self) -> None:
        """Close every connection (requests in flight fail with kind "connect") and wait, briefly, for
        the transports to finish closing."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        connections = list(self._connections)
        for connection in connections:
            if connection.waiter is not None:
                closed = f"the HttpClient was closed while a request to {connection.pool.where} was in flight"
                connection._fail(TransportError("connect", closed))
            else:
                connection.close(abort=False)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        pending = [c.lost for c in connections if not c.lost.done()]
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    # -- requests --------------------------------------------------------------------------------

    def _route(self, url: str) -> tuple[_Pool, str]:
        """The pool of ``url``'s origin and the request target (path and query)."""
        cut = url.find("/", 8)  # the path's slash, past "https://" and at least one host character
        pool = self._origins.get(url[:cut]) if cut > 0 else None
        if pool is None:
            return self._route_slowly(url)
        target = url[cut:]
        if "#" in target:
            target = target[: target.index("#")]
        if " " in target:
            raise ValueError(f"the URL path {target!r} contains a space: percent-encode it as %20")
        return pool, target

    def _route_slowly(self, url: str) -> tuple[_Pool, str]:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            host = None
        if scheme not in ("http", "https") or not host:
            shown = f"{scheme}://{parts.hostname or ''}{parts.path}"
            raise TransportError("refused", f"{shown} is not a valid http(s) URL; check the destination URL.")
        pool = self._pools.get((scheme, host, port))
        if pool is None:
            pool = self._pools[scheme, host, port] = _Pool(scheme, host, port)
        cut = url.find("/", 8)
        origin = url[:cut] if cut > 0 else ""
        if origin == f"{scheme}://{parts.netloc}" and "@" not in origin and len(self._origins) < 1024:
            self._origins[origin] = pool  # the next URL of this origin skips urlsplit
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        if " " in target:
            raise ValueError(f"the URL path {target!r} contains a space: percent-encode it as %20")
        return pool, target

    def _encode(
        self, method: str, target: str, host: str, headers: Sequence[tuple[str, str]], body: bytes | None
    ) -> bytes:
        names = self._names
        if method not in names:
            self._check_name(method, "method")
        lines = [method, " ", target, " HTTP/1.1\r\nHost: ", host, "\r\n"]
        expected = 3  # request line, Host, the blank line
        for name, value in headers:
            send = names.get(name)
            if send is None:
                send = self._check_name(name, "header name")
            if send:
                lines += (name, ": ", value, "\r\n")
                expected += 1
        if body is not None:
            lines += ("Content-Length: ", str(len(body)), "\r\n")
            expected += 1
        lines.append("\r\n")
        head = "".join(lines)
        if head.count("\n") != expected or head.count("\r") != expected:
            raise ValueError("a header value contains a line break; remove it (it would split the header)")
        try:
            encoded = head.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise ValueError(
                "the URL or a header value is not Latin-1 text; percent-encode or otherwise escape it"
            ) from exc
        return encoded if not body else encoded + body

    def _check_name(self, name: str, what: str) -> bool:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"{what} {name!r} is not an HTTP token (letters, digits, !#$%&'*+-.^_`|~)")
        send = name.lower() not in _MANAGED
        if len(self._names) < 4096:
            self._names[name] = send
        return send

    async def _exchange(
        self, connection: _Connection, data: bytes, read: float, total: float, head_only: bool
    ) -> Response:
        waiter = connection.send(data, read, total, head_only, self.max_body)
        try:
            response = await waiter
        except BaseException:
            connection.close(abort=True)  # a timed-out or cancelled exchange leaves the stream unusable
            raise
        self._release(connection)
        return response

    # -- the pool --------------------------------------------------------------------------------

    async def _acquire(self, pool: _Pool, url: str, timeouts: Timeouts, *, fresh: bool) -> _Connection:
        rewait = False
        while True:
            if self._closed:
                raise RuntimeError("the HttpClient is closed")
            if not fresh:
                connection = self._take_idle(pool)
                if connection is not None:
                    return connection
            if self._open < self._max or self._evict_idle():
                self._open += 1
                try:
                    connection = await self._connect(pool, url, timeouts)
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
                self._connections.add(connection)
                connection.counted = True
                return connection
            await self._wait_for_slot(rewait)
            rewait = True

    def _take_idle(self, pool: _Pool) -> _Connection | None:
        idle = pool.idle
        while idle:
            connection = idle.pop()
            connection.is_idle = False
            if connection.idle_since + self._idle_seconds > connection.loop.time():
                return connection
            connection.close(abort=False)  # the rest below it are older still
        return None

    def _evict_idle(self) -> bool:
        """Close the longest-idle connection of any pool to make room; False when none is idle."""
        oldest: _Connection | None = None
        for pool in self._pools.values():
            if pool.idle and (oldest is None or pool.idle[0].idle_since < oldest.idle_since):
                oldest = pool.idle[0]
        if oldest is None:
            return False
        oldest.close(abort=False)
        return True

    async def _wait_for_slot(self, rewait: bool) -> None:
        waiter = asyncio.get_running_loop().create_future()
        if rewait:
            self._waiters.appendleft(waiter)  # woken but beaten to the connection: keep its turn
        else:
            self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # pass the wake-up on
            raise

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _release(self, connection: _Connection) -> None:
        if connection.closed:
            return
        if not connection.reusable or self._closed:
            connection.close(abort=False)
            return
        loop = connection.loop
        connection.idle_since = loop.time()
        connection.is_idle = True
        connection.pool.idle.append(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_at(connection.idle_since + self._idle_seconds, self._sweep)
        if self._waiters:
            self._wake()

    def _forget(self, connection: _Connection) -> None:
        """Called once per connection when it closes, whoever closed it."""
        if not connection.counted:
            return
        connection.counted = False
        self._connections.discard(connection)
        self._open -= 1
        if connection.is_idle:
            connection.is_idle = False
            connection.pool.idle.remove(connection)
        self._wake()

    def _sweep(self) -> None:
        self._sweeper = None
        oldest: float | None = None
        for pool in self._pools.values():
            while pool.idle and pool.idle[0].idle_since + self._idle_seconds <= pool.idle[0].loop.time():
                pool.idle[0].close(abort=False)
            if pool.idle and (oldest is None or pool.idle[0].idle_since < oldest):
                oldest = pool.idle[0].idle_since
        if oldest is not None and not self._closed:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_at(oldest + self._idle_seconds, self._sweep)

    # -- connecting ------------------------------------------------------------------------------

    async def _connect(self, pool: _Pool, url: str, timeouts: Timeouts) -> _Connection:
        try:
            async with asyncio.timeout(timeouts.connect):
                addresses = await self._addresses(pool, url)
                return await self._open_any(pool, addresses)
        except TimeoutError:
            raise TransportError(
                "timeout",
                f"connect timeout after {timeouts.connect * 1000:.0f} ms to {pool.where}: the destination "
                "did not accept the connection (or finish the TLS handshake) in time; check that it is up.",
            ) from None

    async def _addresses(self, pool: _Pool, url: str) -> list[Address]:
        loop = asyncio.get_running_loop()
        if pool.addresses and pool.resolved_at + RESOLVE_SECONDS > loop.time():
            return pool.addresses
        try:
            if _is_ip(pool.host):
                addresses = self._policy.resolve(url)
            else:
                addresses = await loop.run_in_executor(None, self._policy.resolve, url)
        except OutboundRefused as exc:  # a name that does not resolve (yet) is retried, a refusal is not
            raise TransportError("connect" if exc.transient else "refused", exc.message) from exc
        pool.addresses, pool.resolved_at = list(dict.fromkeys(addresses)), loop.time()
        return pool.addresses

    async def _open_any(self, pool: _Pool, addresses: list[Address]) -> _Connection:
        context = None
        if pool.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        failure: OSError | None = None
        for address in addresses:
            try:
                return await self._open_to(pool, address, context)
            except ssl.SSLError as exc:
                raise _tls_error(pool, exc) from exc
            except OSError as exc:
                failure = exc
        reason = f"{failure.strerror or failure}" if failure is not None else "no address"
        raise TransportError(
            "connect", f"cannot connect to {pool.where}: {reason}; check that the destination is up."
        ) from failure

    async def _open_to(self, pool: _Pool, address: Address, context: ssl.SSLContext | None) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = _Connection(self, pool, loop)
        hostname = pool.host if context is not None else None
        await loop.create_connection(
            lambda: connection, str(address), pool.port, ssl=context, server_hostname=hostname
        )
        return connection


class _Pool:
    def __init__(self, scheme: str, host: str, port: int) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        name = f"[{host}]" if ":" in host else host
        default = 443 if scheme == "https" else 80
        self.host_header = name if port == default else f"{name}:{port}"
        self.where = f"{name}:{port}"
        self.idle: list[_Connection] = []  # most recently used last
        self.addresses: list[Address] = []
        self.resolved_at = 0.0


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
