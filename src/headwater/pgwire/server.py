"""The listener: an asyncio server on ``HEADWATER_PGWIRE_HOST:PORT``, one :class:`Session` per client.

Started and stopped by the HTTP server's lifespan (headwater/server.py) in the same event loop. With
``serve --workers N`` every worker listens on the port (SO_REUSEPORT), as they share the HTTP socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import TYPE_CHECKING

from headwater.pgwire import codec
from headwater.pgwire.session import Session

if TYPE_CHECKING:
    from headwater.pgwire.backend import Backend
    from headwater.settings import Settings

log = logging.getLogger("headwater.pgwire")
MAX_CONNECTIONS = 100
MAX_CONCURRENT_QUERIES = 4


class PgWireServer:
    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings, self.backend = settings, backend
        self.tls = _tls_context(settings)
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        assert self.settings.pgwire_port is not None
        self._server = await asyncio.start_server(
            self._client, self.settings.pgwire_host, self.settings.pgwire_port, reuse_port=True
        )
        log.info(
            "Query Service PostgreSQL endpoint on %s:%s (%s)",
            self.settings.pgwire_host,
            self.settings.pgwire_port,
            "SSL offered" if self.tls else "no SSL",
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        for task in list(self._sessions):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
        self.backend.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._sessions) >= MAX_CONNECTIONS:
            writer.write(codec.error_response("53300", "too many connections to this endpoint", "FATAL"))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await Session(
                reader, writer, self.backend, self.tls, self.settings.header_timeout_seconds
            ).serve()
        finally:
            self._sessions.discard(task)


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.pgwire_tls_cert_file is None or settings.pgwire_tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.pgwire_tls_cert_file, settings.pgwire_tls_key_file)
    return context
