"""The policies of external client apps (issue 7, "App policies"), through a live server: trusted IP ranges
with the four IP relaxation settings; the validation, normalization and defaults of every policy field; the
OpenAPI description; and the console's form.

Every client here is on 127.0.0.1: ranges of 10.0.0.0/8 put it outside, ranges holding 127.0.0.1 inside.
The session timeout and the refresh token policies are in tests/test_app_lifetimes.py; the clients and
fixtures both use are in tests/app_policy_helpers.py.
"""

from __future__ import annotations

import html
from typing import Any

import httpx
import pytest

from headwater.services.users import org_scope
from tests.app_policy_helpers import Client
from tests.app_policy_helpers import keys as keys
from tests.app_policy_helpers import make as make
from tests.app_policy_helpers import signed_in as signed_in
from tests.app_policy_helpers import user as user
from tests.support import ApiClient, LiveServer, wait_until
from tests.test_data360_identity import APPS, JWT_BEARER, assertion, refusal
from tests.test_oauth_consent import AUTHORIZE, hidden_fields

OUTSIDE = [{"start": "10.0.0.0", "end": "10.255.255.255", "description": "office"}]
INSIDE = [
    {"start": "10.0.0.0", "end": "10.255.255.255"},
    {"start": "127.0.0.1", "end": "127.0.0.1", "description": "this machine"},
]
IP_RESTRICTED = ("invalid_grant", "ip restricted")
ENFORCE = "Enforce IP restrictions"
RELAX_REFRESH = "Enforce IP restrictions, but relax for refresh tokens"


def page_refused(client: Client) -> None:
    """The consent page is a 403 page that says why, never a redirect."""
    page = client.consent.page()
    assert page.status_code == 403 and "location" not in page.headers, page.text
    assert page.headers["content-type"].startswith("text/html")
    text = html.unescape(page.text)
    assert "ip restricted" in text and "127.0.0.1" in text and "trusted IP ranges" in text


# --- IP ranges ---
def test_enforced_ranges_refuse_every_grant_and_the_exchange_from_outside(make: Any) -> None:
    client = make(ipRanges=INSIDE, ipRelaxation=ENFORCE)
    assert client.jwt().status_code == 200
    tokens = client.consent.tokens()
    code = client.consent.code()  # not redeemed yet
    fields = hidden_fields(client.consent.page().text)

    client.patch(ipRanges=OUTSIDE)
    assert refusal(client.jwt()) == IP_RESTRICTED
    assert refusal(client.consent.redeem(code)) == IP_RESTRICTED
    assert refusal(client.consent.refresh(tokens["refresh_token"])) == IP_RESTRICTED
    assert refusal(client.consent.exchange(tokens["access_token"])) == IP_RESTRICTED
    page_refused(client)
    posted = client.consent.browser.post(AUTHORIZE, data={**fields, "decision": "allow"})
    assert posted.status_code == 403 and "location" not in posted.headers
    assert "ip restricted" in posted.text

    # Refusals spent nothing: back inside, the same code redeems and the same refresh token rotates.
    client.patch(ipRanges=INSIDE)
    assert client.consent.redeem(code).status_code == 200
    assert client.consent.refresh(tokens["refresh_token"]).status_code == 200
    assert client.consent.exchange(tokens["access_token"]).status_code == 200


def test_ingestion_calls_follow_the_ip_policy_of_the_app_their_token_came_through(
    make: Any, server: LiveServer
) -> None:
    client = make(ipRanges=INSIDE, ipRelaxation=ENFORCE)
    exchanged = client.consent.exchange(client.consent.tokens()["access_token"])
    assert exchanged.status_code == 200, exchanged.text
    bearer = {"Authorization": f"Bearer {exchanged.json()['access_token']}"}
    url = server.base_url + "/api/v1/ingest/sources/nowhere/Thing/actions/test"

    def status() -> httpx.Response:
        return httpx.post(url, json={"data": [{"id": 1}]}, headers=bearer, timeout=30)

    assert status().status_code == 404  # let in: there is just no such source
    client.patch(ipRanges=OUTSIDE)  # applies to tokens already issued, within the app cache's seconds
    refused = wait_until(lambda: (r := status()).status_code == 403 and r, timeout=10)
    assert "ip restricted" in refused.json()["detail"] and "127.0.0.1" in refused.json()["detail"]
    client.patch(ipRelaxation="Relax IP restrictions")
    wait_until(lambda: status().status_code == 404, timeout=10)


def test_ranges_holding_the_client_let_it_through(make: Any) -> None:
    ranges = [*INSIDE, {"start": "2001:db8::", "end": "2001:db8::ffff"}]
    client = make(ipRanges=ranges, ipRelaxation=ENFORCE)
    assert client.jwt().status_code == 200
    tokens = client.consent.tokens()
    refreshed = client.consent.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert client.consent.exchange(refreshed.json()["access_token"]).status_code == 200


@pytest.mark.parametrize(
    "relaxation", ["Relax IP restrictions", "Relax IP restrictions with second factor", "Bypass"]
)
def test_relaxed_ip_restrictions_ignore_the_ranges(make: Any, relaxation: str) -> None:
    client = make(ipRanges=OUTSIDE, ipRelaxation=relaxation)
    assert client.jwt().status_code == 200
    tokens = client.consent.tokens()  # the consent page and the code exchange
    assert client.consent.refresh(tokens["refresh_token"]).status_code == 200
    assert client.consent.exchange(tokens["access_token"]).status_code == 200


def test_relax_for_refresh_tokens_lets_only_refreshes_through(make: Any) -> None:
    client = make(ipRanges=INSIDE, ipRelaxation="Enforce_RelaxRefresh")
    assert client.app["ipRelaxation"] == RELAX_REFRESH
    tokens = client.consent.tokens()
    code = client.consent.code()

    client.patch(ipRanges=OUTSIDE)
    assert refusal(client.consent.redeem(code)) == IP_RESTRICTED  # a new code exchange
    assert refusal(client.jwt()) == IP_RESTRICTED
    page_refused(client)
    refreshed = client.consent.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    # what the refresh issued is good from here; what the code exchange issued is not
    assert client.consent.exchange(refreshed.json()["access_token"]).status_code == 200
    assert refusal(client.consent.exchange(tokens["access_token"])) == IP_RESTRICTED


def test_an_app_without_ranges_restricts_nothing(make: Any) -> None:
    client = make(ipRelaxation=ENFORCE)
    assert client.app["ipRanges"] == []
    assert client.jwt().status_code == 200
    assert client.consent.exchange(client.consent.tokens()["access_token"]).status_code == 200


def forged_request(client: Client, server: LiveServer, headers: dict[str, str]) -> httpx.Response:
    """A JWT bearer request from 127.0.0.1 whose headers claim another address."""
    signed = assertion(
        client.keys.private_key,
        iss=client.app["consumerKey"],
        sub=client.consent.user["username"],
        aud=server.settings.base_url,
    )
    form = {"grant_type": JWT_BEARER, "assertion": signed}
    return httpx.post(server.base_url + "/services/oauth2/token", data=form, headers=headers, timeout=30)


def test_proxy_headers_are_not_the_client_address(make: Any, server: LiveServer) -> None:
    """Only the TCP peer counts: headers naming an address inside the ranges change nothing."""
    client = make(ipRanges=[{"start": "10.1.2.3", "end": "10.1.2.3"}], ipRelaxation=ENFORCE)
    for headers in ({"Forwarded": "for=10.1.2.3"}, {"X-Real-IP": "10.1.2.3"}, {"True-Client-IP": "10.1.2.3"}):
        assert refusal(forged_request(client, server, headers)) == IP_RESTRICTED, headers


def test_x_forwarded_for_from_loopback_is_not_the_client_address(make: Any, server: LiveServer) -> None:
    client = make(ipRanges=[{"start": "10.1.2.3", "end": "10.1.2.3"}], ipRelaxation=ENFORCE)
    assert refusal(forged_request(client, server, {"X-Forwarded-For": "10.1.2.3"})) == IP_RESTRICTED


# --- validation ---
BASE = {"name": "policies", "callbackUrl": "https://client.example/cb", "scopes": ["api"]}
TIMED = {"refreshTokenPolicy": "Expire refresh token after"}


@pytest.mark.parametrize(
    ("changes", "path", "expected"),
    [
        ({"ipRanges": "10.0.0.0-10.0.0.255"}, "ipRanges", "must be a list"),
        ({"ipRanges": [{"start": "10.0.0.1", "end": "10.0.0.2"}] * 101}, "ipRanges", "at most 100"),
        ({"ipRanges": ["10.0.0.1"]}, "ipRanges[0]", "must be an object"),
        ({"ipRanges": [{"start": "10.0.0.1"}]}, "ipRanges[0].end", "is required"),
        ({"ipRanges": [{"start": "10.0.0.300", "end": "10.0.0.1"}]}, "ipRanges[0].start", "IPv4 or IPv6"),
        ({"ipRanges": [{"start": 167772161, "end": "10.0.0.1"}]}, "ipRanges[0].start", "IPv4 or IPv6"),
        ({"ipRanges": [{"start": "10.0.0.1", "end": "2001:db8::1"}]}, "ipRanges[0].end", "IPv4 address"),
        ({"ipRanges": [{"start": "10.0.0.9", "end": "10.0.0.1"}]}, "ipRanges[0].end", "lower than start"),
        (
            {
                "ipRanges": [
                    {"start": "10.0.0.1", "end": "10.0.0.9"},
                    {"start": "2001:db8::ff", "end": "2001:db8::1"},
                ]
            },
            "ipRanges[1].end",
            "lower than start (2001:db8::ff)",
        ),
        ({"ipRanges": [{"start": "fe80::1%eth0", "end": "fe80::2"}]}, "ipRanges[0].start", "zone"),
        ({"ipRanges": [{"start": "::ffff:10.0.0.1", "end": "10.0.0.2"}]}, "ipRanges[0].start", "as 10.0.0.1"),
        (
            {"ipRanges": [{"start": "10.0.0.1", "end": "10.0.0.2", "from": "x"}]},
            "ipRanges[0].from",
            "not a field",
        ),
        (
            {"ipRanges": [{"start": "10.0.0.1", "end": "10.0.0.2", "description": "x" * 256}]},
            "ipRanges[0].description",
            "at most 255",
        ),
        (
            {"ipRanges": [{"start": "10.0.0.1", "end": "10.0.0.2", "description": 5}]},
            "ipRanges[0].description",
            "text",
        ),
        ({"sessionTimeoutSeconds": 59}, "sessionTimeoutSeconds", "from 60 to 86400"),
        ({"sessionTimeoutSeconds": 86401}, "sessionTimeoutSeconds", "from 60 to 86400"),
        ({"sessionTimeoutSeconds": 10**30}, "sessionTimeoutSeconds", "from 60 to 86400"),
        ({"sessionTimeoutSeconds": "two hours"}, "sessionTimeoutSeconds", "whole number"),
        ({"sessionTimeoutSeconds": 900.5}, "sessionTimeoutSeconds", "whole number"),
        ({"sessionTimeoutSeconds": True}, "sessionTimeoutSeconds", "whole number"),
        ({"refreshTokenPolicy": "Never"}, "refreshTokenPolicy", "Refresh token is valid until revoked"),
        (TIMED, "refreshTokenValidity", "is required"),
        ({**TIMED, "refreshTokenValidity": "30 days"}, "refreshTokenValidity", "must be an object"),
        (
            {**TIMED, "refreshTokenValidity": {"value": 0, "unit": "Days"}},
            "refreshTokenValidity.value",
            "at least 1",
        ),
        (
            {**TIMED, "refreshTokenValidity": {"value": 1, "unit": "Weeks"}},
            "refreshTokenValidity.unit",
            "Months",
        ),
        (
            {**TIMED, "refreshTokenValidity": {"value": 122, "unit": "Months"}},
            "refreshTokenValidity.value",
            "10 years",
        ),
        (
            {**TIMED, "refreshTokenValidity": {"value": 10**20, "unit": "Days"}},
            "refreshTokenValidity.value",
            "at least 1",
        ),
        (
            {**TIMED, "refreshTokenValidity": {"value": 1, "unit": "Days", "x": 1}},
            "refreshTokenValidity.x",
            "not a field",
        ),
    ],
)
def test_policy_validation_names_the_field(
    api: ApiClient, changes: dict[str, Any], path: str, expected: str
) -> None:
    response = api.post(APPS, json={**BASE, **changes})
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["report"]["code"] == "IDN-1422-400"
    errors = problem["report"]["errors"]
    assert any(e["path"] == path and expected in e["message"] for e in errors), errors


HOSTILE_VALUES: dict[str, tuple[Any, ...]] = {
    "ipRanges": (
        5,
        True,
        {"start": "10.0.0.1"},
        [None],
        [[]],
        [{"start": None, "end": None}],
        [{"start": ["x"], "end": {"a": 1}}],
    ),
    "sessionTimeoutSeconds": ([], {}, "", " ", "-5", "9" * 40, 1e300),
    "refreshTokenPolicy": (5, [], {}),
    "refreshTokenValidity": ([], {"value": None, "unit": None}, {"value": "1e3", "unit": 5}),
    "ipRelaxation": (5,),
}


def test_hostile_policy_values_are_refused_not_failed(api: ApiClient) -> None:
    path = f"{APPS}/{api.post(APPS, json=BASE).json()['id']}"
    for name, values in HOSTILE_VALUES.items():
        for value in values:
            body = {**BASE, **(TIMED if name == "refreshTokenValidity" else {}), name: value}
            created = api.post(APPS, json=body)
            assert created.status_code == 400, (name, value, created.text)
            assert all(e["path"].startswith(name) for e in created.json()["report"]["errors"])
            etag = api.get(path).headers["etag"]
            ops = [{"op": "replace", "path": f"/{k}", "value": v} for k, v in body.items() if k not in BASE]
            patched = api.patch(path, json=ops, headers={"If-Match": etag})
            assert patched.status_code == 400, (name, value, patched.text)


def test_policies_are_normalized_defaulted_and_patched(api: ApiClient, server: LiveServer) -> None:
    minimal = api.post(APPS, json=BASE)
    assert minimal.status_code == 201, minimal.text
    app = minimal.json()
    assert app["ipRelaxation"] == ENFORCE and app["ipRanges"] == []
    assert app["sessionTimeoutSeconds"] == 7200
    assert app["refreshTokenPolicy"] == "Refresh token is valid until revoked"
    assert app["refreshTokenValidity"] is None

    body = {
        **BASE,
        "ipRelaxation": "enforce_relaxrefresh",
        "ipRanges": [{"start": " 2001:DB8::0 ", "end": "2001:db8:0:0::ff", "description": "  lab  "}],
        "sessionTimeoutSeconds": "900",
        "refreshTokenPolicy": "SpecificInactivity",
        "refreshTokenValidity": {"value": "30", "unit": "days"},
    }
    created = api.post(APPS, json=body)
    assert created.status_code == 201, created.text
    doc = created.json()
    assert doc["ipRelaxation"] == RELAX_REFRESH
    assert doc["ipRanges"] == [{"start": "2001:db8::", "end": "2001:db8::ff", "description": "lab"}]
    assert doc["sessionTimeoutSeconds"] == 900
    assert doc["refreshTokenPolicy"] == "Expire refresh token if not used for"
    assert doc["refreshTokenValidity"] == {"value": 30, "unit": "Days"}

    # An untimed policy drops the validity; a bad range in a patch is refused by its path.
    path = f"{APPS}/{doc['id']}"
    etag = api.get(path).headers["etag"]
    untimed = [{"op": "replace", "path": "/refreshTokenPolicy", "value": "Infinite"}]
    patched = api.patch(path, json=untimed, headers={"If-Match": etag})
    assert patched.status_code == 200, patched.text
    assert api.get(path).json()["items"][0]["refreshTokenValidity"] is None
    bad = [{"op": "add", "path": "/ipRanges/-", "value": {"start": "10.0.0.2", "end": "10.0.0.1"}}]
    refused = api.patch(path, json=bad, headers={"If-Match": patched.headers["etag"]})
    assert refused.status_code == 400
    assert [e["path"] for e in refused.json()["report"]["errors"]] == ["ipRanges[1].end"]

    # An app stored before these fields existed shows, and patches, their defaults.
    store = server.services.store
    stored = store.get("externalClientApp", org_scope(server.creds["orgId"]), app["id"])
    assert stored is not None
    old_etag = stored.etag
    for name in ("ipRanges", "sessionTimeoutSeconds", "refreshTokenPolicy", "refreshTokenValidity"):
        del stored.doc[name]
    stored.etag = '"before-policies"'
    store.update(stored, old_etag)
    shown = api.get(f"{APPS}/{app['id']}").json()["items"][0]
    assert shown["ipRanges"] == [] and shown["sessionTimeoutSeconds"] == 7200
    replace = [{"op": "replace", "path": "/sessionTimeoutSeconds", "value": 1800}]
    assert (
        api.patch(f"{APPS}/{app['id']}", json=replace, headers={"If-Match": stored.etag}).status_code == 200
    )
    assert api.get(f"{APPS}/{app['id']}").json()["items"][0]["sessionTimeoutSeconds"] == 1800


def test_openapi_documents_the_policies(server: LiveServer) -> None:
    spec = httpx.get(server.base_url + "/openapi.json").json()
    schema = spec["paths"][APPS]["post"]["requestBody"]["content"]["application/json"]["schema"]
    props = schema["properties"]
    assert props["ipRanges"]["items"]["required"] == ["start", "end"]
    assert (
        props["sessionTimeoutSeconds"]["minimum"] == 60 and props["sessionTimeoutSeconds"]["maximum"] == 86400
    )
    assert "Expire refresh token after" in props["refreshTokenPolicy"]["enum"]
    assert props["refreshTokenValidity"]["properties"]["unit"]["enum"] == [
        "Seconds",
        "Minutes",
        "Hours",
        "Days",
        "Months",
    ]
    assert len(props["ipRelaxation"]["enum"]) == 4


# --- the console's app form ---
def test_console_sets_and_edits_the_policies(console: Any, console_api: ApiClient) -> None:
    from playwright.sync_api import expect

    from tests.support import unique, watch_page

    problems = watch_page(console)
    name = unique("Policies app")
    console.goto("/console/data360/apps/new")
    console.get_by_label("External client app name").fill(name)
    console.get_by_label("Callback URL").fill("https://client.example/oauth/callback")
    console.get_by_label("Manage user data via APIs (api)").check()
    console.get_by_label("Perform requests at any time (refresh_token, offline_access)").check()
    console.get_by_label("IP relaxation").select_option(RELAX_REFRESH)
    validity = console.get_by_role("group", name="Refresh token validity")
    expect(validity).to_be_hidden()
    console.get_by_role("button", name="Add IP range").click()
    expect(console.get_by_label("Start IP address of range 1")).to_be_focused()
    console.get_by_label("Start IP address of range 1").fill("10.0.0.9")
    console.get_by_label("End IP address of range 1").fill("10.0.0.1")
    console.get_by_role("button", name="Add IP range").click()
    console.get_by_label("Start IP address of range 2").fill("2001:DB8::")
    console.get_by_label("End IP address of range 2").fill("2001:db8::ff")
    console.get_by_label("Description of range 2").fill("lab")
    console.get_by_label("Session timeout").select_option(label="30 minutes")
    console.get_by_label("Refresh token policy").select_option("Expire refresh token if not used for")
    expect(validity).to_be_visible()
    validity.get_by_label("Number of units").fill("12")
    validity.get_by_label("Time unit").select_option("Hours")

    # The API's refusal, in words, next to the range's end.
    console.get_by_role("button", name="Create", exact=True).click()
    end = console.get_by_label("End IP address of range 1")
    expect(end).to_have_attribute("aria-invalid", "true")
    expect(console.locator(".field-error")).to_have_text(
        "End IP address of range 1 must not be lower than start (10.0.0.9)"
    )
    end.fill("10.0.0.255")
    console.get_by_role("button", name="Create", exact=True).click()
    expect(console.locator("#app-created")).to_be_visible()
    app = console_api.get(APPS, params={"property": f"name=={name}"}).json()["items"][0]
    assert app["ipRelaxation"] == RELAX_REFRESH
    assert app["ipRanges"] == [
        {"start": "10.0.0.9", "end": "10.0.0.255"},
        {"start": "2001:db8::", "end": "2001:db8::ff", "description": "lab"},
    ]
    assert app["sessionTimeoutSeconds"] == 1800
    assert app["refreshTokenPolicy"] == "Expire refresh token if not used for"
    assert app["refreshTokenValidity"] == {"value": 12, "unit": "Hours"}

    # The Policies section shows them; Edit removes a range and makes refresh tokens last until revoked.
    console.get_by_role("link", name="Open the app's settings").click()
    policies = console.locator("#app-policies-view")
    expect(policies).to_contain_text("10.0.0.9 \u2013 10.0.0.255")
    expect(policies).to_contain_text("2001:db8:: \u2013 2001:db8::ff lab")
    expect(policies).to_contain_text("Session timeout30 minutes")
    expect(policies).to_contain_text("Expire refresh token if not used for 12 Hours")
    console.get_by_role("button", name="Edit").click()
    expect(console.get_by_label("Start IP address of range 2")).to_have_value("2001:db8::")
    expect(console.get_by_label("Refresh token policy")).to_have_value("Expire refresh token if not used for")
    console.locator(".ip-range").first.get_by_role("button", name="Remove").click()
    expect(console.get_by_label("Start IP address of range 1")).to_have_value("2001:db8::")
    console.get_by_label("Refresh token policy").select_option("Refresh token is valid until revoked")
    expect(validity).to_be_hidden()
    console.get_by_label("Session timeout").select_option(label="4 hours")
    console.get_by_role("button", name="Save").click()
    expect(policies).to_contain_text("Refresh token is valid until revoked")
    saved = console_api.get(f"{APPS}/{app['id']}").json()["items"][0]
    assert saved["ipRanges"] == [{"start": "2001:db8::", "end": "2001:db8::ff", "description": "lab"}]
    assert saved["sessionTimeoutSeconds"] == 14_400 and saved["refreshTokenValidity"] is None
    assert problems == []
