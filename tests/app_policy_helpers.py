"""What tests/test_app_policies.py and tests/test_app_lifetimes.py share: a console user signed in over
HTTP, and a factory of apps with both the web server flow and the JWT bearer flow, whose policies a test
sets and patches through the admin API. The JWT bearer flow signs assertions with a key pair made here.

The fixtures are imported by those modules under their own names (``make as make``: a re-export, so
pytest finds them there and ruff does not call them unused). Code and refresh flows use the consent
helpers of tests/test_oauth_consent.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from headwater.services.data360.keys import generate
from tests.support import ApiClient, LiveServer
from tests.test_data360_identity import (
    APPS,
    JWT_BEARER,
    KeyMaterial,
    assertion,
    create_user,
    token_request,
)
from tests.test_oauth_consent import PASSWORD, Consent, new_app, sign_in


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyMaterial:
    files = generate(tmp_path_factory.mktemp("policy-keys"))
    return KeyMaterial(files.certificate.read_text(), files.private_key.read_bytes())


@dataclass
class Client:
    """A signed-in console user, an app with both the web server flow and the JWT bearer flow, and the
    admin API to change the app's policies."""

    consent: Consent
    api: ApiClient
    keys: KeyMaterial

    @property
    def app(self) -> dict[str, Any]:
        return self.consent.app

    def jwt(self) -> httpx.Response:
        signed = assertion(
            self.keys.private_key,
            iss=self.app["consumerKey"],
            sub=self.consent.user["username"],
            aud=self.consent.server.settings.base_url,
        )
        return token_request(self.consent.server, {"grant_type": JWT_BEARER, "assertion": signed})

    def patch(self, **fields: Any) -> None:
        path = f"{APPS}/{self.app['id']}"
        etag = self.api.get(path).headers["etag"]
        ops = [{"op": "replace", "path": f"/{name}", "value": value} for name, value in fields.items()]
        response = self.api.patch(path, json=ops, headers={"If-Match": etag})
        assert response.status_code == 200, response.text


@pytest.fixture
def user(api: ApiClient) -> dict[str, Any]:
    return create_user(api, password=PASSWORD)


@pytest.fixture
def signed_in(server: LiveServer, user: dict[str, Any]) -> Any:
    client = sign_in(server, user["username"])
    yield client
    client.close()


@pytest.fixture
def make(server: LiveServer, api: ApiClient, keys: KeyMaterial, user: dict[str, Any], signed_in: Any) -> Any:
    """A factory of clients: each call creates an app (the overrides are its policies)."""

    def make_client(**overrides: Any) -> Client:
        # pre-approved by the organization's admin, so the JWT bearer flow may act as the user
        overrides.setdefault("approvedUsers", [user["username"]])
        app = new_app(api, jwtBearerFlowEnabled=True, certificate=keys.certificate, **overrides)
        return Client(Consent(server, signed_in, user, app), api, keys)

    return make_client
