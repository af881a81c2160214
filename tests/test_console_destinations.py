"""The console's destinations and activations in a real browser: a destination created through the four
steps of document 003 with OAuth 2 against a local sink and its Test Request, refusals shown next to their
fields, and an activation flow's counts and dead letter replayed from its page."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.activation_helpers import (
    BODY,
    FS,
    activating,
    activation_body,
    connection_body,
    dead_letters,
    delivery_totals,
    destination,
    event,
)
from tests.conftest import screenshot
from tests.fakes.sink import SinkFake
from tests.flows_helpers import created_id
from tests.streaming_helpers import http_api_source
from tests.support import ApiClient, LiveServer, unique, wait_until, watch_page

SAVED_PAGE = re.compile(r"/console/destinations/[0-9a-f-]{36}$")


@pytest.fixture
def page_errors(console: Any) -> list[str]:
    """Uncaught script errors of the page (asserted empty by each test)."""
    return watch_page(console)


@pytest.fixture
def trusted_sink(console_server: LiveServer) -> Iterator[SinkFake]:
    """A sink whose requests need an OAuth 2 bearer token from its HTTPS token endpoint (whose test CA the
    console server trusts, as HEADWATER_OUTBOUND_CA_FILE would make it)."""
    with SinkFake(auth="bearer") as sink:
        settings = console_server.services.settings
        before = settings.outbound_ca_file
        settings.outbound_ca_file = sink.ca_file
        try:
            yield sink
        finally:
            settings.outbound_ca_file = before


def test_destination_created_through_the_wizard_and_tested_against_a_sink(
    console: Any, page_errors: list[str], trusted_sink: SinkFake
) -> None:
    page, sink, name = console, trusted_sink, unique("Cart emails")
    page.goto("/console/destinations/new")
    step = page.locator("#dest-wizard section:not([hidden])")
    # 1. Name & describe
    page.get_by_role("button", name="Next").click()
    expect(step.locator(".field-error")).to_have_text("Name is required")
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    page.get_by_label("Description").fill("Abandoned cart emails")
    page.get_by_label("Icon").select_option("email")
    page.get_by_role("button", name="Next").click()
    # 2. Authenticate: OAuth 2, credentials in the header, one extra header for the token endpoint
    expect(step.get_by_role("heading", name="Authenticate")).to_be_visible()
    expect(page.get_by_label("OAuth 2")).to_be_checked()
    page.get_by_label("Access Token URL").fill(sink.token_url)
    page.get_by_label("Client ID").fill(sink.client_id)
    page.get_by_label("Client Secret").fill(sink.client_secret)
    # Mutual TLS links the JWKS of the certificates Headwater presents (document 003).
    page.get_by_label("Configure with Mutual TLS").check()
    page.get_by_role("button", name="View the JWKS").click()
    expect(page.get_by_label("JSON Web Key Set")).to_contain_text(re.compile(r'"keys"|No destination'))
    page.get_by_label("Configure with Mutual TLS").uncheck()
    page.get_by_role("button", name="Show headers").click()
    step.get_by_role("button", name="Add header").click()
    page.keyboard.type("X-Client")  # the new row's name has the focus
    step.get_by_label("Header value 1", exact=True).fill("console")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "destinations-wizard")
    page.get_by_role("button", name="Next").click()
    # 3. Configure request, then Test Request with values for its variables
    expect(step.get_by_role("heading", name="Configure request")).to_be_visible()
    expect(page.get_by_label("Connection Timeout (ms)")).to_have_value("1000")
    expect(page.get_by_label("Read Timeout (ms)")).to_have_value("1000")
    page.get_by_label("Request URL").fill(sink.url + "/emails/${email}")
    page.get_by_role("button", name="Show default headers").click()
    expect(page.get_by_label("Content-Type")).to_have_value("application/json")
    step.get_by_role("button", name="Add header").click()
    step.get_by_label("Header name 1", exact=True).fill("X-Tenant")
    step.get_by_label("Header value 1", exact=True).fill("${tenant}")
    page.get_by_label("Request", exact=True).fill(BODY)
    page.get_by_role("button", name="Test Request").click()
    page.get_by_label("${email}").fill("zoë@example.com")
    page.get_by_label("${name}").fill("Ada Lovelace")
    page.get_by_label("${amount}").fill("12.5")
    page.get_by_label("${tenant}").fill("t1")
    page.get_by_role("button", name="Run test").click()
    expect(page.locator(".test-status")).to_contain_text("Status 200 OK")
    expect(page.get_by_label("Response body")).to_contain_text('"ok": true')
    page.get_by_text("Request as sent").click()
    expect(page.locator("details.sent code.url")).to_have_text(sink.url + "/emails/zo%C3%AB%40example.com")
    screenshot(page, "destinations-test-request")
    got = sink.received("/emails")[-1]
    assert got.status == 200 and got.path in ("/emails/zo%C3%AB%40example.com", "/emails/zoë@example.com")
    assert json.loads(got.body) == {"email": "zoë@example.com", "name": "Ada Lovelace", "amount": 12.5}
    assert got.header("x-tenant") == "t1" and (got.header("authorization") or "").startswith("Bearer ")
    assert ("x-client", "console") in sink.token_requests[-1].headers
    page.get_by_role("button", name="Next").click()
    # 4. Review & save
    expect(step.get_by_text("After you save, you cannot edit the connection.")).to_be_visible()
    expect(step.get_by_text("•••••••• (hidden)")).to_be_visible()
    assert sink.client_secret not in step.inner_text()
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(SAVED_PAGE)
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.get_by_text("A saved destination cannot be edited.")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("edit", re.I))).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("edit", re.I))).to_have_count(0)
    # The saved request's own Test Request.
    page.get_by_role("button", name="Test Request").click()
    for variable, value in (("email", "b@example.com"), ("name", "B"), ("amount", "3"), ("tenant", "t2")):
        page.get_by_label("${" + variable + "}").fill(value)
    page.get_by_role("button", name="Run test").click()
    expect(page.locator(".test-status")).to_contain_text("Status 200")
    assert json.loads(sink.received("/emails")[-1].body)["amount"] == 3
    # The list
    page.get_by_role("link", name="All destinations").click()
    row = page.get_by_role("row").filter(has_text=name)
    expect(row).to_contain_text("Abandoned cart emails")
    expect(row).to_contain_text("OAuth 2")
    screenshot(page, "destinations-list")
    row.get_by_role("link", name=name).click()
    page.wait_for_url(SAVED_PAGE)
    assert page_errors == []


def test_a_draft_destination_is_listed_as_such_and_published_from_its_page(
    console: Any, console_api: ApiClient, page_errors: list[str], trusted_sink: SinkFake
) -> None:
    name = unique("Draft ESP")
    conn = created_id(console_api.post(f"{FS}/connections?mode=draft", json=connection_body(name)))
    body: dict[str, Any] = {"name": "Request", "baseConnectionId": conn}
    body["connectionSpec"] = connection_body()["connectionSpec"]
    body["params"] = {"method": "POST", "url": trusted_sink.url + "/d", "body": BODY}
    created_id(console_api.post(f"{FS}/targetConnections", json=body))
    console.goto("/console/destinations")
    expect(console.get_by_role("row").filter(has_text=name)).to_contain_text("Draft")
    console.get_by_role("link", name=name).click()
    expect(console.get_by_text("This destination is a draft")).to_be_visible()
    console.get_by_role("button", name="Publish").click()
    expect(console.get_by_text("A saved destination cannot be edited.")).to_be_visible()
    assert console_api.get(f"{FS}/connections/{conn}").json()["items"][0]["state"] == "enabled"
    assert page_errors == []


def test_refusals_are_shown_next_to_their_fields(
    console: Any, console_api: ApiClient, page_errors: list[str]
) -> None:
    page, name = console, unique("Webhook")
    page.goto("/console/destinations/new")
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    page.get_by_role("button", name="Next").click()
    page.get_by_label("None").check()
    expect(page.get_by_text("No authentication is only for public APIs.")).to_be_visible()
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Request URL").fill("http://127.0.0.1:9/hooks")
    body = page.get_by_label("Request", exact=True)
    body.fill('{"email": "${guest.email}"}')
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Save").click()
    # Refused at save: back on the request step, the words next to the body.
    expect(body).to_have_accessible_description(re.compile(r"Request uses \$\{guest\.email\}"))
    expect(body).to_have_attribute("aria-invalid", "true")
    expect(body).to_be_focused()
    body.fill('{"email": "${email}",}')
    page.get_by_role("button", name="Test Request").click()
    page.get_by_role("button", name="Run test").click()  # refused before anything is sent
    expect(body).to_have_accessible_description(re.compile("Request is not valid JSON"))
    body.fill('{"email": "${email}"}')
    # A destination of that name appears meanwhile: the name step says so.
    taken = created_id(console_api.post(f"{FS}/connections", json=connection_body(name)))
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Save").click()
    name_field = page.get_by_role("textbox", name="Name", exact=True)
    expect(name_field).to_have_accessible_description(re.compile("Name is already used"))
    expect(name_field).to_be_focused()
    name_field.fill(name + " 2")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(SAVED_PAGE)
    for wanted, ids in ((name, [taken]), (name + " 2", [page.url.rsplit("/", 1)[1]])):
        found = console_api.get(f"{FS}/connections", params={"property": f"name=={wanted}"}).json()["items"]
        assert [c["id"] for c in found] == ids  # the refused saves left nothing behind
    assert page_errors == []


def test_activation_counts_and_a_dead_letter_replayed(
    console: Any,
    console_server: LiveServer,
    console_api: ApiClient,
    page_errors: list[str],
) -> None:
    page, flow_name = console, unique("Welcome emails")
    with SinkFake() as sink:
        _, params, source = http_api_source(console_api, unique("Web events"), "raw")
        dest_name = unique("Welcome ESP")
        _, target = destination(console_api, sink.url + "/d/${email}", name=dest_name)
        body = activation_body(source, target, name=flow_name, retryInitialDelayMs=50, retryMaxDelayMs=400)
        flow = created_id(console_api.post(f"{FS}/flows", json=body))
        with activating(console_server, console_api):
            sink.fail(400, times=1)
            for n in (1, 2):
                inlet = f"{console_server.base_url}/collection/{params['inletId']}"
                assert httpx.post(inlet, json=event(n)).status_code == 200
            sink.wait_for(1, timeout=15)
            wait_until(lambda: delivery_totals(console_api, flow)["deadLettered"] == 1, timeout=10)
            wait_until(lambda: delivery_totals(console_api, flow)["delivered"] == 1, timeout=10)
        (letter,) = dead_letters(console_api, flow)

        page.goto("/console/activations")
        row = page.get_by_role("row").filter(has_text=flow_name)
        expect(row.locator("[data-count=delivered]")).to_have_text("1")
        expect(row.locator("[data-count=deadLettered]")).to_have_text("1")
        expect(row.locator("[data-count=retried]")).to_have_text("0")
        expect(row).to_contain_text(dest_name)
        row.get_by_role("link", name=flow_name).click()
        expect(page.get_by_role("heading", name=flow_name)).to_be_visible()
        expect(page.locator("[data-metric=delivered] .value")).to_have_text("1")
        expect(page.locator("[data-metric=deadLettered] .value")).to_have_text("1")
        expect(page.locator("[data-metric=p50] .value")).to_contain_text("ms")
        letter_row = page.locator(f'tr[data-letter="{letter["id"]}"]')
        expect(letter_row).to_contain_text("HTTP 400 from the destination")
        expect(letter_row.locator("summary")).to_contain_text("POST " + sink.url + "/d/user")
        screenshot(page, "activations")
        letter_row.get_by_role("button", name="Replay", exact=True).click()
        expect(letter_row.locator(".outcome")).to_have_text("Delivered on replay (HTTP 200).")
        expect(letter_row.locator(".badge.replayed")).to_be_visible()
        expect(page.get_by_role("button", name="Replay all")).to_be_disabled()
        delivered = sink.wait_for(2, timeout=5)
        assert delivered[-1].header("idempotency-key") == letter["idempotencyKey"]
        # Its destination cannot be deleted while the flow sends to it: the page names the flow.
        page.get_by_role("link", name=dest_name).first.click()
        page.get_by_role("button", name="Delete destination").click()
        page.get_by_role("button", name="Yes, delete it").click()
        expect(page.get_by_text("The destination was not deleted")).to_be_visible()
        expect(page.locator(".delete-outcome").get_by_role("link", name=flow_name)).to_be_visible()
    assert [d["state"] for d in dead_letters(console_api, flow)] == ["replayed"]
    assert page_errors == []
