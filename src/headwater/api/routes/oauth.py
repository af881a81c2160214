"""Salesforce-style OAuth for Data 360 ingestion, and the identity resources it rests on.

Token endpoints, as Salesforce serves them (form bodies; refusals are 400 ``{"error", "error_description"}``,
never the platform's error shape, because Salesforce clients parse that pair):

    POST /services/oauth2/token   JWT bearer flow: an RS256 assertion for an access token (jwtbearer.py);
                                  also authorization_code and refresh_token (oauth_consent.py, consent.py),
                                  client_credentials and password (secretflows.py; password grants
                                  share the console sign-in's throttle)
    POST /services/a360/token     exchange of that access token for a data space's ingestion token

Management, with the platform's authentication (``platform_actor``) and Flow Service conventions (lists
``{"items", "_links"}``, one item as ``{"items": [doc]}``, JSON Patch with If-Match). Both collections belong
to the organization, not to a sandbox: every sandbox of the organization sees the same ones.

    /data/core/identity/users                  GET list, POST create
    /data/core/identity/users/{id|username}    GET; POST .../action?op=disable|enable
    /data/core/identity/externalClientApps     GET list, POST create (answers the consumer secret, once)
    /data/core/identity/externalClientApps/{id}  GET, PATCH, DELETE

The caller's address, for the apps' IP policies (services/data360/apppolicy.py), is ``client_host``: the
TCP peer, or the client a proxy of HEADWATER_TRUSTED_PROXIES names in X-Forwarded-For.

Changing or deleting an app needs its owner or an organization admin, and setting ``approvedUsers`` or
``permittedUsers`` an organization admin (services/data360/apps.py): others get a 403 naming manage-users.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import anyio
from fastapi import APIRouter, Depends, Request, Response

from headwater.api.responses import JSONResponse, created, json_body
from headwater.api.routes.crud import PATCH_BODY, list_response
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import client_host, platform_actor
from headwater.errors import BadRequest
from headwater.services import listing
from headwater.services.data360 import apppolicy
from headwater.services.data360.consent import GRANT_TYPES
from headwater.services.data360.identity import (
    ACCESS_TOKEN_TYPE,
    ADMIN_APPROVED,
    CDP_EXCHANGE,
    ISSUED_TOKEN_TYPE,
    PERMITTED_USERS,
    SCOPES,
    OAuthError,
)
from headwater.services.data360.jwtbearer import JWT_BEARER
from headwater.services.data360.secretflows import AUTHENTICATION_FAILURE, PASSWORD
from headwater.services.data360.secretflows import GRANT_TYPES as SECRET_GRANTS
from headwater.services.tenancy import Actor

router = APIRouter()
TOKENS_TAG, IDENTITY_TAG = "Data 360 authentication", "Identity"
PREFIX = "/data/core/identity"
USERS, APPS = f"{PREFIX}/users", f"{PREFIX}/externalClientApps"
MAX_FORM = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _form_body(required: list[str], properties: dict[str, Any], ok: dict[str, Any]) -> dict[str, Any]:
    refusal = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "required": required, "properties": properties}
                }
            },
        },
        "responses": {
            "200": {"description": "Issued", "content": {"application/json": {"schema": ok}}},
            "400": {
                "description": "Refused: invalid_request, unsupported_grant_type, invalid_client_id or "
                'invalid_grant, with an error_description that says why (invalid_grant "ip restricted" '
                "when the app's IP policy refuses the caller's address)",
                "content": {"application/json": {"schema": refusal}},
            },
        },
    }


def _strings(*names: str) -> dict[str, Any]:
    return {"type": "object", "properties": {n: {"type": "string"} for n in names}}


_JWT_FORM = _form_body(
    ["grant_type"],
    {
        "grant_type": {"type": "string", "enum": [JWT_BEARER, *GRANT_TYPES, *SECRET_GRANTS]},
        "assertion": {
            "type": "string",
            "description": "JWT bearer: an RS256 JWT signed with the private key of the app's certificate: "
            "iss = consumer key, sub = username, aud = this server's URL, exp = epoch seconds at most 1 "
            "hour ahead.",
        },
        "code": {"type": "string", "description": "authorization_code: the code the callback received."},
        "redirect_uri": {"type": "string", "description": "authorization_code: as in the authorize request."},
        "client_id": {
            "type": "string",
            "description": "The consumer key (authorization_code, refresh_token, client_credentials, "
            "password).",
        },
        "client_secret": {"type": "string", "description": "The consumer secret (or PKCE's code_verifier)."},
        "code_verifier": {"type": "string", "description": "authorization_code with PKCE."},
        "refresh_token": {"type": "string", "description": "refresh_token: rotated on every use."},
        "username": {"type": "string", "description": "password: the user's username."},
        "password": {
            "type": "string",
            "description": "password: the user's console password (apps with usernamePasswordFlowEnabled).",
        },
    },
    _strings(
        "access_token", "refresh_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at"
    ),
)
_EXCHANGE_FORM = _form_body(
    ["grant_type", "subject_token"],
    {
        "grant_type": {"type": "string", "enum": [CDP_EXCHANGE]},
        "subject_token": {"type": "string", "description": "An access token from /services/oauth2/token."},
        "subject_token_type": {"type": "string", "enum": [ACCESS_TOKEN_TYPE]},
        "dataspace": {
            "type": "string",
            "description": "The data space, i.e. the sandbox name; absent or 'default' means prod.",
        },
    },
    {
        "type": "object",
        "properties": {
            **_strings("access_token", "instance_url", "token_type", "issued_token_type")["properties"],
            "expires_in": {
                "type": "integer",
                "description": "Seconds: the sessionTimeoutSeconds of the app that issued the subject_token.",
            },
        },
        "example": {"token_type": "Bearer", "issued_token_type": ISSUED_TOKEN_TYPE, "expires_in": 7200},
    },
)
_USER = {
    "type": "object",
    "required": ["username"],
    "properties": {
        "username": {"type": "string", "example": "integration@example.com"},
        "email": {"type": "string", "description": "Defaults to the username."},
        "admin": {"type": "boolean", "default": False},
        "enabled": {"type": "boolean", "default": True},
    },
}
_APP = {
    "type": "object",
    "required": ["name", "callbackUrl", "scopes"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "contactEmail": {"type": "string"},
        "callbackUrl": {"type": "string", "example": "https://localhost/callback"},
        "scopes": {"type": "array", "items": {"type": "string", "enum": list(SCOPES)}},
        "jwtBearerFlowEnabled": {"type": "boolean", "default": False},
        "certificate": {"type": "string", "description": "PEM x509 certificate with an RSA public key."},
        "pkceRequired": {"type": "boolean", "default": True},
        "clientCredentialsFlowEnabled": {
            "type": "boolean",
            "default": False,
            "description": "Allow grant_type=client_credentials (consumer key and secret) acting as "
            "clientCredentialsUser.",
        },
        "clientCredentialsUser": {
            "type": ["string", "null"],
            "description": "The client credentials flow's execution user (Salesforce's Run As); required "
            "with clientCredentialsFlowEnabled; only an organization admin sets it.",
        },
        "usernamePasswordFlowEnabled": {
            "type": "boolean",
            "default": False,
            "description": "Allow grant_type=password with a user's console password.",
        },
        "permittedUsers": {"type": "string", "enum": list(PERMITTED_USERS), "default": ADMIN_APPROVED},
        "approvedUsers": {"type": "array", "items": {"type": "string"}},
        "ipRelaxation": {
            "type": "string",
            "enum": list(apppolicy.IP_RELAXATION),
            "default": apppolicy.ENFORCE,
            "description": "Applies when ipRanges is not empty. 'Relax IP restrictions with second factor' "
            "is read as 'Relax IP restrictions' (Headwater has no second factor). The Metadata API names "
            f"({', '.join(apppolicy.IP_RELAXATION.values())}) are accepted too.",
        },
        "ipRanges": {
            "type": "array",
            "maxItems": apppolicy.MAX_RANGES,
            "description": "Trusted IP ranges: with ipRelaxation enforcing, every grant, the consent page "
            "and the token exchange refuse a caller (the TCP peer) outside them. Empty: no restriction.",
            "items": {
                "type": "object",
                "required": ["start", "end"],
                "additionalProperties": False,
                "properties": {
                    "start": {"type": "string", "example": "203.0.113.0"},
                    "end": {"type": "string", "example": "203.0.113.255", "description": "Same family."},
                    "description": {"type": "string", "maxLength": apppolicy.MAX_DESCRIPTION},
                },
            },
        },
        "sessionTimeoutSeconds": {
            "type": "integer",
            "minimum": apppolicy.MIN_SESSION_SECONDS,
            "maximum": apppolicy.MAX_SESSION_SECONDS,
            "default": apppolicy.ACCESS_TOKEN_SECONDS,
            "description": "Lifetime of the access tokens (and ingestion tokens) issued through the app.",
        },
        "refreshTokenPolicy": {
            "type": "string",
            "enum": list(apppolicy.REFRESH_TOKEN_POLICIES),
            "default": apppolicy.UNTIL_REVOKED,
            "description": "Judged at each refresh with the app's current policy. Metadata API names "
            f"({', '.join(apppolicy.REFRESH_TOKEN_POLICIES.values())}) are accepted too.",
        },
        "refreshTokenValidity": {
            "type": ["object", "null"],
            "description": f"Required with {apppolicy.IF_NOT_USED!r} and {apppolicy.AFTER!r}; null with the "
            "others. Seconds and Minutes are Headwater's; a month is 30 days.",
            "required": ["value", "unit"],
            "properties": {
                "value": {"type": "integer", "minimum": 1},
                "unit": {"type": "string", "enum": list(apppolicy.UNITS)},
            },
        },
    },
}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# --- token endpoints ---
def _refusal(exc: OAuthError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=400, headers=NO_STORE)


async def _form(request: Request) -> dict[str, str]:
    """The form fields of a token request (query parameters too, as Salesforce accepts them)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM:
            raise OAuthError("invalid_request", f"the request body is larger than {MAX_FORM} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if raw and content_type != "application/x-www-form-urlencoded":
        raise OAuthError(
            "invalid_request", "send the parameters as Content-Type: application/x-www-form-urlencoded"
        )
    try:
        form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuthError("invalid_request", "the body is not a UTF-8 form") from exc
    form.update({k: v for k, v in request.query_params.items() if k not in form})
    return form


def _field(form: dict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise OAuthError("invalid_request", f"{name} is required")
    return value


def _grant(form: dict[str, str], *expected: str) -> str:
    grant = _field(form, "grant_type")
    if grant not in expected:
        raise OAuthError(
            "unsupported_grant_type",
            f"grant type not supported: {grant!r}; this endpoint takes {', '.join(expected)}",
        )
    return grant


async def _password_grant(svc: Any, form: dict[str, str], client: str | None) -> dict[str, str]:
    """The username-password grant, behind the console sign-in's throttle (the same password, so the
    same count of failures per address and username): refused while it says wait, slowed while the
    username is locked. The scrypt check runs in the thread pool."""
    address, username = client or "?", form.get("username", "").strip()[:200]
    verdict = svc.sign_in_throttle.check(address, username)
    if verdict.wait:
        raise OAuthError(
            "invalid_grant",
            f"authentication failure: too many failed attempts; try again in {int(verdict.wait) + 1} seconds",
        )
    if verdict.delay:
        await anyio.sleep(verdict.delay)
    try:
        body: dict[str, str] = await calls.pooled(svc.identity.secret_flows.token, PASSWORD, form, client)
    except OAuthError as exc:
        if exc.description == AUTHENTICATION_FAILURE:
            svc.sign_in_throttle.failed(address, username)
        raise
    svc.sign_in_throttle.succeeded(address, username)
    return body


@router.post(
    "/services/oauth2/token",
    summary="Get an access token (OAuth 2.0 JWT bearer, authorization code, refresh token, client "
    "credentials or username-password flow)",
    tags=[TOKENS_TAG],
    openapi_extra=_JWT_FORM,
)
async def oauth2_token(request: Request) -> JSONResponse:
    svc = services(request)
    try:
        form = await _form(request)
        grant = _grant(form, JWT_BEARER, *GRANT_TYPES, *SECRET_GRANTS)
        if grant == JWT_BEARER:
            assertion = _field(form, "assertion")
            body = await calls.read(svc, svc.identity.bearer.token, assertion, client_host(request))
        elif grant == PASSWORD:
            body = await _password_grant(svc, form, client_host(request))
        elif grant in SECRET_GRANTS:
            body = await calls.read(svc, svc.identity.secret_flows.token, grant, form, client_host(request))
        else:  # the web server flow's code, or a refresh token: single-use, so a write
            body = await calls.write(svc, svc.identity.consent.token, grant, form, client_host(request))
    except OAuthError as exc:
        return _refusal(exc)
    return JSONResponse(body, headers=NO_STORE)


@router.post(
    "/services/a360/token",
    summary="Exchange an access token for a Data 360 ingestion token",
    tags=[TOKENS_TAG],
    openapi_extra=_EXCHANGE_FORM,
)
async def a360_token(request: Request) -> JSONResponse:
    svc = services(request)
    try:
        form = await _form(request)
        _grant(form, CDP_EXCHANGE)
        subject_token = _field(form, "subject_token")
        token_type = form.get("subject_token_type", ACCESS_TOKEN_TYPE).strip() or ACCESS_TOKEN_TYPE
        if token_type != ACCESS_TOKEN_TYPE:
            raise OAuthError("invalid_request", f"subject_token_type must be {ACCESS_TOKEN_TYPE}")
        dataspace = form.get("dataspace", "").strip() or None
        body = await calls.read(svc, svc.identity.exchange, subject_token, dataspace, client_host(request))
    except OAuthError as exc:
        return _refusal(exc)
    return JSONResponse(body, headers=NO_STORE)


# --- users ---
async def _list(request: Request, actor: Actor, pick: Any, path: str) -> JSONResponse:
    svc = services(request)
    query = listing.parse_query(request.query_params.multi_items(), service="IDN")
    page = pick(svc).list_page
    if listing.pages_in_sql(query):
        docs, next_offset, total = await calls.read(svc, page, actor, query)
    else:
        docs, next_offset, total = await calls.pooled(page, actor, query)
    return list_response(docs, query, next_offset, total, path)


def _one(doc: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"items": [doc]}, headers={"ETag": doc["etag"]})


@router.get(USERS, summary="List the organization's users", tags=[IDENTITY_TAG])
async def list_users(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    return await _list(request, actor, lambda s: s.identity.users, USERS)


@router.post(
    USERS,
    summary="Create a user",
    tags=[IDENTITY_TAG],
    status_code=201,
    openapi_extra=_json_body(_USER),
)
async def create_user(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    body = await json_body(request)
    user = await calls.write(svc, svc.identity.users.create, actor, body)
    return created(svc.identity.users.render(user), user.etag)


@router.get(USERS + "/{ident}", summary="Get a user (by id or username)", tags=[IDENTITY_TAG])
async def get_user(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    user = await calls.read(svc, svc.identity.users.get, actor, ident)
    return _one(svc.identity.users.render(user))


@router.post(
    USERS + "/{ident}/action",
    summary="Disable or enable a user (?op=disable|enable)",
    tags=[IDENTITY_TAG],
)
async def user_action(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    op = request.query_params.get("op", "")
    if op not in ("disable", "enable"):
        raise BadRequest(
            "op must be disable or enable.", code="IDN-1400-400", report={"parameter": "op", "value": op}
        )
    user = await calls.write(svc, svc.identity.users.set_enabled, actor, ident, op == "enable")
    return _one(svc.identity.users.render(user))


# --- external client apps ---
@router.get(APPS, summary="List external client apps", tags=[IDENTITY_TAG])
async def list_apps(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    return await _list(request, actor, lambda s: s.identity.apps, APPS)


@router.post(
    APPS,
    summary="Create an external client app (answers its consumer key and, once, its secret)",
    tags=[IDENTITY_TAG],
    status_code=201,
    openapi_extra=_json_body(_APP),
)
async def create_app(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    body = await json_body(request)
    app = await calls.write(svc, svc.identity.apps.create, actor, body)
    return created(svc.identity.apps.render_created(app), app.etag)


@router.get(APPS + "/{ident}", summary="Get an external client app", tags=[IDENTITY_TAG])
async def get_app(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    app = await calls.read(svc, svc.identity.apps.get, actor, ident)
    return _one(svc.identity.apps.render(app))


@router.patch(
    APPS + "/{ident}",
    summary="Update an external client app (JSON Patch, If-Match)",
    tags=[IDENTITY_TAG],
    openapi_extra=PATCH_BODY,
)
async def patch_app(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    body = await json_body(request, patch=True)
    if_match = request.headers.get("if-match")
    app = await calls.write(svc, svc.identity.apps.patch, actor, ident, body, if_match)
    return JSONResponse({"id": app.id, "etag": app.etag}, headers={"ETag": app.etag})


@router.delete(
    APPS + "/{ident}", summary="Delete an external client app", tags=[IDENTITY_TAG], status_code=204
)
async def delete_app(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> Response:
    svc = services(request)
    await calls.write(svc, svc.identity.apps.delete, actor, ident)
    return Response(status_code=204)
