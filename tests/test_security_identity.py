"""Issue 12, sections 3 and 5: who may get tokens as whom, and console sessions and sign-in throttling.

Each test attacks through a live server over real HTTP, the way the issue describes:

- a Developer's own external client app (own certificate) that pre-approves an admin or lets every user
  self-authorize, then a JWT bearer assertion with ``sub`` = the admin: refused;
- a Developer repointing an admin's app's callback URL: 403; the owner's change revokes the consents,
  codes and refresh tokens given under the old value;
- 60 wrong passwords for an admin from one address: the admin still signs in (after the backoff) and
  another user at the same address is not slowed at all;
- a signed-out cookie, and a cookie whose user's password changed: refused;
- the session cookie is Secure when the public URL is https;
- two organizations with the same username: each sees only its own sign-in events.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.services.data360.keys import generate
from headwater.services.users import actor_for
from tests.conftest import console_org, make_settings
from tests.support import ApiClient, LiveServer, role_client, start_server
from tests.test_data360_identity import (
    APPS,
    USERS,
    KeyMaterial,
    assertion,
    create_user,
    refusal,
    token_request,
)
from tests.test_oauth_consent import PASSWORD, Consent, new_app, sign_in

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
EVENTS = "/data/foundation/audit/events"


@pytest.fixture(scope="module")
def developer_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyMaterial:
    """A key pair and certificate of the Developer's own."""
    files = generate(tmp_path_factory.mktemp("developer-keys"))
    return KeyMaterial(files.certificate.read_text(), files.private_key.read_bytes())


def app_body(keys: KeyMaterial, **overrides: Any) -> dict[str, Any]:
    return {
        "name": f"Developer app {uuid.uuid4().hex[:6]}",
        "callbackUrl": "https://attacker.example/callback",
        "scopes": ["api", "refresh_token", "offline_access", "cdp_ingest_api"],
        "jwtBearerFlowEnabled": True,
        "certificate": keys.certificate,
        "pkceRequired": False,
        **overrides,
    }


def jwt_as(server: LiveServer, keys: KeyMaterial, app: dict[str, Any], username: str) -> httpx.Response:
    signed = assertion(keys.private_key, app["consumerKey"], username, server.settings.base_url)
    return token_request(server, {"grant_type": JWT_BEARER, "assertion": signed})


def assert_needs_manage_users(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    report = response.json()["report"]
    assert report["permission"] == "manage-users", report
    assert "manage-users" in response.json()["detail"]


# --- section 3: tokens as any user ---
def test_a_developer_cannot_get_tokens_as_an_admin(
    server: LiveServer, api: ApiClient, developer_keys: KeyMaterial
) -> None:
    admin = create_user(api, admin=True)
    developer = role_client(server, api, "Developer")
    with developer:
        # Pre-approving the admin, or letting every user self-authorize, is an organization admin's call.
        pre_approved = developer.post(APPS, json=app_body(developer_keys, approvedUsers=[admin["username"]]))
        assert_needs_manage_users(pre_approved)
        self_authorized = app_body(developer_keys, permittedUsers="All users may self-authorize")
        assert_needs_manage_users(developer.post(APPS, json=self_authorized))

        # An app with the defaults is the Developer's to make, but it gets no token for the admin.
        created = developer.post(APPS, json=app_body(developer_keys))
        assert created.status_code == 201, created.text
        app = created.json()
        error, description = refusal(jwt_as(server, developer_keys, app, admin["username"]))
        assert error == "invalid_grant" and admin["username"] in description

        # Nor can the Developer approve the admin on their own app afterwards.
        path = f"{APPS}/{app['id']}"
        etag = developer.get(path).headers["etag"]
        add = [{"op": "add", "path": "/approvedUsers/-", "value": admin["username"]}]
        assert_needs_manage_users(developer.patch(path, json=add, headers={"If-Match": etag}))
        switch = [{"op": "replace", "path": "/permittedUsers", "value": "All users may self-authorize"}]
        assert_needs_manage_users(developer.patch(path, json=switch, headers={"If-Match": etag}))

    # Even when an organization admin lets every user self-authorize the Developer's app, a JWT for the
    # admin needs the admin's own approval first (Salesforce: "user hasn't approved this consumer").
    etag = api.get(f"{APPS}/{app['id']}").headers["etag"]
    switch = [{"op": "replace", "path": "/permittedUsers", "value": "All users may self-authorize"}]
    assert api.patch(f"{APPS}/{app['id']}", json=switch, headers={"If-Match": etag}).status_code == 200
    error, description = refusal(jwt_as(server, developer_keys, app, admin["username"]))
    assert (error, description.split(":")[0]) == ("invalid_grant", "user hasn't approved this consumer")
    # So nothing reaches the token exchange: without an access token there is no ingestion token.
    exchange = httpx.post(
        server.base_url + "/services/a360/token",
        data={"grant_type": "urn:salesforce:grant-type:external:cdp", "subject_token": "none"},
        timeout=30,
    )
    assert exchange.status_code == 400


def test_a_consented_user_gets_jwt_tokens_with_the_scopes_they_approved(
    server: LiveServer, api: ApiClient, developer_keys: KeyMaterial
) -> None:
    user = create_user(api, password=PASSWORD)
    body = app_body(developer_keys, permittedUsers="All users may self-authorize")
    app = new_app(api, **body)
    refused = jwt_as(server, developer_keys, app, user["username"])
    assert refusal(refused)[1].startswith("user hasn't approved this consumer")
    browser = sign_in(server, user["username"])
    consent = Consent(server, browser, user, app)
    # the user approves two of the app's scopes
    assert consent.redeem(consent.code(scope="api refresh_token")).status_code == 200
    browser.close()
    granted = jwt_as(server, developer_keys, app, user["username"])
    assert granted.status_code == 200, granted.text
    assert granted.json()["scope"] == "api refresh_token"  # never more than the user approved


def test_a_developer_cannot_repoint_an_admins_app(
    server: LiveServer, api: ApiClient, developer_keys: KeyMaterial
) -> None:
    app = new_app(api)  # the organization admin's (the api fixture's Admin client)
    path = f"{APPS}/{app['id']}"
    with role_client(server, api, "Developer") as developer:
        etag = developer.get(path).headers["etag"]
        repoint = [{"op": "replace", "path": "/callbackUrl", "value": "https://attacker.example/cb"}]
        assert_needs_manage_users(developer.patch(path, json=repoint, headers={"If-Match": etag}))
        rekey = [{"op": "replace", "path": "/certificate", "value": developer_keys.certificate}]
        assert_needs_manage_users(developer.patch(path, json=rekey, headers={"If-Match": etag}))
        assert_needs_manage_users(developer.delete(path))
    assert api.get(path).json()["items"][0]["callbackUrl"] == app["callbackUrl"]


def test_the_owners_change_of_the_callback_revokes_consents_and_refresh_tokens(
    server: LiveServer, api: ApiClient, developer_keys: KeyMaterial
) -> None:
    user = create_user(api, password=PASSWORD)
    with role_client(server, api, "Developer") as developer:
        created = developer.post(APPS, json=app_body(developer_keys, callbackUrl="https://dev.example/cb"))
        assert created.status_code == 201, created.text
        app = created.json()
        # An organization admin lets every user self-authorize the Developer's app; the user approves it.
        etag = api.get(f"{APPS}/{app['id']}").headers["etag"]
        switch = [{"op": "replace", "path": "/permittedUsers", "value": "All users may self-authorize"}]
        assert api.patch(f"{APPS}/{app['id']}", json=switch, headers={"If-Match": etag}).status_code == 200
        browser = sign_in(server, user["username"])
        consent = Consent(server, browser, user, app)
        tokens = consent.tokens()
        unredeemed = consent.code()
        browser.close()
        assert jwt_as(server, developer_keys, app, user["username"]).status_code == 200
        assert consent.exchange(tokens["access_token"]).status_code == 200

        # The owner (the Developer) changes the callback URL: 200, and everything granted before is gone.
        path = f"{APPS}/{app['id']}"
        etag = developer.get(path).headers["etag"]
        repoint = [{"op": "replace", "path": "/callbackUrl", "value": "https://dev.example/new"}]
        assert developer.patch(path, json=repoint, headers={"If-Match": etag}).status_code == 200
    assert refusal(consent.refresh(tokens["refresh_token"]))[0] == "invalid_grant"
    assert refusal(consent.exchange(tokens["access_token"]))[0] == "invalid_grant"
    moved = Consent(server, httpx.Client(), user, {**app, "callbackUrl": "https://dev.example/new"})
    code_refused = moved.redeem(unredeemed)
    assert refusal(code_refused)[0] == "invalid_grant"
    description = refusal(jwt_as(server, developer_keys, app, user["username"]))[1]
    assert description.startswith("user hasn't approved this consumer")


# --- section 5: sign-in throttling, sessions, cookies ---
def _login(
    client: httpx.Client, username: str, password: str, headers: str | None = None, **form: str
) -> httpx.Response:
    """Sign in over HTTP; ``headers``: an X-Forwarded-For value to send."""
    forwarded = {"X-Forwarded-For": headers} if headers is not None else {}
    data = {"username": username, "password": password, **form}
    return client.post("/console/login", data=data, headers=forwarded)


def test_an_attackers_failures_do_not_lock_out_the_admin_or_other_users(server: LiveServer) -> None:
    made = console_org(server)
    colleague = f"colleague-{uuid.uuid4().hex[:8]}@acme.example"
    made.add_user(server, colleague)
    with httpx.Client(base_url=server.base_url, timeout=30) as attacker:
        answers = [_login(attacker, made.admin, f"guess {n}").status_code for n in range(60)]
        # ...and spreads guesses over other names, so that the address has well over 50 failures
        spread = [_login(attacker, f"nobody-{n}@acme.example", "guess").status_code for n in range(46)]
    assert set(answers) <= {401, 429} and answers.count(429) > 0  # backed off
    assert set(spread) == {401}
    # Another person at the same address signs in at once: the backoff is per (address, username).
    with httpx.Client(base_url=server.base_url, timeout=30) as other:
        assert _login(other, colleague, made.password).status_code == 303
    # The admin, at the same address, gets in with the right password once the backoff has passed.
    with httpx.Client(base_url=server.base_url, timeout=30) as admin:
        deadline = time.monotonic() + 90
        while True:
            response = _login(admin, made.admin, made.password)
            if response.status_code == 303 or time.monotonic() > deadline:
                break
            assert response.status_code == 429, response.text
            time.sleep(min(float(response.headers["retry-after"]), 5.0))  # what the answer says to wait
        assert response.status_code == 303, response.text


def _session(server: LiveServer, username: str, password: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=server.base_url, timeout=30)
    assert _login(client, username, password).status_code == 303
    page = client.get("/console/sources")
    csrf = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    return client, csrf


def _me(client: httpx.Client, csrf: str, cookie: str | None = None) -> int:
    cookies = {"hw_session": cookie} if cookie is not None else None
    response = httpx.get(
        client.base_url.join(USERS),
        headers={"X-CSRF-Token": csrf, "x-sandbox-name": "prod"},
        cookies=cookies or dict(client.cookies),
        timeout=30,
    )
    return response.status_code


def test_a_signed_out_cookie_stops_working(server: LiveServer) -> None:
    made = console_org(server)
    client, csrf = _session(server, made.admin, made.password)
    cookie = client.cookies["hw_session"]
    assert _me(client, csrf) == 200
    assert client.post("/console/logout", data={"csrf": csrf}).status_code == 303
    assert _me(client, csrf, cookie) == 401  # the same cookie, replayed after sign-out
    assert httpx.get(server.base_url + "/console/sources", cookies={"hw_session": cookie}).status_code == 303
    client.close()


def test_a_password_change_ends_the_users_other_sessions(server: LiveServer) -> None:
    made = console_org(server)
    person = f"person-{uuid.uuid4().hex[:8]}@acme.example"
    made.add_user(server, person)
    theirs, their_csrf = _session(server, person, made.password)
    admin, admin_csrf = _session(server, made.admin, made.password)
    cookie = theirs.cookies["hw_session"]
    assert _me(theirs, their_csrf) == 200
    change = admin.patch(
        f"{USERS}/{person}",
        json={"password": "a brand new passphrase"},
        headers={"X-CSRF-Token": admin_csrf, "x-sandbox-name": "prod"},
    )
    assert change.status_code == 200, change.text
    assert _me(theirs, their_csrf, cookie) == 401
    assert _me(admin, admin_csrf) == 200  # the admin's own session is not the one that changed
    again, _ = _session(server, person, "a brand new passphrase")
    for client in (theirs, admin, again):
        client.close()


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server told its public URL is https, behind a proxy on 127.0.0.1 it trusts (TLS ends there)."""
    home: Path = tmp_path_factory.mktemp("headwater-https")
    settings = make_settings(home, public_url="https://headwater.example", trusted_proxies="127.0.0.1")
    live = start_server(settings)
    org = live.services.store.get_org(live.creds["orgId"])
    assert org is not None
    body = {"username": "admin@example.com", "admin": True, "password": PASSWORD}
    live.services.identity.users.create(actor_for(org, "test"), body)
    yield live
    live.stop()
    live.services.close()


def test_cookies_are_secure_when_the_public_url_is_https(https_server: LiveServer) -> None:
    with httpx.Client(base_url=https_server.base_url, timeout=30) as client:
        response = _login(client, "admin@example.com", PASSWORD)
        assert response.status_code == 303, response.text
        cookie = response.headers["set-cookie"]
        assert "hw_session=" in cookie
        assert {"secure", "httponly", "samesite=lax"} <= {p.strip().lower() for p in cookie.split(";")}


def test_each_organization_sees_only_its_own_users_sign_ins(server: LiveServer) -> None:
    first, second = console_org(server), console_org(server)
    twin = f"twin-{uuid.uuid4().hex[:8]}@example.com"
    first.add_user(server, twin)
    second.add_user(server, twin)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        # A failed sign-in that names the second organization is the second's alone.
        tenant = second.org.tenant_id
        assert _login(client, twin, "wrong password", organization=tenant).status_code == 401
        # A failed one that names none cannot be told apart: no organization's log gets it.
        assert _login(client, twin, "wrong password").status_code == 401
        # A successful one is the organization whose password it is.
        assert _login(client, twin, first.password, organization=first.org.tenant_id).status_code == 303

    def events(made: Any) -> list[tuple[str, int]]:
        client, csrf = _session(server, made.admin, made.password)
        response = client.get(
            EVENTS,
            params={"property": f"userEmail=={twin}"},
            headers={"X-CSRF-Token": csrf, "x-sandbox-name": "prod"},
        )
        client.close()
        assert response.status_code == 200, response.text
        found = response.json()["_embedded"]["events"]
        return sorted((e["action"], e["statusCode"]) for e in found)

    first_events, second_events = events(first), events(second)
    assert [status for _, status in first_events] == [303], first_events
    assert [status for _, status in second_events] == [401], second_events


def test_forwarded_addresses_count_only_from_a_trusted_proxy(
    server: LiveServer, https_server: LiveServer
) -> None:
    """Without HEADWATER_TRUSTED_PROXIES an X-Forwarded-For header changes nothing (a guesser cannot
    dodge the backoff by inventing addresses); from a trusted proxy it names the client, so the admin
    behind the same proxy is not slowed by a guesser elsewhere."""
    made = console_org(server)
    with httpx.Client(base_url=server.base_url, timeout=30) as attacker:
        answers = [
            _login(attacker, made.admin, "guess", headers=f"198.51.100.{n}").status_code for n in range(7)
        ]
    assert answers[:5] == [401] * 5 and answers[5:] == [429, 429], answers

    with httpx.Client(base_url=https_server.base_url, timeout=30) as proxy:
        for _ in range(6):
            _login(proxy, "admin@example.com", "guess", headers="203.0.113.7")
        assert _login(proxy, "admin@example.com", "guess", headers="203.0.113.7").status_code == 429
        # a forged entry left of the proxy's own does not help the guesser either
        assert _login(proxy, "admin@example.com", "guess", headers="10.9.9.9, 203.0.113.7").status_code == 429
        assert _login(proxy, "admin@example.com", PASSWORD, headers="192.0.2.44").status_code == 303


def test_a_username_guessed_from_many_addresses_is_slowed_not_locked(https_server: LiveServer) -> None:
    """Twenty failures from four addresses lock the username: every attempt for it is then held a
    moment before its password is checked, but the right password still signs its owner in."""
    org = https_server.services.store.get_org(https_server.creds["orgId"])
    assert org is not None
    username = f"target-{uuid.uuid4().hex[:8]}@example.com"
    body = {"username": username, "password": PASSWORD}
    https_server.services.identity.users.create(actor_for(org, "test"), body)
    with httpx.Client(base_url=https_server.base_url, timeout=30) as proxy:
        for n in range(20):
            assert _login(proxy, username, "guess", headers=f"203.0.113.{n // 5 + 1}").status_code == 401
        started = time.monotonic()
        assert _login(proxy, username, PASSWORD, headers="192.0.2.99").status_code == 303
        assert time.monotonic() - started >= 1.0  # held (the lock's first delay), not refused


def test_a_token_never_outlives_the_apps_approval_of_its_user(
    server: LiveServer, api: ApiClient, developer_keys: KeyMaterial
) -> None:
    """An admin who takes a user off an app's approvedUsers stops the access tokens already issued: the
    exchange for an ingestion token refuses them."""
    user = create_user(api)
    app = new_app(api, **app_body(developer_keys, approvedUsers=[user["username"]]))
    access = jwt_as(server, developer_keys, app, user["username"])
    assert access.status_code == 200, access.text
    path = f"{APPS}/{app['id']}"
    etag = api.get(path).headers["etag"]
    withdraw = [{"op": "replace", "path": "/approvedUsers", "value": []}]
    assert api.patch(path, json=withdraw, headers={"If-Match": etag}).status_code == 200
    exchange = httpx.post(
        server.base_url + "/services/a360/token",
        data={
            "grant_type": "urn:salesforce:grant-type:external:cdp",
            "subject_token": access.json()["access_token"],
        },
        timeout=30,
    )
    error, description = refusal(exchange)
    assert error == "invalid_grant" and "no organization admin pre-approved them" in description
