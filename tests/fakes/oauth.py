"""What every fake external service shares: a real HTTP server on 127.0.0.1 in a thread, the bearer
tokens it issues (and can expire), switches that inject failures, and a log of the requests it saw.

    fake = SalesforceFake().start()   # listening before start() returns; also a context manager
    fake.base_url                     # http://127.0.0.1:PORT
    fake.fail(503, times=2)           # the next 2 requests answer 503
    fake.fail(429, retry_after=1, path="/query")   # the next request whose path contains /query: 429
    fake.fail(503, times=None)        # every request answers 503 until fake.heal()
    fake.expire_sessions()            # every token issued so far is refused from now on (401)
    fake.expire_sessions(after=3)     # ... once 3 more authenticated requests have been served
    fake.count("/query")              # requests seen whose path contains "/query"
    fake.seen                         # [Seen(method, path, query, at)], ``at`` from time.monotonic()
    fake.stop()

The socket is bound and listening before the server thread starts, so a request made right after
``start()`` waits in the kernel's backlog instead of racing the thread: no polling, no sleeps.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: str
    at: float


@dataclass
class _Fault:
    status: int
    remaining: int | None  # None: until heal()
    retry_after: float | None
    path: str | None


class FakeService:
    """Base of the fakes: subclasses give ``routes()`` and may override ``fault_response()``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.seen: list[Seen] = []
        self.base_url = ""
        self._faults: list[_Fault] = []
        self._tokens: set[str] = set()
        self._expire_countdown: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._app = Starlette(routes=self.routes())

    # -- lifecycle -------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def start(self, tls: Path | None = None) -> Self:
        """Listen on 127.0.0.1 (plain HTTP, or HTTPS with ``tls``: a directory holding server.pem and
        server-key.pem, as :meth:`tests.fakes.tls.SinkCerts.write` makes them)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        scheme = "https" if tls is not None else "http"
        self.base_url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
        files: dict[str, str] = {}
        if tls is not None:
            files = {"ssl_certfile": str(tls / "server.pem"), "ssl_keyfile": str(tls / "server-key.pem")}
        config = uvicorn.Config(
            self._asgi, interface="asgi3", log_level="warning", access_log=False, lifespan="off", **files
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- switches --------------------------------------------------------------------------------

    def fail(
        self,
        status: int = 503,
        times: int | None = 1,
        retry_after: float | None = None,
        path: str | None = None,
    ) -> None:
        """Answer ``status`` to the next ``times`` requests whose path contains ``path`` (None: all)."""
        with self.lock:
            self._faults.append(_Fault(status, times, retry_after, path))

    def heal(self) -> None:
        with self.lock:
            self._faults.clear()

    def expire_sessions(self, after: int = 0) -> None:
        """Refuse every token issued so far, now or once ``after`` more authenticated requests succeeded."""
        with self.lock:
            if after <= 0:
                self._tokens.clear()
                self._expire_countdown = None
            else:
                self._expire_countdown = after

    def count(self, path: str = "", method: str | None = None) -> int:
        with self.lock:
            return sum(1 for s in self.seen if path in s.path and (method is None or s.method == method))

    def reset_log(self) -> None:
        with self.lock:
            self.seen.clear()

    # -- tokens ----------------------------------------------------------------------------------

    def issue_token(self, prefix: str = "") -> str:
        token = prefix + secrets.token_urlsafe(24)
        with self.lock:
            self._tokens.add(token)
        return token

    def authorized(self, request: Request) -> bool:
        """Whether the request carries a live bearer token (counts down ``expire_sessions(after=N)``)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        with self.lock:
            if self._expire_countdown is not None:
                if self._expire_countdown == 0:
                    self._tokens.clear()
                    self._expire_countdown = None
                else:
                    self._expire_countdown -= 1
            return scheme.lower() in ("bearer", "oauth") and token in self._tokens

    # -- plumbing --------------------------------------------------------------------------------

    def fault_response(self, status: int, retry_after: float | None) -> Response:
        headers = {"Retry-After": _seconds(retry_after)} if retry_after is not None else {}
        return Response(b"Service Unavailable", status_code=status, media_type="text/plain", headers=headers)

    def _take_fault(self, path: str) -> _Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.path is None or fault.path in path:
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode("latin-1")
            with self.lock:
                self.seen.append(Seen(scope["method"], scope["path"], query, time.monotonic()))
            fault = self._take_fault(scope["path"])
            if fault is not None:
                await self.fault_response(fault.status, fault.retry_after)(scope, receive, send)
                return
        await self._app(scope, receive, send)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def form(body: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body as a dict (last value wins)."""
    from urllib.parse import parse_qsl

    return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


def json_response(content: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content, status_code=status, media_type="application/json", headers=headers)
