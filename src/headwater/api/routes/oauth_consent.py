"""The OAuth web server flow's browser side, and token revocation (services/data360/authorize.py checks the
request, services/data360/consent.py keeps the records).

    GET  /services/oauth2/authorize   the consent page for the signed-in console user (or sign-in first)
    POST /services/oauth2/authorize   the page's Allow / Deny: 302 to the app's callback URL with a code
                                      (or error=access_denied), and the state
    GET  /console/oauth/resume        where sign-in returns to: the console's sign-in only sends people
                                      back to /console/ paths, so this forwards the same query to
                                      /services/oauth2/authorize (a fixed path: no open redirect)
    POST /services/oauth2/revoke      token=<access or refresh token>: 200, or 400 {"error", ...}

A client or redirect URI that is not right is refused on the page (400), never redirected to, and so is a
browser outside the app's trusted IP ranges when its IP policy enforces them (403); other
refusals go to the (checked) redirect URI as ``error`` and ``error_description``, with the state. The
consent form carries the session's CSRF token; its CSP lets the form's redirect reach the callback origin.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from headwater.api.routes.oauth import NO_STORE, TOKENS_TAG, _field, _form, _refusal
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import client_host, session_of
from headwater.edge.html import SECURITY_HEADERS
from headwater.services.data360.authorize import SCOPE_LABELS, Authorization, PageError, Redirected
from headwater.services.data360.identity import OAuthError

router = APIRouter()
AUTHORIZE, RESUME, REVOKE = "/services/oauth2/authorize", "/console/oauth/resume", "/services/oauth2/revoke"
MAX_FORM_FIELD = 4096
#: The consent and error pages (api/templates/oauth/), styled by the console's stylesheet.
templates = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent.parent / "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)


def _html(template: str, status: int = 200, form_action: str | None = None, **context: Any) -> HTMLResponse:
    headers = dict(SECURITY_HEADERS)
    if form_action:  # a form POST's redirect must be allowed by form-action too (browsers check it)
        csp = headers["Content-Security-Policy"]
        headers["Content-Security-Policy"] = csp.replace(
            "form-action 'self'", f"form-action 'self' {form_action}"
        )
    html = templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=headers)


def _error_page(exc: PageError) -> HTMLResponse:
    return _html("oauth/error.html", exc.status, title="Authorization refused", message=exc.message)


def _to_app(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


def _consent_page(ask: Authorization, username: str, csrf: str) -> HTMLResponse:
    labels: dict[str, list[str]] = {}
    for scope in ask.scopes:
        labels.setdefault(SCOPE_LABELS.get(scope, scope), []).append(scope)
    return _html(
        "oauth/consent.html",
        form_action=ask.form_action_source(),
        title=f"Allow access to {ask.app.doc['name']}?",
        app=ask.app.doc,
        scopes=list(labels.items()),
        username=username,
        csrf=csrf,
        fields=ask.fields(),
        action=AUTHORIZE,
    )


@router.get(
    AUTHORIZE,
    summary="Authorize an external client app (OAuth 2.0 web server flow): the consent page",
    tags=[TOKENS_TAG],
    response_class=HTMLResponse,
)
async def authorize(request: Request) -> Response:
    svc = services(request)
    authorizer = svc.identity.authorize
    params = dict(request.query_params)
    try:
        ask = await calls.read(svc, authorizer.authorization, params, client_host(request))
    except PageError as exc:
        return _error_page(exc)
    except Redirected as exc:
        return _to_app(exc.url)
    session = session_of(request)
    if session is None:
        resume = f"{RESUME}?{request.url.query}"
        return RedirectResponse(f"/console/login?next={quote(resume, safe='')}", status_code=303)
    try:
        await calls.read(svc, authorizer.consenting_user, ask, session.org_id, session.username)
    except PageError as exc:
        return _error_page(exc)
    return _consent_page(ask, session.username, session.csrf)


@router.post(AUTHORIZE, include_in_schema=False)
async def decide(request: Request) -> Response:
    svc = services(request)
    authorizer = svc.identity.authorize
    form = await request.form()
    params = {k: v for k, v in form.items() if isinstance(v, str) and len(v) <= MAX_FORM_FIELD}
    session = session_of(request)
    if session is None:
        return _error_page(PageError("Your sign-in has ended: start again from the app.", status=401))
    if not hmac.compare_digest(params.get("csrf", "").encode(), session.csrf.encode()):
        return _error_page(PageError("The consent form needs the page's CSRF token: reload it.", status=403))
    try:
        ask = await calls.read(svc, authorizer.authorization, params, client_host(request))
        user = await calls.read(svc, authorizer.consenting_user, ask, session.org_id, session.username)
    except PageError as exc:
        return _error_page(exc)
    except Redirected as exc:
        return _to_app(exc.url)
    if params.get("decision") != "allow":
        return _to_app(ask.redirect(error="access_denied", error_description="end-user denied authorization"))
    code = await calls.write(svc, svc.identity.consent.issue_code, ask, user)
    return _to_app(ask.redirect(code=code))


@router.get(RESUME, include_in_schema=False)
async def resume(request: Request) -> Response:
    return RedirectResponse(f"{AUTHORIZE}?{request.url.query}", status_code=303)


_REVOKE_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["token"],
                    "properties": {
                        "token": {
                            "type": "string",
                            "description": "An access token, or a refresh token (revoking it revokes every "
                            "token of its authorization).",
                        }
                    },
                }
            }
        },
    },
    "responses": {
        "200": {"description": "Revoked"},
        "400": {"description": "invalid_request or invalid_token, with an error_description"},
    },
}


@router.post(
    REVOKE, summary="Revoke an access or refresh token", tags=[TOKENS_TAG], openapi_extra=_REVOKE_FORM
)
async def revoke(request: Request) -> Response:
    svc = services(request)
    try:
        form = await _form(request)
        await calls.write(svc, svc.identity.consent.revoke, _field(form, "token"))
    except OAuthError as exc:
        return _refusal(exc)
    return Response(status_code=200, headers=NO_STORE)
