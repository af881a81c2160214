"""A destination sink for activation tests and benchmarks: a real HTTP server on 127.0.0.1 that records
every request, issues OAuth 2 client-credentials tokens, checks Basic or bearer auth, listens for mutual
TLS, and can be made slow, failing, throttling or unreachable while a test runs.

    sink = SinkFake(auth="bearer").start()   # listening before start() returns; also a context manager
    sink.url / sink.https_url / sink.mtls_url   # http, TLS, and TLS that requires a client certificate
    sink.token_url                     # POST /oauth/token on the https listener (HTTPS, as document 003 asks)
    sink.protect("/basic", "basic")    # per path prefix: "bearer", "basic" or "none" (longest prefix wins)
    sink.delay(0.5)                    # every request waits 0.5 s before it is answered
    sink.fail(503, times=2)            # the next 2 requests answer 503 (also 500, 408, 400, ...)
    sink.fail(500, for_seconds=2)      # every request answers 500 for the next 2 seconds
    sink.throttle(retry_after=1)       # the next request answers 429 with ``Retry-After: 1``
    sink.outage()                      # listening sockets closed: connections are refused
    sink.recover()                     # listening again on the same ports (``outage(for_seconds=3)`` too)
    sink.expire_tokens()               # every token issued so far is refused from now on (401)
    sink.compress()                    # gzip response bodies when the request accepts gzip
    sink.chunk()                       # send response bodies with chunked transfer encoding
    sink.redirect("/elsewhere", 301)   # answer with a redirect instead of 200
    sink.echo(400)                     # answer 400 with the request echoed in the body and headers
    sink.close_connections()           # close idle keep-alive connections, as a keep-alive timeout does
    sink.in_flight("/slow")            # requests being handled now (whose path contains "/slow")
    sink.peak_in_flight                # most requests handled at once since start or reset()
    sink.wait_for(100, timeout=5)      # the first 100 requests answered 2xx, or TimeoutError
    sink.received()                    # [Received(method, path, query, headers, body, at, status, listener,
                                       #           peer)]: ``peer`` ("ip:port") tells connections apart
    sink.reset()                       # switches off, logs emptied, listening again
    sink.stop()

Client side: ``sink.ssl_context()`` trusts the sink's test CA and presents its client certificate;
``sink.certs`` holds the PEMs (CA, server for 127.0.0.1, client: tests/fakes/tls.py makes them) and
``sink.ca_file``, ``sink.client_cert_file`` and ``sink.client_key_file`` point at them on disk while the
sink runs.

Faults and delays whose ``path`` is None apply to every request except the token endpoint; pass
``path="/oauth/token"`` to make the token endpoint misbehave. Compression, chunking and redirects never
touch the token endpoint. Each request is recorded once it has been
answered (or cut by an outage it was waiting in), so ``wait_for`` counts what the client was told.

The app is a bare ASGI callable under uvicorn (httptools, uvloop when installed), which serves several
thousand requests a second: ``bench/activate.py`` measures against it.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.fakes.oauth import form
from tests.fakes.tls import SinkCerts

AuthMode = Literal["none", "basic", "bearer"]
Listener = Literal["http", "https", "mtls"]
TOKEN_PATH = "/oauth/token"


@dataclass(frozen=True)
class Received:
    """One request as the sink saw it; ``at`` is its arrival, from ``time.monotonic()``."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    at: float
    status: int  # what the sink answered; 0 when an outage cut the request
    listener: Listener
    peer: str = ""  # the client's "ip:port": requests of one keep-alive connection share it

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key == lowered), None)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class TokenRequest:
    """A call to the token endpoint: how the credentials came (``header`` or ``body``) and the form."""

    credentials_in: Literal["header", "body", "none"]
    client_id: str
    form: dict[str, str]
    headers: tuple[tuple[str, str], ...]
    granted: bool


@dataclass
class _Fault:
    status: int
    remaining: int | None  # None: until heal() or ``until``
    until: float | None
    retry_after: float | str | None
    path: str | None


@dataclass
class _Switches:
    delay: float = 0.0
    delay_path: str | None = None
    faults: list[_Fault] = field(default_factory=list)
    gzip: bool = False
    chunked: bool = False
    redirect: tuple[str, int, str | None] | None = None  # location, status, path
    echo: int | None = None  # answer every request with this status and the request itself


class SinkFake:
    """The sink. Thread-safe: switches may be flipped from the test while requests are in flight."""

    def __init__(
        self,
        auth: AuthMode = "none",
        *,
        username: str = "sink-user",
        password: str = "sink-password",
        client_id: str = "sink-client",
        client_secret: str = "sink-secret",
        token_ttl: float = 3600.0,
        response_body: bytes = b'{"ok":true}',
    ) -> None:
        self.username, self.password = username, password
        self.client_id, self.client_secret = client_id, client_secret
        self.token_ttl = token_ttl
        self.response_body = response_body
        self.certs = SinkCerts.generate()
        self._rules: dict[str, AuthMode] = {"/": auth, TOKEN_PATH: "none"}
        self._lock = threading.Condition(threading.RLock())
        self._received: list[Received] = []
        self._token_requests: list[TokenRequest] = []
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._switches = _Switches()
        self._ports: dict[Listener, int] = {}
        self._servers: dict[Listener, tuple[uvicorn.Server, threading.Thread]] = {}
        self._dir: Path | None = None
        self._recover_timer: threading.Timer | None = None
        self._in_flight: list[str] = []  # paths of the requests being handled
        self._peak_in_flight = 0
        self._listeners_lock = threading.Lock()  # a timed outage recovers from its own thread

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="headwater-sink-"))
            self.certs.write(self._dir)
        self._listen()
        return self

    def stop(self) -> None:
        self._cancel_recover_timer()
        self._close_listeners()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
        self._ports.clear()

    def __enter__(self) -> Self:
        return self.start() if self._dir is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._ports['http']}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self._ports['https']}"

    @property
    def mtls_url(self) -> str:
        return f"https://127.0.0.1:{self._ports['mtls']}"

    @property
    def token_url(self) -> str:
        return self.https_url + TOKEN_PATH

    @property
    def ca_file(self) -> str:
        return str(self._files() / "ca.pem")

    @property
    def client_cert_file(self) -> str:
        return str(self._files() / "client.pem")

    @property
    def client_key_file(self) -> str:
        return str(self._files() / "client-key.pem")

    def ssl_context(self, client_cert: bool = True) -> ssl.SSLContext:
        """A client context trusting the sink's CA; with ``client_cert`` it also presents the client cert."""
        context = ssl.create_default_context(cadata=self.certs.ca_cert)
        if client_cert:
            context.load_cert_chain(self.client_cert_file, self.client_key_file)
        return context

    def urls(self) -> dict[str, str]:
        """Everything a destination connection needs, as ``python -m tests.fakes.sink`` prints it."""
        return {
            "url": self.url,
            "httpsUrl": self.https_url,
            "mtlsUrl": self.mtls_url,
            "tokenUrl": self.token_url,
            "clientId": self.client_id,
            "clientSecret": self.client_secret,
            "username": self.username,
            "password": self.password,
            "caFile": self.ca_file,
            "clientCertFile": self.client_cert_file,
            "clientKeyFile": self.client_key_file,
        }

    # -- switches --------------------------------------------------------------------------------

    def protect(self, prefix: str, mode: AuthMode) -> None:
        """Require ``mode`` on paths starting with ``prefix``; the longest matching prefix wins."""
        with self._lock:
            self._rules[prefix] = mode

    def delay(self, seconds: float, path: str | None = None) -> None:
        """Hold each request whose path contains ``path`` for ``seconds`` before answering (0: off)."""
        with self._lock:
            self._switches.delay, self._switches.delay_path = seconds, path

    def fail(
        self,
        status: int = 503,
        times: int | None = 1,
        *,
        for_seconds: float | None = None,
        retry_after: float | str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer ``status`` to the next ``times`` requests (None: until ``heal()``), or to every request
        for the next ``for_seconds``. ``retry_after`` (seconds, or a string sent as is) adds Retry-After."""
        until = None if for_seconds is None else time.monotonic() + for_seconds
        remaining = None if for_seconds is not None else times
        with self._lock:
            self._switches.faults.append(_Fault(status, remaining, until, retry_after, path))

    def throttle(self, retry_after: float | str = 1, times: int | None = 1, path: str | None = None) -> None:
        """Answer 429 with ``Retry-After`` to the next ``times`` requests."""
        self.fail(429, times, retry_after=retry_after, path=path)

    def heal(self) -> None:
        with self._lock:
            self._switches.faults.clear()

    def outage(self, for_seconds: float | None = None) -> None:
        """Close every listening socket and open connection; with ``for_seconds``, ``recover()`` after."""
        self._cancel_recover_timer()
        self._close_listeners()
        if for_seconds is not None:
            self._recover_timer = threading.Timer(for_seconds, self.recover)
            self._recover_timer.daemon = True
            self._recover_timer.start()

    def recover(self) -> None:
        """Listen again on the same ports (a no-op while listening)."""
        if self._dir is not None:
            self._listen()

    def compress(self, on: bool = True) -> None:
        """Gzip response bodies (``Content-Encoding: gzip``) when the request's Accept-Encoding has gzip."""
        with self._lock:
            self._switches.gzip = on

    def chunk(self, on: bool = True) -> None:
        """Send response bodies with ``Transfer-Encoding: chunked``, in several chunks, no Content-Length."""
        with self._lock:
            self._switches.chunked = on

    def redirect(self, location: str, status: int = 302, path: str | None = None) -> None:
        """Answer ``status`` with ``Location: location`` to requests whose path contains ``path``."""
        with self._lock:
            self._switches.redirect = (location, status, path)

    def echo(self, status: int | None = 200) -> None:
        """Answer every request but the token endpoint's with ``status``, a JSON body holding the request
        (method, path, query, headers, body) and its headers again as ``x-echo-<name>`` response
        headers, as a careless API does; None switches it off."""
        with self._lock:
            self._switches.echo = status

    def close_connections(self, timeout: float = 5.0) -> None:
        """Close every idle keep-alive connection (busy ones close after their response), as a server's
        keep-alive timeout does; returns once the sink has closed them all."""
        protocols = [p for server, _ in list(self._servers.values()) for p in server.server_state.connections]
        for protocol in protocols:
            protocol.loop.call_soon_threadsafe(protocol.shutdown)
        deadline = time.monotonic() + timeout
        while any(not p.transport.is_closing() for p in protocols):
            if time.monotonic() > deadline:
                raise TimeoutError("the sink could not close its connections")
            time.sleep(0.001)

    def in_flight(self, path: str | None = None) -> int:
        """Requests being handled right now (held by ``delay``, say) whose path contains ``path``."""
        with self._lock:
            return sum(1 for p in self._in_flight if path is None or path in p)

    @property
    def peak_in_flight(self) -> int:
        """The most requests the sink was handling at once since start or reset()."""
        with self._lock:
            return self._peak_in_flight

    def expire_tokens(self) -> None:
        """Refuse every token issued so far (401 with ``error="invalid_token"``)."""
        with self._lock:
            self._tokens.clear()

    def reset(self) -> None:
        """Switches off, logs emptied, listening again; issued tokens and auth rules are kept."""
        self._cancel_recover_timer()
        with self._lock:
            self._switches = _Switches()
            self._received.clear()
            self._token_requests.clear()
            self._peak_in_flight = len(self._in_flight)
        self.recover()

    # -- what was seen ---------------------------------------------------------------------------

    def received(self, path: str | None = None, status: int | None = None) -> list[Received]:
        """Requests answered so far whose path contains ``path`` and (if given) answered ``status``."""
        with self._lock:
            return [r for r in self._received if _matches(r, path, status)]

    def delivered(self, path: str | None = None) -> list[Received]:
        """Requests answered 2xx, the token endpoint excluded."""
        with self._lock:
            ok = (r for r in self._received if 200 <= r.status < 300 and r.path != TOKEN_PATH)
            return [r for r in ok if path is None or path in r.path]

    def count(self, path: str | None = None, status: int | None = None) -> int:
        return len(self.received(path, status))

    def wait_for(self, n: int, timeout: float = 5.0, *, path: str | None = None) -> list[Received]:
        """Block until ``n`` requests whose path contains ``path`` were answered 2xx (token requests count
        only when ``path`` is the token path); TimeoutError after ``timeout`` seconds, saying how many
        arrived and which other statuses were answered."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                done = self.delivered(path) if path != TOKEN_PATH else self.received(path, 200)
                if len(done) >= n:
                    return done
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    others = sorted({r.status for r in self._received if not 200 <= r.status < 300})
                    raise TimeoutError(
                        f"sink got {len(done)} of {n} expected 2xx requests in {timeout} s "
                        f"(non-2xx statuses seen: {others}); check the client's retries and the switches"
                    )
                self._lock.wait(remaining)

    @property
    def token_requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._token_requests)

    # -- listeners -------------------------------------------------------------------------------

    def _listen(self) -> None:
        with self._listeners_lock:
            for name in ("http", "https", "mtls"):
                if name not in self._servers:
                    self._serve(name)

    def _serve(self, name: Listener) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._ports.get(name, 0)))
        sock.listen(1024)
        self._ports[name] = sock.getsockname()[1]
        files = self._files()
        tls: dict[str, Any] = {}
        if name != "http":
            tls = {"ssl_certfile": str(files / "server.pem"), "ssl_keyfile": str(files / "server-key.pem")}
        if name == "mtls":
            tls |= {"ssl_ca_certs": self.ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED}
        config = uvicorn.Config(
            self._app_for(name),
            interface="asgi3",
            log_level="critical",  # outages cancel in-flight requests on purpose
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=0,
            **tls,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        self._servers[name] = (server, thread)

    def _close_listeners(self) -> None:
        with self._listeners_lock:
            servers = list(self._servers.values())
            self._servers.clear()
            for server, _ in servers:
                server.should_exit = True
            for _, thread in servers:
                thread.join(timeout=10)

    def _cancel_recover_timer(self) -> None:
        if self._recover_timer is not None:
            self._recover_timer.cancel()
            self._recover_timer = None

    def _files(self) -> Path:
        if self._dir is None:
            raise RuntimeError("the sink is not running: call start() or use it as a context manager")
        return self._dir

    # -- the app ---------------------------------------------------------------------------------

    def _app_for(self, listener: Listener) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                await self._handle(listener, scope, receive, send)

        return app

    async def _handle(self, listener: Listener, scope: Scope, receive: Receive, send: Send) -> None:
        at = time.monotonic()
        body = await _read_body(receive)
        method, path = str(scope["method"]), str(scope["path"])
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        client = scope.get("client") or ("", 0)
        status = 0
        self._enter(path)
        try:
            pause = self._pause_for(path)
            if pause > 0:
                await asyncio.sleep(pause)
            status, out_headers, content = self._respond(method, path, headers, body, query)
            await self._send(send, status, out_headers, content, path, dict(headers))
        finally:
            self._leave(path)
            peer = f"{client[0]}:{client[1]}"
            self._record(Received(method, path, query, headers, body, at, status, listener, peer))

    async def _send(
        self,
        send: Send,
        status: int,
        out_headers: list[tuple[bytes, bytes]],
        content: bytes,
        path: str,
        headers: dict[str, str],
    ) -> None:
        with self._lock:
            switches = self._switches
            gzipped = switches.gzip and "gzip" in headers.get("accept-encoding", "") and path != TOKEN_PATH
            chunked = switches.chunked and path != TOKEN_PATH
        if gzipped:
            content = gzip.compress(content)
            out_headers.append((b"content-encoding", b"gzip"))
        if not chunked:
            out_headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        if chunked:  # uvicorn frames a body without Content-Length as chunks, one per message
            step = max(1, len(content) // 3)
            for start in range(0, len(content), step):
                await send(
                    {"type": "http.response.body", "body": content[start : start + step], "more_body": True}
                )
        await send({"type": "http.response.body", "body": b"" if chunked else content, "more_body": False})

    def _enter(self, path: str) -> None:
        with self._lock:
            self._in_flight.append(path)
            self._peak_in_flight = max(self._peak_in_flight, len(self._in_flight))

    def _leave(self, path: str) -> None:
        with self._lock:
            self._in_flight.remove(path)

    def _record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)
            self._lock.notify_all()

    def _pause_for(self, path: str) -> float:
        with self._lock:
            switches = self._switches
            wanted = switches.delay_path is None or switches.delay_path in path
            return switches.delay if wanted else 0.0

    def _respond(
        self, method: str, path: str, headers: tuple[tuple[str, str], ...], body: bytes, query: str = ""
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        with self._lock:
            echo = self._switches.echo
        if echo is not None and path != TOKEN_PATH:
            return _echo(echo, method, f"{path}?{query}" if query else path, headers, body)
        fault = self._take_fault(path)
        if fault is not None:
            extra = [] if fault.retry_after is None else [(b"retry-after", _seconds(fault.retry_after))]
            return fault.status, [(b"content-type", b"text/plain"), *extra], b"fault injected by the sink"
        if path == TOKEN_PATH:
            return self._token(method, headers, body)
        with self._lock:
            redirect = self._switches.redirect
        if redirect is not None and (redirect[2] is None or redirect[2] in path):
            return redirect[1], [(b"location", redirect[0].encode())], b""
        refusal = self._refuse(path, dict(headers).get("authorization", ""))
        if refusal is not None:
            return refusal
        return 200, [(b"content-type", b"application/json")], self.response_body

    def _take_fault(self, path: str) -> _Fault | None:
        now = time.monotonic()
        with self._lock:
            faults = self._switches.faults
            faults[:] = [f for f in faults if f.until is None or f.until > now]
            for fault in faults:
                if fault.path in path if fault.path is not None else path != TOKEN_PATH:
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            faults.remove(fault)
                    return fault
        return None

    def _refuse(self, path: str, authorization: str) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        with self._lock:
            prefix = max((p for p in self._rules if path.startswith(p)), key=len, default="/")
            mode = self._rules.get(prefix, "none")
        scheme, _, credentials = authorization.partition(" ")
        if mode == "basic" and not (
            scheme.lower() == "basic" and _basic(credentials) == (self.username, self.password)
        ):
            return 401, [(b"www-authenticate", b'Basic realm="sink"')], b'{"error":"unauthorized"}'
        if mode == "bearer" and not (scheme.lower() == "bearer" and self._live(credentials)):
            challenge = b'Bearer realm="sink", error="invalid_token"'
            return 401, [(b"www-authenticate", challenge)], b'{"error":"invalid_token"}'
        return None

    def _live(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
            return expiry is not None and expiry > time.monotonic()

    def _token(
        self, method: str, headers: tuple[tuple[str, str], ...], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        fields = form(body) if method == "POST" else {}
        scheme, _, credentials = dict(headers).get("authorization", "").partition(" ")
        given: tuple[str, str] | None = None
        source: Literal["header", "body", "none"] = "none"
        if scheme.lower() == "basic":
            given, source = _basic(credentials), "header"
        elif "client_id" in fields:
            given, source = (fields["client_id"], fields.get("client_secret", "")), "body"
        granted = given == (self.client_id, self.client_secret)
        with self._lock:
            self._token_requests.append(
                TokenRequest(source, given[0] if given else "", fields, headers, granted)
            )
        json_type = [(b"content-type", b"application/json")]
        if fields.get("grant_type") != "client_credentials":
            return 400, json_type, b'{"error":"unsupported_grant_type"}'
        if not granted:
            return 401, json_type, b'{"error":"invalid_client"}'
        token = secrets.token_urlsafe(24)
        with self._lock:
            ttl = self.token_ttl
            self._tokens[token] = time.monotonic() + ttl
        grant = {"access_token": token, "token_type": "Bearer", "expires_in": int(ttl)}
        return 200, [*json_type, (b"cache-control", b"no-store")], json.dumps(grant).encode()


# -- helpers -------------------------------------------------------------------------------------


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(bytes(message.get("body", b"")))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _echo(
    status: int, method: str, path: str, headers: tuple[tuple[str, str], ...], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    answer = {"method": method, "path": path, "headers": dict(headers), "body": body.decode("latin-1")}
    echoed = [(f"x-echo-{name}".encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    return status, [(b"content-type", b"application/json"), *echoed], json.dumps(answer).encode()


def _matches(received: Received, path: str | None, status: int | None) -> bool:
    return (path is None or path in received.path) and (status is None or received.status == status)


def _basic(credentials: str) -> tuple[str, str] | None:
    try:
        username, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
    except ValueError:
        return None
    return username, password


def _seconds(value: float | str) -> bytes:
    if isinstance(value, str):
        return value.encode("latin-1")
    return str(int(value) if float(value).is_integer() else value).encode()


def main() -> None:
    """``python -m tests.fakes.sink [--auth none|basic|bearer]``: print the URLs as JSON, serve until
    interrupted or terminated."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--auth", choices=["none", "basic", "bearer"], default="none")
    args = parser.parse_args()
    with SinkFake(auth=args.auth) as sink:
        print(json.dumps(sink.urls()), flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()


if __name__ == "__main__":
    main()
