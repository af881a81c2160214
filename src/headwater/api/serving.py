"""How the HTTP server runs: one uvicorn configuration for ``headwater serve`` and the tests' servers.

uvicorn bounds the idle time between requests (``timeout_keep_alive``) but not the time a client takes
to send a request's line and headers: a client that opens a connection and sends half a header line
holds it for ever, and enough of them exhaust the server's file descriptors (slowloris).
:class:`HeadwaterHttpProtocol` is uvicorn's httptools protocol with two bounds added:

- ``header_timeout`` (HEADWATER_HEADER_TIMEOUT_SECONDS): from the connection's first moment, or from the
  first byte of a later request on it, to the end of the headers. Past it the server answers
  ``408 Request Timeout`` (when the client had started a request) and closes the connection.
- :data:`MAX_HEADER_BYTES` of request line and headers: past it, ``431`` and close (the parser would
  otherwise buffer a header line of any length).

Request bodies are bounded in time and size by the application (api/limits.py), which can answer in the
platform's error shape.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from headwater.settings import Settings

MAX_HEADER_BYTES = 64 * 1024
KEEP_ALIVE_SECONDS = 5


class HeadwaterHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with a header timeout and a header size limit (see the module)."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout: float = float(getattr(config, "header_timeout", 10.0))
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_headers = True  # before a request's headers are complete
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        counting = self._in_headers
        if counting:
            self._header_bytes += len(data)
        super().data_received(data)
        if counting and self._in_headers and self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(431, b"Request Header Fields Too Large", b"The request's headers are too large.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()  # a later request on a kept-alive connection: its own deadline

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_headers = True

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._header_bytes:
            self._refuse(408, b"Request Timeout", b"The request's headers did not arrive in time.")
        else:
            self.transport.close()  # an idle connection that never started a request

    def _refuse(self, status: int, phrase: bytes, message: bytes) -> None:
        """Answer ``status`` and close, unless another request's answer may be on its way."""
        self._cancel_header_timer()
        busy = self.cycle is not None and not self.cycle.response_complete
        if not busy:
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (status, phrase, len(message), message)
            )
        self.transport.close()


def server_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration of a Headwater server for ``app`` (an application, or an import string
    with ``factory=True``). ``options`` are further uvicorn options (log level, workers)."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=HeadwaterHttpProtocol,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # The client address is the TCP peer (app IP ranges, audit, sign-in throttle): no forwarding
        # header is believed, or any local process could claim any address.
        proxy_headers=False,
        **_tls(settings),
        **options,
    )
    config.header_timeout = settings.header_timeout_seconds  # type: ignore[attr-defined]
    return config


def _tls(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for HTTPS when the settings name a certificate and key (HEADWATER_TLS_*)."""
    if not settings.tls_enabled:
        return {}
    return {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(settings.tls_key_file)}


def raise_file_limit() -> None:
    """Lift the soft limit on open files to the hard one: each connection is a file descriptor, and a
    default soft limit of 1024 is reached by a few hundred slow clients plus the server's own files."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 1 << 16 if hard == resource.RLIM_INFINITY else hard
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ImportError, ValueError, OSError):  # not POSIX, or not allowed: keep the limit as it is
        pass


def run(config: uvicorn.Config) -> None:
    """Serve until stopped, in ``config.workers`` processes (uvicorn.run's logic, for a Config)."""
    from uvicorn.supervisors import Multiprocess

    server = uvicorn.Server(config)
    if config.workers > 1:
        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run()
