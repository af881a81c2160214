"""The OAuth 2.0 JWT bearer flow (RFC 7523) of external client apps, as Salesforce serves it.

    POST /services/oauth2/token  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer (``JwtBearer.token``)

CONTRACT: :meth:`JwtBearer.token` checks an RS256 assertion signed with the app's certificate (``iss``
its consumer key, ``sub`` a username, ``aud`` this server's login URL, ``exp`` at most
ASSERTION_MAX_AHEAD seconds ahead) and answers an access token (identity.py signs it) as Salesforce
does, or raises ``invalid_grant`` / ``invalid_client_id`` (identity.OAuthError). It writes nothing.
:meth:`JwtBearer.approved_scopes` is the approval rule a JWT bearer token rests on; the token exchange
asks it again of every such token, so a withdrawn approval stops it there.

Whom the flow issues a token for (Salesforce's rule: the flow needs a prior approval): a user an
organization admin pre-approved for the app (``approvedUsers``), or, when the app lets every user
self-authorize, a user who approved it through the consent flow (consent.py) with a grant that still
holds a refresh token. The token's scopes are the app's (pre-approved) or those the user approved that
the app still has (consented).
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from headwater.services.data360 import apppolicy
from headwater.services.data360.apps import ADMIN_APPROVED, DATA360_SCOPES, SCOPES
from headwater.services.data360.identity import OAuthError, invalid_grant
from headwater.services.data360.keys import load_rsa_certificate
from headwater.stores.metadata import Resource

if TYPE_CHECKING:
    from headwater.services.data360.identity import Data360Identity

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Salesforce's documentation asks for "exp within 3 minutes", but its token endpoint takes assertions that
# live longer, and its own Data Cloud connector (salesforce-cdp-connector) signs exp = now + 1 hour. One
# hour is the most Headwater takes: what real clients send, and a bound on how long a leaked assertion
# can be replayed (docs/pending/dcquery.md).
ASSERTION_MAX_AHEAD = 3600
CLOCK_SKEW = 30


class JwtBearer:
    def __init__(self, identity: Data360Identity) -> None:
        self.identity = identity
        self.apps = identity.apps
        self.settings = settings = identity.settings
        urls = (settings.base_url, settings.public_url or "", f"http://{settings.host}:{settings.port}")
        self._audiences = {_url_key(u) for u in urls if u}

    # --- POST /services/oauth2/token ---
    def token(self, assertion: str, client: str | None) -> dict[str, str]:
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
        self.identity.check_address(app, client, apppolicy.JWT_BEARER)
        user = self.identity.authorized_user(app, claims.get("sub"))
        scopes = self.approved_scopes(app, user)
        token = self.identity.issue_access_token(app, user, scopes, flow=apppolicy.JWT_BEARER)
        base = self.settings.base_url
        return {
            "access_token": token,
            "scope": " ".join(scopes),
            "instance_url": base,
            "id": f"{base}/id/{app.scope.org_id}/{user.id}",
            "token_type": "Bearer",
        }

    def _check_app(self, app: Resource) -> None:
        doc = app.doc
        if not doc.get("jwtBearerFlowEnabled"):
            raise invalid_grant(
                f"JWT bearer flow is not enabled for the external client app {doc['name']!r}: "
                "set jwtBearerFlowEnabled to true"
            )
        if not doc.get("certificate"):
            raise invalid_grant(f"the external client app {doc['name']!r} has no certificate")
        if not ({"api"} | DATA360_SCOPES) & set(doc["scopes"]):
            raise invalid_grant(
                f"the external client app {doc['name']!r} has none of the api, cdp_ingest_api "
                "and cdp_query_api scopes"
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
                f"audience is invalid: aud must be this server's login URL, {self.settings.base_url}"
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
                f"{ASSERTION_MAX_AHEAD} seconds (1 hour) ahead"
            )

    # --- the approval a JWT bearer token rests on (the token exchange asks it too) ---
    def approved_scopes(self, app: Resource, user: Resource) -> tuple[str, ...]:
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
        approved = self.identity.consent.approved_scopes(app, user)
        scopes = tuple(s for s in SCOPES if s in approved and s in doc["scopes"])
        if not scopes:
            raise invalid_grant(
                f"user hasn't approved this consumer: {username!r} has not authorized {doc['name']!r} with a "
                "refresh_token scope (the web server flow, /services/oauth2/authorize), and no organization "
                "admin pre-approved them"
            )
        return scopes


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
