"""The console's shell in a real browser (Debian's Chromium through Playwright): sign-in with a session
cookie, CSRF on every API call, throttling, the sandbox picker, sign-out, and no asset from elsewhere."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import CONSOLE_PASSWORD, CONSOLE_USER, screenshot
from tests.support import ApiClient, LiveServer, watch_page


def test_sign_in_lands_on_the_console_with_the_sandbox_picker(
    browser: Any, console_server: LiveServer, console_api: ApiClient
) -> None:
    if console_server.services.store.get_sandbox(console_server.creds["orgId"], "staging") is None:
        console_server.services.tenancy.create_sandbox(console_server.creds["orgId"], "staging")
    context = browser.new_context(base_url=console_server.base_url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(console_server.base_url) else outside.append(r.url))
    page.goto("/console/destinations")
    page.wait_for_url("**/console/login?next=%2Fconsole%2Fdestinations")
    screenshot(page, "sign-in")
    page.get_by_label("Username").fill(CONSOLE_USER)
    page.get_by_label("Password").fill(CONSOLE_PASSWORD)
    page.keyboard.press("Enter")  # the form works from the keyboard
    page.wait_for_url("**/console/destinations")
    assert page.locator(".who").inner_text() == CONSOLE_USER
    picker = page.get_by_label("Sandbox")
    expect(picker.locator("option", has_text="staging")).to_have_count(1)  # the sandboxes are listed
    assert picker.input_value() == "prod"
    assert {"prod", "staging"} <= set(picker.locator("option").all_inner_texts())
    picker.select_option("staging")  # the page reloads in that sandbox and remembers it
    expect(page.get_by_label("Sandbox")).to_have_value("staging")
    assert outside == [], f"assets from elsewhere: {outside}"
    context.close()


def test_wrong_password_is_refused_and_guessing_is_throttled(
    browser: Any, console_server: LiveServer
) -> None:
    context = browser.new_context(base_url=console_server.base_url)
    page = context.new_page()
    page.goto("/console/login")
    for _ in range(5):
        page.get_by_label("Username").fill("guess@example.com")
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("alert").inner_text() == "The username or password is not right."
    page.get_by_label("Username").fill("guess@example.com")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert "Too many failed sign-ins" in page.get_by_role("alert").inner_text()
    context.close()


def test_api_calls_with_the_session_need_the_csrf_header(console: Any, console_server: LiveServer) -> None:
    cookies = {c["name"]: c["value"] for c in console.context.cookies()}
    assert "hw_session" in cookies
    session = console.context.cookies()[0]
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    csrf = console.locator('meta[name="csrf-token"]').get_attribute("content")
    url = console_server.base_url + "/data/foundation/flowservice/connections"
    headers = {"x-sandbox-name": "prod"}
    without = httpx.get(url, cookies=cookies, headers=headers)
    assert without.status_code == 403 and "X-CSRF-Token" in without.json()["detail"]
    forged = httpx.get(url, cookies=cookies, headers={**headers, "X-CSRF-Token": "guess"})
    assert forged.status_code == 403
    ok = httpx.get(url, cookies=cookies, headers={**headers, "X-CSRF-Token": csrf})
    assert ok.status_code == 200, ok.text
    # What the console writes is recorded as the person's doing.
    created = httpx.post(
        url,
        cookies=cookies,
        headers={**headers, "X-CSRF-Token": csrf},
        json={
            "name": "From the console",
            "icon": "api",
            "connectionSpec": {"id": "ce55fc04-f79b-4668-a8b7-2565a5c65ad4", "version": "1.0"},
            "auth": {"specName": "None", "params": {}},
        },
    )
    assert created.status_code == 201, created.text
    doc = httpx.get(
        f"{url}/{created.json()['id']}", cookies=cookies, headers={**headers, "X-CSRF-Token": csrf}
    )
    assert doc.json()["items"][0]["createdBy"] == CONSOLE_USER


def test_sign_out_ends_the_session(console: Any) -> None:
    assert console.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read the session
    console.get_by_role("button", name="Sign out").click()
    console.wait_for_url("**/console/login")
    console.goto("/console/flows")
    console.wait_for_url("**/console/login?next=%2Fconsole%2Fflows")


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/console/../x", "/\\evil"])
def test_sign_in_never_redirects_elsewhere(console_server: LiveServer, target: str) -> None:
    response = httpx.post(
        console_server.base_url + "/console/login",
        data={"username": CONSOLE_USER, "password": CONSOLE_PASSWORD, "next": target},
    )
    assert response.status_code == 303
    assert response.headers["location"] in ("/console/sources", target) and response.headers[
        "location"
    ].startswith("/console/")


def test_pages_send_security_headers(console_server: LiveServer) -> None:
    page = httpx.get(console_server.base_url + "/console/login")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_a_wizard_step_already_passed_can_be_reopened_from_the_step_list(console: Any) -> None:
    console.goto("/console/destinations/new")
    name = console.get_by_role("textbox", name="Name", exact=True)
    expect(name).to_be_focused()  # the first field of the first step
    name.fill("Reopened")
    console.get_by_role("button", name="Next").click()
    expect(name).to_be_hidden()
    steps = console.locator("ol.steps li")
    expect(steps.nth(1)).to_have_attribute("aria-current", "step")
    steps.nth(0).focus()
    console.keyboard.press("Enter")  # from the keyboard
    expect(name).to_be_visible()
    expect(name).to_have_value("Reopened")
    expect(steps.nth(1)).not_to_have_attribute("role", "button")  # a step not reached yet stays shut


UNLABELLED = """() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
  .filter((c) => c.offsetParent !== null)
  .filter((c) => !(c.labels && c.labels.length))
  .filter((c) => !c.getAttribute('aria-label') && !c.getAttribute('aria-labelledby'))
  .map((c) => c.outerHTML.slice(0, 120))"""


def test_every_page_is_served_whole_by_headwater_with_labelled_controls(
    console: Any, console_server: LiveServer
) -> None:
    from headwater.web.app import NAV

    outside: list[str] = []
    console.on(
        "request", lambda r: None if r.url.startswith(console_server.base_url) else outside.append(r.url)
    )
    problems = watch_page(console)
    paths = [href for _, items in NAV for _, href in items]
    paths += ["/console/sources/new?spec=cfc0fee1-7dc0-40ef-b73e-d8b134c436f5", "/console/destinations/new"]
    for path in paths:
        console.goto(path)
        console.wait_for_load_state("networkidle")
        assert console.evaluate(UNLABELLED) == [], f"controls without a label on {path}"
        assert console.locator("h1").count() == 1, path
    assert outside == [], f"requests that left Headwater: {outside}"
    assert problems == [], problems


def test_a_sign_in_form_posted_from_another_site_is_refused(console_server: LiveServer) -> None:
    response = httpx.post(
        console_server.base_url + "/console/login",
        data={"username": CONSOLE_USER, "password": CONSOLE_PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403 and "hw_session" not in response.cookies
