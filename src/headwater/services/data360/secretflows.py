"""The two grants of the token endpoint that rest on the consumer secret, as Salesforce serves them:

    POST /services/oauth2/token  grant_type=client_credentials  client_id, client_secret
    POST /services/oauth2/token  grant_type=password            client_id, client_secret, username, password

CONTRACT: :meth:`SecretFlows.token` answers an access token (identity.py signs it, claim ``flw`` the flow)
in Salesforce's shape, or raises identity.OAuthError: ``invalid_client_id`` (no such consumer key),
``invalid_client`` (wrong consumer secret), ``unsupported_grant_type`` (the app does not allow the flow),
``invalid_grant`` (the user, the password or the app's policies refuse). It writes nothing.

Both flows are off for every app until its owner turns them on (``clientCredentialsFlowEnabled``,
``usernamePasswordFlowEnabled``, apps.py), as Salesforce ships them:

- client credentials act as the app's execution user (``clientCredentialsUser``, Salesforce's "Run As"),
  whom only an organization admin sets. Headwater also holds that user to the app's permitted-users
  policy, as the token exchange asks every token's user again (identity.py).
- username-password takes a user's console password (services/users.py ``passwordHash``); a user without
  one cannot use the flow. Headwater has no security token to append to the password. The route puts
  the grant behind the console sign-in's throttle (api/routes/oauth.py).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

from headwater.services.data360 import apppolicy
from headwater.services.data360.apps import DATA360_SCOPES
from headwater.services.data360.identity import OAuthError, invalid_grant
from headwater.stores.metadata import Resource

if TYPE_CHECKING:
    from headwater.services.data360.identity import Data360Identity

CLIENT_CREDENTIALS = "client_credentials"
PASSWORD = "password"
GRANT_TYPES = (CLIENT_CREDENTIALS, PASSWORD)
AUTHENTICATION_FAILURE = "authentication failure"  # Salesforce's words; nothing about which part
_FLAGS = {CLIENT_CREDENTIALS: "clientCredentialsFlowEnabled", PASSWORD: "usernamePasswordFlowEnabled"}
_FLOWS = {CLIENT_CREDENTIALS: apppolicy.CLIENT_CREDENTIALS, PASSWORD: apppolicy.PASSWORD}


class SecretFlows:
    def __init__(self, identity: Data360Identity) -> None:
        self.identity = identity
        self.apps = identity.apps

    def token(self, grant_type: str, form: Mapping[str, str], client: str | None) -> dict[str, str]:
        """Answer ``grant_type`` (one of GRANT_TYPES) from the address ``client``."""
        app = self._authenticated_app(form)
        doc = app.doc
        if not doc.get(_FLAGS[grant_type]):
            raise OAuthError(
                "unsupported_grant_type",
                f"grant type not supported: the external client app {doc['name']!r} does not allow the "
                f"{grant_type} flow (set {_FLAGS[grant_type]} to true)",
            )
        if not ({"api"} | DATA360_SCOPES) & set(doc["scopes"]):
            raise invalid_grant(
                f"the external client app {doc['name']!r} has none of the api, cdp_ingest_api "
                "and cdp_query_api scopes"
            )
        flow = _FLOWS[grant_type]
        self.identity.check_address(app, client, flow)
        user = self._run_as(app) if grant_type == CLIENT_CREDENTIALS else self._password_user(app, form)
        scopes = tuple(doc["scopes"])
        token = self.identity.issue_access_token(app, user, scopes, flow=flow)
        base = self.identity.settings.base_url
        return {
            "access_token": token,
            "scope": " ".join(scopes),
            "instance_url": base,
            "id": f"{base}/id/{app.scope.org_id}/{user.id}",
            "token_type": "Bearer",
        }

    def _authenticated_app(self, form: Mapping[str, str]) -> Resource:
        client_id = form.get("client_id", "").strip()
        app = self.apps.by_consumer_key(client_id) if client_id else None
        if app is None:
            raise OAuthError(
                "invalid_client_id",
                "client identifier invalid: client_id must be the consumer key of an external client app",
            )
        secret = form.get("client_secret", "").strip()
        if not secret or not hmac.compare_digest(secret.encode(), self.apps.consumer_secret(app).encode()):
            raise OAuthError("invalid_client", "invalid client credentials: send the app's consumer secret")
        return app

    def _run_as(self, app: Resource) -> Resource:
        username = app.doc.get("clientCredentialsUser")
        if not username:
            raise invalid_grant(
                f"no execution user: the external client app {app.doc['name']!r} names no "
                "clientCredentialsUser"
            )
        return self.identity.authorized_user(app, username)

    def _password_user(self, app: Resource, form: Mapping[str, str]) -> Resource:
        username, password = form.get("username", "").strip(), form.get("password", "")
        if not username or not password:
            raise OAuthError("invalid_request", "username and password are required")
        user = self.identity.users.authenticate(username, password, app.scope.org_id)
        if user is None:
            raise invalid_grant(AUTHENTICATION_FAILURE)
        return self.identity.authorized_user(app, user.doc["username"])
