"""The Create dataflow wizard in a real browser (Debian's Chromium through Playwright), pipelines built only
in the console and then run: the README's CSV flow (a Local Folder account added through the sources
wizard, a new dataset with a new schema, an expression mapping, a delta column), the Salesforce flow (an
object explored at the local Salesforce-compatible server, an existing dataset), and a streaming flow
whose inlet URL is shown and takes a message that lands in the dataset."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.runtime.worker import Worker
from tests.conftest import screenshot
from tests.fakes.salesforce import SalesforceFake
from tests.flows_helpers import CAT, CONV, FS, created_id
from tests.streaming_helpers import HTTP_API, streaming
from tests.support import ApiClient, LiveServer, unique, watch_page
from tests.test_console import UNLABELLED
from tests.test_console_flows import profile_schema, running_worker, tall_screenshot

expect = pytest.importorskip("playwright.sync_api").expect

FLOW_PAGE = re.compile(r"/console/flows/[0-9a-f-]{36}$")
CSV = (
    "id,first_name,last_name,email,updatedAt\n"
    "1,Ada,Lovelace, ADA@Example.com ,2024-01-01 10:00:00\n"
    "2,Grace,Hopper,grace@example.com,2024-01-01 10:00:00\n"
)


@pytest.fixture(scope="module")
def wizard_worker(console_server: LiveServer) -> Iterator[Worker]:
    with running_worker(console_server) as runner:
        yield runner


@pytest.fixture(scope="module")
def salesforce() -> Iterator[SalesforceFake]:
    fake = SalesforceFake().start()
    fake.add_object("Person", {"first_name": "string", "last_name": "string", "email": "email"})
    fake.insert(
        "Person",
        [
            {"first_name": f"Ada{i}", "last_name": f"Lovelace{i}", "email": f"ada{i}@example.com"}
            for i in range(5)
        ],
        modified=datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
    )
    yield fake
    fake.stop()


def existing_dataset(api: ApiClient, name: str) -> tuple[str, str]:
    """A profile schema and a dataset of it, made through the API: (dataset id, schema title)."""
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
    return created.json()[0].split("/")[-1], schema["title"]


def dataset_rows(api: ApiClient, dataset: str) -> list[dict[str, Any]]:
    response = api.get(f"{CAT}/dataSets/{dataset}/preview?limit=100")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


def field(page: Any, label: str) -> Any:
    """The input labelled ``label`` (a required field's label ends with a red asterisk)."""
    return page.get_by_label(re.compile(rf"^{re.escape(label)}( \*)?$"))


def map_rows(page: Any, rows: list[tuple[str, str, str]]) -> None:
    """Fill the mapping editor: (source type, source, destination) per row, adding rows as needed."""
    for i, (kind, source, destination) in enumerate(rows, start=1):
        if i > 1:
            page.get_by_role("button", name="Add mapping").click()
        page.get_by_label(f"Source type of mapping {i}").select_option(kind)
        page.get_by_label(f"Source of mapping {i}").fill(source)
        page.get_by_label(f"Destination path of mapping {i}").fill(destination)


def next_step(page: Any, heading: str) -> None:
    """Next, onto the step with this heading (it takes the focus); every control there has a label."""
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_focused()
    assert page.evaluate(UNLABELLED) == [], heading


def run_from_the_flow_page(page: Any) -> None:
    """Run now, and wait for the run's row to say it finished."""
    expect(page.locator("#main h1")).not_to_have_text("Dataflow")  # the flow's facts are in
    page.get_by_role("button", name="Run now").click()
    state = page.locator("[data-runs] tbody tr[data-run]").first.locator("td").nth(1)
    expect(state).to_have_text("success", timeout=30_000)


def test_the_readme_csv_flow_built_in_the_console(
    console: Any, console_api: ApiClient, console_server: LiveServer, wizard_worker: Worker
) -> None:
    name = unique("Contacts")
    folder = unique("contacts")
    home = Path(console_server.settings.home) / "files" / console_api.org_id / "prod" / folder
    home.mkdir(parents=True)
    (home / "contacts.csv").write_text(CSV)
    problems = watch_page(console)

    console.goto("/console/flows")
    console.get_by_role("link", name="Create dataflow").click()
    console.wait_for_url("**/console/flows/new")
    # No account yet: add one through the sources wizard, which comes back here with it.
    console.get_by_label("Source of the new account").select_option(label="Local files")
    console.get_by_role("link", name="Add a new account").click()
    console.wait_for_url("**/console/sources/new?spec=*")
    field(console, "Name").fill(f"{name} folder")
    console.get_by_role("button", name="Next").click()
    field(console, "Root path").fill(folder)
    console.get_by_role("button", name="Next").click()
    expect(console.locator("#test-result")).to_contain_text("Connection successful")
    console.get_by_role("button", name="Next").click()
    console.get_by_role("button", name="Save").click()
    console.wait_for_url("**/console/flows/new?connection=*")
    account = field(console, "Account")
    expect(account).to_have_value(console.url.rsplit("=", 1)[1])

    # Select data: the file, previewed as a table (the columns come from it).
    next_step(console, "Select data")
    field(console, "File").select_option("contacts.csv")
    preview = console.locator("#fw-data-preview")
    expect(preview.locator("thead th")).to_have_count(5)
    expect(preview.locator("thead th").first).to_have_text("idString")
    expect(preview.locator("tbody tr")).to_have_count(2)
    expect(preview).to_contain_text("Grace")
    expect(field(console, "File path")).to_have_value("contacts.csv")
    screenshot(console, "flow-wizard-data")

    # Dataset: a new one, with a new schema built here.
    next_step(console, "Dataset")
    step = console.locator('section[data-step="target"]')
    step.get_by_label("New dataset").check()
    field(step, "Dataset name").fill(f"{name} data")
    step.get_by_label("Build a new schema").check()
    field(step, "Schema title").fill(f"{name} people")
    step.get_by_label("Class").select_option(label="XDM Individual Profile")
    step.get_by_label("Demographic Details").check()
    step.get_by_label("Personal Contact Details").check()
    next_step(console, "Mapping")

    # Mapping: a typo is refused next to its row (and the layout keeps its columns' widths)...
    map_rows(
        console,
        [
            ("ATTRIBUTE", "id", "_id"),
            ("ATTRIBUTE", "first_name", "person.name.firstName"),
            ("ATTRIBUTE", "last_name", "person.name.lastname"),
            ("EXPRESSION", "lower(trim(email))", "personalEmail.address"),
        ],
    )
    source_list = console.get_by_label("Source of mapping 1").get_attribute("list")
    offered = console.locator(f"datalist#{source_list} option").evaluate_all("os => os.map(o => o.value)")
    assert offered == ["id", "first_name", "last_name", "email", "updatedAt"]
    widths = console.locator(".mapping-rows thead th").evaluate_all("ths => ths.map(t => t.offsetWidth)")
    console.get_by_role("button", name="Next").click()
    third = console.locator("[data-rows] tr").nth(2)
    expect(third.locator(".field-error")).to_contain_text("'person.name.lastname' is not a field of schema")
    after = console.locator(".mapping-rows thead th").evaluate_all("ths => ths.map(t => t.offsetWidth)")
    assert after == widths
    # ...and, fixed, the preview maps the sample rows into a table.
    console.get_by_label("Destination path of mapping 3").fill("person.name.lastName")
    console.get_by_role("button", name="Preview the mapped rows").click()
    mapped = console.locator("[data-preview-result]")
    expect(mapped).to_contain_text("2 of 2 rows mapped")
    expect(mapped.locator("thead th")).to_have_text(
        ["Row", "_id", "person.name.firstName", "person.name.lastName", "personalEmail.address"]
    )
    expect(mapped.locator("tbody tr").first.locator("td")).to_have_text(
        ["1", "1", "Ada", "Lovelace", "ada@example.com"]
    )
    tall_screenshot(console, "flow-wizard-mapping")

    # Scheduling: every 5 minutes, which the API refuses at Save (minutes need an interval of at least 15).
    next_step(console, "Scheduling")
    console.get_by_label("Frequency").select_option("minute")
    console.get_by_label("Interval").fill("5")
    console.get_by_label("Delta column").select_option("updatedAt")
    next_step(console, "Review")
    field(console, "Dataflow name").fill(name)
    review = console.locator("#fw-review")
    expect(review).to_contain_text(f"New dataset “{name} data” with a new schema “{name} people”")
    expect(review).to_contain_text("lower(trim(email)) → personalEmail.address")
    expect(review).to_contain_text("Every 5 minutes")
    console.get_by_role("button", name="Save").click()
    # Back at Scheduling, the API's words next to the field; what the save had made is deleted again.
    expect(console.locator(".field:has(#fw-interval) + .field-error")).to_have_text("must be >= 15")
    expect(console.get_by_label("Interval")).to_be_focused()
    expect(console.locator(".steps li.current")).to_have_text("Scheduling")
    sources = console_api.get(f"{FS}/sourceConnections?limit=1000").json()["items"]
    assert [s for s in sources if s["name"] == f"{name} source"] == []
    console.get_by_label("Frequency").select_option("once")
    next_step(console, "Review")
    expect(review).to_contain_text("updatedAt")
    screenshot(console, "flow-wizard-review")
    console.get_by_role("button", name="Save").click()
    console.wait_for_url(FLOW_PAGE)
    flow_id = console.url.rsplit("/", 1)[1]
    flow = console_api.get(f"{FS}/flows/{flow_id}").json()["items"][0]
    assert flow["name"] == name
    assert flow["scheduleParams"]["frequency"] == "once"
    copy, mapping = flow["transformations"]
    assert copy == {"name": "Copy", "params": {"deltaColumn": {"name": "updatedAt"}}}
    mapping_set = console_api.get(f"{CONV}/mappingSets/{mapping['params']['mappingId']}").json()
    assert mapping_set["mappings"][3]["source"] == "lower(trim(email))"
    target = console_api.get(f"{FS}/targetConnections/{flow['targetConnectionIds'][0]}").json()["items"][0]
    dataset = target["params"]["dataSetId"]

    run_from_the_flow_page(console)
    rows = sorted(dataset_rows(console_api, dataset), key=lambda r: r["_id"])
    assert [(r["_id"], r["person"]["name"]["lastName"], r["personalEmail"]["address"]) for r in rows] == [
        ("1", "Lovelace", "ada@example.com"),
        ("2", "Hopper", "grace@example.com"),
    ]
    assert problems == []


def test_a_salesforce_flow_from_an_explored_object(
    console: Any, console_api: ApiClient, salesforce: SalesforceFake, wizard_worker: Worker
) -> None:
    name = unique("People")
    connection = created_id(
        console_api.post(
            f"{FS}/connections",
            json={
                "name": f"{name} CRM",
                "auth": {"specName": "Basic Authentication", "params": salesforce.soap_auth()},
                "connectionSpec": {"id": "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5", "version": "1.0"},
            },
        )
    )
    dataset, schema_title = existing_dataset(console_api, name)
    problems = watch_page(console)
    console.goto(f"/console/flows/new?connection={connection}")
    expect(field(console, "Account")).to_have_value(connection)
    next_step(console, "Select data")
    field(console, "Object").select_option("Person")
    preview = console.locator("#fw-data-preview")
    expect(preview.locator("tbody tr")).to_have_count(5)
    expect(preview.locator("thead")).to_contain_text("LastModifiedDateDate-time")
    next_step(console, "Dataset")
    step = console.locator('section[data-step="target"]')
    expect(step.locator("[data-dataset-target][data-ready]")).to_have_count(1)
    step.get_by_label("Choose a dataset").select_option(dataset)
    expect(step).to_contain_text(f"Schema: {schema_title}")
    next_step(console, "Mapping")
    map_rows(
        console,
        [
            ("ATTRIBUTE", "Id", "_id"),
            ("ATTRIBUTE", "first_name", "person.name.firstName"),
            ("ATTRIBUTE", "last_name", "person.name.lastName"),
            ("ATTRIBUTE", "email", "personalEmail.address"),
        ],
    )
    next_step(console, "Scheduling")
    expect(console.get_by_label("Delta column")).to_have_value("LastModifiedDate")  # a CRM's usual one
    next_step(console, "Review")
    field(console, "Dataflow name").fill(name)
    console.get_by_role("button", name="Save").click()
    console.wait_for_url(FLOW_PAGE)
    flow_id = console.url.rsplit("/", 1)[1]
    source_id = console_api.get(f"{FS}/flows/{flow_id}").json()["items"][0]["sourceConnectionIds"][0]
    source = console_api.get(f"{FS}/sourceConnections/{source_id}").json()["items"][0]
    assert source["params"]["tableName"] == "Person"
    assert {"name": "email", "type": "string"}.items() <= source["params"]["columns"][-1].items()

    run_from_the_flow_page(console)
    rows = dataset_rows(console_api, dataset)
    assert sorted(r["person"]["name"]["lastName"] for r in rows) == [f"Lovelace{i}" for i in range(5)]
    assert problems == []


def test_a_streaming_flow_shows_its_inlet_and_takes_a_message(
    console: Any, console_api: ApiClient, console_server: LiveServer
) -> None:
    name = unique("Web events")
    connection = created_id(
        console_api.post(
            f"{FS}/connections",
            json={
                "name": name,
                "connectionSpec": {"id": HTTP_API, "version": "1.0"},
                "auth": {"specName": "Streaming Connection", "params": {"name": name, "dataType": "xdm"}},
            },
        )
    )
    dataset, _ = existing_dataset(console_api, name)
    console.context.grant_permissions(["clipboard-read", "clipboard-write"])
    problems = watch_page(console)
    console.goto("/console/flows/new")
    field(console, "Account").select_option(connection)
    expect(console.locator(".steps li")).to_have_text(["Account", "Dataset", "Mapping", "Review"])
    next_step(console, "Dataset")
    step = console.locator('section[data-step="target"]')
    expect(step.locator("[data-dataset-target][data-ready]")).to_have_count(1)
    step.get_by_label("Choose a dataset").select_option(dataset)
    next_step(console, "Mapping")  # optional for XDM messages: left empty
    next_step(console, "Review")
    field(console, "Dataflow name").fill(name)
    console.get_by_role("button", name="Save").click()
    expect(console.get_by_role("heading", name="Dataflow saved")).to_be_focused()
    inlet = console.get_by_role("textbox", name="Inlet URL").input_value()
    conn = console_api.get(f"{FS}/connections/{connection}").json()["items"][0]
    assert inlet == conn["auth"]["params"]["inletUrl"]
    console.get_by_role("button", name="Copy the inlet URL").click()
    assert console.evaluate("navigator.clipboard.readText()") == inlet
    flow_id = console.get_by_role("textbox", name="Dataflow ID").input_value()
    flow_link = console.get_by_role("link", name="Open the dataflow")
    expect(flow_link).to_have_attribute("href", f"/console/flows/{flow_id}")
    flow = console_api.get(f"{FS}/flows/{flow_id}").json()["items"][0]
    assert flow["transformations"] == [] and "scheduleParams" not in flow

    message = {
        "header": {"flowId": flow_id, "datasetId": dataset, "imsOrgId": console_api.org_id},
        "body": {"xdmEntity": {"_id": "web-1", "personalEmail": {"address": "mary@example.com"}}},
    }
    with streaming(console_server, console_api):
        sent = httpx.post(inlet, json=message, timeout=10)
        assert sent.status_code == 200, sent.text
        deadline = time.monotonic() + 20
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not rows:
            rows = [r for r in dataset_rows(console_api, dataset) if r.get("_id") == "web-1"]
            if not rows:
                time.sleep(0.2)  # polling the API with a deadline (the message lands about a second later)
    assert [r["personalEmail"]["address"] for r in rows] == ["mary@example.com"]
    flow_link.click()
    console.wait_for_url(f"**/console/flows/{flow_id}")
    expect(console.locator("[data-facts]")).to_contain_text("Continuous (streaming)")
    assert problems == []
