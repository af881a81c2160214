"""The OAuth consent page in a browser (issue 7): a signed-in console user approves an external client app,
the app exchanges the code (httpx, as a server would) for tokens and refreshes them; Deny, a tampered
redirect URI, and signing in first."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.conftest import CONSOLE_PASSWORD, CONSOLE_USER, screenshot
from tests.support import ApiClient, LiveServer
from tests.test_data360_identity import APPS, DOC_SCOPES
from tests.test_oauth_consent import pkce

CALLBACK = "https://client.example/oauth/callback"
CDP = "urn:salesforce:grant-type:external:cdp"


@pytest.fixture
def app(console_api: ApiClient) -> dict[str, Any]:
    body = {
        "name": "Acme order status",
        "description": "Shows customers' order status to the help desk.",
        "callbackUrl": CALLBACK,
        "scopes": DOC_SCOPES,
        "pkceRequired": True,
        "permittedUsers": "All users may self-authorize",
    }
    response = console_api.post(APPS, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture
def callbacks(console: Any) -> Iterator[list[str]]:
    """Every request the browser makes to the app's (or any other) site, answered with a stub page."""
    seen: list[str] = []

    def answer(route: Any) -> None:
        seen.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>App</title>")

    console.context.route("https://**/*", answer)
    yield seen


def authorize_url(app: dict[str, Any], challenge: str, state: str, **changes: str) -> str:
    params = {
        "response_type": "code",
        "client_id": app["consumerKey"],
        "redirect_uri": CALLBACK,
        "scope": "api refresh_token cdp_ingest_api",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **changes,
    }
    return "/services/oauth2/authorize?" + urlencode(params)


def callback_query(url: str) -> dict[str, str]:
    assert url.startswith(CALLBACK + "?"), url
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_consent_in_the_browser_to_a_token_and_a_refreshed_token(
    console: Any, callbacks: list[str], app: dict[str, Any], console_server: LiveServer
) -> None:
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(8)
    console.goto(authorize_url(app, challenge, state))
    console.get_by_role("heading", name="Allow access to Acme order status?").wait_for()
    scopes = console.get_by_role("list", name="Requested scopes")
    assert "Manage user data via APIs (api)" in scopes.inner_text()
    assert "Manage Data 360 Ingestion API data (cdp_ingest_api)" in scopes.inner_text()
    assert "offline_access" not in scopes.inner_text()  # asked for only what the request named
    screenshot(console, "oauth-consent")

    console.get_by_role("button", name="Allow").click()
    console.wait_for_url(CALLBACK + "?**")
    query = callback_query(console.url)
    assert query["state"] == state and callbacks == [console.url]

    base = console_server.base_url
    token = httpx.post(
        base + "/services/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "client_id": app["consumerKey"],
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    tokens = token.json()
    assert tokens["scope"] == "api refresh_token cdp_ingest_api"
    exchange = {"grant_type": CDP, "subject_token": tokens["access_token"]}
    assert httpx.post(base + "/services/a360/token", data=exchange).status_code == 200

    refreshed = httpx.post(
        base + "/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": app["consumerKey"],
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
    exchange = {"grant_type": CDP, "subject_token": refreshed.json()["access_token"]}
    assert httpx.post(base + "/services/a360/token", data=exchange).status_code == 200


def test_deny_sends_access_denied_and_the_state(
    console: Any, callbacks: list[str], app: dict[str, Any]
) -> None:
    console.goto(authorize_url(app, pkce()[1], "deny-state"))
    console.get_by_role("button", name="Deny").click()
    console.wait_for_url(CALLBACK + "?**")
    query = callback_query(console.url)
    assert query["error"] == "access_denied" and query["state"] == "deny-state" and "code" not in query


def test_a_tampered_redirect_uri_is_refused_on_the_page(
    console: Any, callbacks: list[str], app: dict[str, Any], console_server: LiveServer
) -> None:
    evil = "https://evil.example/steal"
    response = console.goto(authorize_url(app, pkce()[1], "s", redirect_uri=evil))
    assert response.status == 400
    assert console.url.startswith(console_server.base_url)
    assert "redirect_uri must match configuration" in console.get_by_role("alert").inner_text()
    assert console.get_by_role("button", name="Allow").count() == 0
    assert callbacks == []


def test_signing_in_first_leads_to_the_consent_page(
    browser: Any, console_server: LiveServer, app: dict[str, Any]
) -> None:
    context = browser.new_context(base_url=console_server.base_url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto(authorize_url(app, pkce()[1], "after-sign-in"))
        page.wait_for_url("**/console/login?**")
        page.get_by_label("Username").fill(CONSOLE_USER)
        page.get_by_label("Password").fill(CONSOLE_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Allow access to Acme order status?").wait_for()
        assert "/services/oauth2/authorize?" in page.url and "after-sign-in" in page.url
    finally:
        context.close()
