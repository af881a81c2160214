"""OAuth consent for external client apps (issue 7): the web server flow with a signed-in console user, code
and refresh-token single use, PKCE, the permitted-users policy, and revocation, through a live server.

The consent page is driven over HTTP here (a session cookie from the console's sign-in, the page's hidden
fields and CSRF token); tests/test_console_consent.py walks it in a browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from headwater.services.data360.consent import CODE_KIND, GRANT_KIND
from headwater.services.users import org_scope
from tests.support import ApiClient, LiveServer
from tests.test_data360_identity import APPS, DOC_SCOPES, create_user, new_username, refusal

AUTHORIZE, TOKEN, REVOKE = "/services/oauth2/authorize", "/services/oauth2/token", "/services/oauth2/revoke"
EXCHANGE = "/services/a360/token"
CDP = "urn:salesforce:grant-type:external:cdp"
PASSWORD = "a long enough console password"
CALLBACK = "https://client.example/oauth/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def new_app(api: ApiClient, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": f"Consent app {secrets.token_hex(3)}",
        "callbackUrl": CALLBACK,
        "scopes": DOC_SCOPES,
        "pkceRequired": False,
        "permittedUsers": "All users may self-authorize",
        **overrides,
    }
    response = api.post(APPS, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def hidden_fields(page: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    return {name: html.unescape(value) for name, value in found}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Consent:
    """A console user signed in over HTTP, and an app they authorize."""

    server: LiveServer
    browser: httpx.Client
    user: dict[str, Any]
    app: dict[str, Any]

    def params(self, **changes: str) -> dict[str, str]:
        params = {
            "response_type": "code",
            "client_id": self.app["consumerKey"],
            "redirect_uri": self.app["callbackUrl"],
            "state": "st-" + secrets.token_hex(4),
        }
        params.update(changes)
        return {k: v for k, v in params.items() if v != "-"}

    def page(self, **changes: str) -> httpx.Response:
        return self.browser.get(AUTHORIZE, params=self.params(**changes))

    def decide(self, decision: str = "allow", **changes: str) -> dict[str, str]:
        """Load the consent page, press Allow (or Deny): the callback's query."""
        page = self.page(**changes)
        assert page.status_code == 200, page.text
        fields = hidden_fields(page.text)
        response = self.browser.post(AUTHORIZE, data={**fields, "decision": decision})
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        assert location.startswith(self.app["callbackUrl"] + "?")
        query = query_of(location)
        assert query.get("state") == fields["state"]
        return query

    def code(self, **changes: str) -> str:
        return self.decide(**changes)["code"]

    def redeem(self, code: str, **form: str) -> httpx.Response:
        body = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": self.app["consumerKey"],
            "client_secret": self.app["consumerSecret"],
            "redirect_uri": self.app["callbackUrl"],
            **form,
        }
        return post(self.server, TOKEN, {k: v for k, v in body.items() if v != "-"})

    def tokens(self, **form: str) -> dict[str, str]:
        response = self.redeem(self.code(), **form)
        assert response.status_code == 200, response.text
        body: dict[str, str] = response.json()
        return body

    def refresh(self, refresh_token: str, **form: str) -> httpx.Response:
        body = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self.app["consumerKey"],
            "client_secret": self.app["consumerSecret"],
            **form,
        }
        return post(self.server, TOKEN, {k: v for k, v in body.items() if v != "-"})

    def exchange(self, access_token: str) -> httpx.Response:
        return post(self.server, EXCHANGE, {"grant_type": CDP, "subject_token": access_token})


def post(server: LiveServer, path: str, form: dict[str, str]) -> httpx.Response:
    return httpx.post(server.base_url + path, data=form, timeout=30)


def sign_in(server: LiveServer, username: str) -> httpx.Client:
    client = httpx.Client(base_url=server.base_url, timeout=30)
    response = client.post("/console/login", data={"username": username, "password": PASSWORD})
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
def consent(server: LiveServer, api: ApiClient) -> Any:
    user = create_user(api, password=PASSWORD)
    client = sign_in(server, user["username"])
    yield Consent(server, client, user, new_app(api))
    client.close()


def with_app(consent: Consent, api: ApiClient, **overrides: Any) -> Consent:
    return Consent(consent.server, consent.browser, consent.user, new_app(api, **overrides))


# --- the flow ---
def test_code_to_tokens_to_a_refreshed_token(consent: Consent, server: LiveServer) -> None:
    body = consent.tokens()
    assert set(body) == {
        "access_token",
        "refresh_token",
        "signature",
        "scope",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
    }
    assert body["token_type"] == "Bearer" and body["scope"] == " ".join(DOC_SCOPES)
    assert body["instance_url"] == server.settings.base_url
    assert body["id"] == f"{server.settings.base_url}/id/{server.creds['orgId']}/{consent.user['id']}"
    mac = hmac.new(
        consent.app["consumerSecret"].encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256
    )
    assert base64.b64decode(body["signature"]) == mac.digest()
    assert consent.exchange(body["access_token"]).status_code == 200  # as a JWT bearer token is

    refreshed = consent.refresh(body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    again = refreshed.json()
    assert again["refresh_token"] != body["refresh_token"]  # rotated
    assert again["access_token"] != body["access_token"] and again["id"] == body["id"]
    assert consent.exchange(again["access_token"]).status_code == 200
    assert consent.refresh(again["refresh_token"]).status_code == 200


def test_signing_in_first_comes_back_to_the_consent_page(consent: Consent, server: LiveServer) -> None:
    params = consent.params()
    with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:
        response = anonymous.get(AUTHORIZE, params=params)
        assert response.status_code == 303
        location = response.headers["location"]
        assert location.startswith("/console/login?next=")
        resume = query_of(location)["next"]
        assert resume.startswith("/console/oauth/resume?")
        signed_in = anonymous.post(
            "/console/login",
            data={"username": consent.user["username"], "password": PASSWORD, "next": resume},
        )
        assert signed_in.status_code == 303 and signed_in.headers["location"] == resume
        back = anonymous.get(resume)
        assert back.status_code == 303
        assert back.headers["location"] == f"{AUTHORIZE}?{urlencode(params)}"
        page = anonymous.get(back.headers["location"])
    assert page.status_code == 200
    assert f"Allow access to {html.escape(consent.app['name'])}?" in page.text
    assert "form-action 'self' https://client.example" in page.headers["content-security-policy"]
    assert "<script" not in page.text and "style=" not in page.text


def test_deny_redirects_with_access_denied_and_the_state(consent: Consent) -> None:
    query = consent.decide("deny")
    assert query["error"] == "access_denied" and "code" not in query


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"redirect_uri": "https://evil.example/oauth/callback"}, "redirect_uri must match configuration"),
        ({"redirect_uri": CALLBACK + "/more"}, "redirect_uri must match configuration"),
        ({"redirect_uri": CALLBACK + "?next=https://evil.example"}, "redirect_uri must match configuration"),
        ({"redirect_uri": "-"}, "redirect_uri is required"),
        ({"client_id": "bm9wZQ.nope"}, "client identifier invalid"),
        ({"client_id": "-"}, "client identifier invalid"),
        ({"response_type": "token"}, "unsupported response type"),
    ],
)
def test_bad_requests_are_refused_on_the_page(
    consent: Consent, changes: dict[str, str], message: str
) -> None:
    response = consent.page(**changes)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert message in html.unescape(response.text)
    # the posted form is checked the same way: a tampered hidden field is no way around it
    fields = hidden_fields(consent.page().text)
    posted = consent.browser.post(AUTHORIZE, data={**fields, **changes, "decision": "allow"})
    assert posted.status_code == 400 and "location" not in posted.headers


def test_the_consent_form_needs_the_csrf_token(consent: Consent) -> None:
    fields = hidden_fields(consent.page().text)
    posted = consent.browser.post(AUTHORIZE, data={**fields, "csrf": "forged", "decision": "allow"})
    assert posted.status_code == 403 and "location" not in posted.headers


def test_unknown_scopes_are_dropped_and_none_left_is_invalid_scope(consent: Consent) -> None:
    page = consent.page(scope="api refresh_token id web")
    assert hidden_fields(page.text)["scope"] == "api refresh_token"
    assert "Manage user data via APIs" in page.text
    response = consent.browser.get(AUTHORIZE, params=consent.params(scope="id web"))
    assert response.status_code == 302
    assert query_of(response.headers["location"])["error"] == "invalid_scope"
    narrowed = consent.redeem(consent.code(scope="api refresh_token")).json()
    assert narrowed["scope"] == "api refresh_token"
    assert "cdp_ingest_api" in refusal(consent.exchange(narrowed["access_token"]))[1]


# --- codes ---
def test_a_code_is_single_use_and_reuse_revokes_its_tokens(consent: Consent) -> None:
    code = consent.code()
    first = consent.redeem(code)
    assert first.status_code == 200
    tokens = first.json()
    error, description = refusal(consent.redeem(code))
    assert error == "invalid_grant" and "already used" in description
    assert refusal(consent.refresh(tokens["refresh_token"]))[0] == "invalid_grant"
    error, description = refusal(consent.exchange(tokens["access_token"]))
    assert error == "invalid_grant" and "revoked" in description


def test_a_code_is_bound_to_its_client_redirect_uri_and_secret(consent: Consent, api: ApiClient) -> None:
    code = consent.code()
    error, description = refusal(consent.redeem(code, redirect_uri=CALLBACK + "/other"))
    assert error == "invalid_grant" and "redirect_uri" in description
    other = new_app(api)
    mismatch = consent.redeem(code, client_id=other["consumerKey"], client_secret=other["consumerSecret"])
    assert refusal(mismatch) == (
        "invalid_grant",
        "invalid authorization code: it was issued to another client",
    )
    assert refusal(consent.redeem(code, client_secret="wrong"))[0] == "invalid_client"
    assert refusal(consent.redeem(code, client_secret="-"))[0] == "invalid_client"
    assert refusal(consent.redeem(code + "x")) == ("invalid_grant", "invalid authorization code")
    assert refusal(consent.redeem("garbage")) == ("invalid_grant", "invalid authorization code")
    assert consent.redeem(code).status_code == 200  # refusals did not spend it


def test_an_expired_code_is_refused(consent: Consent, server: LiveServer) -> None:
    code = consent.code()
    store = server.services.store
    record = store.get(CODE_KIND, org_scope(server.creds["orgId"]), code.split(".")[1])
    assert record is not None
    old_etag, record.doc["expiresAt"] = record.etag, 1
    record.etag = '"expired"'
    store.update(record, old_etag)
    assert refusal(consent.redeem(code)) == ("invalid_grant", "expired authorization code")


def test_codes_and_refresh_tokens_are_stored_as_digests(consent: Consent, server: LiveServer) -> None:
    code = consent.code()
    tokens = consent.redeem(code).json()
    scope = org_scope(server.creds["orgId"])
    stored_code = server.services.store.get(CODE_KIND, scope, code.split(".")[1])
    grant = server.services.store.get(GRANT_KIND, scope, tokens["refresh_token"].split(".")[1])
    assert stored_code is not None and grant is not None
    for record, raw in ((stored_code, code), (grant, tokens["refresh_token"])):
        text = repr(record.doc)
        assert raw not in text and raw.split(".")[2] not in text
        assert record.doc["digest"] == hashlib.sha256(raw.encode()).hexdigest()


# --- refresh tokens ---
def test_reusing_a_rotated_refresh_token_revokes_the_family(consent: Consent) -> None:
    first = consent.tokens()
    second = consent.refresh(first["refresh_token"]).json()
    third = consent.refresh(second["refresh_token"]).json()
    error, description = refusal(consent.refresh(first["refresh_token"]))
    assert error == "invalid_grant" and "already used" in description
    assert refusal(consent.refresh(third["refresh_token"])) == (
        "invalid_grant",
        "expired access/refresh token",
    )
    for access in (first, second, third):
        assert refusal(consent.exchange(access["access_token"]))[0] == "invalid_grant"
    assert consent.exchange(consent.tokens()["access_token"]).status_code == 200  # other grants live on


def test_refresh_needs_the_secret_of_a_confidential_client(consent: Consent, api: ApiClient) -> None:
    tokens = consent.tokens()
    assert refusal(consent.refresh(tokens["refresh_token"], client_secret="-"))[0] == "invalid_client"
    assert refusal(consent.refresh(tokens["refresh_token"], client_secret="nope"))[0] == "invalid_client"
    other = new_app(api)
    assert (
        refusal(consent.refresh(tokens["refresh_token"], client_id=other["consumerKey"]))[0]
        == "invalid_grant"
    )
    assert refusal(consent.refresh("garbage"))[0] == "invalid_grant"
    assert consent.refresh(tokens["refresh_token"]).status_code == 200


def test_an_app_without_the_refresh_token_scope_gets_no_refresh_token(
    consent: Consent, api: ApiClient
) -> None:
    plain = with_app(consent, api, scopes=["api", "cdp_ingest_api"])
    tokens = plain.tokens()
    assert "refresh_token" not in tokens and tokens["scope"] == "api cdp_ingest_api"
    assert plain.exchange(tokens["access_token"]).status_code == 200
    error, description = refusal(plain.refresh("anything"))
    assert error == "invalid_grant" and "refresh_token" in description


# --- PKCE ---
def test_pkce_required_s256_and_checked(consent: Consent, api: ApiClient) -> None:
    public = with_app(consent, api, pkceRequired=True)
    missing = public.browser.get(AUTHORIZE, params=public.params())
    assert missing.status_code == 302
    query = query_of(missing.headers["location"])
    assert query["error"] == "invalid_request" and "code_challenge" in query["error_description"]
    assert query["state"].startswith("st-")
    verifier, challenge = pkce()
    plain = public.browser.get(
        AUTHORIZE, params=public.params(code_challenge=challenge, code_challenge_method="plain")
    )
    assert query_of(plain.headers["location"])["error"] == "invalid_request"

    code = public.code(code_challenge=challenge, code_challenge_method="S256")
    no_verifier = public.redeem(code, client_secret="-")
    assert refusal(no_verifier)[0] == "invalid_grant" and "code_verifier" in refusal(no_verifier)[1]
    wrong = public.redeem(code, client_secret="-", code_verifier=pkce()[0])
    assert refusal(wrong) == ("invalid_grant", "invalid code verifier")
    tokens = public.redeem(code, client_secret="-", code_verifier=verifier)  # a public client: no secret
    assert tokens.status_code == 200, tokens.text
    refreshed = public.refresh(tokens.json()["refresh_token"], client_secret="-")
    assert refreshed.status_code == 200, refreshed.text


# --- who may consent ---
def test_pre_authorized_policy_blocks_an_unapproved_user(consent: Consent, api: ApiClient) -> None:
    approved = create_user(api, username=new_username())
    gated = with_app(
        consent,
        api,
        permittedUsers="Admin approved users are pre-authorized",
        approvedUsers=[approved["username"]],
    )
    page = gated.page()
    assert page.status_code == 403 and "location" not in page.headers
    assert "not in its approvedUsers" in html.unescape(page.text)
    # approve the signed-in user: consent works; withdraw the approval: the refresh token stops working
    app = api.get(f"{APPS}/{gated.app['id']}").json()["items"][0]
    both = [approved["username"], consent.user["username"]]
    patch = [{"op": "replace", "path": "/approvedUsers", "value": both}]
    assert api.patch(f"{APPS}/{app['id']}", json=patch, headers={"If-Match": app["etag"]}).status_code == 200
    tokens = gated.tokens()
    app = api.get(f"{APPS}/{gated.app['id']}").json()["items"][0]
    patch = [{"op": "replace", "path": "/approvedUsers", "value": [approved["username"]]}]
    assert api.patch(f"{APPS}/{app['id']}", json=patch, headers={"If-Match": app["etag"]}).status_code == 200
    error, description = refusal(gated.refresh(tokens["refresh_token"]))
    assert error == "invalid_grant" and "approved" in description


def test_a_user_of_another_org_may_not_consent(
    consent: Consent, other_org_api: ApiClient, server: LiveServer
) -> None:
    foreign = Consent(server, consent.browser, consent.user, new_app(other_org_api))
    page = foreign.page()
    assert page.status_code == 403 and "another organization" in page.text


# --- revocation ---
def test_revoking_a_refresh_token_revokes_its_family(consent: Consent, server: LiveServer) -> None:
    first = consent.tokens()
    second = consent.refresh(first["refresh_token"]).json()
    revoked = post(server, REVOKE, {"token": first["refresh_token"]})  # a rotated one still names the family
    assert revoked.status_code == 200 and revoked.content == b""
    assert refusal(consent.refresh(second["refresh_token"]))[0] == "invalid_grant"
    assert refusal(consent.exchange(second["access_token"]))[0] == "invalid_grant"
    assert refusal(post(server, REVOKE, {"token": second["refresh_token"]}))[0] == "invalid_token"


def test_revoking_an_access_token_leaves_the_refresh_token(consent: Consent, server: LiveServer) -> None:
    tokens = consent.tokens()
    assert post(server, REVOKE, {"token": tokens["access_token"]}).status_code == 200
    assert post(server, REVOKE, {"token": tokens["access_token"]}).status_code == 200  # idempotent
    error, description = refusal(consent.exchange(tokens["access_token"]))
    assert error == "invalid_grant" and "revoked" in description
    refreshed = consent.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200
    assert consent.exchange(refreshed.json()["access_token"]).status_code == 200


def test_revoke_refusals(server: LiveServer) -> None:
    assert refusal(post(server, REVOKE, {})) == ("invalid_request", "token is required")
    for token in ("garbage", "a.b.c", "bm9wZQ." + "0" * 32 + ".x"):
        assert refusal(post(server, REVOKE, {"token": token}))[0] == "invalid_token"


def test_token_endpoint_names_every_grant_type(server: LiveServer) -> None:
    error, description = refusal(post(server, TOKEN, {"grant_type": "implicit"}))
    assert error == "unsupported_grant_type"
    assert "authorization_code" in description and "refresh_token" in description
    assert "client_credentials" in description and "password" in description
    assert refusal(post(server, TOKEN, {"grant_type": "authorization_code"})) == (
        "invalid_request",
        "client_id is required",
    )


def test_openapi_documents_authorize_and_revoke(server: LiveServer) -> None:
    paths = httpx.get(server.base_url + "/openapi.json").json()["paths"]
    assert paths[AUTHORIZE]["get"]["summary"] and paths[REVOKE]["post"]["summary"]
    grants = paths[TOKEN]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert {"authorization_code", "refresh_token"} <= set(grants["properties"]["grant_type"]["enum"])
