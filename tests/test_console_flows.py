"""Dataflows in the console (Debian's Chromium through Playwright): a run on demand whose counts, chart
and failed-row samples appear on the flow's page; enable and disable; and a schedule edit that meets a
concurrent change (etag) and says so instead of overwriting it."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from headwater.runtime.worker import Worker
from tests.conftest import screenshot
from tests.flows_helpers import CAT, CONV, FS, SR, created_id, target_connection
from tests.support import ApiClient, LiveServer, held_back, unique, wait_until, watch_page
from tests.test_batch_runs import contact, write_csv

expect = pytest.importorskip("playwright.sync_api").expect

watch = watch_page
LOCAL_FILES = "c79513cd-ceb9-437a-812d-a5b148aceb4c"
FILES_TO_AEP = "52b72b28-2b0c-4932-b239-a3ed85e219bc"
FINAL = ("success", "partialSuccess", "failed")


@contextmanager
def running_worker(server: LiveServer) -> Iterator[Worker]:
    """A worker executing the console server's queued runs (it does not schedule)."""
    runner = Worker(server.services, name=unique("console-worker"), schedule=False, streaming=False)
    thread = threading.Thread(target=runner.run_forever, daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner.stop()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def console_worker(console_server: LiveServer) -> Iterator[Worker]:
    with running_worker(console_server) as runner:
        yield runner


def profile_schema(api: ApiClient, title: str) -> dict[str, Any]:
    response = api.post(
        f"{SR}/tenant/schemas",
        json={
            "type": "object",
            "title": title,
            "description": "People from the contacts file",
            "allOf": [
                {"$ref": "https://ns.adobe.com/xdm/context/profile"},
                {"$ref": "https://ns.adobe.com/xdm/context/profile-person-details"},
                {"$ref": "https://ns.adobe.com/xdm/context/profile-personal-details"},
            ],
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def file_pipeline(
    api: ApiClient, folder: Path, rows: list[dict[str, str]], schedule: dict[str, Any] | None = None
) -> dict[str, str]:
    """A local CSV file -> mapping -> dataset flow (files-to-AEP), every name unique."""
    name = unique("Contacts")
    write_csv(folder / "contacts.csv", rows)
    conn = created_id(
        api.post(
            f"{FS}/connections",
            json={
                "name": f"{name} folder",
                "auth": {"specName": "Local Folder", "params": {"rootPath": str(folder)}},
                "connectionSpec": {"id": LOCAL_FILES, "version": "1.0"},
            },
        )
    )
    source = created_id(
        api.post(
            f"{FS}/sourceConnections",
            json={
                "name": f"{name} file",
                "baseConnectionId": conn,
                "data": {"format": "delimited"},
                "params": {"path": "contacts.csv"},
            },
        )
    )
    schema = profile_schema(api, f"{name} profile")
    created = api.post(
        f"{CAT}/dataSets",
        json={
            "name": f"{name} data",
            "schemaRef": {
                "id": schema["$id"],
                "contentType": "application/vnd.adobe.xed-full+json;version=1",
            },
        },
    )
    assert created.status_code == 201, created.text
    dataset = created.json()[0].split("/")[-1]
    target = target_connection(api, schema["$id"], dataset)
    mappings = [
        {"sourceType": "ATTRIBUTE", "source": "id", "destination": "_id"},
        {"sourceType": "ATTRIBUTE", "source": "first_name", "destination": "person.name.firstName"},
        {"sourceType": "ATTRIBUTE", "source": "last_name", "destination": "person.name.lastName"},
        {"sourceType": "ATTRIBUTE", "source": "email", "destination": "personalEmail.address"},
    ]
    mapping = created_id(
        api.post(
            f"{CONV}/mappingSets",
            json={"name": f"{name} mapping", "xdmSchema": schema["$id"], "mappings": mappings},
        )
    )
    body: dict[str, Any] = {
        "name": name,
        "flowSpec": {"id": FILES_TO_AEP, "version": "1.0"},
        "sourceConnectionIds": [source],
        "targetConnectionIds": [target],
        "transformations": [
            {
                "name": "Copy",
                "params": {
                    "deltaColumn": {
                        "name": "updatedAt",
                        "dateFormat": "yyyy-MM-dd HH:mm:ss",
                        "timezone": "UTC",
                    }
                },
            },
            {"name": "Mapping", "params": {"mappingId": mapping}},
        ],
    }
    if schedule:
        body["scheduleParams"] = schedule
    flow = created_id(api.post(f"{FS}/flows", json=body))
    return {
        "name": name,
        "flow": flow,
        "dataset": dataset,
        "schema": schema["$id"],
        "schemaAltId": schema["meta:altId"],
        "source": source,
        "mapping": mapping,
    }


def run_to_the_end(api: ApiClient, flow: str, window_end: str | None = None) -> dict[str, Any]:
    params = {"windowEndTime": window_end} if window_end else {}
    created = api.post(f"{FS}/runs", json={"flowId": flow, "params": params})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]

    def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = api.get(f"{FS}/runs/{run_id}").json()["items"][0]
        return run if run["state"] in FINAL else None

    result: dict[str, Any] = wait_until(finished, timeout=30, interval=0.1)
    return result


def tall_screenshot(page: Any, name: str, most: int = 1600) -> None:
    """screenshot() of the whole page (up to ``most`` pixels high): the viewport grows for the picture."""
    size = page.viewport_size
    height = min(most, int(page.evaluate("document.documentElement.scrollHeight")))
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, name)
    page.set_viewport_size(size)


THREE_ROWS = [
    contact(1, "2024-01-01 00:00:00"),
    contact(2, "2024-01-01 00:00:00", email="not-an-email"),
    contact(3, "2024-01-01 00:00:00"),
]


def test_a_dataflow_run_shows_its_counts_chart_and_failed_rows(
    console: Any, console_api: ApiClient, console_worker: Worker, tmp_path: Path
) -> None:
    ids = file_pipeline(console_api, tmp_path, THREE_ROWS)
    assert run_to_the_end(console_api, ids["flow"], "2024-01-01T12:00:00Z")["state"] == "partialSuccess"
    problems = watch(console)
    console.goto(f"/console/flows/{ids['flow']}")
    expect(console.locator("#main h1")).to_have_text(ids["name"])
    runs = console.locator("[data-runs] tbody tr[data-run]")
    expect(runs).to_have_count(1)
    expect(runs.first.locator("td").nth(1)).to_have_text("partialSuccess")

    # Two rows changed after the first run's window: Run now reads just those.
    write_csv(
        tmp_path / "contacts.csv",
        [*THREE_ROWS, contact(4, "2024-01-02 09:00:00"), contact(5, "2024-01-02 09:00:00")],
    )
    console.get_by_role("button", name="Run now").click()
    expect(runs).to_have_count(2)
    newest, older = runs.nth(0), runs.nth(1)
    expect(newest.locator("td").nth(1)).to_have_text("success", timeout=30_000)
    counts = [[row.locator("td").nth(i).inner_text() for i in (2, 3, 4)] for row in (newest, older)]
    assert counts == [["2", "2", "0"], ["3", "2", "1"]]
    expect(older.locator("td").nth(6)).to_contain_text("INGEST-1401-400")
    expect(newest.locator("td").nth(6)).to_have_text("None")

    # The chart: a group of bars per run, oldest first, each with its in / out / failed counts.
    chart = console.locator("[data-chart] svg")
    expect(chart.locator("g[data-run]")).to_have_count(2)
    drawn = [
        [g.locator(f'rect[data-series="{s}"]').get_attribute("data-value") for s in ("in", "out", "failed")]
        for g in chart.locator("g[data-run]").all()
    ]
    assert drawn == [["3", "2", "1"], ["2", "2", "0"]]
    bar = chart.locator('g[data-run] rect[data-series="in"]')
    assert float(bar.nth(0).get_attribute("height") or 0) > float(bar.nth(1).get_attribute("height") or 0) > 0
    axis = chart.locator('text[y="236"]').all_text_contents()  # the time axis: two runs a few seconds apart
    assert axis and len(axis) == len(set(axis)), axis

    # The failed row of the first run, as it was read, with why it failed.
    older.get_by_role("button", name="Show failed rows").focus()
    console.keyboard.press("Enter")  # keyboard-usable
    expect(older.get_by_role("button", name="Hide failed rows")).to_have_attribute("aria-expanded", "true")
    detail = console.locator("tr.run-samples")
    expect(detail).to_contain_text("personalEmail.address: 'not-an-email' is not a valid email address")
    expect(detail).to_contain_text('"email": "not-an-email"')
    expect(console.locator("[data-facts]")).to_contain_text(f"{ids['name']} data")
    tall_screenshot(console, "flow-detail")

    console.goto("/console/flows")
    row = console.locator("tbody tr", has=console.get_by_role("link", name=ids["name"], exact=True))
    expect(row.locator(".badge").first).to_have_text("enabled")
    expect(row).to_contain_text("success")
    expect(row).to_contain_text("2 / 2 / 0")
    screenshot(console, "flows")
    assert problems == []


def test_enable_and_disable_from_the_flow_page(console: Any, console_api: ApiClient, tmp_path: Path) -> None:
    ids = file_pipeline(console_api, tmp_path, THREE_ROWS[:1])
    problems = watch(console)
    console.goto(f"/console/flows/{ids['flow']}")
    state = console.locator("[data-facts] dd").first
    expect(state).to_have_text("enabled")
    enable = console.get_by_role("button", name="Enable", exact=True)
    disable = console.get_by_role("button", name="Disable", exact=True)
    expect(enable).to_be_disabled()
    disable.click()
    expect(state).to_have_text("disabled")
    expect(disable).to_be_disabled()
    assert console_api.get(f"{FS}/flows/{ids['flow']}").json()["items"][0]["state"] == "disabled"
    enable.click()
    expect(state).to_have_text("enabled")
    assert console_api.get(f"{FS}/flows/{ids['flow']}").json()["items"][0]["state"] == "enabled"

    console.goto("/console/flows/no-such-flow")  # the API's answer, in words
    expect(console.locator("main > [data-errors]")).to_contain_text("no-such-flow")
    assert problems == []


def test_run_now_works_while_the_page_still_loads_its_runs(
    console: Any, console_api: ApiClient, tmp_path: Path
) -> None:
    """The button is usable as soon as it is enabled: the runs list, held back here as a slow server
    would, must not stand between the button and its handler (a click in that gap once did nothing)."""
    ids = file_pipeline(console_api, tmp_path, THREE_ROWS[:1])
    problems = watch(console)
    with held_back(console, re.compile(r"/data/foundation/flowservice/runs\?")) as runs_list:
        console.goto(f"/console/flows/{ids['flow']}")
        run_now = console.get_by_role("button", name="Run now")
        expect(run_now).to_be_enabled()
        wait_until(runs_list.asked, timeout=15)  # the page asked for its runs and has no answer yet
        run_now.click()
        runs = wait_until(
            lambda: console_api.get(f"{FS}/runs?property=flowId=={ids['flow']}").json()["items"], timeout=15
        )
        assert len(runs) == 1
    expect(console.locator("[data-runs] tbody tr[data-run]")).to_have_count(1)
    assert problems == []


def test_a_schedule_changed_meanwhile_is_reported_not_overwritten(
    console: Any, console_api: ApiClient, tmp_path: Path
) -> None:
    start = int(time.time()) + 365 * 86400  # far ahead: nothing is due while the test runs
    ids = file_pipeline(
        console_api, tmp_path, THREE_ROWS[:1], {"frequency": "hour", "interval": 1, "startTime": start}
    )
    url = f"{FS}/flows/{ids['flow']}"
    problems = watch(console)
    console.goto(f"/console/flows/{ids['flow']}")
    interval = console.get_by_label("Interval")
    expect(interval).to_have_value("1")
    expect(console.locator("[data-facts]")).to_contain_text("Every hour")

    # A value the API refuses: told in words next to the field.
    console.get_by_label("Frequency").select_option("minute")
    interval.fill("5")
    console.get_by_role("button", name="Save schedule").click()
    expect(console.locator(".field:has(#s-interval) + .field-error")).to_have_text("must be >= 15")
    expect(interval).to_have_attribute("aria-invalid", "true")

    # Someone else changes the schedule after the page was opened...
    etag = console_api.get(url).headers["etag"]
    changed = console_api.patch(
        url,
        headers={"If-Match": etag},
        json=[{"op": "replace", "path": "/scheduleParams/interval", "value": 6}],
    )
    assert changed.status_code == 200, changed.text
    # ...so saving the form is refused (412) and the page says why, next to the form.
    console.get_by_label("Frequency").select_option("hour")
    interval.fill("2")
    console.get_by_role("button", name="Save schedule").click()
    alert = console.locator("[data-schedule-form] [data-errors]")
    expect(alert).to_have_text(
        "This dataflow was changed by someone else since you opened it; reload to see the change.Reload"
    )
    assert console_api.get(url).json()["items"][0]["scheduleParams"]["interval"] == 6

    # Reloading shows the other change; a save from there goes through.
    console.get_by_role("button", name="Reload").click()
    expect(interval).to_have_value("6")
    interval.fill("3")
    console.get_by_role("button", name="Save schedule").click()
    expect(console.locator("[data-facts]")).to_contain_text("Every 3 hours")
    assert console_api.get(url).json()["items"][0]["scheduleParams"]["interval"] == 3
    assert problems == []
