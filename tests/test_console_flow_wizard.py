"""The README's pipelines built purely in the console (Debian's Chromium through Playwright): a Local Folder
account and its CSV into a new dataset with a new schema, then that dataset activated to a destination on
a sink, Document 002's Salesforce flow against the local
Salesforce-compatible server, and a streaming flow whose inlet the wizard shows. Each is run and its rows
are read back through the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.salesforce import SalesforceFake
from tests.fakes.sink import SinkFake
from tests.streaming_helpers import streaming
from tests.support import ApiClient, LiveServer, held_back, unique, wait_until, watch_page
from tests.test_console_flows import running_worker, tall_screenshot
from tests.test_console_sources import (
    fill_auth,
    salesforce,  # noqa: F401 (its fixture)
)

expect = pytest.importorskip("playwright.sync_api").expect
FS = "/data/foundation/flowservice"
CAT = "/data/foundation/catalog"
FINAL = ("success", "partialSuccess", "failed")
CONTACTS = (
    "id,first_name,last_name,email,updatedAt\n"
    "1,Ada,Lovelace, ADA@example.com ,2024-01-01 10:00:00\n"
    "2,Grace,Hopper,grace@example.com,2024-01-01 10:00:00\n"
)


@pytest.fixture(scope="module")
def worker(console_server: LiveServer) -> Iterator[None]:
    with running_worker(console_server):
        yield


def field(page: Any, label: str) -> Any:
    return page.get_by_label(re.compile(rf"^{re.escape(label)}( \*)?$"))


def new_account(page: Any, tile: str, name: str, fill: Any) -> str:
    """An account made with the Sources wizard (name, authenticate, test, save); its id."""
    page.goto("/console/sources")
    page.get_by_role("link", name=tile, exact=True).click()
    page.wait_for_url("**/console/sources/new?spec=*")
    field(page, "Name").fill(name)
    page.get_by_role("button", name="Next").click()
    fill(page)
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#test-result")).to_contain_text("Connection successful.")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/console/sources/[0-9a-f-]{36}$"))
    return str(page.url.rsplit("/", 1)[1])


def new_dataset_with_new_schema(page: Any, dataset: str, schema: str) -> None:
    """The Dataset step: a new dataset whose new schema is an Individual Profile with person and contact
    details."""
    step = page.locator('[data-step="target"]')
    expect(step.locator("[data-ready]").first).to_have_attribute("data-ready", "true")
    step.get_by_label("New dataset").check()
    step.get_by_label("Dataset name").fill(dataset)
    step.get_by_label("Build a new schema").check()
    expect(step.locator("[data-schema-builder]")).to_have_attribute("data-ready", "true")
    step.get_by_label("Schema title").fill(schema)
    step.get_by_label("Class").select_option(label="XDM Individual Profile")
    step.get_by_label("Demographic Details").check()
    step.get_by_label("Personal Contact Details").check()


def mapping_row(
    page: Any, n: int, destination: str, source: str | None = None, kind: str | None = None
) -> None:
    if kind:
        page.get_by_label(f"Source type of mapping {n}").select_option(label=kind)
    if source is not None:
        page.get_by_label(f"Source of mapping {n}").fill(source)
    page.get_by_label(f"Destination field of mapping {n}").fill(destination)


def run_flow(page: Any, api: ApiClient, flow: str) -> dict[str, Any]:
    """Run now on the flow's page, then the run's document once it ended."""
    page.get_by_role("button", name="Run now").click()

    seen: list[Any] = []

    def ended() -> dict[str, Any] | None:
        items = api.get(f"{FS}/runs?property=flowId=={flow}").json()["items"]
        seen[:] = items
        return items[0] if items and items[0]["state"] in FINAL else None

    try:  # a loaded 2-core machine (the other test process busy) needs room
        run: dict[str, Any] = wait_until(ended, timeout=120, interval=0.2)
    except AssertionError:
        raise AssertionError(f"the run did not end: {seen}") from None
    return run


def rows(api: ApiClient, dataset: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = api.get(f"{CAT}/dataSets/{dataset}/preview?limit=100").json()["data"]
    return data


def target_dataset(api: ApiClient, flow: str) -> str:
    body = api.get(f"{FS}/flows/{flow}").json()["items"][0]
    target = api.get(f"{FS}/targetConnections/{body['targetConnectionIds'][0]}").json()["items"][0]
    return str(target["params"]["dataSetId"])


def test_the_readme_csv_flow_and_its_activation_built_in_the_console(
    console: Any, console_api: ApiClient, console_server: LiveServer, worker: None
) -> None:
    problems = watch_page(console)
    folder = unique("contacts")
    files = console_server.services.settings.home / "files" / console_api.org_id / "prod" / folder
    files.mkdir(parents=True)
    (files / "contacts.csv").write_text(CONTACTS)

    account = new_account(
        console, "Local files", unique("Contacts folder"), lambda p: field(p, "Root path").fill(folder)
    )
    console.get_by_role("link", name="Create dataflow").click()
    console.wait_for_url(f"**/console/flows/new?connection={account}")
    expect(console.locator("[data-account]")).to_contain_text("Contacts folder")

    # Select data: the file, with a preview of its rows and their types.
    console.get_by_label("Object or file").fill("contacts.csv")
    console.get_by_role("button", name="Preview").click()
    preview = console.get_by_role("table", name="Preview of contacts.csv")
    expect(preview).to_contain_text("Lovelace")
    expect(preview.locator("th").first).to_contain_text("id")
    assert "timestamp[" not in preview.inner_text()  # types in words, not Arrow's names
    tall_screenshot(console, "flow-wizard-data", most=1000)
    console.get_by_role("button", name="Next").click()

    dataset_name, schema_title = unique("CRM people"), unique("People from files")
    new_dataset_with_new_schema(console, dataset_name, schema_title)
    console.get_by_role("button", name="Next").click()

    # Mapping: the columns are offered as sources; email through an expression.
    expect(console.locator("[data-mapping] [data-ready]")).to_have_attribute("data-ready", "true")
    expect(console.get_by_label("Source of mapping 1")).to_have_value("id")
    mapping_row(console, 1, "_id")
    mapping_row(console, 2, "person.name.firstName")
    mapping_row(console, 3, "person.name.lastName")
    mapping_row(console, 4, "personalEmail.address", "lower(trim(email))", kind="Expression")
    mapping_row(console, 5, "person.name.nickname")  # a field the schema does not have
    console.get_by_role("button", name="Preview the mapping").click()
    error = console.locator("[data-mapping] .field-error").first
    expect(error).to_be_visible()
    assert console.get_by_label("Destination field of mapping 5").get_attribute("aria-invalid") == "true"
    mapping_row(console, 5, "")  # left out: its column is not mapped
    console.get_by_role("button", name="Preview the mapping").click()
    mapped = console.get_by_role("table", name="Preview of the mapped rows")
    expect(mapped).to_contain_text("ada@example.com")  # lower(trim()) applied
    expect(mapped.locator("th", has_text="personalEmail.address")).to_have_count(1)
    tall_screenshot(console, "flow-wizard-mapping", most=1200)
    console.get_by_role("button", name="Next").click()

    # Scheduling: every 10 minutes is refused by the API at Save, next to the interval.
    console.get_by_label("Repeatedly").check()
    console.get_by_label("Frequency").select_option("minute")
    console.get_by_label("Interval").fill("10")
    console.get_by_label("Delta column").select_option("updatedAt")
    console.get_by_role("button", name="Next").click()
    flow_name = unique("Contacts from CSV")
    console.get_by_label("Dataflow name").fill(flow_name)
    expect(console.locator("[data-summary]")).to_contain_text("contacts.csv")
    console.get_by_role("button", name="Save dataflow").click()
    interval = console.get_by_label("Interval")
    expect(interval).to_have_attribute("aria-invalid", "true")
    expect(console.locator('[data-step="schedule"] .field-error')).to_contain_text("15")
    before = console_api.get(f"{FS}/sourceConnections?limit=1000").json()["items"]
    assert not [s for s in before if s["name"] == flow_name]  # the refused Save left nothing behind
    console.get_by_label("On demand only").check()
    console.get_by_role("button", name="Next").click()
    tall_screenshot(console, "flow-wizard-review", most=1000)
    console.get_by_role("button", name="Save dataflow").click()

    console.wait_for_url(re.compile(r"/console/flows/[0-9a-f-]{36}$"))
    flow = console.url.rsplit("/", 1)[1]
    expect(console.locator("#main h1")).to_have_text(flow_name)
    run = run_flow(console, console_api, flow)
    assert run["state"] == "success", run
    dataset = target_dataset(console_api, flow)
    got = sorted(
        (r["_id"], r["person"]["name"]["firstName"], r["personalEmail"]["address"])
        for r in rows(console_api, dataset)
    )
    assert got == [("1", "Ada", "ada@example.com"), ("2", "Grace", "grace@example.com")]
    datasets = console_api.get(f"{CAT}/dataSets?limit=1000").json()
    assert datasets[dataset]["name"] == dataset_name

    # The README's activation, in the console too: a destination on a sink, the dataset activated to it.
    with SinkFake() as sink:
        destination = unique("Welcome emails")
        console.goto("/console/destinations/new")
        console.get_by_role("textbox", name="Name", exact=True).fill(destination)
        console.get_by_role("button", name="Next").click()
        console.get_by_label("None").check()
        console.get_by_role("button", name="Next").click()
        console.get_by_label("Request URL").fill(sink.url + "/emails/${email}")
        console.get_by_label("Request", exact=True).fill(
            '{"to": "${email}", "template": "welcome", "ref": "${id}"}'
        )
        console.get_by_role("button", name="Next").click()
        console.get_by_role("button", name="Save").click()
        console.wait_for_url(re.compile(r"/console/destinations/[0-9a-f-]{36}"))

        console.goto("/console/activations")
        console.get_by_role("link", name="Create activation").click()
        expect(console.locator("#act-wizard")).to_have_attribute("data-ready", "true")
        console.get_by_label("The rows added to a dataset, at each run").check()
        activation = unique("Welcome the contacts")
        console.get_by_role("textbox", name="Name", exact=True).fill(activation)
        console.get_by_role("combobox", name="Dataset", exact=True).select_option(label=dataset_name)
        console.get_by_role("button", name="Next").click()
        console.get_by_role("combobox", name="Destination", exact=True).select_option(label=destination)
        expect(console.get_by_label("A request of this destination")).to_be_checked()
        console.get_by_role("button", name="Next").click()
        console.get_by_label("${email}", exact=True).fill("personalEmail.address")
        console.get_by_label("${id}", exact=True).fill("_id")
        console.get_by_role("button", name="Next").click()
        console.get_by_role("button", name="Save").click()
        console.wait_for_url(re.compile(r"/console/activations/[0-9a-f-]{36}\?created=1$"))
        console.get_by_role("button", name="Run now").click()
        got = sink.wait_for(2, timeout=30, path="/emails/")
    assert sorted(r.json()["to"] for r in got) == ["ada@example.com", "grace@example.com"]
    assert sorted(r.json()["ref"] for r in got) == ["1", "2"]
    assert {r.json()["template"] for r in got} == {"welcome"}
    assert problems == []


def test_the_first_next_waits_for_the_accounts(console: Any) -> None:
    """Next is disabled while the accounts are listed (held back here as a slow server would): a click
    on it meanwhile once did nothing. Then it says what is missing."""
    problems = watch_page(console)
    next_button = console.get_by_role("button", name="Next")
    with held_back(console, re.compile(r"/flowservice/connections\?limit=100")) as accounts:
        console.goto("/console/flows/new")
        wait_until(accounts.asked, timeout=15)
        expect(next_button).to_be_disabled()
    expect(next_button).to_be_enabled()
    next_button.click()
    expect(console.locator("[data-pick] .field-error")).to_have_text("Choose the account to read from.")
    assert problems == []


def test_the_salesforce_flow_built_in_the_console(
    console: Any,
    console_api: ApiClient,
    salesforce: SalesforceFake,  # noqa: F811 (the imported fixture)
    worker: None,
) -> None:
    problems = watch_page(console)

    def authenticate(page: Any) -> None:
        page.get_by_label("Authentication type").select_option("Basic Authentication")
        fill_auth(page, salesforce.soap_auth())

    account = new_account(console, "Salesforce", unique("Local Salesforce"), authenticate)
    console.goto("/console/flows")
    console.get_by_role("link", name="Create dataflow").click()
    console.wait_for_url("**/console/flows/new")
    console.get_by_label("Account", exact=True).select_option(account)
    console.get_by_role("button", name="Next").click()

    expect(console.locator('#fw-objects option[value="Person"]')).to_have_count(1)
    console.get_by_label("Object or file").fill("Person")
    console.get_by_role("button", name="Preview").click()
    expect(console.get_by_role("table", name="Preview of Person")).to_contain_text("Ada0")
    console.get_by_role("button", name="Next").click()

    new_dataset_with_new_schema(console, unique("People"), unique("People from Salesforce"))
    console.get_by_role("button", name="Next").click()
    expect(console.locator("[data-mapping] [data-ready]")).to_have_attribute("data-ready", "true")
    count = console.locator("[data-mapping] [data-role=source]").count()
    sources = [console.get_by_label(f"Source of mapping {n}").input_value() for n in range(1, count + 1)]
    assert sources[0] == "Id" and "first_name" in sources and "email" in sources
    for n, source in enumerate(sources, start=1):
        destination = {
            "Id": "_id",
            "first_name": "person.name.firstName",
            "last_name": "person.name.lastName",
            "email": "personalEmail.address",
        }.get(source, "")
        mapping_row(console, n, destination)
    console.get_by_role("button", name="Next").click()
    expect(console.get_by_label("Delta column")).to_have_value("LastModifiedDate")  # picked for you
    console.get_by_role("button", name="Next").click()
    console.get_by_label("Dataflow name").fill(unique("People from Salesforce"))
    console.get_by_role("button", name="Save dataflow").click()
    console.wait_for_url(re.compile(r"/console/flows/[0-9a-f-]{36}$"))
    flow = console.url.rsplit("/", 1)[1]

    run = run_flow(console, console_api, flow)
    assert run["state"] == "success", run
    people = rows(console_api, target_dataset(console_api, flow))
    assert sorted(p["person"]["name"]["firstName"] for p in people) == sorted(f"Ada{i}" for i in range(12))
    assert all(p["_id"] for p in people)
    assert problems == []


def test_a_streaming_flow_shows_its_inlet_and_lands_what_is_sent(
    console: Any, console_api: ApiClient, console_server: LiveServer
) -> None:
    import httpx

    problems = watch_page(console)
    name = unique("Web events")
    created = console_api.post(
        f"{FS}/connections",
        json={
            "name": name,
            "connectionSpec": {"id": "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb", "version": "1.0"},
            "auth": {
                "specName": "Streaming Connection",
                "params": {"name": name, "sourceId": "web", "dataType": "xdm"},
            },
        },
    )
    assert created.status_code == 201, created.text
    account = created.json()["id"]
    console.goto(f"/console/flows/new?connection={account}")
    steps = console.locator("ol.steps li")
    expect(steps).to_have_text(["Dataset", "Mapping", "Review"])  # nothing to select, nothing to schedule
    new_dataset_with_new_schema(console, unique("Web"), unique("Web visitors"))
    console.get_by_role("button", name="Next").click()
    expect(console.get_by_label("Messages are already in the schema's shape (no mapping)")).to_be_checked()
    console.get_by_role("button", name="Next").click()
    console.get_by_role("button", name="Save dataflow").click()

    inlet = console.get_by_role("textbox", name="Inlet URL")
    expect(inlet).to_be_visible()
    console.wait_for_url(re.compile(r"/console/flows/[0-9a-f-]{36}$"))  # the URL is the saved flow's
    flow = console.url.rsplit("/", 1)[1]
    expect(console.get_by_role("button", name="Copy the inlet URL")).to_be_visible()
    url = inlet.input_value()
    console.reload()  # the flow's page, which shows the inlet too
    expect(console.locator("#main h1")).not_to_have_text("Create dataflow")
    expect(console.locator("code", has_text=url)).to_be_visible()
    stored = console_api.get(f"{FS}/connections/{account}").json()["items"][0]
    assert url == stored["auth"]["params"]["inletUrl"]
    message = {"_id": "web-1", "personalEmail": {"address": "lin@example.com"}}
    with streaming(console_server, console_api):
        sent = httpx.post(url, json={"header": {"flowId": flow}, "body": {"xdmEntity": message}})
        assert sent.status_code == 200, sent.text
        dataset = target_dataset(console_api, flow)
        landed = wait_until(lambda: rows(console_api, dataset), timeout=30, interval=0.2)
    assert [(r["_id"], r["personalEmail"]["address"]) for r in landed] == [("web-1", "lin@example.com")]
    assert problems == []
