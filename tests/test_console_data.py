"""Schemas, datasets and mapping sets in the console (Debian's Chromium through Playwright): the resolved
field tree with an identity, a dataset's batches and sample rows, and the mapping editor with a
validation error next to its row and a preview on sample rows (typed, and taken from a source)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from headwater.runtime.worker import Worker
from tests.flows_helpers import CONV, SR
from tests.support import ApiClient, LiveServer, held_back, wait_until
from tests.test_console_flows import (
    THREE_ROWS,
    file_pipeline,
    profile_schema,
    run_to_the_end,
    running_worker,
    tall_screenshot,
    unique,
    watch,
)

expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture(scope="module")
def data_worker(console_server: LiveServer) -> Iterator[Worker]:
    with running_worker(console_server) as runner:
        yield runner


def test_schema_tree_shows_resolved_fields_and_identities(console: Any, console_api: ApiClient) -> None:
    title = unique("Loyal people")
    schema = profile_schema(console_api, title)
    descriptor = console_api.post(
        f"{SR}/tenant/descriptors",
        json={
            "@type": "xdm:descriptorIdentity",
            "xdm:sourceSchema": schema["$id"],
            "xdm:sourceVersion": 1,
            "xdm:sourceProperty": "/personalEmail/address",
            "xdm:namespace": "Email",
            "xdm:property": "xdm:code",
            "xdm:isPrimary": True,
        },
    )
    assert descriptor.status_code == 201, descriptor.text
    problems = watch(console)
    console.goto("/console/schemas")
    console.get_by_label("Search").fill(title)
    console.get_by_role("link", name=title).click()
    expect(console.locator("#main h1")).to_have_text(title)
    email = console.locator('li[data-field="personalEmail.address"]')
    expect(email).to_be_visible()
    expect(email).to_contain_text("string")
    expect(email.locator(".badge.identity")).to_have_text("Identity: Email · primary")
    expect(console.locator('li[data-field="person.name.firstName"] > .field-label')).to_contain_text(
        "First name"
    )
    tall_screenshot(console, "schemas", most=1100)

    console.get_by_label("Filter fields").fill("firstname")
    expect(console.locator('li[data-field="person.name.firstName"]')).to_be_visible()
    expect(email).to_be_hidden()
    expect(console.locator("[data-count]")).to_contain_text("1 of ")
    assert problems == []


def test_a_dataset_shows_its_schema_batches_and_sample_rows(
    console: Any, console_api: ApiClient, data_worker: Worker, tmp_path: Path
) -> None:
    ids = file_pipeline(console_api, tmp_path, THREE_ROWS)
    assert run_to_the_end(console_api, ids["flow"])["state"] == "partialSuccess"
    problems = watch(console)
    console.goto("/console/datasets")
    console.get_by_label("Search").fill(ids["name"])
    row = console.locator("tbody tr", has=console.get_by_role("link", name=f"{ids['name']} data"))
    expect(row).to_contain_text(f"{ids['name']} profile")
    row.get_by_role("link", name=f"{ids['name']} data").click()

    expect(console.locator("#main h1")).to_have_text(f"{ids['name']} data")
    expect(
        console.locator("[data-facts]").get_by_role("link", name=f"{ids['name']} profile")
    ).to_have_attribute("href", "/console/schemas/" + quote(ids["schemaAltId"], safe=""))
    batch = console.locator("[data-batches] tbody tr").first
    expect(batch.locator(".badge")).to_have_text("success")
    cells = batch.locator("td")
    assert [cells.nth(i).inner_text() for i in (3, 4, 5)] == ["3", "2", "1"]
    expect(cells.nth(6)).to_contain_text("A value does not match the schema (1 row)")
    rows = console.locator("[data-rows] table")
    expect(rows.locator("thead")).to_contain_text("person.name.firstName")
    expect(rows.locator("tbody tr")).to_have_count(2)
    expect(rows.locator("tbody")).to_contain_text("First3")
    expect(rows.locator("tbody")).to_contain_text("person1@example.com")
    expect(rows.locator("thead th", has_text="person.name.firstName")).to_contain_text("string")  # XDM type
    assert "timestamp[" not in console.locator("#main").inner_text()
    tall_screenshot(console, "datasets")
    assert problems == []


def test_mapping_editor_validates_next_to_the_row_and_previews_rows(
    console: Any, console_api: ApiClient, tmp_path: Path
) -> None:
    ids = file_pipeline(console_api, tmp_path, THREE_ROWS)  # a schema, and a source to take rows from
    title = f"{ids['name']} profile"
    name = unique("Contacts to people")
    problems = watch(console)
    console.goto("/console/mappings")
    console.get_by_role("link", name="New mapping set").click()
    console.wait_for_url("**/console/mappings/new")
    console.get_by_label("Name", exact=True).fill(name)
    console.get_by_label("Output schema").select_option(label=title)
    console.get_by_label("Source of mapping 1").fill("id")
    console.get_by_label("Destination field of mapping 1").fill("_id")
    console.get_by_role("button", name="Add mapping").click()
    expect(console.get_by_label("Source of mapping 2")).to_be_focused()
    console.get_by_label("Source type of mapping 2").select_option("EXPRESSION")
    console.get_by_label("Source of mapping 2").fill("upper(first_name)")
    console.get_by_label("Destination field of mapping 2").fill("person.name.firstName")
    console.get_by_role("button", name="Add mapping").click()
    console.get_by_label("Source of mapping 3").fill("email")
    console.get_by_label("Destination field of mapping 3").fill("personalEmail.adress")
    console.get_by_role("button", name="Save").click()

    # The API's error (mappings[2].destination) is shown next to that row's destination field.
    third = console.locator("[data-rows] tr").nth(2)
    expect(third.locator(".field-error")).to_contain_text("'personalEmail.adress' is not a field of schema")
    expect(console.get_by_label("Destination field of mapping 3")).to_have_attribute("aria-invalid", "true")
    expect(console.locator("[data-rows] tr").nth(0).locator(".field-error")).to_have_count(0)
    assert console.url.endswith("/console/mappings/new")  # nothing was saved

    console.get_by_label("Destination field of mapping 3").fill("personalEmail.address")
    console.get_by_role("button", name="Save").click()
    expect(console.locator("[data-version]")).to_contain_text("Version 0")
    mapping_id = console.url.rsplit("/", 1)[1]
    saved = console_api.get(f"{CONV}/mappingSets/{mapping_id}").json()
    assert saved["name"] == name
    assert [(m["sourceType"], m["source"], m["destination"]) for m in saved["mappings"]] == [
        ("text/x.schema-path", "id", "_id"),
        ("EXPRESSION", "upper(first_name)", "person.name.firstName"),
        ("text/x.schema-path", "email", "personalEmail.address"),
    ]
    # Loaded again, the answer's text/x.schema-path rows show as Column rows.
    console.reload()
    expect(console.get_by_label("Source type of mapping 1")).to_have_value("ATTRIBUTE")
    expect(console.get_by_label("Source type of mapping 1").locator("option:checked")).to_have_text("Column")
    expect(console.get_by_label("Source type of mapping 2")).to_have_value("EXPRESSION")
    expect(console.get_by_label("Source of mapping 3")).to_have_value("email")

    # A preview on typed rows: one maps, one fails with its reason.
    sample = [
        {"id": "7", "first_name": "ada", "email": "ada@example.com"},
        {"id": "8", "first_name": "bob", "email": "not-an-email"},
    ]
    console.get_by_label("Sample rows (a JSON array of objects)").fill(json.dumps(sample))
    console.get_by_role("button", name="Preview").click()
    result = console.locator("[data-preview-result]")
    expect(result).to_contain_text("1 of 2 rows mapped; 1 failed")
    first, second = result.locator("tbody tr").nth(0), result.locator("tbody tr").nth(1)
    # A table: a column per destination field, a row per sample row.
    headers = result.locator("thead th")
    expect(headers).to_have_text(["Row", "_id", "person.name.firstName", "personalEmail.address"])
    expect(first.locator("td")).to_have_text(["1", "7", "ADA", "ada@example.com"])
    expect(second.locator(".field-error")).to_have_text(
        "personalEmail.address: 'not-an-email' is not a valid email address"
    )

    # Rows taken from a source (the CSV file of the pipeline), previewed with an unsaved edit.
    console.get_by_label("Take rows from a source").select_option(label=f"{ids['name']} file")
    console.get_by_role("button", name="Load rows").click()
    rows_input = console.get_by_label("Sample rows (a JSON array of objects)")
    expect(rows_input).to_have_value(re.compile("person1@example.com"))
    loaded = json.loads(rows_input.input_value())
    assert [r["email"] for r in loaded] == [r["email"] for r in THREE_ROWS]
    # The source's columns are offered as sources of Attribute rows.
    source_list = console.get_by_label("Source of mapping 1").get_attribute("list")
    offered = console.locator(f"datalist#{source_list} option")
    assert {"id", "first_name", "email", "updatedAt"} <= set(
        offered.evaluate_all("os => os.map(o => o.value)")
    )
    console.get_by_role("button", name="Remove mapping 2").click()
    console.get_by_role("button", name="Preview").click()
    expect(result).to_contain_text("2 of 3 rows mapped; 1 failed")
    expect(headers).to_have_text(["Row", "_id", "personalEmail.address"])
    expect(result.locator("tbody tr").nth(0).locator("td").nth(2)).to_have_text("person1@example.com")
    tall_screenshot(console, "mappings")

    # A preview error about the mappings also lands next to the row.
    console.get_by_label("Destination field of mapping 1").fill("no.such.field")
    console.get_by_role("button", name="Preview").click()
    expect(console.locator("[data-rows] tr").nth(0).locator(".field-error")).to_contain_text(
        "'no.such.field' is not a field of schema"
    )

    console.goto("/console/mappings")
    listed = console.locator("tbody tr", has=console.get_by_role("link", name=name))
    expect(listed).to_contain_text(title)
    expect(listed.locator("td").nth(2)).to_have_text("3")
    assert problems == []


def test_the_mapping_forms_work_while_the_editor_still_loads(console: Any) -> None:
    """Save and Preview are on the page before the schemas are read (held back here as a slow server
    would): Enter in the name, or Preview, meanwhile once submitted the forms natively, reloading the
    page and losing what was typed. They are done once the editor is there."""
    problems = watch(console)
    with held_back(console, re.compile(r"/schemaregistry/tenant/schemas\?limit=1000")) as schemas:
        console.goto("/console/mappings/new")
        wait_until(schemas.asked, timeout=15)
        console.evaluate("window.sameDocument = true")
        name = console.get_by_label("Name", exact=True)
        name.fill("Typed while it loads")
        name.press("Enter")
        console.get_by_role("button", name="Preview").click()
        schemas.release()
        # No schema chosen: the API's refusals, next to the schema and under the preview.
        expect(console.locator(".field:has(#m-schema) + .field-error")).to_contain_text("is required")
        expect(console.locator("[data-preview-result]")).to_contain_text("Fix the mappings above")
    assert console.evaluate("window.sameDocument") is True
    assert console.url.endswith("/console/mappings/new")
    expect(name).to_have_value("Typed while it loads")
    assert problems == []


def test_a_search_typed_while_the_schemas_load_filters_them(console: Any, console_api: ApiClient) -> None:
    """The search box is on the page before the list: what is typed while the schemas are read (held
    back here as a slow server would) once left the list unfiltered, the box showing the words."""
    wanted = profile_schema(console_api, unique("Findable"))
    profile_schema(console_api, unique("Other"))
    problems = watch(console)
    with held_back(console, re.compile(r"/schemaregistry/tenant/schemas\?limit=1000")) as schemas:
        console.goto("/console/schemas")
        wait_until(schemas.asked, timeout=15)
        console.get_by_label("Search", exact=True).fill(wanted["title"])
    shown = console.locator("[data-list] tbody tr:visible")
    expect(shown).to_have_count(1)
    expect(shown).to_contain_text(wanted["title"])
    assert problems == []


def test_schema_pages_accept_the_schema_id_too(console: Any, console_api: ApiClient) -> None:
    schema = profile_schema(console_api, unique("By id"))
    problems = watch(console)
    console.goto("/console/schemas/" + quote(schema["$id"], safe=""))
    expect(console.locator("#main h1")).to_have_text(schema["title"])
    expect(console.locator('li[data-field="_id"]')).to_be_visible()
    assert problems == []


def test_saving_a_mapping_set_keeps_its_identity_settings(console: Any, console_api: ApiClient) -> None:
    """The editor does not change a mapping's identity settings: saving an edit of another row keeps them."""
    schema = profile_schema(console_api, unique("Identities kept"))
    created = console_api.post(
        f"{CONV}/mappingSets",
        json={
            "name": unique("With an identity"),
            "xdmSchema": schema["$id"],
            "mappings": [
                {
                    "source": "email",
                    "destination": "personalEmail.address",
                    "identity": True,
                    "primaryIdentity": True,
                    "namespaceCode": "Email",
                },
                {"source": "id", "destination": "_id"},
            ],
        },
    )
    assert created.status_code == 201, created.text
    ident = created.json()["id"]
    problems = watch(console)
    console.goto(f"/console/mappings/{ident}")
    expect(console.locator("[data-rows] tr").first.locator(".badge.identity")).to_have_text("Email")
    console.get_by_label("Source of mapping 2").fill("customer_id")
    console.get_by_role("button", name="Save").click()
    expect(console.locator("[data-version]")).to_contain_text("Version 1")
    saved = console_api.get(f"{CONV}/mappingSets/{ident}").json()["mappings"]
    assert [m["source"] for m in saved] == ["email", "customer_id"]
    assert (saved[0]["identity"], saved[0]["primaryIdentity"], saved[0]["namespaceCode"]) == (
        True,
        True,
        "Email",
    )
    assert problems == []
