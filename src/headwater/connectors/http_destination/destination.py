"""One HTTP destination, ready to send: its compiled request template, its authenticator, one keep-alive
client with its TLS context, its timeouts and what of it is secret.

    connect(request, spec_name, auth_params, secrecy, outbound)   -> Destination
    Destination.exchange(rendered, headers)                         -> Response (auth added, one 401 retry)
    send_once(destination, variables, key, key_header)              -> the answer a person sees

Everything shown of a request or a response (test results, dead letters) goes through
:func:`shown_request` and :func:`shown_response`: secret header and query values and a secret body are
masked, every other known secret (the OAuth tokens obtained at run time too) is scrubbed. Reading the
saved documents and deciding what is secret is the caller's (runtime/delivery/destination.py,
services/destination_secrets.py); this module only talks to the destination.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from headwater.connectors.http_destination.auth import Authenticator, build_authenticator
from headwater.connectors.http_destination.client import HttpClient, Response, Timeouts
from headwater.connectors.http_destination.errors import AuthError, TransportError
from headwater.connectors.http_destination.secrecy import MASK, NO_SECRETS, Secrecy
from headwater.connectors.outbound import OutboundPolicy
from headwater.engines.template import RenderedRequest, RenderError, RequestTemplate, masked_headers
from headwater.errors import ValidationFailed

MAX_SHOWN_BODY = 4096


@dataclass
class Destination:
    """What a request is made of: the (immutable) template, the authentication and the transport, and
    what of it is secret (masked and scrubbed from everything shown and kept)."""

    template: RequestTemplate
    auth: Authenticator
    client: HttpClient
    timeouts: Timeouts
    secrecy: Secrecy = NO_SECRETS

    async def exchange(self, rendered: RenderedRequest, headers: list[tuple[str, str]]) -> Response:
        """Send ``rendered`` with ``headers`` and the authenticator's; on a 401 the authenticator may
        refresh its credentials and the request goes once more. Raises TransportError, AuthError, or
        ValueError for headers the client cannot send."""
        used = await self.auth.headers(self.client)
        response = await self.client.request(
            rendered.method, rendered.url, [*headers, *used], rendered.body, self.timeouts
        )
        if response.status == 401 and await self.auth.unauthorized(self.client, used):
            used = await self.auth.headers(self.client)
            response = await self.client.request(
                rendered.method, rendered.url, [*headers, *used], rendered.body, self.timeouts
            )
        return response

    def scrub(self, value: Any) -> Any:
        """``value`` (text or a JSON-like document) with every secret of this destination masked, the
        credentials the authenticator obtained at run time (OAuth tokens) included."""
        return self.secrecy.scrub_all(value, self.auth.secret_values())

    def shown_request(self, rendered: RenderedRequest, key_header: str, key: str) -> dict[str, Any]:
        return shown_request(rendered, key_header, key, self.secrecy, self.auth.secret_values())

    def shown_response(self, response: Response) -> dict[str, Any]:
        return shown_response(response, secrecy=self.secrecy, extra=self.auth.secret_values())

    async def aclose(self) -> None:
        await self.client.aclose()


def connect(
    request: Mapping[str, Any],
    spec_name: str,
    auth_params: Mapping[str, Any],
    secrecy: Secrecy,
    outbound: OutboundPolicy,
    *,
    ca_file: str | None = None,
    max_connections: int = 64,
) -> Destination:
    """A destination sending ``request`` (the target's params, in plain text) with the auth of
    ``spec_name`` and its decrypted ``auth_params``, connecting only where ``outbound`` allows and trusting
    ``ca_file`` besides the system CAs. TemplateInvalid for a request that cannot compile, AuthError (not
    transient) for auth params that cannot work. Nothing is sent yet."""
    authenticator = build_authenticator(spec_name, auth_params, ca_file=ca_file)
    client = HttpClient(outbound, max_connections=max_connections, ssl_context=authenticator.ssl_context)
    timeouts = Timeouts(
        connect=int(request.get("connectionTimeoutMs", 1000)) / 1000,
        read=int(request.get("readTimeoutMs", 1000)) / 1000,
    )
    return Destination(RequestTemplate.compile(request), authenticator, client, timeouts, secrecy)


async def send_once(
    destination: Destination, variables: dict[str, Any], key: str, key_header: str
) -> dict[str, Any]:
    """One request as a person sees it: what was sent (secrets masked), what came back, how long it took.
    Rendering problems are a 400 naming the variable; transport and auth failures are part of the answer
    (``error``: kind, message, ``retryable``, the API's name for transient, and for auth the token
    endpoint's status). Every secret of the destination is masked or scrubbed from the answer (a
    destination may echo)."""
    try:
        rendered = destination.template.render(variables)
    except RenderError as exc:
        path = f"variables.{exc.variable}" if exc.variable else "variables"
        raise ValidationFailed([{"path": path, "message": str(exc)}], code="FLOW-1422-400") from exc
    started = time.monotonic()
    result: dict[str, Any] = {
        "request": destination.shown_request(rendered, key_header, key),
        "response": None,
        "error": None,
    }
    try:
        response = await destination.exchange(rendered, [*rendered.headers, (key_header, key)])
        result["response"] = destination.shown_response(response)
    except TransportError as exc:
        result["error"] = {"kind": exc.kind, "message": str(exc), "retryable": exc.transient}
    except AuthError as exc:
        result["error"] = {
            "kind": "auth",
            "message": str(exc),
            "retryable": exc.transient,
            "status": exc.token_status,
        }
    except ValueError as exc:  # the client refused to send it: a header value it cannot encode safely
        raise ValidationFailed(
            [{"path": "params.headers", "message": destination.scrub(str(exc))}], code="FLOW-1422-400"
        ) from exc
    if result["error"] is not None:
        result["error"] = destination.scrub(result["error"])
    result["elapsedMs"] = round((time.monotonic() - started) * 1000, 2)
    return result


def shown_request(
    rendered: RenderedRequest,
    key_header: str,
    key: str,
    secrecy: Secrecy = NO_SECRETS,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The rendered request as shown to people (test results, dead letters): secret header values, query
    values and body masked, every other known secret scrubbed."""
    headers = masked_headers([*rendered.headers, (key_header, key)])
    secret = secrecy.headers
    headers = [(name, MASK if name.lower() in secret else value) for name, value in headers]
    body = rendered.body.decode("utf-8", "replace") if rendered.body is not None else None
    shown = {
        "method": rendered.method,
        "url": secrecy.url(rendered.url),
        "headers": _header_dict(headers),
        "body": MASK if secrecy.body and body is not None else body,
    }
    return dict(secrecy.scrub_all(shown, extra))


def shown_response(
    response: Response,
    limit: int = MAX_SHOWN_BODY,
    *,
    secrecy: Secrecy = NO_SECRETS,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A response as shown and kept (test results, dead letters): the body cut to ``limit`` characters
    after every known secret was scrubbed from it (a destination may echo the request)."""
    text = secrecy.scrub(response.body.decode("utf-8", "replace"), extra)
    headers = secrecy.scrub_all(_header_dict(masked_headers(response.headers)), extra)
    return {
        "status": response.status,
        "headers": headers,
        "body": text[:limit],
        "truncated": response.truncated or len(text) > limit,
        "elapsedMs": round(response.elapsed * 1000, 2),
    }


def _header_dict(headers: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers:
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out
