"""The OAuth 2.0 JWT bearer flow and the Data 360 token exchange, for external client apps (apps.py).

CONTRACT used by other modules (keep these signatures):

    IngestPrincipal(org_id, sandbox_id, username, scopes)
    Data360Identity(services)
        .issue_ingestion_token(org_id: str, sandbox_id: str, username: str) -> tuple[str, int]
            an ingestion token (as /services/a360/token returns) and its lifetime in seconds
        .verify_ingestion_token(token: str) -> IngestPrincipal | None
            None when the token is malformed, expired, not an ingestion token or its user is disabled
            (or unknown). It writes nothing; its one read, the user's enabled flag, is cached for
            ENABLED_CACHE_SECONDS (services/users.py), so a disabled user is refused within seconds.

Three kinds of token, none accepted where another is expected:

    platform token   POST /ims/token/v3; signed with the token-signing key (services/tokens.py)
    access token     POST /services/oauth2/token (JWT bearer, authorization code, refresh token: the last
                     two in consent.py); typ "sfdc_access"; good for the exchange
    ingestion token  POST /services/a360/token; typ "a360_ingest"; good for the Ingestion API

The last two are HS256 JWTs signed with a key derived from the token-signing key (HMAC with a fixed
label), so a platform token never verifies as one of them nor one of them as a platform token; their
``typ`` and ``aud`` claims keep them apart from each other.

An app's IP and lifetime policies are apppolicy.py's: every flow asks ``check_address`` with the
caller's address, and access tokens carry the flow that issued them (claim ``flw``) and live the app's
sessionTimeoutSeconds.

Whom the JWT bearer flow issues a token for (Salesforce's rule: the flow needs a prior approval): a user
an organization admin pre-approved for the app (``approvedUsers``), or, when the app lets every user
self-authorize, a user who approved it through the consent flow (consent.py) with a grant that still
holds a refresh token. The token's scopes are the app's (pre-approved) or those the user approved that
the app still has (consented). Access and ingestion tokens carry the app's ``authorizationVersion``
(claim ``ver``, apps.py): once the app's callback URL, certificate or scopes change, they are refused.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from headwater.errors import Forbidden
from headwater.services import access
from headwater.services.container import TtlCache
from headwater.services.data360 import apppolicy
from headwater.services.data360.apppolicy import ACCESS_TOKEN_SECONDS as ACCESS_TOKEN_SECONDS
from headwater.services.data360.apppolicy import IP_RELAXATION as IP_RELAXATION
from headwater.services.data360.apps import ADMIN_APPROVED as ADMIN_APPROVED
from headwater.services.data360.apps import INGEST_SCOPE as INGEST_SCOPE
from headwater.services.data360.apps import PERMITTED_USERS as PERMITTED_USERS
from headwater.services.data360.apps import SCOPES as SCOPES
from headwater.services.data360.apps import SELF_AUTHORIZED as SELF_AUTHORIZED
from headwater.services.data360.apps import ExternalClientApps as ExternalClientApps
from headwater.services.data360.apps import consumer_key_org as consumer_key_org
from headwater.services.data360.apps import new_consumer_key as new_consumer_key
from headwater.services.data360.apps import version_of
from headwater.services.data360.keys import load_rsa_certificate
from headwater.services.ids import new_hex
from headwater.services.users import ENABLED_CACHE_SECONDS, Users
from headwater.stores.metadata import Resource
from headwater.stores.secrets import load_or_create_key

if TYPE_CHECKING:
    from headwater.services.container import Services

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CDP_EXCHANGE = "urn:salesforce:grant-type:external:cdp"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ISSUED_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
INGESTION_TOKEN_SECONDS = 7200  # the reference answers expires_in 7191 moments after issuing
ASSERTION_MAX_AHEAD = 180  # "exp within 3 minutes"
CLOCK_SKEW = 30
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
    def __init__(self, services: Services) -> None:
        self.services = services
        self.users = Users(services)
        self.apps = ExternalClientApps(services, self.users)
        # Ingestion calls check their app's IP policy on every request: its app, from a cache a few
        # seconds old (an admin's change to the ranges applies within that).
        self._apps_by_key: TtlCache[str, Resource | None] = TtlCache(
            ENABLED_CACHE_SECONDS, self.apps.by_consumer_key
        )
        # ...and their user's role in the token's data space (the user from Users.recent), as fresh.
        self._sandbox_names: TtlCache[str, dict[str, str]] = TtlCache(
            ENABLED_CACHE_SECONDS, lambda org: {s.id: s.name for s in services.store.list_sandboxes(org)}
        )
        settings = services.settings
        signing = load_or_create_key(settings.token_signing_key, settings.keys_dir / "token-signing.key")
        self._key = hmac.new(signing, b"headwater-data360-tokens-v1", hashlib.sha256).digest()
        self._decode_cached = functools.lru_cache(maxsize=4096)(self._decode)
        urls = (settings.base_url, settings.public_url or "", f"http://{settings.host}:{settings.port}")
        self._audiences = {_url_key(u) for u in urls if u}
        from headwater.services.data360.consent import OAuthConsent  # it builds on this module

        self.consent = OAuthConsent(self)

    # --- POST /services/oauth2/token ---
    def jwt_bearer(self, assertion: str, client: str | None) -> dict[str, str]:
        """Check a JWT bearer assertion (RFC 7523) from the address ``client`` and answer an access token
        as Salesforce does."""
        unverified = _unverified_claims(assertion)
        issuer = unverified.get("iss")
        app = self.apps.by_consumer_key(issuer) if isinstance(issuer, str) and issuer else None
        if app is None:
            raise OAuthError(
                "invalid_client_id",
                "client identifier invalid: iss must be the consumer key of an external client app",
            )
        self._check_app(app)
        claims = self._verify_assertion(assertion, app)
        self.check_address(app, client, apppolicy.JWT_BEARER)
        user = self._authorized_user(app, claims.get("sub"))
        scopes = self._approved_scopes(app, user)
        token = self.issue_access_token(app, user, scopes, flow=apppolicy.JWT_BEARER)
        base = self.services.settings.base_url
        return {
            "access_token": token,
            "scope": " ".join(scopes),
            "instance_url": base,
            "id": f"{base}/id/{app.scope.org_id}/{user.id}",
            "token_type": "Bearer",
        }

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

    def _check_app(self, app: Resource) -> None:
        doc = app.doc
        if not doc.get("jwtBearerFlowEnabled"):
            raise invalid_grant(
                f"JWT bearer flow is not enabled for the external client app {doc['name']!r}: "
                "set jwtBearerFlowEnabled to true"
            )
        if not doc.get("certificate"):
            raise invalid_grant(f"the external client app {doc['name']!r} has no certificate")
        if not {"api", INGEST_SCOPE} & set(doc["scopes"]):
            raise invalid_grant(
                f"the external client app {doc['name']!r} has neither the api nor the cdp_ingest_api scope"
            )

    def _verify_assertion(self, assertion: str, app: Resource) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                _public_key(app.doc["certificate"]),
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False},
                leeway=CLOCK_SKEW,
            )
        except jwt.InvalidAlgorithmError as exc:
            raise invalid_grant("invalid assertion: the JWT header's alg must be RS256") from exc
        except jwt.InvalidSignatureError as exc:
            raise invalid_grant(
                "invalid assertion: the signature does not verify with the certificate of the external "
                f"client app {app.doc['name']!r}; sign with the private key of that certificate"
            ) from exc
        except jwt.ImmatureSignatureError as exc:
            raise invalid_grant(f"invalid assertion: not valid yet ({exc})") from exc
        except jwt.PyJWTError as exc:
            raise invalid_grant(f"invalid assertion: {exc}") from exc
        self._check_expiry(claims.get("exp"))
        audiences = claims.get("aud")
        offered = [audiences] if isinstance(audiences, str) else audiences
        if not isinstance(offered, list) or not any(
            isinstance(a, str) and _url_key(a) in self._audiences for a in offered
        ):
            raise invalid_grant(
                f"audience is invalid: aud must be this server's login URL, {self.services.settings.base_url}"
            )
        return claims

    @staticmethod
    def _check_expiry(exp: Any) -> None:
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise invalid_grant("invalid assertion: exp is required, in epoch seconds")
        now = time.time()
        if exp < now - CLOCK_SKEW:
            raise invalid_grant(f"expired assertion: exp is {int(now - exp)} seconds in the past")
        if exp > now + ASSERTION_MAX_AHEAD + CLOCK_SKEW:
            raise invalid_grant(
                f"invalid assertion: exp is {int(exp - now)} seconds ahead; it must be at most "
                f"{ASSERTION_MAX_AHEAD} seconds (3 minutes) ahead"
            )

    def _approved_scopes(self, app: Resource, user: Resource) -> tuple[str, ...]:
        """The scopes a JWT bearer token of ``user`` gets through ``app``: the app's when an organization
        admin pre-approved the user, else those of the user's own approvals (consent) that the app still
        has; ``invalid_grant`` when there is neither (Salesforce's "user hasn't approved this consumer")."""
        doc = app.doc
        username = user.doc["username"]
        if username in doc["approvedUsers"]:
            return tuple(doc["scopes"])
        if doc["permittedUsers"] == ADMIN_APPROVED:
            raise invalid_grant(
                f"user is not admin approved to access this app: {username!r} is not in the approvedUsers "
                f"of {doc['name']!r}, which only an organization admin can change"
            )
        approved = self.consent.approved_scopes(app, user)
        scopes = tuple(s for s in SCOPES if s in approved and s in doc["scopes"])
        if not scopes:
            raise invalid_grant(
                f"user hasn't approved this consumer: {username!r} has not authorized {doc['name']!r} with a "
                "refresh_token scope (the web server flow, /services/oauth2/authorize), and no organization "
                "admin pre-approved them"
            )
        return scopes

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
                " (this is a platform token from /ims/token/v3)"
                if self.services.tokens.verify(subject_token)
                else ""
            )
            raise invalid_grant(
                "invalid subject_token: it must be an unexpired access token from POST "
                f"/services/oauth2/token{hint}"
            )
        if INGEST_SCOPE not in claims.scopes:
            raise invalid_grant("the subject_token lacks the cdp_ingest_api scope (add it to the app)")
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
            self._approved_scopes(app, permitted)  # the approval the JWT bearer token rests on still holds
        revoked = self.consent.refusal(claims)
        if revoked:
            raise invalid_grant(f"invalid subject_token: {revoked}")
        name = "prod" if dataspace in (None, "", "default") else dataspace
        sandbox = self.services.sandboxes.get((claims.org_id, str(name)))
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
            "instance_url": self.services.settings.base_url,
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


# --- assertion helpers ---
def _unverified_claims(assertion: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise invalid_grant(f"invalid assertion: not a well-formed JWT ({exc})") from exc
    if not isinstance(claims, dict):
        raise invalid_grant("invalid assertion: its payload must be a JSON object")
    return claims


@functools.lru_cache(maxsize=256)
def _public_key(pem: str) -> rsa.RSAPublicKey:
    return load_rsa_certificate(pem)[1]


def _url_key(url: str) -> str:
    return url.strip().rstrip("/").lower()
