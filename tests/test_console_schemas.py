"""Building schemas and datasets in the console (Debian's Chromium through Playwright): a Profile schema
from a class, field groups, a custom field and a primary identity; a field added later (only added: a
field that exists is refused in words); datasets on an existing schema (enabled for Profile) and on a
schema built inline. Every result is checked through the public API, as any client sees it."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from tests.flows_helpers import SR
from tests.support import ApiClient, unique, watch_page
from tests.test_console_flows import tall_screenshot

expect = pytest.importorskip("playwright.sync_api").expect

CATALOG = "/data/foundation/catalog"
PROFILE = "https://ns.adobe.com/xdm/context/profile"
PERSON = "https://ns.adobe.com/xdm/context/profile-person-details"
PERSONAL = "https://ns.adobe.com/xdm/context/profile-personal-details"
EVENT = "https://ns.adobe.com/xdm/context/experienceevent"
XED = {"Accept": "application/vnd.adobe.xed+json; version=1"}
FULL = {"Accept": "application/vnd.adobe.xed-full+json; version=1"}


def enc(ident: str) -> str:
    return quote(ident, safe="")


def schema_titled(api: ApiClient, title: str) -> dict[str, Any]:
    found = [
        s
        for s in api.get(f"{SR}/tenant/schemas?limit=1000", headers=XED).json()["results"]
        if s["title"] == title
    ]
    assert len(found) == 1, found
    return dict(found[0])


def dataset_named(api: ApiClient, name: str) -> tuple[str, dict[str, Any]]:
    found = [(k, d) for k, d in api.get(f"{CATALOG}/dataSets?limit=1000").json().items() if d["name"] == name]
    assert len(found) == 1, found
    return found[0]


def test_stats_names_the_tenant_the_console_builds_field_groups_under(console_api: ApiClient) -> None:
    body = console_api.get(f"{SR}/stats").json()
    assert body["tenantId"] == console_api.tenant_id and body["imsOrg"] == console_api.org_id
    assert set(body["counts"]) >= {"schemas", "mixins", "classes"}


def test_build_a_profile_schema_extend_it_and_make_datasets(console: Any, console_api: ApiClient) -> None:
    tenant = "_" + console_api.tenant_id
    title = unique("Loyalty members")
    problems = watch_page(console)

    # --- a schema from a class, two field groups, a custom field and a primary identity ---
    console.goto("/console/schemas")
    console.get_by_role("link", name="Create schema").click()
    console.wait_for_url("**/console/schemas/new")
    expect(console.locator("[data-schema-builder]")).to_have_attribute("data-ready", "true")
    console.get_by_role("button", name="Save schema").click()
    title_error = console.locator(".field-error", has_text="Give the schema a title.")
    expect(title_error).to_be_visible()
    expect(console.get_by_label("Schema title")).to_have_attribute("aria-invalid", "true")

    console.get_by_label("Schema title").fill(title)
    console.get_by_label("Schema description").fill("Members of the loyalty programme")
    console.get_by_label("Class").select_option(label="XDM Individual Profile")
    console.get_by_label("Demographic Details").check()
    console.get_by_label("Personal Contact Details").check()
    expect(console.get_by_label("Web Details")).to_have_count(0)  # an ExperienceEvent field group
    console.get_by_label("Enable for Profile").check()
    console.get_by_role("button", name="Add field").click()
    console.get_by_label("Field name 1").fill("loyalty id")
    console.get_by_role("button", name="Add identity").click()
    console.get_by_label("Identity field 1").select_option("personalEmail.address")
    console.get_by_label("Identity namespace 1").select_option("Email")
    expect(console.get_by_label("Primary identity 1")).to_be_checked()
    console.get_by_role("button", name="Save schema").click()
    expect(console.locator(".field-error", has_text="letters, digits and _")).to_be_visible()
    console.get_by_label("Field name 1").fill("loyaltyId")
    tall_screenshot(console, "schema-editor", most=1500)
    console.get_by_role("button", name="Save schema").click()
    console.wait_for_url(re.compile(r"/console/schemas/_[a-z0-9]+\.schemas\.[0-9a-f]{32}$"))
    expect(console.locator("#main h1")).to_have_text(title)

    schema = schema_titled(console_api, title)
    assert console.url.endswith("/console/schemas/" + enc(schema["meta:altId"]))
    assert schema["meta:class"] == PROFILE and schema["meta:immutableTags"] == ["union"]
    assert schema["description"] == "Members of the loyalty programme"
    refs = [r["$ref"] for r in schema["allOf"]]
    assert refs[:3] == [PROFILE, PERSON, PERSONAL] and len(refs) == 4
    group = console_api.get(f"{SR}/tenant/fieldgroups/{enc(refs[3])}", headers=XED).json()
    assert group["meta:intendedToExtend"] == [PROFILE]
    fields = next(iter(group["definitions"].values()))["properties"][tenant]["properties"]
    assert fields["loyaltyId"]["type"] == "string"
    descriptors = [
        d
        for d in console_api.get(f"{SR}/tenant/descriptors?limit=1000").json()["results"]
        if d["xdm:sourceSchema"] == schema["$id"]
    ]
    assert [(d["xdm:sourceProperty"], d["xdm:namespace"], d["xdm:isPrimary"]) for d in descriptors] == [
        ("/personalEmail/address", "Email", True)
    ]
    email = console.locator('li[data-field="personalEmail.address"]')
    expect(email.locator(".badge.identity")).to_have_text("Identity: Email · primary")
    expect(console.locator(f'li[data-field="{tenant}.loyaltyId"]')).to_be_visible()

    # --- a field added later; one that exists is refused in words ---
    console.get_by_label("New field name").fill("loyaltyId")
    console.get_by_role("button", name="Add field").click()
    expect(console.locator("[data-add-field] .field-error")).to_contain_text(
        "fields can be added, not changed"
    )
    console.get_by_label("New field name").fill("points")
    console.get_by_label("New field type").select_option(label="Integer")
    console.get_by_role("button", name="Add field").click()
    expect(console.locator(f'li[data-field="{tenant}.points"]')).to_contain_text("long")
    resolved = console_api.get(f"{SR}/tenant/schemas/{enc(schema['$id'])}", headers=FULL).json()
    assert resolved["properties"][tenant]["properties"]["points"]["type"] == "integer"
    assert resolved["properties"][tenant]["properties"]["loyaltyId"]["type"] == "string"
    # ...and a second identity, marked on the schema's page
    console.get_by_label("Identity field", exact=True).select_option(f"{tenant}.loyaltyId")
    console.get_by_label("Identity namespace", exact=True).select_option("CRMID")
    primary = console.get_by_label("Primary identity", exact=True)
    expect(primary).not_to_be_checked()
    primary.check()  # a second primary identity: refused by the API, in words next to the box
    console.get_by_role("button", name="Mark as identity").click()
    expect(console.locator("[data-add-identity] .field-error")).to_contain_text("at most one")
    expect(primary).to_have_attribute("aria-invalid", "true")
    primary.uncheck()
    console.get_by_role("button", name="Mark as identity").click()
    expect(console.locator(f'li[data-field="{tenant}.loyaltyId"] .badge.identity')).to_have_text(
        "Identity: CRMID"
    )

    # --- a dataset on that schema, enabled for Profile ---
    name = unique("Loyalty members data")
    console.goto("/console/datasets")
    console.get_by_role("link", name="Create dataset").click()
    console.wait_for_url("**/console/datasets/new")
    expect(console.locator("[data-dataset-target]")).to_have_attribute("data-ready", "true")
    console.get_by_label("Dataset name").fill(name)
    console.get_by_label("Dataset description").fill("From the loyalty system")
    console.get_by_label("Dataset schema").select_option(
        label=f"{title} (XDM Individual Profile, enabled for Profile)"
    )
    console.get_by_label("Enable the dataset for Profile").check()
    tall_screenshot(console, "dataset-create")
    console.get_by_role("button", name="Save dataset").click()
    console.wait_for_url(re.compile(r"/console/datasets/[0-9a-f]+$"))
    expect(console.locator("#main h1")).to_have_text(name)
    ident, dataset = dataset_named(console_api, name)
    assert console.url.endswith("/console/datasets/" + ident)
    assert dataset["schemaRef"]["id"] == schema["$id"] and dataset["description"] == "From the loyalty system"
    assert dataset["tags"]["unifiedProfile"] == ["enabled:true"]

    # --- a dataset whose schema is built inline ---
    name = unique("Clicks")
    event_title = unique("Clicks")
    console.goto("/console/datasets/new")
    expect(console.locator("[data-dataset-target]")).to_have_attribute("data-ready", "true")
    console.get_by_label("Dataset name").fill(name)
    console.get_by_label("Build a new schema").check()
    expect(console.locator("[data-schema-builder]")).to_have_attribute("data-ready", "true")
    console.get_by_label("Schema title").fill(event_title)
    console.get_by_label("Class").select_option(label="XDM ExperienceEvent")
    console.get_by_label("Web Details").check()
    console.get_by_role("button", name="Add field").click()
    console.get_by_label("Field name 1").fill("clickCount")
    console.get_by_label("Field type 1").select_option(label="Integer")
    expect(console.get_by_label("Enable the dataset for Profile")).to_be_hidden()
    console.get_by_role("button", name="Save dataset").click()
    console.wait_for_url(re.compile(r"/console/datasets/[0-9a-f]+$"))
    ident, dataset = dataset_named(console_api, name)
    built = schema_titled(console_api, event_title)
    assert dataset["schemaRef"]["id"] == built["$id"] and "unifiedProfile" not in (dataset.get("tags") or {})
    assert built["meta:class"] == EVENT
    resolved = console_api.get(f"{SR}/tenant/schemas/{enc(built['$id'])}", headers=FULL).json()
    assert resolved["properties"][tenant]["properties"]["clickCount"]["type"] == "integer"
    assert problems == []


def test_the_wizard_components_mount_in_any_page_and_save_through_the_api(
    console: Any, console_api: ApiClient
) -> None:
    """HWDatasetTarget (with HWSchemaBuilder inside) as a dataflow wizard's step uses them: mounted twice
    on one page, offered source columns, driven by validate() / describe() / save()."""
    tenant = "_" + console_api.tenant_id
    name, title = unique("Signups"), unique("Signups")
    clash = console_api.post(
        f"{SR}/tenant/fieldgroups",
        json={
            "title": unique("Emails as numbers"),
            "meta:intendedToExtend": [PROFILE],
            "definitions": {
                "n": {
                    "properties": {tenant: {"type": "object", "properties": {"email": {"type": "integer"}}}}
                }
            },
            "allOf": [{"$ref": "#/definitions/n"}],
        },
    ).json()
    problems = watch_page(console)
    console.goto("/console/datasets")
    for script in ("schema-builder.js", "dataset-target.js"):
        console.add_script_tag(url=f"/console/static/{script}")
    mount = """(id) => {
      const box = document.createElement("div");
      box.id = id;
      document.querySelector("#main").append(box);
      const columns = [{name: "email", type: "string"}, {name: "visits", type: "int64"},
                       {name: "signed up", type: "timestamp"}];
      window[id] = HWDatasetTarget.mount(box, {columns});
      return window[id].ready;
    }"""
    console.evaluate(mount, "first")
    assert console.evaluate("first.validate()") == "Choose the dataset to write to."
    step = console.locator("#first")
    step.get_by_label("New dataset").check()
    step.get_by_label("Dataset name").fill(name)
    step.get_by_label("Build a new schema").check()
    expect(step.locator("[data-schema-builder]")).to_have_attribute("data-ready", "true")
    assert console.evaluate("first.validate()") == "Give the schema a title."
    step.get_by_label("Schema title").fill(title)
    step.get_by_label("Class").select_option(label="XDM Individual Profile")
    step.get_by_role("button", name="Add all columns").click()
    expect(step.get_by_label("Field name 3")).to_have_value("signed_up")
    expect(step.get_by_label("Field type 2")).to_have_value("integer")
    expect(step.get_by_label("Field type 3")).to_have_value("date-time")
    expect(step.get_by_role("button", name="Add column email as a field")).to_be_disabled()
    step.get_by_role("button", name="Add identity").click()
    step.get_by_label("Identity field 1").select_option(f"{tenant}.email")
    step.get_by_label("Identity namespace 1").select_option("Email")
    assert console.evaluate("first.describe()") == f"New dataset “{name}” with a new schema “{title}”"

    # a field group of the sandbox whose email is a number clashes with the custom text field email:
    # refused next to the field, and the field group made for the schema is deleted again
    groups = len(console_api.get(f"{SR}/tenant/fieldgroups?limit=1000").json()["results"])
    step.get_by_label(f"{clash['title']} (this sandbox)").check()
    refused = console.evaluate("first.save()")
    assert refused["ok"] is False and refused["problem"]["status"] == 400, refused
    expect(step.get_by_label("Field name 1")).to_have_attribute("aria-invalid", "true")
    expect(step.locator(".field-error").first).to_contain_text("integer")
    assert len(console_api.get(f"{SR}/tenant/fieldgroups?limit=1000").json()["results"]) == groups
    step.get_by_label(f"{clash['title']} (this sandbox)").uncheck()

    result = console.evaluate("first.save()")
    assert result["ok"] is True and result["schemaTitle"] == title, result
    assert console.evaluate("first.save()") == result  # saved once: the same answer again
    dataset = console_api.get(f"{CATALOG}/dataSets/{result['datasetId']}").json()[result["datasetId"]]
    assert dataset["name"] == name and dataset["schemaRef"]["id"] == result["schemaId"]
    resolved = console_api.get(f"{SR}/tenant/schemas/{enc(result['schemaId'])}", headers=FULL).json()
    custom = resolved["properties"][tenant]["properties"]
    assert (custom["visits"]["type"], custom["signed_up"]["format"]) == ("integer", "date-time")
    descriptors = console_api.get(f"{SR}/tenant/descriptors?limit=1000").json()["results"]
    assert [
        (d["xdm:sourceProperty"], d["xdm:isPrimary"])
        for d in descriptors
        if d["xdm:sourceSchema"] == result["schemaId"]
    ] == [(f"/{tenant}/email", True)]

    # a second step on the same page: the existing dataset just answers its ids
    console.evaluate(mount, "second")
    second = console.locator("#second")
    second.get_by_label("Choose a dataset").select_option(result["datasetId"])
    expect(second.locator(".help", has_text="Schema: ")).to_have_text(f"Schema: {title}")
    assert console.evaluate("second.describe()") == f"Existing dataset “{name}” (schema “{title}”)"
    assert console.evaluate("second.save()") == result
    assert problems == []
