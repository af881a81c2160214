"""The HTTP server's application: the platform API and the console in one FastAPI app, the container
built (or handed in by a test), and the embedded worker started with it.

``create_app`` is the factory ``headwater serve`` gives uvicorn. The application's state carries the
container as ``services``: the request entry points of api/ and web/ find it there
(``headwater.container.services``), and the HTTP edge its authenticator.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from headwater import __version__, web
from headwater.api import docs as api_docs
from headwater.api.app import install as install_api
from headwater.api.responses import JSONResponse
from headwater.container import Services
from headwater.settings import Settings, load_settings

if TYPE_CHECKING:
    from headwater.pgwire.server import PgWireServer

log = logging.getLogger("headwater")


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """The application. With ``services`` (a test's in-process app) it neither closes them, tunes the
    garbage collector nor starts the embedded worker."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or Services(settings)
        svc.start()
        app.state.services = svc
        svc.ingestion_connectors.start()  # Data 360 bulk jobs; resumes those a previous process left
        if services is None:  # a real server process (not a test's in-process app)
            from headwater.process import tune_garbage_collector

            tune_garbage_collector()
        pgwire = await _start_pgwire(settings, svc)  # before the worker: a port in use stops the start
        worker = None
        if settings.embedded_worker and services is None:
            from headwater.runtime.worker import start_in_background

            worker = start_in_background(svc)
        log.info(
            "Headwater %s serving; metadata at %s", __version__, _safe_url(settings.resolved_database_url)
        )
        try:
            yield
        finally:
            if pgwire is not None:
                await pgwire.stop()
            svc.ingestion_connectors.stop()
            if worker is not None:
                worker.stop()
            if services is None:
                svc.close()

    app = FastAPI(
        title="Headwater",
        version=__version__,
        description="Self-hosted customer data platform core. Paths, headers and payloads follow Adobe "
        "Experience Platform's Flow Service, Schema Registry, Catalog and Conversion APIs.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        docs_url=None,  # api/docs.py serves /docs from the package's own assets (offline)
        redoc_url=None,
    )
    if services is not None:
        app.state.services = services
    install_api(app, settings)
    api_docs.install(app)
    web.install(app)
    return app


async def _start_pgwire(settings: Settings, svc: Services) -> PgWireServer | None:
    """Query Service's PostgreSQL wire endpoint, when HEADWATER_PGWIRE_PORT turns it on."""
    if settings.pgwire_port is None:
        return None
    from headwater.pgwire.backend import Backend
    from headwater.pgwire.server import MAX_CONCURRENT_QUERIES, PgWireServer

    server = PgWireServer(settings, Backend(svc.authenticator, svc.queries, MAX_CONCURRENT_QUERIES))
    await server.start()
    return server


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
