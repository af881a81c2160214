"""Every error leaves the server in one shape: ``{"type","title","status","detail","report"}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from headwater.api.responses import JSONResponse
from headwater.errors import BadRequest, HeadwaterError, MethodNotAllowed, NotFound

log = logging.getLogger("headwater.api")


def _render(request: Request, error: HeadwaterError) -> JSONResponse:
    request_id = request.headers.get("x-request-id")
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.body(request_id), status_code=error.status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(HeadwaterError)
    async def _headwater(request: Request, exc: HeadwaterError) -> JSONResponse:
        if exc.status >= 500:  # str() of a backend's Unavailable adds what only operators may read
            log.error("%s %s failed: %s %s", request.method, request.url.path, exc.code, exc)
        return _render(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "path": ".".join(
                    str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header")
                ),
                "message": str(e.get("msg", "invalid")),
            }
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"path": "", "message": "invalid request"}
        return _render(
            request,
            BadRequest(f"{first['path']}: {first['message']}", code="HW-1422-400", report={"errors": errors}),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _render(
                request,
                NotFound(f"No such endpoint: {request.method} {request.url.path}.", code="HW-1404-404"),
            )
        if exc.status_code == 405:
            return _render(
                request, MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}.")
            )
        error = HeadwaterError(str(exc.detail), code=f"HW-{exc.status_code}-{exc.status_code}")
        error.status = exc.status_code
        return _render(request, error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _render(
            request, HeadwaterError("An unexpected error occurred; it has been logged.", code="HW-1000-500")
        )
