"""The records of OAuth consent for external client apps, and the token endpoint's grants that use them:
the web server flow's codes (with PKCE), refresh tokens that rotate, and revocation, as Salesforce serves
them. The authorize step before (checking the consent page's request) is authorize.py's.

    POST /services/oauth2/authorize  Allow: ``OAuthConsent.issue_code`` (api/routes/oauth_consent.py)
    POST /services/oauth2/token      grant_type=authorization_code | refresh_token (``OAuthConsent.token``)
    POST /services/oauth2/revoke     an access token, or a refresh token and its whole family

CONTRACT: this module alone writes and reads the records below; the token exchange asks
:meth:`OAuthConsent.refusal` of an access token, the JWT bearer flow :meth:`OAuthConsent.approved_scopes`.

Records, organization-level resources of the metadata store (so they survive restarts and every server
process sees them), holding SHA-256 digests, never a code or a token:

    oauthCode          one per approval: the code's digest, client, redirect URI, user, scopes, PKCE
                       challenge, expiry (CODE_SECONDS) and, once redeemed, the grant it made. Kept
                       CODE_KEEP_SECONDS so that a second use is recognised: it revokes that grant (RFC 6749
                       section 4.1.2).
    oauthGrant         one per redeemed code: the family of refresh tokens descended from it. It holds the
                       current refresh token's digest and the rotated ones (MAX_ROTATED): presenting a
                       rotated one revokes the family. Access tokens of the grant carry its id (claim
                       ``grt``) and stop working when it is gone: revoking deletes it. ``issuedAt`` and
                       ``lastUsedAt`` (epoch ms) are what the app's refresh token policy is judged on.
    oauthRevokedToken  one per revoked access token (its jti), until the token would have expired.
    oauthApproval      one per (app, user) who approved the app: the ids of the grants (with a refresh
                       token) that approval made. The JWT bearer flow of a self-authorized app asks it
                       (:meth:`OAuthConsent.approved_scopes`): a user with no live grant left has not
                       approved the app, as in Salesforce.

Codes and grants hold the app's ``authorizationVersion`` (apps.py) they were made under; one of an older
version is refused as revoked (the app's callback URL, certificate or scopes changed since).

Codes and refresh tokens read ``base64url(orgId).id.secret``: like consumer keys, they name their
organization, so one keyed read finds the record. Single use holds across processes: redeeming and
rotating are compare-and-set updates (the store's etags); of two concurrent uses one wins and the other
counts as reuse, which revokes.

The app's IP policy (apppolicy.py) is asked by the consent page (authorize.py) and by both grants, with
the caller's address, before anything is written: a refused request spends no code and rotates no
refresh token.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from headwater.services.data360 import apppolicy
from headwater.services.data360.apps import version_of
from headwater.services.data360.identity import OAuthError, consumer_key_org, invalid_grant
from headwater.services.ids import new_etag, new_hex, now_ms
from headwater.services.users import org_scope
from headwater.stores.metadata import AlreadyExists, Resource, StaleWrite

if TYPE_CHECKING:
    from headwater.services.data360.authorize import Authorization
    from headwater.services.data360.identity import Data360Identity, _Claims

AUTHORIZATION_CODE, REFRESH_TOKEN = "authorization_code", "refresh_token"
GRANT_TYPES = (AUTHORIZATION_CODE, REFRESH_TOKEN)
CODE_KIND, GRANT_KIND, REVOKED_KIND = "oauthCode", "oauthGrant", "oauthRevokedToken"
APPROVAL_KIND = "oauthApproval"
MAX_APPROVAL_GRANTS = 50
REVOKED_BY_CHANGE = (
    "it was issued before the external client app's callback URL, certificate or scopes changed, which "
    "revoked it"
)
CODE_SECONDS = 120  # Salesforce's authorization codes last 2 minutes
CODE_KEEP_SECONDS = 24 * 3600
MAX_ROTATED = 100
SWEEP = 20  # stale records looked at per write
REFRESH_SCOPES = frozenset({"refresh_token", "offline_access"})
_ID = re.compile(r"^[0-9a-f]{32}$")
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 section 4.1
EXPIRED = "expired access/refresh token"  # Salesforce's words for a refresh token it no longer knows


class OAuthConsent:
    def __init__(self, identity: Data360Identity) -> None:
        self.identity = identity
        self.apps = identity.apps
        self.store = identity.store

    # --- POST /services/oauth2/authorize: Allow (the request was checked by authorize.py) ---
    def issue_code(self, ask: Authorization, user: Resource) -> str:
        """A one-time code for the approval (what Allow redirects with)."""
        org_id = ask.app.scope.org_id
        ident = new_hex(16)
        code = _mint(org_id, ident)
        doc = {
            "digest": _digest(code),
            "appId": ask.app.id,
            "clientId": ask.app.doc["consumerKey"],
            "userId": user.id,
            "username": user.doc["username"],
            "scopes": list(ask.scopes),
            "redirectUri": ask.redirect_uri,
            "codeChallenge": ask.code_challenge,
            "expiresAt": int(time.time()) + CODE_SECONDS,
            "grantId": None,
            "version": version_of(ask.app.doc),
        }
        self.store.insert(_record(CODE_KIND, ident, org_id, doc))
        horizon = now_ms() - CODE_KEEP_SECONDS * 1000
        self._sweep(CODE_KIND, org_id, lambda r: r.created_at < horizon)
        return code

    # --- POST /services/oauth2/token ---
    def token(self, grant_type: str, form: Mapping[str, str], client: str | None) -> dict[str, str]:
        """A token request's answer; ``client`` is the caller's address."""
        if grant_type == AUTHORIZATION_CODE:
            return self._redeem(form, client)
        return self._refresh(form, client)

    def _redeem(self, form: Mapping[str, str], client: str | None) -> dict[str, str]:
        app = self._client(form)
        code = _required(form, "code")
        redirect_uri = _required(form, "redirect_uri")
        record = self._find(CODE_KIND, app, code)
        if record is None:
            raise invalid_grant("invalid authorization code")
        doc = record.doc
        if doc["grantId"] is not None:
            self._revoke_grant(app.scope.org_id, doc["grantId"])
            raise invalid_grant(
                "authorization code already used: it is single-use, and the tokens issued from it are revoked"
            )
        if doc["clientId"] != app.doc["consumerKey"]:
            raise invalid_grant("invalid authorization code: it was issued to another client")
        if doc["expiresAt"] <= time.time():
            raise invalid_grant("expired authorization code")
        if doc.get("version", 0) != version_of(app.doc):
            raise invalid_grant(f"invalid authorization code: {REVOKED_BY_CHANGE}")
        if redirect_uri != doc["redirectUri"]:
            raise invalid_grant("redirect_uri must match the redirect_uri of the authorization request")
        confidential = self._client_secret(app, form, required=not doc["codeChallenge"])
        if doc["codeChallenge"]:
            verifier = form.get("code_verifier", "").strip()
            if not verifier:
                raise invalid_grant(
                    "code_verifier is required: the authorization request had a code_challenge"
                )
            if not _VERIFIER.match(verifier) or not hmac.compare_digest(
                _s256(verifier), doc["codeChallenge"]
            ):
                raise invalid_grant("invalid code verifier")
        self.identity.check_address(app, client, apppolicy.AUTHORIZATION_CODE)
        user = self.identity.authorized_user(app, doc["username"])
        scopes = [s for s in doc["scopes"] if s in app.doc["scopes"]]
        grant_id = new_hex(16)
        refresh = _mint(app.scope.org_id, grant_id) if REFRESH_SCOPES & set(scopes) else None
        now = now_ms()
        grant = {
            "appId": app.id,
            "clientId": app.doc["consumerKey"],
            "userId": user.id,
            "username": user.doc["username"],
            "scopes": scopes,
            "confidential": confidential,
            "codeId": record.id,
            "digest": _digest(refresh) if refresh else None,
            "rotated": [],
            "issuedAt": now,
            "lastUsedAt": now,
            "version": version_of(app.doc),
        }
        # The grant first, then the code marked used: a concurrent second use finds the grant to revoke.
        self.store.insert(_record(GRANT_KIND, grant_id, app.scope.org_id, grant))
        try:
            self.store.update(_replaced(record, {**doc, "grantId": grant_id}), record.etag)
        except StaleWrite:
            self._revoke_grant(app.scope.org_id, grant_id)
            current = self.store.get(CODE_KIND, record.scope, record.id)
            if current is not None and current.doc["grantId"]:
                self._revoke_grant(app.scope.org_id, current.doc["grantId"])
            raise invalid_grant(
                "authorization code already used: it is single-use, and the tokens issued from it are revoked"
            ) from None
        if refresh is not None:
            self._approve(app, user, grant_id)
        return self._answer(app, user, scopes, grant_id, refresh, apppolicy.AUTHORIZATION_CODE)

    def _refresh(self, form: Mapping[str, str], client: str | None) -> dict[str, str]:
        app = self._client(form)
        token = _required(form, "refresh_token")
        if not REFRESH_SCOPES & set(app.doc["scopes"]):
            raise invalid_grant(
                f"the external client app {app.doc['name']!r} has neither the refresh_token nor the "
                "offline_access scope"
            )
        record = self._find(GRANT_KIND, app, token, rotated=True)
        if record is None:
            raise invalid_grant(EXPIRED)
        doc = record.doc
        if doc["clientId"] != app.doc["consumerKey"]:
            raise invalid_grant(f"{EXPIRED}: it was issued to another client")
        if not hmac.compare_digest(doc["digest"] or "", _digest(token)):  # a rotated one: reuse
            self._revoke_grant(app.scope.org_id, record.id)
            raise invalid_grant(
                "refresh token already used: it was rotated, so every token of its authorization is revoked"
            )
        if doc.get("version", 0) != version_of(app.doc):
            self._revoke_grant(app.scope.org_id, record.id)
            raise invalid_grant(f"{EXPIRED}: {REVOKED_BY_CHANGE}")
        self._client_secret(app, form, required=bool(doc["confidential"]))
        self.identity.check_address(app, client, apppolicy.REFRESH_TOKEN)
        now = now_ms()
        issued, used = doc.get("issuedAt", record.created_at), doc.get("lastUsedAt", record.updated_at)
        expired = apppolicy.refresh_refusal(app.doc, issued, used, now)  # the app's policy as it is now
        if expired:
            raise invalid_grant(f"{EXPIRED}: {expired}")
        user = self.identity.authorized_user(app, doc["username"])
        scopes = [s for s in doc["scopes"] if s in app.doc["scopes"]]
        refresh = _mint(app.scope.org_id, record.id)
        rotated = [*doc["rotated"], doc["digest"]][-MAX_ROTATED:]
        changes = {"digest": _digest(refresh), "rotated": rotated, "lastUsedAt": now}
        try:
            self.store.update(_replaced(record, {**doc, **changes}), record.etag)
        except StaleWrite:  # used twice at once: one of the two is a replay
            self._revoke_grant(app.scope.org_id, record.id)
            raise invalid_grant(
                "refresh token already used: it was rotated, so every token of its authorization is revoked"
            ) from None
        return self._answer(app, user, scopes, record.id, refresh, apppolicy.REFRESH_TOKEN)

    def _client(self, form: Mapping[str, str]) -> Resource:
        app = self.apps.by_consumer_key(_required(form, "client_id"))
        if app is None:
            raise OAuthError(
                "invalid_client_id",
                "client identifier invalid: client_id must be the consumer key of an external client app",
            )
        return app

    def _client_secret(self, app: Resource, form: Mapping[str, str], *, required: bool) -> bool:
        """Check the client secret when sent (True), or refuse its absence when ``required``."""
        secret = form.get("client_secret", "").strip()
        if not secret:
            if required:
                raise OAuthError(
                    "invalid_client",
                    "client secret required: send client_secret (the consumer secret), or use PKCE",
                )
            return False
        if not hmac.compare_digest(secret.encode(), self.apps.consumer_secret(app).encode()):
            raise OAuthError("invalid_client", "invalid client credentials")
        return True

    def _answer(
        self, app: Resource, user: Resource, scopes: list[str], grant_id: str, refresh: str | None, flow: str
    ) -> dict[str, str]:
        """Salesforce's token response. ``signature``: base64(HMAC-SHA256(consumer secret, id + issued_at)).
        The access token carries the grant's id: revoking the grant voids it. ``issued_at`` is its ``iat``
        in epoch ms; it expires the app's sessionTimeoutSeconds later."""
        base = self.identity.settings.base_url
        ident = f"{base}/id/{app.scope.org_id}/{user.id}"
        now = time.time()
        issued_at = str(int(now * 1000))
        mac = hmac.new(self.apps.consumer_secret(app).encode(), (ident + issued_at).encode(), hashlib.sha256)
        access = self.identity.issue_access_token(app, user, scopes, flow=flow, issued_at=now, grt=grant_id)
        body = {"access_token": access}
        if refresh is not None:
            body["refresh_token"] = refresh
        return {
            **body,
            "signature": base64.b64encode(mac.digest()).decode(),
            "scope": " ".join(scopes),
            "instance_url": base,
            "id": ident,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }

    # --- POST /services/oauth2/revoke ---
    def revoke(self, token: str) -> None:
        """Revoke an access token, or a refresh token with its family; ``invalid_token`` otherwise."""
        claims = self.identity.verify_access_token(token)
        if claims is not None and claims.token_id:
            record = _record(REVOKED_KIND, claims.token_id, claims.org_id, {"expiresAt": claims.expires_at})
            with contextlib.suppress(AlreadyExists):  # revoked already
                self.store.insert(record)
            now = time.time()
            self._sweep(REVOKED_KIND, claims.org_id, lambda r: r.doc["expiresAt"] < now)
            return
        org_id = _org_of(token)
        found = self.store.get(GRANT_KIND, org_scope(org_id), _ident(token)) if org_id else None
        if found is None or not _holds(found, token, rotated=True):
            raise OAuthError("invalid_token", "invalid token: not an unexpired access token or refresh token")
        self._revoke_grant(found.scope.org_id, found.id)

    # --- what the exchange asks of an access token ---
    def refusal(self, claims: _Claims) -> str | None:
        """Why an otherwise valid access token no longer counts (revoked), or None."""
        scope = org_scope(claims.org_id)
        if claims.grant_id and self.store.get(GRANT_KIND, scope, claims.grant_id) is None:
            return "its authorization was revoked"
        if claims.token_id and self.store.get(REVOKED_KIND, scope, claims.token_id) is not None:
            return "it was revoked"
        return None

    # --- approvals, for the JWT bearer flow ---
    def approved_scopes(self, app: Resource, user: Resource) -> frozenset[str]:
        """The scopes ``user`` approved ``app`` for, through grants that still hold a refresh token and
        were made under the app's current authorization version (empty: no approval)."""
        approval = self.store.get(APPROVAL_KIND, app.scope, _approval_id(app, user))
        if approval is None:
            return frozenset()
        return frozenset(s for g in self._live_grants(app, approval.doc["grantIds"]) for s in g.doc["scopes"])

    def _live_grants(self, app: Resource, grant_ids: list[str]) -> list[Resource]:
        found = self.store.get_many(GRANT_KIND, app.scope, grant_ids)
        version = version_of(app.doc)
        return [
            g
            for g in found.values()
            if g.doc.get("digest") and g.doc.get("version", 0) == version and g.doc["appId"] == app.id
        ]

    def _approve(self, app: Resource, user: Resource, grant_id: str) -> None:
        """Record that ``user`` approved ``app`` with the grant ``grant_id`` (compare-and-set, retried:
        two approvals at once both land). Grants no longer live are dropped from the record."""
        ident = _approval_id(app, user)
        for _ in range(5):
            current = self.store.get(APPROVAL_KIND, app.scope, ident)
            if current is None:
                doc = {
                    "appId": app.id,
                    "userId": user.id,
                    "username": user.doc["username"],
                    "grantIds": [grant_id],
                }
                with contextlib.suppress(AlreadyExists):
                    self.store.insert(_record(APPROVAL_KIND, ident, app.scope.org_id, doc))
                    return
                continue
            live = [g.id for g in self._live_grants(app, current.doc["grantIds"])]
            grant_ids = [*live, grant_id][-MAX_APPROVAL_GRANTS:]
            with contextlib.suppress(StaleWrite):
                self.store.update(_replaced(current, {**current.doc, "grantIds": grant_ids}), current.etag)
                return

    # --- records ---
    def _find(self, kind: str, app: Resource, token: str, *, rotated: bool = False) -> Resource | None:
        if _org_of(token) != app.scope.org_id:
            return None
        record = self.store.get(kind, app.scope, _ident(token))
        return record if record is not None and _holds(record, token, rotated=rotated) else None

    def _revoke_grant(self, org_id: str, grant_id: str) -> None:
        self.store.delete(GRANT_KIND, org_scope(org_id), grant_id)

    def _sweep(self, kind: str, org_id: str, stale: Callable[[Resource], bool]) -> None:
        """Delete the oldest records of ``kind`` while stale (a few per call: writes stay cheap)."""
        for old in self.store.list(kind, org_scope(org_id), limit=SWEEP).items:
            if not stale(old):
                break
            self.store.delete(kind, old.scope, old.id)


# --- codes and refresh tokens: base64url(orgId).id.secret, stored as SHA-256 digests ---
def _mint(org_id: str, ident: str) -> str:
    prefix = base64.urlsafe_b64encode(org_id.encode()).rstrip(b"=").decode()
    return f"{prefix}.{ident}.{secrets.token_urlsafe(32)}"


def _org_of(token: str) -> str | None:
    parts = token.split(".")
    if len(parts) != 3 or not _ID.match(parts[1]) or not parts[2]:
        return None
    return consumer_key_org(token)


def _ident(token: str) -> str:
    return token.split(".")[1]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _holds(record: Resource, token: str, *, rotated: bool) -> bool:
    """True when ``token`` is the record's current code or refresh token (or a rotated one)."""
    digest = _digest(token)
    current = record.doc.get("digest") or ""
    known = [current, *record.doc.get("rotated", [])] if rotated else [current]
    return any(hmac.compare_digest(digest, d) for d in known)


def _approval_id(app: Resource, user: Resource) -> str:
    return hashlib.sha256(f"{app.id}:{user.id}".encode()).hexdigest()[:32]


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise OAuthError("invalid_request", f"{name} is required")
    return value


def _record(kind: str, ident: str, org_id: str, doc: dict[str, Any]) -> Resource:
    now = now_ms()
    return Resource(
        kind=kind, id=ident, scope=org_scope(org_id), doc=doc, etag=new_etag(), created_at=now, updated_at=now
    )


def _replaced(record: Resource, doc: dict[str, Any]) -> Resource:
    return Resource(
        kind=record.kind,
        id=record.id,
        scope=record.scope,
        doc=doc,
        etag=new_etag(),
        created_at=record.created_at,
        updated_at=now_ms(),
    )
