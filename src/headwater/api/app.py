"""The FastAPI application: one process serving every API of Headwater."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from headwater import __version__
from headwater.api import errors
from headwater.api.audit import AuditTrail
from headwater.api.limits import BodyLimits
from headwater.api.responses import JSONResponse
from headwater.services.container import Services
from headwater.settings import Settings, load_settings

log = logging.getLogger("headwater")

_HEADERS = [
    ("x-api-key", "The client id the access token was issued to."),
    ("x-gw-ims-org-id", "Your organization id."),
    ("x-sandbox-name", "The sandbox to work in, e.g. prod."),
]


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
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
    )
    if services is not None:
        app.state.services = services
    errors.install(app)
    from headwater.api.routes import (
        audit,
        catalog,
        collection,
        conversion,
        data360,
        destinations,
        flowservice,
        ims,
        mappingpreview,
        oauth,
        oauth_consent,
        runs,
        sandboxes,
        schemaregistry,
        uploads,
        users,
    )

    app.include_router(collection.router)
    app.add_middleware(AuditTrail)  # every platform write, recorded before it is answered
    app.add_middleware(collection.InletFastPath)  # the inlets, served ahead of the router
    # Outermost: body size limits and read timeouts for every route, the inlets included.
    app.add_middleware(BodyLimits, body_timeout=settings.body_timeout_seconds)
    app.include_router(ims.router)
    app.include_router(destinations.router)
    app.include_router(flowservice.router)
    app.include_router(schemaregistry.router)
    app.include_router(catalog.router)
    app.include_router(mappingpreview.router)
    app.include_router(conversion.router)
    app.include_router(runs.router)
    app.include_router(sandboxes.router)
    app.include_router(audit.router)
    from headwater import web

    web.install(app)
    app.include_router(uploads.router)
    app.include_router(oauth.router)
    app.include_router(users.router)
    app.include_router(oauth_consent.router)
    app.include_router(data360.router)

    @app.get("/health", tags=["Operations"], summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            **{
                name: {"type": "apiKey", "in": "header", "name": name, "description": text}
                for name, text in _HEADERS
            },
        }
        for path, methods in schema.get("paths", {}).items():
            if path.startswith("/data/"):
                for operation in methods.values():
                    operation["security"] = [{"bearer": [], **{n: [] for n, _ in _HEADERS}}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
