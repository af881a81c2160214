"""The console's Sources area in a real browser: the catalog and its search, the wizard creating a
Salesforce connection against the local Salesforce-compatible server, field errors, and exploring."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import screenshot
from tests.fakes.salesforce import SalesforceFake
from tests.support import ApiClient, unique, watch_page

expect = pytest.importorskip("playwright.sync_api").expect
FS = "/data/foundation/flowservice"


@pytest.fixture(scope="module")
def salesforce() -> Iterator[SalesforceFake]:
    fake = SalesforceFake().start()
    fake.add_object("Person", {"first_name": "string", "last_name": "string", "email": "email"})
    fake.insert(
        "Person",
        [
            {"first_name": f"Ada{i}", "last_name": "Lovelace", "email": f"ada{i}@example.com"}
            for i in range(12)
        ],
    )
    yield fake
    fake.stop()


@pytest.fixture
def errors(console: Any) -> Iterator[list[str]]:
    """Script errors of the page (uncaught, or logged to the console); none is allowed. A refused API
    call (4xx) logs "Failed to load resource" in Chromium: those are expected and shown in words."""
    seen = watch_page(console)
    yield seen
    assert seen == []


def field(page: Any, label: str) -> Any:
    """The input labelled ``label`` (a required field's label ends with a red asterisk)."""
    return page.get_by_label(re.compile(rf"^{re.escape(label)}( \*)?$"))


def start_wizard(page: Any, name: str) -> None:
    page.goto("/console/sources")
    page.get_by_role("link", name="Salesforce", exact=True).click()
    page.wait_for_url("**/console/sources/new?spec=*")
    expect(field(page, "Name")).to_be_focused()  # the first field takes the focus
    field(page, "Name").fill(name)
    page.get_by_label("Description").fill("Contacts and people from the CRM")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_label("Authentication type")).to_be_focused()


LABELS = {
    "environmentUrl": "Environment URL",
    "username": "Username",
    "password": "Password",
    "securityToken": "Security token",
    "apiVersion": "API version",
}


def fill_auth(page: Any, auth: dict[str, str]) -> None:
    """Fill the Authenticate step's fields (generated from the auth spec's JSON Schema)."""
    for key, value in auth.items():
        field(page, LABELS[key]).fill(value)


def test_catalog_lists_source_specs_and_searches(console: Any, errors: list[str]) -> None:
    console.goto("/console/sources")
    tiles = console.locator("#source-tiles > li")
    expect(console.get_by_role("link", name="Salesforce", exact=True)).to_be_visible()
    names = tiles.locator("h3").all_inner_texts()
    assert "PostgreSQL" in names and "Local files" in names
    assert "Data Lake" not in names and "HTTP destination" not in names  # sources only
    search = console.get_by_label("Search sources")
    search.focus()
    console.keyboard.type("crm")
    expect(tiles.locator("visible=true")).to_have_count(2)
    expect(console.get_by_role("status").filter(has_text="sources")).to_have_text(
        re.compile(r"^2 of \d+ sources$")
    )
    assert sorted(tiles.locator("visible=true").locator("h3").all_inner_texts()) == [
        "Microsoft Dynamics",
        "Salesforce",
    ]
    search.fill("no such thing")
    expect(console.get_by_text("No source matches your search.")).to_be_visible()
    search.fill("")
    expect(tiles.locator("visible=true")).to_have_count(tiles.count())

    # From the keyboard: search, Tab to the first match, Enter opens its wizard.
    console.keyboard.type("salesforce")
    console.keyboard.press("Tab")
    expect(console.get_by_role("link", name="Salesforce", exact=True)).to_be_focused()
    console.keyboard.press("Enter")
    console.wait_for_url("**/console/sources/new?spec=cfc0fee1-7dc0-40ef-b73e-d8b134c436f5")
    expect(console.locator("#wizard-spec")).to_contain_text("Salesforce")


def test_salesforce_source_created_through_the_wizard_and_explored(
    console: Any, errors: list[str], console_api: ApiClient, salesforce: SalesforceFake
) -> None:
    name = unique("Salesforce CRM")
    start_wizard(console, name)
    console.get_by_label("Authentication type").select_option("Basic Authentication")
    assert field(console, "Password").get_attribute("type") == "password"
    assert field(console, "Security token").get_attribute("type") == "password"
    fill_auth(console, salesforce.soap_auth())
    console.evaluate("window.scrollTo(0, 0)")
    screenshot(console, "sources-wizard")
    console.get_by_role("button", name="Next").click()

    result = console.locator("#test-result")
    expect(result).to_contain_text("Connection successful.")
    expect(result.get_by_role("list", name="Objects found")).to_contain_text("Person")
    console.get_by_role("button", name="Next").click()
    review = console.locator("#review-facts")
    expect(review).to_contain_text(name)
    expect(review).to_contain_text("Basic Authentication")
    assert salesforce.password not in review.inner_text()  # secrets are not shown back
    console.get_by_role("button", name="Save").click()

    console.wait_for_url(re.compile(r"/console/sources/[0-9a-f-]{36}$"))
    ident = console.url.rsplit("/", 1)[1]
    expect(console.get_by_role("heading", level=1)).to_have_text(name)
    facts = console.locator("#conn-facts")
    expect(facts).to_contain_text("Salesforce")
    expect(facts).to_contain_text("********")  # masked by the API
    assert salesforce.password not in facts.inner_text()
    stored = console_api.get(f"{FS}/connections/{ident}").json()["items"][0]
    assert stored["name"] == name and stored["auth"]["specName"] == "Basic Authentication"

    console.get_by_role("button", name="Person").click()
    expect(console.get_by_role("list", name="Columns of Person")).to_contain_text("first_name")
    expect(console.get_by_role("list", name="Columns of Person")).to_contain_text("string")  # XDM's word
    preview = console.get_by_role("table", name="Preview of Person")
    expect(preview.locator("tbody tr")).to_have_count(10)
    expect(preview).to_contain_text("Ada0")
    expect(preview.get_by_role("columnheader", name="email")).to_be_visible()
    console.locator("#explore-section").evaluate("(section) => section.scrollIntoView()")
    screenshot(console, "sources-explore")

    console.get_by_label("Filter objects").fill("acc")
    expect(console.get_by_role("button", name="Account")).to_be_visible()
    expect(console.get_by_role("button", name="Person")).to_be_hidden()

    console.get_by_role("link", name="All sources").click()
    expect(console.get_by_role("link", name=name)).to_be_visible()  # listed among the sandbox's sources
    expect(console.get_by_role("heading", name="Accounts in this sandbox")).to_be_visible()  # AEP's name
    screenshot(console, "sources-catalog")


def test_wizard_shows_errors_next_to_fields_and_cancel_deletes(
    console: Any, errors: list[str], console_api: ApiClient, salesforce: SalesforceFake
) -> None:
    console.goto("/console/sources")
    console.get_by_role("link", name="Salesforce", exact=True).click()
    console.get_by_role("button", name="Next").click()  # no name yet
    name_field = field(console, "Name")
    expect(name_field).to_have_attribute("aria-invalid", "true")
    expect(console.locator(".field:has(#conn-name) + .field-error")).to_have_text(
        "Give the connection a name."
    )
    expect(name_field).to_be_focused()
    name = unique("Salesforce refused")
    name_field.fill(name)
    name_field.press("Enter")  # Enter in a field moves on, like Next

    # Required secrets left empty: the API's errors appear next to those fields.
    auth = salesforce.soap_auth()
    fill_auth(console, {k: v for k, v in auth.items() if k not in ("password", "securityToken")})
    console.get_by_role("button", name="Next").click()
    password = field(console, "Password")
    expect(password).to_have_attribute("aria-invalid", "true")
    note = console.locator(".field:has([data-path='auth.params.password']) + .field-error")
    expect(note).to_have_text("is required")
    expect(password).to_be_focused()
    assert console_api.get(f"{FS}/connections", params={"property": f'name=="{name}"'}).json()["items"] == []

    # A wrong password: saved, but the test step says in words that Salesforce refused the login.
    fill_auth(console, {"password": "not the password", "securityToken": auth["securityToken"]})
    console.get_by_role("button", name="Next").click()
    failure = console.locator("#test-result [role=alert]")
    expect(failure).to_contain_text("The connection test failed.")
    expect(failure).to_contain_text("Salesforce refused the login")
    next_button = console.get_by_role("button", name="Next")
    expect(next_button).to_have_attribute("aria-disabled", "true")  # and the words beside it say why
    expect(next_button).to_have_accessible_description(
        re.compile("because the connection test failed: go Back")
    )
    expect(console.locator("#next-why")).to_be_visible()
    next_button.click(force=True)  # cannot go on with a failing test
    expect(failure).to_be_focused()
    created = console_api.get(f"{FS}/connections", params={"property": f'name=="{name}"'}).json()["items"]
    assert len(created) == 1

    # Back to fix it: the same connection is updated (PATCH with its etag), and the test passes.
    console.get_by_role("button", name="Back").click()
    fill_auth(console, {"password": auth["password"]})
    console.get_by_role("button", name="Next").click()
    expect(console.locator("#test-result")).to_contain_text("Connection successful.")
    expect(console.locator("#next-why")).to_be_hidden()
    assert [
        c["id"]
        for c in console_api.get(f"{FS}/connections", params={"property": f'name=="{name}"'}).json()["items"]
    ] == [created[0]["id"]]

    # Cancel deletes what the test step created.
    console.get_by_role("button", name="Next").click()
    console.get_by_role("button", name="Cancel").click()
    console.wait_for_url("**/console/sources")
    assert console_api.get(f"{FS}/connections/{created[0]['id']}").status_code == 404
