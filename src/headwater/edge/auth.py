"""Authentication and scoping of every platform call, and the console session of a page request.

Order of checks, each with its own status and code (the gateway codes of the reference in brackets):
``Authorization`` missing 401 [401010] / invalid or expired 401 [401013]; ``x-api-key`` missing 403
[403000] / not the token's client 403 [403003]; ``x-gw-ims-org-id`` missing 400 [400003] / not the token's
organization 403 [403025]; ``x-sandbox-name`` missing 400 [400003] / unknown in the organization 403.

:class:`Authenticator` does the work with the collaborators it is built with (headwater/container.py);
the request dependencies below (``platform_actor``, ``client_host``, ``session_of``) find it on the
application's state, as ``app.state.services.authenticator`` (headwater/server.py puts the container
there).
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request

from headwater.edge.session import COOKIE, CSRF_HEADER, Session, SessionSigner
from headwater.errors import BadRequest, Forbidden, Unauthenticated
from headwater.services import access
from headwater.services.cache import TtlCache
from headwater.services.tenancy import Actor
from headwater.services.tokens import TokenService
from headwater.services.users import Users
from headwater.settings import Settings
from headwater.stores.metadata import ApiClient, Org, Sandbox


def authenticator(request: Request) -> Authenticator:
    """The authenticator of the application serving ``request``."""
    found: Authenticator = request.app.state.services.authenticator
    return found


async def platform_actor(request: Request) -> Actor:
    """The dependency that authenticates a platform call and resolves its organization and sandbox."""
    return authenticator(request).platform_actor(request)


def client_host(request: Request) -> str | None:
    """The caller's address (:meth:`Authenticator.client_host`)."""
    return authenticator(request).client_host(request)


def session_of(request: Request) -> Session | None:
    """The console session of a page request (:meth:`Authenticator.console_session`)."""
    return authenticator(request).console_session(request)


class Authenticator:
    """Resolves who is calling: an access token's client, or a console session's user, in an organization
    and sandbox, holding the permission the called route needs."""

    def __init__(
        self,
        settings: Settings,
        tokens: TokenService,
        clients: TtlCache[str, ApiClient | None],
        sandboxes: TtlCache[tuple[str, str], Sandbox | None],
        orgs: TtlCache[str, Org | None],
        sessions: SessionSigner,
        users: Users,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.clients = clients
        self.sandboxes = sandboxes
        self.orgs = orgs
        self.sessions = sessions
        self.users = users

    def client_host(self, request: Request) -> str | None:
        """The caller's address: the TCP peer, as the ASGI server reports it (the server runs with
        uvicorn's proxy headers off), unless that peer is one of ``HEADWATER_TRUSTED_PROXIES``: then the
        right-most ``X-Forwarded-For`` entry that is not a trusted proxy (entries left of it could be
        forged by anyone)."""
        peer = request.client.host if request.client else None
        trusted = self.settings.trusted_proxy_networks
        if peer is None or not trusted or not _inside(peer, trusted):
            return peer
        hops = [
            h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()
        ]
        for hop in reversed(hops):
            if not _inside(hop, trusted):
                return hop if _address(hop) is not None else peer
        return hops[0] if hops and _address(hops[0]) is not None else peer

    def console_session(self, request: Request) -> Session | None:
        """The console session of the request's cookie, while it lasts and its user is enabled."""
        session = self.sessions.verify(request.cookies.get(COOKIE))
        if session is None or not self.users.is_enabled(session.org_id, session.username):
            return None
        return session

    def platform_actor(self, request: Request) -> Actor:
        """The actor of a platform call, with its organization and sandbox, authorized for the route."""
        if "authorization" not in request.headers and COOKIE in request.cookies:
            return self._console_actor(request)
        token = bearer_token(request)
        claims = self.tokens.verify(token)
        if claims is None:
            raise Unauthenticated(
                "Oauth token is not valid: it is malformed, expired, or not signed by this server. "
                "Get a new one.",
                code="401013",
                report={"header": "Authorization", "error_code": "401013"},
            )
        api_key = request.headers.get("x-api-key")
        if not api_key:
            raise Forbidden(
                "Api Key is required: send the x-api-key header (your client id).",
                code="403000",
                report={"header": "x-api-key", "error_code": "403000"},
            )
        client = self.clients.get(claims.client_id)
        if api_key != claims.client_id or client is None or not client.enabled:
            raise Forbidden(
                "Api Key is invalid: x-api-key must be the client id the token was issued to, "
                "and that client must be enabled.",
                code="403003",
                report={"header": "x-api-key", "error_code": "403003"},
            )
        org_id = request.headers.get("x-gw-ims-org-id")
        if not org_id:
            raise BadRequest(
                "Missing header x-gw-ims-org-id: send your organization id.",
                code="400003",
                report={"header": "x-gw-ims-org-id", "error_code": "400003"},
            )
        if org_id != claims.org_id or client.org_id != org_id:
            raise Forbidden(
                "The token is not valid for this organization (x-gw-ims-org-id).",
                code="403025",
                report={"header": "x-gw-ims-org-id", "error_code": "403025"},
            )
        sandbox_name = request.headers.get("x-sandbox-name")
        if not sandbox_name:
            raise BadRequest(
                "Missing header x-sandbox-name: send the sandbox to work in (e.g. prod).",
                code="400003",
                report={"header": "x-sandbox-name", "error_code": "400003"},
            )
        org, sandbox = self._sandbox(org_id, sandbox_name)
        permissions = access.permissions_of(client.role, org_admin=client.role == "Admin")
        actor = Actor(org, sandbox, client.client_id, role=client.role, permissions=permissions)
        return _authorized(request, actor)

    def token_actor(self, token: str, org_id: str, sandbox_name: str) -> Actor:
        """The actor of an access token used outside HTTP (the PostgreSQL wire endpoint, whose password is
        the token): the same checks as :meth:`platform_actor` minus the headers HTTP alone carries (the
        token's client is the API key). Raises Unauthenticated for a bad or expired token or a disabled
        client, Forbidden for another organization or an unknown sandbox, or without ``read``."""
        claims = self.tokens.verify(token)
        client = self.clients.get(claims.client_id) if claims is not None else None
        if claims is None or client is None or not client.enabled:
            raise Unauthenticated(
                "The access token is not valid: it is malformed, expired, not signed by this server, or "
                "its client is disabled. Get a new one from POST /ims/token/v3.",
                code="401013",
            )
        if org_id != claims.org_id or client.org_id != org_id:
            raise Forbidden(f"The token is not valid for the organization {org_id!r}.", code="403025")
        org, sandbox = self._sandbox(org_id, sandbox_name)
        permissions = access.permissions_of(client.role, org_admin=client.role == "Admin")
        actor = Actor(org, sandbox, client.client_id, role=client.role, permissions=permissions)
        actor.require(access.READ, "a query")
        return actor

    def _console_actor(self, request: Request) -> Actor:
        """A person signed in to the console: the session cookie, the CSRF header that proves the call comes
        from a console page, the user still enabled, and the sandbox of ``x-sandbox-name``."""
        session = self.sessions.verify(request.cookies.get(COOKIE))
        user = self.users.recent(session.org_id, session.username) if session is not None else None
        if session is None or user is None:
            raise Unauthenticated(
                "The console session is missing, expired or no longer valid: sign in again.",
                code="401013",
                report={"header": "Cookie", "error_code": "401013"},
            )
        if not hmac.compare_digest(request.headers.get(CSRF_HEADER, ""), session.csrf):
            raise Forbidden(
                "A call with the console's session must carry its X-CSRF-Token header.",
                code="403030",
                report={"header": "X-CSRF-Token", "error_code": "403030"},
            )
        org_id = request.headers.get("x-gw-ims-org-id") or session.org_id
        if org_id != session.org_id:
            raise Forbidden(
                "The session is not valid for this organization (x-gw-ims-org-id).",
                code="403025",
                report={"header": "x-gw-ims-org-id", "error_code": "403025"},
            )
        sandbox_name = request.headers.get("x-sandbox-name") or "prod"
        org, sandbox = self._sandbox(org_id, sandbox_name)
        role = self.users.role(user, sandbox.name)
        permissions = access.permissions_of(role, org_admin=user.doc.get("admin") is True)
        actor = Actor(org, sandbox, "headwater-console", session.username, role, permissions)
        return _authorized(request, actor)

    def _sandbox(self, org_id: str, sandbox_name: str) -> tuple[Org, Sandbox]:
        """The organization and its sandbox of that name; 403 when either is unknown."""
        sandbox = self.sandboxes.get((org_id, sandbox_name))
        org = self.orgs.get(org_id)
        if sandbox is None or org is None:
            raise Forbidden(
                f"Sandbox {sandbox_name!r} does not exist in this organization or is not accessible.",
                code="403027",
                report={"header": "x-sandbox-name", "error_code": "403027"},
            )
        return org, sandbox


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _inside(host: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    address = _address(host)
    return address is not None and any(address in n for n in networks if n.version == address.version)


def bearer_token(request: Request) -> str:
    """The request's bearer access token; Unauthenticated (401 naming the header) without one."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated(
            "The Authorization header is missing: send 'Authorization: Bearer {ACCESS_TOKEN}' "
            "(get one from POST /ims/token/v3).",
            code="401010",
            report={"header": "Authorization", "error_code": "401010"},
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "The Authorization header must be 'Bearer {ACCESS_TOKEN}'.",
            code="401013",
            report={"header": "Authorization", "error_code": "401013"},
        )
    return token.strip()


def _authorized(request: Request, actor: Actor) -> Actor:
    """The actor, once it holds the permission the called route needs (services/access.py ROUTES); kept
    on the request for the audit log."""
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    # A write nobody listed in ROUTES is closed to all but organization admins.
    permission = access.route_permission(request.method, template) or access.MANAGE_SANDBOXES
    request.state.actor = actor
    request.state.permission = permission
    actor.require(permission, f"{request.method} {template}")
    return actor
