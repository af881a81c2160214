"""Roles through the console in a real browser: a Viewer, a User, a Developer and an organization admin of
an organization of their own each try a source connection write, a destination write and a user-management
write. The role that may do a write does it; the role that may not finds its button disabled with a
tooltip naming the missing permission, and the write itself (a wizard reached by its address) refused in
words that name it. The header shows the role, the navigation shows Users and Audit to admins only."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import ConsoleOrg, console_org
from tests.support import LiveServer, unique, watch_page

UPLOADED_FILES = "f86cfe35-a63a-41ad-818c-7924dda79033"  # a source with no credentials
SAVED_DESTINATION = re.compile(r"/console/destinations/[0-9a-f-]{36}(\?saved=1)?$")
MAY = {  # permission -> the roles that have it (services/access.py)
    "manage-sources": {"User", "Developer", "Admin"},
    "manage-destinations": {"User", "Developer", "Admin"},  # document 003
    "manage-users": {"Admin"},
}


@pytest.fixture(scope="module")
def team(console_server: LiveServer) -> tuple[ConsoleOrg, dict[str, str]]:
    """An organization whose prod has a Viewer, a User and a Developer (Viewers in staging); its owner is
    the organization admin (Admin everywhere)."""
    acme = console_org(console_server, ("prod", "staging"))
    people = {"Admin": acme.admin}
    for role in ("Viewer", "User", "Developer"):
        username = f"{role.lower()}-{uuid.uuid4().hex[:8]}@acme.example"
        acme.add_user(console_server, username, roles={"prod": role, "*": "Viewer"})
        people[role] = username
    return acme, people


def expect_guarded(control: Any, permission: str, allowed: bool) -> None:
    """A control that starts a write: usable when the role has ``permission``, else disabled with a
    tooltip that names it."""
    if allowed:
        expect(control).to_be_enabled()
        expect(control).not_to_have_attribute("title", re.compile(permission))
    else:
        expect(control).to_be_disabled()
        expect(control).to_have_attribute("title", re.compile(f"permission '{permission}'"))


@pytest.mark.parametrize("role", ["Viewer", "User", "Developer", "Admin"])
def test_each_role_does_what_it_may_and_is_told_what_it_may_not(
    role: str, team: tuple[ConsoleOrg, dict[str, str]], console_as: Any
) -> None:
    acme, people = team
    page = console_as(people[role], acme.password)
    problems = watch_page(page)
    expect(page.locator("#role-badge")).to_have_text(f"Your role in prod: {role}")
    nav = page.get_by_role("navigation", name="Console")
    for label in ("Users", "Audit"):
        expect(nav.get_by_role("link", name=label)).to_have_count(1 if role == "Admin" else 0)

    # A source connection (manage-sources): the catalog's tiles, then the wizard's first write.
    may = role in MAY["manage-sources"]
    tile = page.get_by_role("link", name="Uploaded files", exact=True)
    expect_guarded(tile, "manage-sources", may)
    if not may:
        tile.click(force=True)  # does nothing but say why
        expect(page.locator("#toast")).to_contain_text("permission 'manage-sources'")
        expect(page).to_have_url(re.compile(r"/console/sources$"))
    page.goto(f"/console/sources/new?spec={UPLOADED_FILES}")
    note = page.get_by_role("note")
    if may:
        expect(note).to_be_hidden()
    else:
        expect(note).to_contain_text(f"is {role}, which does not have the permission 'manage-sources'")
    page.get_by_role("textbox", name="Name", exact=True).fill(unique(f"{role} files"))
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Next").click()  # leaving Authenticate creates the connection
    if may:
        expect(page.get_by_text("Connection successful.")).to_be_visible()
    else:
        expect(page.locator("#wizard [data-errors]")).to_contain_text(
            f"The {role} role does not have the permission 'manage-sources'"
        )

    # A destination (manage-destinations): Add destination, then the wizard's Save.
    may = role in MAY["manage-destinations"]
    page.goto("/console/destinations")
    expect_guarded(page.get_by_role("link", name="Add destination"), "manage-destinations", may)
    page.goto("/console/destinations/new")
    page.get_by_role("textbox", name="Name", exact=True).fill(unique(f"{role} webhook"))
    page.get_by_role("button", name="Next").click()
    page.get_by_label("None").check()
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Request URL").fill("http://127.0.0.1:9/hooks")
    page.get_by_label("Request", exact=True).fill('{"email": "${email}"}')
    expect_guarded(page.get_by_role("button", name="Test Request"), "manage-destinations", may)
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Save").click()
    if may:
        page.wait_for_url(SAVED_DESTINATION)
        expect_guarded(page.get_by_role("button", name="Delete destination"), "manage-destinations", may)
    else:  # a Viewer lacks manage-sources too, which the route checks first
        missing = "manage-sources" if role == "Viewer" else "manage-destinations"
        expect(page.locator("#dest-wizard [data-errors]")).to_contain_text(
            f"The {role} role does not have the permission '{missing}'"
        )

    # A user (manage-users): the Users page, for organization admins only.
    username = f"new-{role.lower()}-{uuid.uuid4().hex[:8]}@acme.example"
    response = page.goto("/console/users")
    assert response is not None
    if role in MAY["manage-users"]:
        assert response.status == 200
        form = page.locator("#user-new")
        form.get_by_label("Username").fill(username)
        form.get_by_label("Password").fill(acme.password)
        form.get_by_role("button", name="Create user").click()
        expect(page.locator(f'tr[data-username="{username}"]')).to_contain_text("Enabled")
    else:
        assert response.status == 403
        expect(page.get_by_role("main")).to_contain_text("needs the permission manage-users")

    # Another sandbox, another role: all but the organization admin are Viewers in staging.
    page.goto("/console/destinations")
    page.get_by_label("Sandbox").select_option("staging")
    there = "Admin" if role == "Admin" else "Viewer"
    expect(page.locator("#role-badge")).to_have_text(f"Your role in staging: {there}")
    expect_guarded(page.get_by_role("link", name="Add destination"), "manage-destinations", there == "Admin")
    assert problems == []
