"""The authorize step of the OAuth web server flow: checking what the browser brings to the consent page.

    GET/POST /services/oauth2/authorize  the consent page and its Allow / Deny (api/routes/oauth_consent.py)

CONTRACT: :meth:`OAuthAuthorize.authorization` turns the request's parameters into an
:class:`Authorization`, or refuses it. Until the client, its redirect URI and the app's IP policy (asked
with the browser's address, apppolicy.py) are known good a refusal is a :class:`PageError`, shown on the
page and never redirected (the redirect URI is not trusted yet); after, it is a :class:`Redirected`,
sent back to the app's callback URL as ``error`` and ``error_description`` with the state.
:meth:`OAuthAuthorize.consenting_user` says whether the signed-in user may grant the app access
(:class:`PageError` if not). Nothing here writes: the code that Allow redirects with is issued, and
later redeemed, by consent.py, which keeps every record of the flow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from headwater.services.data360 import apppolicy
from headwater.services.data360.identity import SCOPES, OAuthError
from headwater.stores.metadata import Resource

if TYPE_CHECKING:
    from headwater.services.data360.identity import Data360Identity

#: Salesforce's labels of the scopes, as its consent page shows them.
SCOPE_LABELS = {
    "api": "Manage user data via APIs",
    "refresh_token": "Perform requests at any time",
    "offline_access": "Perform requests at any time",
    "cdp_ingest_api": "Manage Data 360 Ingestion API data",
    "cdp_query_api": "Perform ANSI SQL queries on Data 360 data",
}
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url(SHA-256), unpadded
MAX_STATE = 2048


class PageError(Exception):
    """A refusal shown on the authorization page, never redirected: the redirect URI is not trusted."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Redirected(Exception):
    """A refusal sent back to the app's (validated) redirect URI as ``error`` and ``error_description``."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


@dataclass(frozen=True)
class Authorization:
    """A validated authorization request."""

    app: Resource
    redirect_uri: str
    state: str | None
    scopes: tuple[str, ...]
    code_challenge: str | None

    def redirect(self, **params: str) -> str:
        """The redirect URI with ``params`` and the state added to its query."""
        if self.state is not None:
            params["state"] = self.state
        separator = "&" if "?" in self.redirect_uri else "?"
        return self.redirect_uri + separator + urlencode(params)

    def refuse(self, error: str, description: str) -> Redirected:
        return Redirected(self.redirect(error=error, error_description=description))

    def fields(self) -> dict[str, str]:
        """The request as the consent form posts it back."""
        fields = {
            "response_type": "code",
            "client_id": self.app.doc["consumerKey"],
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.scopes),
        }
        if self.state is not None:
            fields["state"] = self.state
        if self.code_challenge is not None:
            fields.update(code_challenge=self.code_challenge, code_challenge_method="S256")
        return fields

    def form_action_source(self) -> str | None:
        """The redirect URI's origin as a CSP source (the consent form's POST redirects there)."""
        parts = urlsplit(self.redirect_uri)
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme):
            return None
        if parts.scheme.lower() not in ("http", "https"):
            return f"{parts.scheme}:"
        if not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", parts.netloc):
            return None
        return f"{parts.scheme}://{parts.netloc}"


class OAuthAuthorize:
    def __init__(self, identity: Data360Identity) -> None:
        self.identity = identity
        self.apps = identity.apps

    def authorization(self, params: Mapping[str, str], client: str | None) -> Authorization:
        """Validate an authorization request from the browser at the address ``client``:
        :class:`PageError` until the client, its redirect URI and the app's IP policy are known good,
        :class:`Redirected` after."""
        client_id = params.get("client_id", "").strip()
        app = self.apps.by_consumer_key(client_id) if client_id else None
        if app is None:
            raise PageError(
                "client identifier invalid: client_id must be the consumer key of an external client app"
            )
        redirect_uri = params.get("redirect_uri", "").strip()
        if not redirect_uri:
            raise PageError("redirect_uri is required: the callback URL of the external client app")
        if redirect_uri != app.doc["callbackUrl"]:
            raise PageError(
                f"redirect_uri must match configuration: {redirect_uri!r} is not the callback URL of the "
                f"external client app {app.doc['name']!r}"
            )
        if not apppolicy.address_allowed(app.doc, client, apppolicy.CONSENT):
            raise PageError(
                f"{apppolicy.IP_RESTRICTED}: the external client app {app.doc['name']!r} may be authorized "
                f"only from its trusted IP ranges, and your address ({client or 'unknown'}) is outside them.",
                status=403,
            )
        response_type = params.get("response_type", "").strip()
        if response_type != "code":
            raise PageError(
                f"unsupported response type {response_type!r}: this server supports response_type=code "
                "(the web server flow)"
            )
        state = params.get("state")
        if state is not None and len(state) > MAX_STATE:
            raise PageError(f"state is longer than {MAX_STATE} characters")
        ask = Authorization(app, redirect_uri, state, (), None)
        return Authorization(
            app, redirect_uri, state, self._scopes(ask, params), self._challenge(ask, params)
        )

    @staticmethod
    def _scopes(ask: Authorization, params: Mapping[str, str]) -> tuple[str, ...]:
        """The scopes asked for that the app has (all of the app's when none are named)."""
        has = ask.app.doc["scopes"]
        requested = params.get("scope", "").replace(",", " ").split()
        if not requested:
            return tuple(has)
        granted = tuple(s for s in SCOPES if s in requested and s in has)
        if not granted:
            raise ask.refuse(
                "invalid_scope",
                f"none of the requested scopes ({' '.join(requested)}) is a scope of this app "
                f"({' '.join(has)})",
            )
        return granted

    @staticmethod
    def _challenge(ask: Authorization, params: Mapping[str, str]) -> str | None:
        challenge = params.get("code_challenge", "").strip()
        method = params.get("code_challenge_method", "").strip()
        if not challenge:
            if ask.app.doc.get("pkceRequired"):
                raise ask.refuse(
                    "invalid_request",
                    "code_challenge is required: this app requires PKCE (code_challenge_method=S256)",
                )
            return None
        if method not in ("", "S256"):  # absent means S256, as Salesforce reads it
            raise ask.refuse("invalid_request", "code_challenge_method must be S256 (plain is not supported)")
        if not _CHALLENGE.match(challenge):
            raise ask.refuse(
                "invalid_request", "invalid code_challenge: it must be base64url(SHA-256(code_verifier))"
            )
        return challenge

    def consenting_user(self, ask: Authorization, org_id: str, username: str) -> Resource:
        """The signed-in user, if the app's policies let them grant it access (else :class:`PageError`)."""
        app = ask.app
        if org_id != app.scope.org_id:
            raise PageError(
                f"The external client app {app.doc['name']!r} belongs to another organization: sign in as "
                "a user of its organization.",
                status=403,
            )
        try:
            return self.identity.authorized_user(app, username)
        except OAuthError as exc:
            raise PageError(f"You may not authorize this app: {exc.description}.", status=403) from exc
