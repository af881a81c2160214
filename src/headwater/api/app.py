"""The platform API: every route of Headwater's HTTP API, installed on the server's application."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from headwater import __version__
from headwater.api import errors
from headwater.api.limits import BodyLimits
from headwater.api.paths import PathNormaliser
from headwater.edge.audit import AuditTrail
from headwater.settings import Settings

_HEADERS = [
    ("x-api-key", "The client id the access token was issued to."),
    ("x-gw-ims-org-id", "Your organization id."),
    ("x-sandbox-name", "The sandbox to work in, e.g. prod."),
]


def install(app: FastAPI, settings: Settings) -> None:
    """The platform API on ``app`` (headwater/server.py composes it with the console): error answers,
    the middleware (body limits, inlet fast path, audit trail), the routers, /health and the OpenAPI
    document with its security schemes."""
    errors.install(app)
    from headwater.api.routes import (
        audit,
        batchingest,
        catalog,
        collection,
        conversion,
        data360,
        data360_query,
        destinations,
        flowservice,
        iceberg_rest,
        identity_namespaces,
        ims,
        mappingpreview,
        merge_policies,
        oauth,
        oauth_consent,
        profile_exports,
        profiles,
        queryservice,
        runs,
        sandboxes,
        schemaregistry,
        segments,
        uploads,
        users,
    )

    app.include_router(collection.router)
    app.add_middleware(AuditTrail)  # every platform write, recorded before it is answered
    app.add_middleware(collection.InletFastPath)  # the inlets, served ahead of the router
    # Outermost: body size limits and read timeouts for every route, the inlets included.
    app.add_middleware(BodyLimits, body_timeout=settings.body_timeout_seconds)
    # Outermost of all: a trailing slash names the same resource, for every route (api/paths.py).
    app.add_middleware(PathNormaliser)
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
    app.include_router(uploads.router)
    app.include_router(oauth.router)
    app.include_router(users.router)
    app.include_router(oauth_consent.router)
    app.include_router(data360.router)
    app.include_router(data360_query.router)
    app.include_router(identity_namespaces.router)
    app.include_router(merge_policies.router)
    app.include_router(profiles.router)
    app.include_router(segments.router)
    app.include_router(profile_exports.router)
    app.include_router(batchingest.router)
    app.include_router(queryservice.router)
    app.include_router(iceberg_rest.router)

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
            elif path.startswith("/iceberg/") and not path.endswith("/oauth/tokens"):
                for operation in methods.values():  # the token alone: the prefix names the sandbox
                    operation["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
