"""The organization's pages in a real browser, in an organization of the test's own. Users: an organization
admin adds a user with a role per sandbox (refusals next to their fields), changes roles, disables one, is
told in words that the last admin stays; an admin demoted while the page is open gets the API's refusal
naming the permission. Audit: the events of console writes, allowed and denied, filtered and paged."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from headwater.edge.session import COOKIE
from headwater.services.users import actor_for
from tests.conftest import ConsoleOrg, console_org, screenshot
from tests.support import LiveServer, watch_page

USERS = "/data/core/identity/users"
CONNECTIONS = "/data/foundation/flowservice/connections"
UPLOADED_FILES = "f86cfe35-a63a-41ad-818c-7924dda79033"
DASH = "\N{EN DASH}"


@pytest.fixture(scope="module")
def acme(console_server: LiveServer) -> ConsoleOrg:
    return console_org(console_server, ("prod", "staging"))


def row(page: Any, username: str) -> Any:
    return page.locator(f'#user-list tr[data-username="{username}"]')


def test_admin_adds_changes_and_disables_users(
    acme: ConsoleOrg, console_as: Any, console_server: LiveServer
) -> None:
    page = console_as(acme.admin, acme.password, "/console/users")
    problems = watch_page(page)
    expect(page.locator("#role-badge")).to_have_text("Your role in prod: Admin")
    expect(row(page, acme.admin)).to_contain_text("Admin in every sandbox")
    ada = f"ada-{uuid.uuid4().hex[:6]}@acme.example"
    form = page.locator("#user-new")
    # The form's role fields come from the organization's sandboxes.
    expect(form.get_by_label("Every other sandbox (*)")).to_have_value("Viewer")
    expect(form.get_by_label("Sandbox prod")).to_have_value("")
    expect(form.get_by_label("Sandbox staging")).to_have_value("")
    # Refusals of the API next to the fields they name.
    form.get_by_label("Username").fill("not a login")
    form.get_by_label("Password").fill("short")
    form.get_by_role("button", name="Create user").click()
    described = form.get_by_label("Username"), form.get_by_label("Password")
    expect(described[0]).to_have_accessible_description(re.compile("must be an email-like login"))
    expect(described[1]).to_have_accessible_description(re.compile("must be 12 to 1024 characters"))
    form.get_by_label("Username").fill(ada)
    form.get_by_label("Password").fill("a long passphrase for ada")
    form.get_by_label("Sandbox prod").select_option("Developer")
    form.get_by_role("button", name="Create user").click()
    expect(row(page, ada)).to_contain_text("prod: Developer")
    expect(row(page, ada)).to_contain_text("elsewhere: Viewer")
    expect(form.get_by_label("Username")).to_have_value("")  # ready for the next one
    # Change her roles: User in staging too.
    page.get_by_role("button", name=f"Change roles of {ada}").click()
    edit = page.locator("#user-edit")
    expect(edit.get_by_label("Sandbox prod")).to_have_value("Developer")
    edit.get_by_label("Sandbox staging").select_option("User")
    edit.get_by_role("button", name="Save changes").click()
    expect(row(page, ada)).to_contain_text("staging: User")
    expect(edit).to_be_hidden()
    # Disable her: her sessions stop working.
    page.get_by_role("button", name=f"Disable {ada}").click()
    expect(row(page, ada)).to_contain_text("Disabled")
    expect(page.get_by_role("button", name=f"Enable {ada}")).to_be_focused()
    user = console_server.services.identity.users.find(acme.org.id, ada)
    assert user is not None and user.doc["enabled"] is False
    assert user.doc["roles"] == {"prod": "Developer", "staging": "User", "*": "Viewer"}
    page.reload()
    page.get_by_role("button", name=f"Change roles of {ada}").click()
    expect(edit.get_by_label("Sandbox staging")).to_have_value("User")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "users")
    edit.get_by_role("button", name="Cancel").click()
    # The organization's only admin cannot disable themselves: said in words.
    page.get_by_role("button", name=f"Disable {acme.admin}").click()
    expect(page.locator("#people-errors")).to_contain_text(
        f"{acme.admin} was not disabled: '{acme.admin}' is the organization's last enabled admin"
    )
    expect(row(page, acme.admin)).to_contain_text("Enabled")
    assert problems == []


def test_an_admin_demoted_while_the_page_is_open_is_refused_in_words(
    acme: ConsoleOrg, console_as: Any, console_server: LiveServer
) -> None:
    bob = acme.add_user(console_server, f"bob-{uuid.uuid4().hex[:6]}@acme.example", admin=True)
    page = console_as(bob["username"], acme.password, "/console/users")
    disable = page.get_by_role("button", name=f"Disable {bob['username']}")
    expect(disable).to_be_enabled()
    users = console_server.services.identity.users
    users.update(actor_for(acme.org, "test"), bob["id"], {"admin": False, "roles": {"*": "Developer"}})
    disable.click()
    expect(page.locator("#people-errors")).to_contain_text(
        "The Developer role does not have the permission 'manage-users'"
    )
    page.reload()  # the page now knows: a 403 page that names the permission
    expect(page.get_by_role("main")).to_contain_text("needs the permission manage-users")
    expect(page.get_by_role("navigation", name="Console").get_by_role("link", name="Users")).to_have_count(0)


@contextmanager
def console_session(live: LiveServer, acme: ConsoleOrg, username: str) -> Iterator[httpx.Client]:
    """An HTTP client calling the API as the console does for ``username``: session cookie, CSRF header."""
    user = live.services.identity.users.find(acme.org.id, username)
    assert user is not None
    cookie, session = live.services.sessions.issue(user.id, acme.org.id, username)
    headers = {"X-CSRF-Token": session.csrf, "x-sandbox-name": "prod"}
    with httpx.Client(base_url=live.base_url, cookies={COOKIE: cookie}, headers=headers) as client:
        yield client


def test_audit_page_shows_console_writes_filters_and_pages(
    acme: ConsoleOrg, console_as: Any, console_server: LiveServer
) -> None:
    vera = acme.add_user(console_server, f"vera-{uuid.uuid4().hex[:6]}@acme.example")["username"]  # Viewer
    carl = f"carl-{uuid.uuid4().hex[:6]}@acme.example"
    source = {
        "name": f"Uploads {uuid.uuid4().hex[:6]}",
        "connectionSpec": {"id": UPLOADED_FILES, "version": "1.0"},
    }
    with console_session(console_server, acme, vera) as client:
        assert client.post(CONNECTIONS, json=source).status_code == 403
        assert client.post(USERS, json={"username": carl, "password": acme.password}).status_code == 403
    with console_session(console_server, acme, acme.admin) as client:
        assert client.post(CONNECTIONS, json=source).status_code == 201
        created = client.post(USERS, json={"username": carl, "password": acme.password})
        assert created.status_code == 201, created.text
        assert client.post(f"{USERS}/{created.json()['id']}/action?op=disable").status_code == 200

    page = console_as(acme.admin, acme.password, "/console/audit")
    problems = watch_page(page)
    events = page.locator("#audit-events tbody tr")
    expect(events.first).to_contain_text("Sign in")  # newest first: the admin signing in to look
    expect(events.first).to_contain_text(acme.admin)
    disabled = events.nth(1)  # then the disable
    expect(disabled).to_contain_text("Execute")
    expect(disabled).to_contain_text(acme.admin)
    expect(disabled).to_contain_text("users")
    expect(disabled).to_contain_text("Allow")
    expect(disabled).to_contain_text("organization")  # an organization-wide write has no sandbox
    screenshot(page, "audit")
    # Status Deny and the user: her two refused writes, with the permissions they lacked.
    page.get_by_label("Status").select_option("Deny")
    page.get_by_label("User").fill(vera)
    page.get_by_role("button", name="Apply filters").click()
    expect(events).to_have_count(2)
    expect(events.nth(0)).to_contain_text("manage-users")
    expect(events.nth(1)).to_contain_text("manage-sources")
    expect(events.nth(1)).to_contain_text("Viewer")
    expect(events.nth(1)).to_contain_text("prod")
    for i in (0, 1):
        expect(events.nth(i)).to_contain_text("Deny")
        expect(events.nth(i)).to_contain_text("Create")
    assert "status=deny" in page.url and "user=" in page.url  # the filters are in the address
    # Action and asset type: the admin's created source connection.
    page.get_by_role("button", name="Clear").click()
    page.get_by_label("Action").select_option("Create")
    page.get_by_label("Asset type").fill("connections")
    page.get_by_label("User").fill(acme.admin)
    page.get_by_role("button", name="Apply filters").click()
    expect(events).to_have_count(1)
    expect(events.first).to_contain_text("Allow")
    # From tomorrow: nothing.
    tomorrow = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    page.get_by_role("button", name="Clear").click()
    page.get_by_label("From").fill(tomorrow)
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#audit-events")).to_contain_text("No events match these filters.")
    # A page at a time, from the address.
    page.goto(f"/console/audit?user={vera}&limit=1")
    expect(events).to_have_count(1)
    expect(page.locator("#audit-range")).to_have_text(f"Events 1{DASH}1 of 2")
    expect(events.first).to_contain_text("manage-users")
    previous, following = page.get_by_role("button", name="Previous"), page.get_by_role("button", name="Next")
    expect(previous).to_be_disabled()
    following.click()
    expect(page.locator("#audit-range")).to_have_text(f"Events 2{DASH}2 of 2")
    expect(events.first).to_contain_text("manage-sources")
    expect(following).to_be_disabled()
    expect(previous).to_be_focused()
    previous.click()
    expect(page.locator("#audit-range")).to_have_text(f"Events 1{DASH}1 of 2")
    assert problems == []
