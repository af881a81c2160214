"""Profiles in the console (Debian's Chromium through Playwright): a profile made of two datasets' records
looked up by one identity shows its merged attributes, every identity of its cluster and both datasets."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.streaming_helpers import scope_of
from tests.support import ApiClient, LiveServer, held_back, wait_until, watch_page
from tests.test_profiles import _dataset, _land, _person

expect = pytest.importorskip("playwright.sync_api").expect


def test_a_profile_is_looked_up_by_identity_with_its_cluster_and_attributes(
    console: Any, console_server: LiveServer, console_api: ApiClient
) -> None:
    tag = uuid.uuid4().hex[:8]
    email, crmid = f"grace.{tag}@example.com", f"CRM-{tag}"
    crm, web = _dataset(console_api, "CRM"), _dataset(console_api, "Web")
    _land(
        console_server,
        console_api,
        crm,
        [_person({"CRMID": crmid, "Email": email}, "CRMID", "Grace", "2026-01-01T00:00:00Z")],
    )
    phone = "+1555" + "".join(c if c.isdigit() else "1" for c in tag)
    _land(
        console_server,
        console_api,
        web,
        [_person({"Phone": phone, "Email": email}, "Phone", "Grace B.", "2026-02-01T00:00:00Z")],
    )
    assert scope_of(console_server, console_api)  # the console's sandbox is prod, as console_api's

    problems = watch_page(console)
    console.goto("/console/profiles")
    console.get_by_label("Namespace", exact=True).select_option("CRMID")
    console.get_by_label("Identity", exact=True).fill(crmid)
    console.get_by_role("button", name="Look up").click()
    result = console.locator("#profile-result")
    expect(result.get_by_role("heading", name="Identities")).to_be_visible()
    for value in (crmid, email, phone):
        expect(result.get_by_role("cell", name=value, exact=True)).to_be_visible()
    expect(result.get_by_role("cell", name="person.name.firstName")).to_be_visible()
    expect(result.get_by_role("cell", name="Grace B.", exact=True)).to_be_visible()  # the newest record wins
    expect(result.get_by_role("link", name=crm)).to_be_visible()
    expect(result.get_by_role("link", name=web)).to_be_visible()

    console.get_by_label("Namespace", exact=True).select_option("Email")
    console.get_by_label("Identity", exact=True).fill("nobody@example.com")
    console.get_by_role("button", name="Look up").click()
    expect(result.get_by_role("alert")).to_have_text("No profile has this identity.")
    assert problems == [], problems


def test_an_identity_typed_before_the_page_script_runs_stays_out_of_the_address(console: Any) -> None:
    """The look-up form is drawn before its deferred script runs (held back here as a slow network
    would): Enter in it once submitted it natively, the identity in the address and the server's log.
    Nothing is sent then; once the script runs, Enter looks the identity up."""
    problems = watch_page(console)
    identity = console.get_by_label("Identity", exact=True)
    with held_back(console, "**/console/static/profiles.js") as script:
        console.goto("/console/profiles", wait_until="commit")
        wait_until(script.asked, timeout=15)
        console.evaluate("window.sameDocument = true")
        identity.fill("nobody@example.com")
        identity.press("Enter")
    expect(console.get_by_label("Namespace", exact=True)).to_have_value("Email")
    identity.press("Enter")
    result = console.locator("#profile-result")
    expect(result.get_by_role("alert")).to_have_text("No profile has this identity.")
    assert console.evaluate("window.sameDocument") is True
    assert console.url.endswith("/console/profiles")
    assert problems == [], problems
