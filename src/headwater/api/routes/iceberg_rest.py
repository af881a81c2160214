"""The Apache Iceberg REST catalog (services/icebergrest.py), read-only, under ``/iceberg``: an outside
engine's catalog URI is ``http(s)://<host>/iceberg``.

    GET  /iceberg/v1/config?warehouse=<sandbox>         prefix = the sandbox (default prod)
    POST /iceberg/v1/oauth/tokens                       client_credentials -> a Headwater access token
    GET  /iceberg/v1/{prefix}/namespaces[/{namespace}]  the sandbox, the one namespace (HEAD too)
    GET  /iceberg/v1/{prefix}/namespaces/{ns}/tables[/{table}]   datasets with data (HEAD too)
    every write of the spec                             403 ForbiddenException

Every call but the token grant sends ``Authorization: Bearer <access token>`` (from /ims/token/v3 or
the grant above); the token names the organization, the prefix names the sandbox, and the token's
client needs ``read`` there. These routes do not follow the platform's conventions (no x-api-key,
x-gw-ims-org-id or x-sandbox-name; errors in the spec's ``{"error": {message, type, code}}``, the
token grant's in OAuth2's ``{"error", "error_description"}``) because Iceberg clients speak only the spec.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from headwater.api.responses import JSONResponse
from headwater.container import Services, services
from headwater.edge import calls
from headwater.edge.oauthform import token_form
from headwater.errors import BadRequest, HeadwaterError, Unauthenticated
from headwater.services.icebergrest import delegations
from headwater.services.tenancy import Actor

router = APIRouter(prefix="/iceberg/v1", tags=["Iceberg REST catalog"])
# The spec's error type of a status, when the error does not name one itself.
_TYPES = {
    400: "BadRequestException",
    401: "NotAuthorizedException",
    403: "ForbiddenException",
    404: "NoSuchTableException",
    413: "BadRequestException",
    503: "ServiceUnavailableException",
}
_ERROR: dict[str, Any] = {
    "description": "The Iceberg REST catalog's error model",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["message", "type", "code"],
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string", "example": "NoSuchTableException"},
                            "code": {"type": "integer", "example": 404},
                        },
                    }
                },
            }
        }
    },
}
_FAILURES: dict[int | str, dict[str, Any]] = {str(s): _ERROR for s in (400, 401, 403, 404, 503)}
_OBJECT: dict[str, Any] = {"content": {"application/json": {"schema": {"type": "object"}}}}


def _doc(description: str) -> dict[int | str, dict[str, Any]]:
    return {"200": {"description": description, **_OBJECT}, **_FAILURES}


def _failure(exc: HeadwaterError) -> JSONResponse:
    kind = exc.code if exc.code.endswith("Exception") else _TYPES.get(exc.status, "ServerError")
    body = {"error": {"message": exc.detail, "type": kind, "code": exc.status}}
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(body, status_code=exc.status, headers=headers)


def _actor_of(svc: Services, authorization: str, sandbox: str) -> Actor:
    """The caller in ``sandbox`` of the token's organization (Authenticator.token_actor's checks)."""
    scheme, _, token = authorization.partition(" ")
    claims = svc.tokens.verify(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if claims is None:
        raise Unauthenticated(
            "Send 'Authorization: Bearer <access token>' with a valid token (the catalog property "
            "token, or credential=<client id>:<client secret>).",
            code="NotAuthorizedException",
        )
    return svc.authenticator.token_actor(token.strip(), claims.org_id, sandbox)


async def _actor(request: Request, sandbox: str) -> Actor:
    svc = services(request)
    return await calls.read(svc, _actor_of, svc, request.headers.get("authorization", ""), sandbox)


async def _answer(request: Request, prefix: str, method: str, *args: Any) -> Response:
    """Authenticate in the prefix's sandbox, then run the catalog's ``method``; errors in the spec's
    shape. A method answering None is a HEAD: 204."""
    svc = services(request)
    try:
        actor = await _actor(request, prefix)
        answer = await calls.pooled(getattr(svc.iceberg_catalog, method), actor, *args)
    except HeadwaterError as exc:
        return _failure(exc)
    return JSONResponse(answer)


@router.get("/config", summary="Iceberg catalog configuration", responses=_doc("ConfigResponse"))
async def config(request: Request, warehouse: str | None = None) -> Response:
    sandbox = warehouse or request.headers.get("x-sandbox-name") or "prod"
    svc = services(request)
    try:
        actor = await _actor(request, sandbox)
    except HeadwaterError as exc:
        return _failure(exc)
    return JSONResponse(svc.iceberg_catalog.config(actor))


@router.post(
    "/oauth/tokens",
    summary="Iceberg OAuth2 token (client credentials)",
    responses={"200": {"description": "OAuthTokenResponse", **_OBJECT}},
)
async def oauth_token(request: Request) -> Response:
    svc = services(request)
    form = await token_form(request)
    if form.get("grant_type") != "client_credentials":
        return _oauth_error("unsupported_grant_type", "grant_type must be client_credentials.", 400)
    client_id, secret = form.get("client_id"), form.get("client_secret")
    if not client_id or not secret:
        return _oauth_error("invalid_request", "client_id and client_secret are required.", 400)
    client = await calls.read(svc, svc.store.get_client, client_id)
    valid = (
        client is not None
        and client.enabled
        and await calls.read(svc, svc.tenancy.check_client_secret, client, secret)
    )
    if client is None or not valid:
        return _oauth_error(
            "invalid_client", "client_id or client_secret is wrong, or the client is disabled.", 401
        )
    token, expires_in = svc.tokens.issue(client.client_id, client.org_id)
    body = {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": expires_in,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _oauth_error(error: str, description: str, status: int) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


@router.get("/{prefix}/namespaces", summary="List namespaces", responses=_doc("ListNamespacesResponse"))
async def list_namespaces(request: Request, prefix: str, parent: str | None = None) -> Response:
    return await _answer(request, prefix, "namespaces", parent)


@router.get(
    "/{prefix}/namespaces/{namespace}", summary="Load a namespace", responses=_doc("GetNamespaceResponse")
)
async def load_namespace(request: Request, prefix: str, namespace: str) -> Response:
    return await _answer(request, prefix, "namespace", namespace)


@router.head("/{prefix}/namespaces/{namespace}", summary="Check that a namespace exists")
async def namespace_exists(request: Request, prefix: str, namespace: str) -> Response:
    return _empty(await _answer(request, prefix, "namespace", namespace))


@router.get(
    "/{prefix}/namespaces/{namespace}/tables", summary="List tables", responses=_doc("ListTablesResponse")
)
async def list_tables(request: Request, prefix: str, namespace: str) -> Response:
    return await _answer(request, prefix, "tables", namespace)


@router.get(
    "/{prefix}/namespaces/{namespace}/tables/{table}",
    summary="Load a table",
    responses=_doc("LoadTableResult: metadata-location, metadata, config, storage-credentials"),
)
async def load_table(
    request: Request,
    prefix: str,
    namespace: str,
    table: str,
    x_iceberg_access_delegation: Annotated[str | None, Header()] = None,
) -> Response:
    """The table's metadata; with the lake on object storage, what reading its files needs, and a
    read-only key when ``X-Iceberg-Access-Delegation`` asks for vended-credentials and one is set."""
    if request.query_params.get("snapshots", "all") not in ("all", "refs"):
        return _failure(BadRequest("snapshots must be all or refs.", code="BadRequestException"))
    asked = delegations(x_iceberg_access_delegation)
    return await _answer(request, prefix, "load", namespace, table, asked)


@router.head("/{prefix}/namespaces/{namespace}/tables/{table}", summary="Check that a table exists")
async def table_exists(request: Request, prefix: str, namespace: str, table: str) -> Response:
    return _empty(await _answer(request, prefix, "load", namespace, table))


def _empty(answer: Response) -> Response:
    """A HEAD's answer: 204 when the GET would be 200, else the GET's status, without a body."""
    return Response(status_code=204 if answer.status_code == 200 else answer.status_code)


# The spec's writes, each refused once the caller is authenticated (401 first for a bad token).
_WRITES = (
    ("POST", "/{prefix}/namespaces", "Create a namespace"),
    ("DELETE", "/{prefix}/namespaces/{namespace}", "Drop a namespace"),
    ("POST", "/{prefix}/namespaces/{namespace}/properties", "Update a namespace's properties"),
    ("POST", "/{prefix}/namespaces/{namespace}/tables", "Create a table"),
    ("POST", "/{prefix}/namespaces/{namespace}/register", "Register a table"),
    ("POST", "/{prefix}/namespaces/{namespace}/tables/{table}", "Commit to a table"),
    ("DELETE", "/{prefix}/namespaces/{namespace}/tables/{table}", "Drop a table"),
    ("POST", "/{prefix}/tables/rename", "Rename a table"),
    ("POST", "/{prefix}/transactions/commit", "Commit a transaction"),
)


def _refusal(what: str, path: str) -> Any:
    """A handler refusing ``what``, declaring the path's parameters (the OpenAPI document lists them)."""

    async def in_catalog(request: Request, prefix: str) -> Response:
        return await _answer(request, prefix, "refuse_write", what)

    async def in_namespace(request: Request, prefix: str, namespace: str) -> Response:
        return await _answer(request, prefix, "refuse_write", what)

    async def on_table(request: Request, prefix: str, namespace: str, table: str) -> Response:
        return await _answer(request, prefix, "refuse_write", what)

    return on_table if "{table}" in path else in_namespace if "{namespace}" in path else in_catalog


for _method, _path, _summary in _WRITES:
    router.add_api_route(
        _path,
        _refusal(_summary.lower(), _path),
        methods=[_method],
        summary=f"{_summary} (refused: read-only)",
        responses={"403": _ERROR, "401": _ERROR},
    )
