"""``POST /ims/token/v3``: the client-credentials grant of the reference's identity service."""

from __future__ import annotations

from fastapi import APIRouter, Request

from headwater.api.responses import JSONResponse
from headwater.container import services
from headwater.edge import calls
from headwater.edge.oauthform import token_form
from headwater.errors import BadRequest, Unauthenticated

router = APIRouter(tags=["Authentication"])

_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type", "client_id", "client_secret"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                        "scope": {"type": "string"},
                    },
                }
            }
        },
    }
}


def _oauth_error(exc: BadRequest | Unauthenticated, error: str) -> BadRequest | Unauthenticated:
    exc.report.update({"error": error, "error_description": exc.detail})
    return exc


@router.post("/ims/token/v3", summary="Get an access token (client credentials)", openapi_extra=_FORM)
async def token(request: Request) -> JSONResponse:
    svc = services(request)
    form = await token_form(request, query=True)
    if form.get("grant_type") != "client_credentials":
        raise _oauth_error(
            BadRequest(
                "grant_type must be client_credentials.", code="IMS-1400-400", report={"field": "grant_type"}
            ),
            "unsupported_grant_type",
        )
    for field in ("client_id", "client_secret"):
        if not form.get(field):
            raise _oauth_error(
                BadRequest(f"{field} is required.", code="IMS-1401-400", report={"field": field}),
                "invalid_request",
            )
    client = await calls.read(services(request), svc.store.get_client, form["client_id"])
    valid = (
        client is not None
        and client.enabled
        and await calls.read(
            services(request), svc.tenancy.check_client_secret, client, form["client_secret"]
        )
    )
    if client is None or not valid:
        raise _oauth_error(
            Unauthenticated(
                "client_id or client_secret is wrong, or the client is disabled.", code="IMS-1401-401"
            ),
            "invalid_client",
        )
    access_token, expires_in = svc.tokens.issue(client.client_id, client.org_id)
    return JSONResponse(
        {"access_token": access_token, "token_type": "bearer", "expires_in": expires_in},
        headers={"Cache-Control": "no-store"},
    )
