"""The Data 360 tokens of external client apps (apps.py): signing and checking access and ingestion tokens,
the policies every token flow asks of an app and its user, and the Data 360 token exchange.

CONTRACT used by other modules (keep these signatures):

    IngestPrincipal(org_id, sandbox_id, username, scopes)
    Data360Identity(store, box, settings, tokens, sandboxes)
        .issue_ingestion_token(org_id: str, sandbox_id: str, username: str) -> tuple[str, int]
            an ingestion token (as /services/a360/token returns) and its lifetime in seconds
        .verify_ingestion_token(token: str) -> IngestPrincipal | None
            None when the token is malformed, expired, not an ingestion token or its user is disabled
            (or unknown). It writes nothing; its one read, the user's enabled flag, is cached for
            ENABLED_CACHE_SECONDS (services/users.py), so a disabled user is refused within seconds.

Its parts, built with it: ``.bearer`` the JWT bearer flow (jwtbearer.py), ``.secret_flows`` the client
credentials and username-password flows (secretflows.py), ``.authorize`` the consent
page's checks (authorize.py), ``.consent`` the web server flow's records and grants (consent.py).

Three kinds of token, none accepted where another is expected:

    platform token   POST /ims/token/v3; signed with the token-signing key (services/tokens.py)
    access token     POST /services/oauth2/token (JWT bearer in jwtbearer.py; authorization code and
                     refresh token in consent.py); typ "sfdc_access"; good for the exchange
    ingestion token  POST /services/a360/token; typ "a360_ingest"; good for the Ingestion API

The last two are HS256 JWTs signed with a key derived from the token-signing key (HMAC with a fixed
label), so a platform token never verifies as one of them nor one of them as a platform token; their
``typ`` and ``aud`` claims keep them apart from each other.

An app's IP and lifetime policies are apppolicy.py's: every flow asks ``check_address`` with the
caller's address, and access tokens carry the flow that issued them (claim ``flw``) and live the app's
sessionTimeoutSeconds.

Every flow asks :meth:`Data360Identity.authorized_user` (the app's permitted-users policy) and signs
with :meth:`Data360Identity.issue_access_token`; whom the JWT bearer flow issues a token for is
jwtbearer.py's rule, and the exchange asks it again of a JWT bearer token. Access and ingestion tokens
carry the app's ``authorizationVersion`` (claim ``ver``, apps.py): once the app's callback URL,
certificate or scopes change, they are refused.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt

from headwater.errors import Forbidden
from headwater.services import access
from headwater.services.cache import TtlCache
from headwater.services.data360 import apppolicy
from headwater.services.data360.apppolicy import ACCESS_TOKEN_SECONDS as ACCESS_TOKEN_SECONDS
from headwater.services.data360.apppolicy import IP_RELAXATION as IP_RELAXATION
from headwater.services.data360.apps import ADMIN_APPROVED as ADMIN_APPROVED
from headwater.services.data360.apps import DATA360_SCOPES, version_of
from headwater.services.data360.apps import INGEST_SCOPE as INGEST_SCOPE
from headwater.services.data360.apps import PERMITTED_USERS as PERMITTED_USERS
from headwater.services.data360.apps import SCOPES as SCOPES
from headwater.services.data360.apps import SELF_AUTHORIZED as SELF_AUTHORIZED
from headwater.services.data360.apps import ExternalClientApps as ExternalClientApps
from headwater.services.data360.apps import consumer_key_org as consumer_key_org
from headwater.services.data360.apps import new_consumer_key as new_consumer_key
from headwater.services.ids import new_hex
from headwater.services.users import ENABLED_CACHE_SECONDS, Users
from headwater.stores.metadata import Resource
from headwater.stores.secrets import load_or_create_key

if TYPE_CHECKING:
    from headwater.services.tokens import TokenService
    from headwater.settings import Settings
    from headwater.stores.metadata import MetadataStore, Sandbox
    from headwater.stores.secrets import SecretBox

CDP_EXCHANGE = "urn:salesforce:grant-type:external:cdp"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ISSUED_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
INGESTION_TOKEN_SECONDS = 7200  # the reference answers expires_in 7191 moments after issuing
MAX_TOKEN_CHARS = 8192
_ISSUER = "headwater-oauth"
_KINDS = {"sfdc_access": "headwater-sfdc-api", "a360_ingest": "headwater-a360-ingest"}
CHANGED = (
    "the external client app's callback URL, certificate or scopes changed after this token was issued, "
    "which revokes it: get a new one"
)


class OAuthError(Exception):
    """A token endpoint's refusal: 400 ``{"error", "error_description"}``, as Salesforce answers."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


@dataclass(frozen=True)
class IngestPrincipal:
    org_id: str
    sandbox_id: str
    username: str
    scopes: tuple[str, ...]
    consumer_key: str = ""  # the app whose access token was exchanged ("" for tokens issued otherwise)
    flow: str = ""  # the flow that issued that access token (the app's IP policy may relax refreshes)
    version: int = 0  # the app's authorizationVersion when the access token was issued


@dataclass(frozen=True)
class _Claims:
    org_id: str
    username: str
    scopes: tuple[str, ...]
    expires_at: int
    sandbox_id: str = ""  # ingestion tokens
    consumer_key: str = ""  # access tokens
    token_id: str = ""  # jti: what POST /services/oauth2/revoke records for an access token
    grant_id: str = ""  # access tokens of a consented grant (consent.py): void once the grant is revoked
    flow: str = ""  # access tokens: the flow that issued them (apppolicy.FLOWS), for the IP policy
    version: int = 0  # the app's authorizationVersion at issue (apps.py): another one means revoked


class Data360Identity:
    def __init__(
        self,
        store: MetadataStore,
        box: SecretBox,
        settings: Settings,
        tokens: TokenService,
        sandboxes: TtlCache[tuple[str, str], Sandbox | None],
    ) -> None:
        self.store = store
        self.settings = settings
        self.tokens = tokens
        self.sandboxes = sandboxes
        self.users = Users(store)
        self.apps = ExternalClientApps(store, box, self.users)
        # Ingestion calls check their app's IP policy on every request: its app, from a cache a few
        # seconds old (an admin's change to the ranges applies within that).
        self._apps_by_key: TtlCache[str, Resource | None] = TtlCache(
            ENABLED_CACHE_SECONDS, self.apps.by_consumer_key
        )
        # ...and their user's role in the token's data space (the user from Users.recent), as fresh.
        self._sandbox_names: TtlCache[str, dict[str, str]] = TtlCache(
            ENABLED_CACHE_SECONDS, lambda org: {s.id: s.name for s in store.list_sandboxes(org)}
        )
        signing = load_or_create_key(settings.token_signing_key, settings.keys_dir / "token-signing.key")
        self._key = hmac.new(signing, b"headwater-data360-tokens-v1", hashlib.sha256).digest()
        self._decode_cached = functools.lru_cache(maxsize=4096)(self._decode)
        # The token endpoint's grants and the consent page build on this module (imported here, not above).
        from headwater.services.data360.authorize import OAuthAuthorize
        from headwater.services.data360.consent import OAuthConsent
        from headwater.services.data360.jwtbearer import JwtBearer
        from headwater.services.data360.secretflows import SecretFlows

        self.bearer = JwtBearer(self)
        self.secret_flows = SecretFlows(self)
        self.authorize = OAuthAuthorize(self)
        self.consent = OAuthConsent(self)

    def issue_access_token(
        self,
        app: Resource,
        user: Resource,
        scopes: Sequence[str],
        *,
        flow: str,
        issued_at: float | None = None,
        **claims: Any,
    ) -> str:
        """An access token of ``user`` through ``app``, as every flow of the token endpoint issues them:
        issued by ``flow`` at ``issued_at`` (epoch seconds, default now), for the app's session timeout."""
        return self._sign(
            "sfdc_access",
            apppolicy.session_seconds(app.doc),
            now=issued_at,
            org=app.scope.org_id,
            flw=flow,
            sub=user.doc["username"],
            uid=user.id,
            cid=app.doc["consumerKey"],
            scp=list(scopes),
            ver=version_of(app.doc),
            **claims,
        )

    def verify_access_token(self, token: str) -> _Claims | None:
        """The claims of an unexpired access token (revocation not checked: see ``consent.refusal``)."""
        return self._verified(token, "sfdc_access")

    def authorized_user(self, app: Resource, username: Any) -> Resource:
        """The enabled user ``username`` whom the app's permitted-users policy lets get tokens, or
        ``invalid_grant``: every flow asks this (JWT bearer, authorization code, refresh token)."""
        return self._authorized_user(app, username)

    def check_address(self, app: Resource, client: str | None, flow: str) -> None:
        """``invalid_grant`` "ip restricted" (Salesforce's words) when the app's IP policy refuses ``flow``
        from the address ``client``."""
        if not apppolicy.address_allowed(app.doc, client, flow):
            raise invalid_grant(apppolicy.IP_RESTRICTED)

    def _authorized_user(self, app: Resource, sub: Any) -> Resource:
        if not isinstance(sub, str) or not sub:
            raise invalid_grant("invalid assertion: sub is required: the username of a user")
        user = self.users.find(app.scope.org_id, sub)
        if user is None:
            raise invalid_grant(f"user not found: no user {sub!r} in the organization of this app")
        if not user.doc.get("enabled"):
            raise invalid_grant(f"inactive user: {sub!r} is disabled")
        doc = app.doc
        if doc["permittedUsers"] == ADMIN_APPROVED and user.doc["username"] not in doc["approvedUsers"]:
            raise invalid_grant(
                f"user hasn't been approved for this app: the permitted users policy of {doc['name']!r} is "
                f"{ADMIN_APPROVED!r} and {sub!r} is not in its approvedUsers"
            )
        return user

    # --- POST /services/a360/token ---
    def exchange(self, subject_token: str, dataspace: str | None, client: str | None) -> dict[str, Any]:
        """Exchange an access token, presented from the address ``client``, for an ingestion token of a
        data space (a sandbox of its org) that lives as long as the app's access tokens."""
        claims = self._verified(subject_token, "sfdc_access")
        if claims is None:
            hint = (
                " (this is a platform token from /ims/token/v3)" if self.tokens.verify(subject_token) else ""
            )
            raise invalid_grant(
                "invalid subject_token: it must be an unexpired access token from POST "
                f"/services/oauth2/token{hint}"
            )
        if not DATA360_SCOPES & set(claims.scopes):
            raise invalid_grant(
                "the subject_token has neither the cdp_ingest_api nor the cdp_query_api scope (add the one "
                "you need to the app)"
            )
        if not self.users.is_enabled(claims.org_id, claims.username):
            raise invalid_grant(f"inactive user: {claims.username!r} is disabled")
        app = self.apps.by_consumer_key(claims.consumer_key)
        if app is None:
            raise invalid_grant("the external client app that issued the subject_token no longer exists")
        if claims.version != version_of(app.doc):
            raise invalid_grant(f"invalid subject_token: {CHANGED}")
        self.check_address(app, client, claims.flow)
        permitted = self.authorized_user(app, claims.username)  # the permitted-users policy as it is now
        if claims.flow == apppolicy.JWT_BEARER:
            # the approval the JWT bearer token rests on still holds
            self.bearer.approved_scopes(app, permitted)
        revoked = self.consent.refusal(claims)
        if revoked:
            raise invalid_grant(f"invalid subject_token: {revoked}")
        name = "prod" if dataspace in (None, "", "default") else dataspace
        sandbox = self.sandboxes.get((claims.org_id, str(name)))
        if sandbox is None:
            raise OAuthError(
                "invalid_request",
                f"data space {name!r} does not exist: a data space is a sandbox of the organization; "
                "omit dataspace (or send default) for prod",
            )
        user = self.users.find(claims.org_id, claims.username)
        denied = self._ingest_denied(user, sandbox.name) if user is not None else None
        if denied is not None:
            raise invalid_grant(denied.detail)
        token, lifetime = self.issue_ingestion_token(
            claims.org_id,
            sandbox.id,
            claims.username,
            scopes=claims.scopes,
            lifetime=apppolicy.session_seconds(app.doc),
            consumer_key=claims.consumer_key,
            flow=claims.flow,
            version=claims.version,
        )
        return {
            "access_token": token,
            # Salesforce answers the Data Cloud instance's host without a scheme (its clients prefix
            # https:// themselves); the token endpoint's instance_url keeps its scheme.
            "instance_url": urlsplit(self.settings.base_url).netloc,
            "token_type": "Bearer",
            "issued_token_type": ISSUED_TOKEN_TYPE,
            "expires_in": lifetime,
        }

    # --- the contract ---
    def issue_ingestion_token(
        self,
        org_id: str,
        sandbox_id: str,
        username: str,
        *,
        scopes: Sequence[str] = (INGEST_SCOPE,),
        lifetime: int = INGESTION_TOKEN_SECONDS,
        consumer_key: str = "",
        flow: str = "",
        version: int = 0,
    ) -> tuple[str, int]:
        """An ingestion token for ``username`` in the sandbox. The caller vouches for the user. A token
        exchanged for an app's access token names the app (``cid``) and its authorization version
        (``ver``), whose IP policy then holds for it and whose change revokes it."""
        bound: dict[str, Any] = {"cid": consumer_key, "flw": flow, "ver": version} if consumer_key else {}
        token = self._sign(
            "a360_ingest",
            lifetime,
            org=org_id,
            sbx=sandbox_id,
            sub=username.lower(),
            scp=list(scopes),
            **bound,
        )
        return token, lifetime

    def verify_ingestion_token(self, token: str) -> IngestPrincipal | None:
        claims = self._verified(token, "a360_ingest")
        if claims is None or not self.users.is_enabled(claims.org_id, claims.username):
            return None
        return IngestPrincipal(
            claims.org_id,
            claims.sandbox_id,
            claims.username,
            claims.scopes,
            claims.consumer_key,
            claims.flow,
            claims.version,
        )

    def ingestion_refusal(self, principal: IngestPrincipal, client: str | None) -> str | None:
        """Why an ingestion call from the address ``client`` is refused now: its user's role in the data
        space lacks ``ingest-data`` (raised as that 403), or its app's IP policy refuses the address, or
        the app is gone, changed its callback URL, certificate or scopes, or no longer pre-approves the
        user; None when it may go ahead."""
        user = self.users.recent(principal.org_id, principal.username)
        if user is not None:
            space = self._sandbox_names.get(principal.org_id).get(principal.sandbox_id, "")
            denied = self._ingest_denied(user, space)
            if denied is not None:
                raise denied
        if not principal.consumer_key:
            return None
        app = self._apps_by_key.get(principal.consumer_key)
        if app is None:
            return "the external client app that this token was issued through no longer exists"
        if principal.version != version_of(app.doc):
            return CHANGED
        doc = app.doc
        if doc["permittedUsers"] == ADMIN_APPROVED and principal.username not in doc["approvedUsers"]:
            return (
                f"user is not admin approved to access this app: {principal.username!r} is no longer in the "
                f"approvedUsers of {doc['name']!r}"
            )
        if not apppolicy.address_allowed(app.doc, client, principal.flow):
            return (
                f"{apppolicy.IP_RESTRICTED}: {client} is outside the trusted IP ranges of {app.doc['name']!r}"
            )
        return None

    def _ingest_denied(self, user: Resource, sandbox_name: str) -> Forbidden | None:
        """The 403 for a person whose role in the data space may not send records, or None."""
        role = self.users.role(user, sandbox_name)
        if access.INGEST_DATA in access.permissions_of(role, user.doc.get("admin") is True):
            return None
        return access.denied(access.INGEST_DATA, role, sandbox_name, f"ingestion as {user.doc['username']!r}")

    # --- signing ---
    def _sign(self, typ: str, lifetime: int, now: float | None = None, **claims: Any) -> str:
        now = int(time.time() if now is None else now)
        payload = {
            "iss": _ISSUER,
            "aud": _KINDS[typ],
            "typ": typ,
            "iat": now,
            "exp": now + lifetime,
            "jti": new_hex(8),
            **claims,
        }
        return jwt.encode(payload, self._key, algorithm="HS256")

    def _verified(self, token: str, typ: str) -> _Claims | None:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            return None
        claims = self._decode_cached(token, typ)
        if claims is None or claims.expires_at <= time.time():
            return None
        return claims

    def _decode(self, token: str, typ: str) -> _Claims | None:
        try:
            data = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=_KINDS[typ],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "org", "typ", "aud"]},
                leeway=0,
            )
        except jwt.PyJWTError:
            return None
        scopes = data.get("scp")
        if data.get("typ") != typ or not isinstance(scopes, list):
            return None
        return _Claims(
            org_id=str(data["org"]),
            username=str(data["sub"]),
            scopes=tuple(str(s) for s in scopes),
            expires_at=int(data["exp"]),
            sandbox_id=str(data.get("sbx", "")),
            consumer_key=str(data.get("cid", "")),
            token_id=str(data.get("jti", "")),
            grant_id=str(data.get("grt", "")),
            flow=str(data.get("flw", "")),
            version=int(data.get("ver") or 0) if isinstance(data.get("ver", 0), int) else -1,
        )
