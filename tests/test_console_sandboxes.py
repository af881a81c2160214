"""Sandboxes in a real browser, in an organization of the test's own: an organization admin lists the
sandboxes, is told next to the field what the API refuses, creates one, sees it listed and, after a
reload, offered by the header's sandbox picker; someone who is not an organization admin gets the 403
page naming the permission and no Sandboxes link."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import ConsoleOrg, console_org, screenshot
from tests.support import LiveServer, watch_page


@pytest.fixture(scope="module")
def acme(console_server: LiveServer) -> ConsoleOrg:
    return console_org(console_server, ("prod", "staging"))


def row(page: Any, name: str) -> Any:
    return page.locator(f'#sandbox-list tr[data-sandbox="{name}"]')


def test_an_org_admin_creates_a_sandbox_and_the_picker_offers_it(
    acme: ConsoleOrg, console_as: Any, console_server: LiveServer
) -> None:
    page = console_as(acme.admin, acme.password, "/console/sandboxes")
    problems = watch_page(page)
    nav = page.get_by_role("navigation", name="Console")
    expect(nav.get_by_role("link", name="Sandboxes")).to_have_count(1)
    expect(row(page, "prod")).to_contain_text("Yes")  # the default sandbox
    expect(row(page, "staging")).to_contain_text("Development")
    form = page.locator("#sandbox-new")
    name = form.get_by_label("Name")
    # The API's refusals next to the field they name: a malformed name, a name already taken.
    name.fill("Not A Name")
    form.get_by_role("button", name="Create sandbox").click()
    expect(name).to_have_accessible_description(re.compile("lowercase letters, digits and hyphens"))
    name.fill("staging")
    form.get_by_role("button", name="Create sandbox").click()
    expect(name).to_have_accessible_description(re.compile("already the name of a sandbox"))
    fresh = f"qa-{uuid.uuid4().hex[:6]}"
    name.fill(fresh)
    form.get_by_label("Title").fill("Quality assurance")
    form.get_by_label("Production").check()
    form.get_by_role("button", name="Create sandbox").click()
    expect(row(page, fresh)).to_contain_text("Quality assurance")
    expect(row(page, fresh)).to_contain_text("Production")
    expect(page.locator("#sandbox-created")).to_contain_text(f"Sandbox {fresh} is created")
    expect(name).to_have_value("")
    created = console_server.services.store.list_sandboxes(acme.org.id)
    assert {s.name: s.type for s in created}[fresh] == "production"
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "sandboxes")
    page.get_by_role("button", name="Reload now").click()
    picker = page.get_by_label("Sandbox", exact=True)
    expect(picker.locator(f'option[value="{fresh}"]')).to_have_count(1)
    picker.select_option(fresh)  # the page reloads in it: the admin is Admin there too
    expect(page.locator("#role-badge")).to_have_text(f"Your role in {fresh}: Admin")
    assert problems == []


def test_someone_not_an_org_admin_gets_the_403_page(
    acme: ConsoleOrg, console_as: Any, console_server: LiveServer
) -> None:
    dev = acme.add_user(console_server, f"dev-{uuid.uuid4().hex[:6]}@acme.example", roles={"*": "Admin"})
    page = console_as(dev["username"], acme.password)
    nav = page.get_by_role("navigation", name="Console")
    expect(nav.get_by_role("link", name="Sources")).to_have_count(1)
    expect(nav.get_by_role("link", name="Sandboxes")).to_have_count(0)
    response = page.goto("/console/sandboxes")
    assert response is not None and response.status == 403
    expect(page.get_by_role("main")).to_contain_text("needs the permission manage-sandboxes")
    expect(page.locator("#sandbox-new")).to_have_count(0)
