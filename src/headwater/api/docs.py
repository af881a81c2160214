"""The API's documentation page, ``/docs``: Swagger UI over ``/openapi.json``, with every asset served
by Headwater itself (the ``swagger-ui-py`` package ships Swagger UI 5's files, Apache-2.0; version 4, as
``swagger-ui-bundle`` ships it, cannot read OpenAPI 3.1), so that the page works on a machine without
Internet access and loads nothing from a third party.

FastAPI's own ``/docs`` loads Swagger UI from a CDN and starts it with an inline script; both are turned
off (``docs_url=None``, ``redoc_url=None``) and replaced by this page, whose script is a file as well.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from headwater.edge.html import SECURITY_HEADERS

ASSETS = "/docs/assets"
_OWN = Path(__file__).with_name("static")
# Swagger UI sets style attributes on its elements: styles may be inline, scripts may not.
_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": SECURITY_HEADERS["Content-Security-Policy"].replace(
        "style-src 'self'", "style-src 'self' 'unsafe-inline'"
    ),
}
_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Headwater API</title>
<link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png">
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="{ASSETS}/swagger-ui-standalone-preset.js"></script>
<script src="/docs/headwater-docs.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Serve ``/docs`` (the page), its script, and Swagger UI's assets under :data:`ASSETS`."""
    assets = Path(str(files("swagger_ui") / "static"))
    app.mount(ASSETS, StaticFiles(directory=assets), name="swagger-ui")
    script = (_OWN / "docs.js").read_text()

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(_PAGE, headers=_HEADERS)

    @app.get("/docs/headwater-docs.js", include_in_schema=False)
    def docs_script() -> HTMLResponse:
        return HTMLResponse(script, media_type="text/javascript", headers={"Cache-Control": "no-cache"})
