"""Audience activations in the console (Debian's Chromium through Playwright): an audience lists the flows
that activate it; a segment job run from the Audiences page qualifies profiles, the flow sends them to a
sink on 127.0.0.1, and the activation's page shows as many entering deliveries as the sink took, then an
exit sent with the exit request."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.activation_helpers import FS, activating, delivery_totals
from tests.audience_helpers import audience_body, audience_source
from tests.conftest import screenshot
from tests.fakes.sink import SinkFake
from tests.flows_helpers import created_id
from tests.streaming_helpers import scope_of
from tests.support import ApiClient, LiveServer, unique, wait_until, watch_page
from tests.test_audience_activation import requests_of, settled
from tests.test_profiles import _dataset, _land, _person

expect = pytest.importorskip("playwright.sync_api").expect
DEFINITIONS = "/data/core/ups/segment/definitions"


@pytest.fixture
def job_runner(console_server: LiveServer) -> Iterator[None]:
    """The segment job runner a worker starts, for the test (start is idempotent)."""
    console_server.services.segment_job_runner.start()
    yield
    console_server.services.segment_job_runner.stop()  # not left polling after the test


def test_an_audience_activation_shows_what_the_sink_received(
    console: Any, console_server: LiveServer, console_api: ApiClient, job_runner: None
) -> None:
    tag = uuid.uuid4().hex[:6]
    first = f"Ya{tag}"
    members = _dataset(console_api, "Audience members")
    emails = [f"{first.lower()}{i}@example.com" for i in range(3)]
    people = [
        _person({"Email": e}, "Email", f"{first}{i}", "2026-01-01T00:00:00Z") for i, e in enumerate(emails)
    ]
    _land(console_server, console_api, members, people)
    audience = unique("Ya people")
    response = console_api.post(
        DEFINITIONS,
        json={
            "name": audience,
            "expression": {
                "type": "PQL",
                "format": "pql/text",
                "value": f'person.name.firstName.startsWith("{first}")',
            },
            "schema": {"name": "_xdm.context.profile"},
        },
    )
    assert response.status_code == 200, response.text
    segment = response.json()["id"]
    scope = scope_of(console_server, console_api)
    flow_name, dest_name = unique("Ya welcome"), unique("Ya ESP")

    problems = watch_page(console)
    with SinkFake() as sink, activating(console_server, console_api):
        enter_target, exit_target = requests_of(console_api, sink, name=dest_name)
        body = {
            **audience_body(audience_source(console_api), [enter_target, exit_target], segment),
            "name": flow_name,
        }
        flow = created_id(console_api.post(f"{FS}/flows", json=body))

        console.goto("/console/audiences")
        row = console.get_by_role("row").filter(has_text=audience)
        activation = row.locator(f'li[data-flow="{flow}"]')
        expect(activation.get_by_role("link", name=flow_name)).to_have_attribute(
            "href", f"/console/activations/{flow}"
        )
        expect(activation.get_by_role("link", name=dest_name)).to_be_visible()
        expect(activation.locator(".badge")).to_have_text("enabled")
        expect(row.locator(".count")).to_have_text("3")
        row.get_by_role("button", name="Run segment job").click()
        expect(console.locator("#toast")).to_contain_text("Segment job")

        sink.wait_for(3, timeout=15)
        settled(console_server, scope, flow, segment)
        wait_until(lambda: delivery_totals(console_api, flow)["delivered"] == 3, timeout=10)
        entered = len(sink.delivered())
        assert entered == 3 and {r.path for r in sink.delivered()} == {f"/enter/{e}" for e in emails}

        activation.get_by_role("link", name=flow_name).click()
        expect(console.get_by_role("heading", name=flow_name, level=1)).to_be_visible()
        expect(console.locator(".flow-line")).to_contain_text(f"From audience {audience} to")
        expect(console.locator("[data-metric=entered] .value")).to_have_text(str(entered))
        expect(console.locator("[data-metric=exited] .value")).to_have_text("0")
        expect(console.locator("[data-metric=delivered] .value")).to_have_text(str(entered))
        expect(console.locator("[data-metric=deadLettered] .value")).to_have_text("0")
        run = console.locator(".runs tbody tr").first
        expect(run.locator("[data-count=entered]")).to_have_text(str(entered))
        facts = console.locator("dl.facts").last
        expect(facts).to_contain_text("When a profile exits")
        expect(facts.locator("code").filter(has_text="DELETE " + sink.url + "/exit/${email}")).to_be_visible()
        screenshot(console, "audience-activation")

        # One of them no longer qualifies: a second job sends the exit request.
        renamed = _person({"Email": emails[0]}, "Email", "Renamed", "2026-02-01T00:00:00Z")
        _land(console_server, console_api, members, [renamed])
        job = console_api.post("/data/core/ups/segment/jobs", json={"segments": [{"segmentId": segment}]})
        assert job.status_code == 200, job.text
        sink.wait_for(4, timeout=15)
        settled(console_server, scope, flow, segment)
        wait_until(lambda: delivery_totals(console_api, flow)["delivered"] == 4, timeout=10)
        console.get_by_role("button", name="Refresh counts, runs and dead letters").click()
        expect(console.locator("[data-metric=exited] .value")).to_have_text("1")
        expect(console.locator("[data-metric=delivered] .value")).to_have_text(str(len(sink.delivered())))
        expect(run.locator("[data-count=exited]")).to_have_text("1")

        console.get_by_role("link", name=audience).first.click()
        expect(console).to_have_url(re.compile(f"/console/audiences#audience-{segment}$"))
        expect(console.locator(f"#audience-{segment}")).to_have_class(re.compile(r"\blinked\b"))
    assert [r.method for r in sink.delivered()].count("DELETE") == 1
    assert problems == [], problems
