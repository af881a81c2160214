"""Audiences in the console (Debian's Chromium through Playwright): a PQL mistake is shown next to the field
with its position, a good definition is listed with its live count, and its members are previewed."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support import ApiClient, LiveServer, watch_page
from tests.test_profiles import _dataset, _land, _person

expect = pytest.importorskip("playwright.sync_api").expect


def test_an_audience_is_defined_counted_and_previewed(
    console: Any, console_server: LiveServer, console_api: ApiClient
) -> None:
    tag = uuid.uuid4().hex[:6]
    first = f"Zq{tag}"
    people = [
        _person({"Email": f"{first.lower()}{i}@example.com"}, "Email", f"{first}{i}", "2026-01-01T00:00:00Z")
        for i in range(3)
    ]
    others = [_person({"Email": f"other{tag}@example.com"}, "Email", "Other", "2026-01-01T00:00:00Z")]
    _land(console_server, console_api, _dataset(console_api, "Members"), people + others)

    problems = watch_page(console)
    console.goto("/console/audiences")
    form = console.locator("#audience-new")
    form.get_by_label("Name").fill(f"Zq people {tag}")
    form.get_by_label("PQL").fill(f'person.name.firstName.startWith("{first}")')
    form.get_by_role("button", name="Create").click()
    expect(form.get_by_role("alert").first).to_contain_text("startsWith")  # the problem, named in words

    form.get_by_label("PQL").fill(f'person.name.firstName.startsWith("{first}")')
    form.get_by_role("button", name="Create").click()
    row = console.get_by_role("row").filter(has_text=f"Zq people {tag}")
    expect(row.locator(".count")).to_have_text("3")
    row.get_by_role("button", name="Preview members").click()
    members = console.locator("#audience-preview")
    for i in range(3):
        expect(members.get_by_role("cell", name=f"{first}{i}", exact=True)).to_be_visible()
    expect(members.get_by_role("cell", name="Other", exact=True)).to_have_count(0)
    assert problems == [], problems
