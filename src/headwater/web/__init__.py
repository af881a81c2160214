"""The web console: server-rendered page shells (Jinja2) whose scripts call the same HTTP API as every
other client, with the session cookie and its CSRF header. Every asset is served from ``/console/static``;
nothing comes from a CDN. The session cookie, its CSRF token and sign-in throttling are the HTTP edge's
(edge/session.py), which the API shares.

    web/app.py          sign-in, sign-out, the page helper (``page()``), the navigation, and what the
                        signed-in person's roles allow (``Access``, carried by each page)
    web/pages/*.py      one module per area (sources, destinations, activations, data360, data, flows,
                        organization: Users and Audit): GET routes that render ``templates/<area>/*.html``;
                        the behaviour is in ``static/<area>.js`` (shared by the area's pages) and
                        ``static/<area>-<page>.js`` (``static/users.js`` and ``static/audit.js``)
    web/static/app.js   the shared client: API calls, field errors, forms from JSON Schema, wizards, and
                        the role in the picked sandbox (buttons with ``data-needs`` disabled when it lacks
                        the permission)
    web/static/form-guard.js  the one script that is not deferred: a form without an action (all the
                        pages' forms) is never submitted natively, even before its page's script runs
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

HERE = Path(__file__).resolve().parent


def install(app: FastAPI) -> None:
    from headwater.web import app as console
    from headwater.web.pages import ROUTERS

    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(console.router)
    for router in ROUTERS:
        app.include_router(router)
