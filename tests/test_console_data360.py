"""Data 360 setup in the console (document 000), in a real browser: an external client app created with a
certificate upload and its consumer key shown; a server-to-server connector with a schema upload, its
preview, a refused (non-additive) schema update with the API's errors shown, an additive update, View Full
Schema and the Source ID; and data streams deployed through the New wizard.

Everything the pages do goes through the public API; the checks compare what the page shows with what the
API answers (``console_api``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from headwater.services.data360.keys import generate
from tests.conftest import CONSOLE_USER, screenshot
from tests.support import ApiClient, held_back, unique, wait_until, watch_page
from tests.test_data360_connectors import acme_schema

watch = watch_page
APPS = "/data/core/identity/externalClientApps"
SSOT = "/services/data/v62.0/ssot"


def clipboard(page: Any) -> str:
    return str(page.evaluate("navigator.clipboard.readText()"))


def shot(page: Any, name: str) -> None:
    """A screenshot without the transient toast over it."""
    from playwright.sync_api import expect

    toast = page.locator("#toast")
    toast.evaluate("toast => toast.classList.remove('shown')")
    expect(toast).to_have_css("opacity", "0")
    screenshot(page, name)


def test_external_client_app_with_certificate_upload(
    console: Any, console_api: ApiClient, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    problems = watch(console)
    console.context.grant_permissions(["clipboard-read", "clipboard-write"])
    keys = generate(tmp_path / "keys")
    name = unique("Acme server-to-server")

    console.goto("/console/data360/apps")
    console.get_by_role("link", name="New external client app").click()
    console.wait_for_url("**/console/data360/apps/new")
    console.get_by_label("External client app name").fill(name)
    console.get_by_label("Contact email").fill("ops@acme.example")
    console.get_by_label("Callback URL").fill("https://acme.example/oauth/callback")
    console.get_by_label("Manage user data via APIs (api)").check()
    console.get_by_label("Perform requests at any time (refresh_token, offline_access)").check()
    console.get_by_label("Manage Data 360 Ingestion API data (cdp_ingest_api)").check()
    console.get_by_label("Enable JWT Bearer Flow").check()
    console.get_by_label("Require Proof Key for Code Exchange").uncheck()
    console.get_by_label("Enable Client Credentials Flow").check()
    console.get_by_label("Run As (username)").fill(CONSOLE_USER)
    console.get_by_label("Allow OAuth Username-Password Flow").check()
    console.get_by_label("Permitted users").select_option("All users may self-authorize")
    console.get_by_label("IP relaxation").select_option("Relax IP restrictions")

    # The JWT bearer flow without a certificate: the API's refusal, in words, next to the certificate.
    console.get_by_role("button", name="Create", exact=True).click()
    certificate = console.get_by_label("Certificate (PEM text)")
    expect(certificate).to_have_attribute("aria-invalid", "true")
    error = console.locator(".field:has(#app-cert) + .field-error")
    expect(error).to_have_text("The certificate is required when jwtBearerFlowEnabled is true")
    expect(certificate).to_be_focused()

    # The key pair file is not a certificate: said before anything is sent.
    console.get_by_label("Certificate file").set_input_files(str(keys.keypair))
    expect(error).to_contain_text("keypair.key is not a PEM certificate")
    console.get_by_label("Certificate file").set_input_files(str(keys.certificate))
    expect(certificate).to_have_value(keys.certificate.read_text())
    console.get_by_role("button", name="Create", exact=True).click()

    created = console.locator("#app-created")
    expect(created).to_be_visible()
    expect(created).to_be_focused()
    apps = console_api.get(APPS, params={"property": f"name=={name}"}).json()["items"]
    assert len(apps) == 1, apps
    app = apps[0]
    assert app["certificateInfo"]["subject"] == "CN=headwater"
    assert app["jwtBearerFlowEnabled"] is True and app["pkceRequired"] is False
    assert app["scopes"] == ["api", "refresh_token", "offline_access", "cdp_ingest_api"]
    assert app["clientCredentialsFlowEnabled"] is True and app["clientCredentialsUser"] == CONSOLE_USER
    assert app["usernamePasswordFlowEnabled"] is True
    assert app["permittedUsers"] == "All users may self-authorize"
    assert app["ipRelaxation"] == "Relax IP restrictions"
    assert console.url.endswith(f"/console/data360/apps/{app['id']}")  # the saved app's address
    expect(created.locator("dd", has_text=app["consumerKey"])).to_be_visible()
    expect(created).to_contain_text("Shown only now")
    created.get_by_role("button", name="Copy consumer key").click()
    assert clipboard(console) == app["consumerKey"]
    shot(console, "data360-apps")

    # The app's settings, and the Policies page's Edit.
    console.get_by_role("link", name="Open the app's settings").click()
    expect(console.locator("main h1")).to_have_text(name)
    settings = console.locator("#app-settings")
    expect(settings).to_contain_text("https://acme.example/oauth/callback")
    expect(settings).to_contain_text(app["consumerKey"])
    expect(settings).to_contain_text("CN=headwater")
    expect(settings).to_contain_text("Masked")
    expect(settings).to_contain_text(f"Client credentials flowEnabled, running as {CONSOLE_USER}")
    console.get_by_role("button", name="Edit").click()
    approved = console.get_by_role("group", name="Approved users")
    expect(approved).to_be_hidden()  # only with admin-approved users
    console.get_by_label("Permitted users").select_option("Admin approved users are pre-authorized")
    approved.get_by_label(CONSOLE_USER).check()
    console.get_by_label("IP relaxation").select_option("Enforce IP restrictions")
    console.get_by_role("button", name="Save").click()
    policies = console.locator("#app-policies-view")
    expect(policies).to_contain_text("Enforce IP restrictions")
    expect(policies).to_contain_text(f"Approved users{CONSOLE_USER}")
    saved = console_api.get(f"{APPS}/{app['id']}").json()["items"][0]
    assert saved["ipRelaxation"] == "Enforce IP restrictions" and saved["approvedUsers"] == [CONSOLE_USER]

    console.goto("/console/data360/apps")
    expect(console.get_by_role("link", name=name)).to_be_visible()
    assert problems == []


def test_a_new_app_is_created_with_its_certificate_while_the_users_still_load(
    console: Any, console_api: ApiClient, tmp_path: Path
) -> None:
    """The form is on the page while the approved-users list loads (held back here as a slow server
    would): a certificate file chosen meanwhile was not read, and Create submitted the form natively,
    the typed fields in the address. Both work now."""
    import re

    from playwright.sync_api import expect

    problems = watch(console)
    keys = generate(tmp_path / "keys")
    name = unique("Early bird")
    with held_back(console, re.compile(r"/data/core/identity/users$")) as users:
        console.goto("/console/data360/apps/new")
        wait_until(users.asked, timeout=15)
        console.get_by_label("External client app name").fill(name)
        console.get_by_label("Callback URL").fill("https://early.example/oauth/callback")
        console.get_by_label("Manage Data 360 Ingestion API data (cdp_ingest_api)").check()
        console.get_by_label("Enable JWT Bearer Flow").check()
        console.get_by_label("Permitted users").select_option("All users may self-authorize")
        console.get_by_label("Certificate file").set_input_files(str(keys.certificate))
        expect(console.get_by_label("Certificate (PEM text)")).to_have_value(keys.certificate.read_text())
        console.get_by_role("button", name="Create", exact=True).click()
        users.release()
        expect(console.locator("#app-created")).to_be_visible()
    [app] = console_api.get(APPS, params={"property": f"name=={name}"}).json()["items"]
    assert app["certificateInfo"]["subject"] == "CN=headwater"
    assert console.url.endswith(f"/console/data360/apps/{app['id']}")  # not ...apps/new?name=...
    assert problems == []


def test_connector_schema_upload_refused_update_and_data_streams(
    console: Any, console_api: ApiClient, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    problems = watch(console)
    console.context.grant_permissions(["clipboard-read", "clipboard-write"])
    label = unique("Acme Web Shop")
    schema = acme_schema()
    first = tmp_path / "acme_web_schema.json"
    first.write_text(json.dumps(schema, indent=2))

    # Web & Mobile SDK > New: the app name and the Server to Server type.
    console.goto("/console/data360/connectors")
    console.get_by_role("button", name="New connector").click()
    expect(console.get_by_label("App name")).to_be_focused()
    console.get_by_label("Connector type").select_option(label="Server to Server")
    console.get_by_label("App name").fill(label)
    console.get_by_role("button", name="Create connector").click()
    console.wait_for_url("**/console/data360/connectors/*")
    expect(console.locator("main h1")).to_have_text(label)
    connector_id = console.url.rsplit("/", 1)[1]
    connector = console_api.get(f"{SSOT}/connections/{connector_id}").json()

    # The system-generated Source ID, to copy.
    expect(console.locator("#source-id code")).to_have_text(connector["sourceId"])
    console.get_by_role("button", name="Copy Source ID").click()
    assert clipboard(console) == connector["sourceId"]

    # Upload Files: a preview of the events (category, fields, types, primary key, required), then save.
    console.get_by_label("Schema file (JSON)").set_input_files(str(first))
    preview = console.locator("#schema-candidate")
    cart = preview.locator("section.event-preview", has=console.locator("code", has_text="cartAdd"))
    expect(cart.locator("h3")).to_contain_text("Engagement")
    expect(cart).to_contain_text("primary key eventId")
    quantity = cart.locator("tr", has=console.locator("code", has_text="quantity"))
    expect(quantity.locator("td")).to_have_text(["Quantity", "quantity", "Number", "", "No"])
    product = cart.locator("tr", has=console.locator("code", has_text="productId"))
    expect(product.locator("td").nth(4)).to_have_text("Yes")
    identity = preview.locator("section.event-preview", has=console.locator("code", has_text="identity"))
    expect(identity.locator("h3")).to_contain_text("Profile")
    expect(identity).to_contain_text("primary key deviceId")
    assert console_api.get(f"{SSOT}/connections/{connector_id}/schema").status_code == 404  # not saved yet
    console.get_by_role("button", name="Save schema").click()
    expect(console.locator("#schema-status")).to_have_text("Schema version 1: 3 events.")
    assert console_api.get(f"{SSOT}/connections/{connector_id}/schema").json() == schema

    # Update Schema that removes a field and retypes another: refused, the API's errors shown in words.
    shrunk = copy.deepcopy(schema)
    fields = shrunk["records"][0]["externalDataTranFields"]
    fields[:] = [f for f in fields if f["developerName"] != "price"]
    next(f for f in fields if f["developerName"] == "quantity")["dataType"] = "Text"
    refused_file = tmp_path / "acme_web_schema_v2_bad.json"
    refused_file.write_text(json.dumps(shrunk))
    console.get_by_role("button", name="Update Schema").click()
    upload = console.get_by_label("New version of the schema file (JSON)")
    expect(upload).to_be_focused()
    upload.set_input_files(str(refused_file))
    refusal = console.locator("#schema-problems")
    expect(refusal).to_contain_text("The schema was not accepted")
    expect(refusal).to_contain_text("can only add events and fields")
    expect(refusal).to_contain_text("field 'price' of event 'cartAdd' was removed")
    expect(refusal).to_contain_text(
        "field 'quantity' of event 'cartAdd': data type changed from Number to Text"
    )
    expect(upload).to_have_attribute("aria-invalid", "true")
    expect(console.get_by_role("button", name="Yes, Update")).to_be_hidden()
    shot(console, "data360-connector")
    assert console_api.get(f"{SSOT}/connections/{connector_id}/schema").json() == schema

    # An additive update: the new field is marked, Yes, Update saves version 2.
    added = copy.deepcopy(schema)
    added["records"][0]["externalDataTranFields"].append(
        {"masterLabel": "Currency", "developerName": "currency", "dataType": "Text", "isDataRequired": False}
    )
    added_file = tmp_path / "acme_web_schema_v2.json"
    added_file.write_text(json.dumps(added))
    upload.set_input_files(str(added_file))
    expect(refusal).to_be_hidden()
    expect(preview).to_contain_text("This update adds field(s) cartAdd.currency")
    expect(preview.locator("tr", has=console.locator("code", has_text="currency"))).to_contain_text("New")
    console.get_by_role("button", name="Yes, Update").click()
    expect(console.locator("#schema-status")).to_have_text("Schema version 2: 3 events.")

    # View Full Schema: the document as uploaded.
    console.get_by_role("button", name="View Full Schema").click()
    full = console.locator("#schema-full")
    expect(full).to_be_visible()
    assert json.loads(full.inner_text()) == added

    # The connectors list shows it with its events; its page shows the saved schema's events.
    console.goto("/console/data360/connectors")
    row = console.locator("#connector-list tbody tr", has=console.get_by_role("link", name=label))
    expect(row).to_contain_text(connector["sourceId"])
    expect(row.locator(".event-chip")).to_have_text(
        ["cartAdd Engagement", "pageView Engagement", "identity Profile"]
    )
    row.get_by_role("link", name=label).click()
    expect(console.locator("#schema-events section.event-preview")).to_have_count(3)
    # Data Streams > New > the connector > its events > review fields and mapping > data space > Deploy.
    console.goto("/console/data360/streams")
    console.get_by_role("link", name="New", exact=True).click()
    console.wait_for_url("**/console/data360/streams/new")
    console.get_by_label(label).press("Space")  # the keyboard picks the connector
    expect(console.get_by_label(label)).to_be_checked()
    console.get_by_role("button", name="Next").press("Enter")
    console.get_by_role("button", name="Next").click()
    expect(console.locator(".field-error")).to_have_text("Select at least one event.")
    for event in ("cartAdd", "pageView", "identity"):
        console.get_by_label(event).check()
    console.get_by_role("button", name="Next").click()
    review = console.locator("#stream-review")
    expect(review).to_contain_text("2 data streams")
    engagement = review.locator("section.stream-plan", has_text="Engagement Events")
    expect(engagement).to_contain_text("cartAdd, pageView")
    expect(engagement.locator(".key-mappings")).to_have_text("eventId → _iddateTime → timestamp")
    fields = engagement.get_by_role("table", name=f"Fields and mapping of {label} Engagement Events")
    price = fields.locator("tbody tr", has=console.locator("code", has_text="price"))
    expect(price.locator("td")).to_have_text(["cartAdd", "price", "Number", "", "No", "_headwater.price"])
    expect(review.locator("section.stream-plan", has_text="Identity")).to_contain_text("Profile")
    console.get_by_role("button", name="Next").click()
    console.get_by_label("Data space").select_option("default")
    expect(console.locator("#deploy-summary")).to_contain_text("Deploy to data space default (sandbox prod)")
    console.get_by_role("button", name="Deploy").click()
    deployed = console.locator("#stream-deployed")
    expect(deployed).to_contain_text("2 data streams deployed to data space default")
    expect(deployed.locator("tbody tr")).to_have_count(2)
    expect(deployed.locator(".badge", has_text="ACTIVE")).to_have_count(2)
    assert console.url.endswith("/console/data360/streams?dataspace=default")  # not /new any more

    listed = console_api.get(
        f"{SSOT}/data-streams", params={"dataspace": "default", "connectorId": connector_id}
    )
    streams = {s["category"]: s for s in listed.json()["dataStreams"]}
    assert streams["Engagement"]["connectorInfo"]["connectorDetails"]["events"] == ["cartAdd", "pageView"]
    assert streams["Profile"]["connectorInfo"]["connectorDetails"]["events"] == ["identity"]

    # The list of the data space shows them with their status.
    deployed.get_by_role("link", name="All data streams of default").click()
    rows = console.locator("#stream-list tbody tr", has_text=connector["name"])
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text=streams["Engagement"]["name"])).to_contain_text("Every 15 minutes")
    expect(rows.filter(has_text=streams["Profile"]["name"])).to_contain_text("Every hour")
    expect(rows.locator(".badge", has_text="ACTIVE")).to_have_count(2)
    shot(console, "data360-streams")

    # The same events cannot get a second stream in the data space: the wizard says so.
    console.goto(f"/console/data360/streams/new?connector={connector_id}")
    expect(console.get_by_label(label)).to_be_checked()
    console.get_by_role("button", name="Next").click()
    console.get_by_label("identity").check()
    console.get_by_role("button", name="Next").click()
    expect(console.locator("#stream-review")).to_contain_text("already flows into data stream")
    console.get_by_role("button", name="Next").click()
    console.get_by_role("button", name="Deploy").click()
    expect(console.locator("#stream-wizard [data-errors]")).to_contain_text("already flows into data stream")
    assert problems == []


def test_a_data_stream_page_shows_its_ingestion_counts(
    console: Any, console_api: ApiClient, console_server: Any
) -> None:
    """The Ingestion API's records, counted on the data stream's page (linked from the list), and the
    stream's open streaming batch on its dataset's page: receiving with its counts, typed columns."""
    import httpx
    from playwright.sync_api import expect

    from tests.streaming_helpers import streaming
    from tests.support import wait_until
    from tests.test_data360_connectors import create_connector, deploy, upload
    from tests.test_data360_ingest import cart, ingestion_token

    problems = watch(console)
    connector = create_connector(console_api, unique("Acme Counts"))
    assert upload(console_api, connector["id"], acme_schema()).status_code == 200
    made = deploy(console_api, connector["id"], ["cartAdd"], "default")
    assert made.status_code == 201, made.text
    [stream] = made.json()["dataStreams"]
    space = {"dataspace": "default"}
    fast = console_api.patch(
        f"{SSOT}/data-streams/{stream['id']}", params=space, json={"refreshCadenceSeconds": 0}
    )
    assert fast.status_code == 200, fast.text
    token = ingestion_token(console_server, console_api)
    events = {"events": [cart("count-1"), cart("count-2"), cart("count-3")]}
    with streaming(console_server, console_api):
        sent = httpx.post(
            f"{console_server.base_url}/server/events/{connector['sourceId']}",
            json=events,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert sent.status_code == 204, sent.text
        metrics = f"{SSOT}/data-streams/{stream['id']}/metrics"
        wait_until(
            lambda: console_api.get(metrics, params=space).json()["totalRecordsProcessed"] == 3, timeout=20
        )

    console.goto("/console/data360/streams?dataspace=default")
    console.get_by_role("link", name=stream["label"], exact=True).click()
    console.wait_for_url(f"**/console/data360/streams/{stream['id']}?dataspace=default")
    expect(console.locator("#main h1")).to_have_text(stream["label"])
    expect(console.locator("#stream-facts")).to_contain_text(stream["name"])
    expect(console.locator("#stream-facts")).to_contain_text("Continuous")
    counts = console.locator("#stream-counts")
    expect(counts.locator('[data-count="received"]')).to_have_text("3")
    expect(counts.locator('[data-count="processed"]')).to_have_text("3")
    expect(counts.locator('[data-count="failed"]')).to_have_text("0")
    hour = console.locator("#stream-history tbody tr")
    expect(hour).to_have_count(1)
    expect(hour.locator(".badge")).to_have_text("Receiving")  # the hour's run is open, not stuck
    console.set_viewport_size({"width": 1280, "height": 1100})
    console.evaluate("window.scrollTo(0, 0)")
    shot(console, "data360-stream-detail")
    console.set_viewport_size({"width": 1280, "height": 800})

    # Its dataflow's open hourly run is receiving too.
    console.locator("#stream-facts").get_by_role("link", name="Open dataflow").click()
    expect(console.locator("[data-runs] tbody tr").first.locator(".badge")).to_have_text("receiving")
    console.go_back()

    # The stream's dataset: its open streaming batch is receiving, not loading, with the records so far.
    console.locator("#stream-facts").get_by_role("link", name=stream["dataLakeObjectInfo"]["name"]).click()
    batch = console.locator("[data-batches] tbody tr").first
    expect(batch.locator(".badge")).to_have_text("receiving")
    cells = batch.locator("td")
    expect(cells.nth(3)).to_have_text("3")
    expect(cells.nth(4)).to_have_text("3")
    head = console.locator("[data-rows] table thead")
    expect(head).to_contain_text("date-time")  # XDM type names under the column names
    assert "timestamp[" not in console.locator("#main").inner_text()
    assert problems == []


def test_reload_counts_works_while_the_stream_page_still_loads(console: Any, console_api: ApiClient) -> None:
    """Reload counts is on the page from the start: a click while the stream itself is read (held back
    here as a slow server would) once did nothing."""
    import re

    from playwright.sync_api import expect

    from tests.test_data360_connectors import create_connector, deploy, upload

    problems = watch(console)
    connector = create_connector(console_api, unique("Acme Early"))
    assert upload(console_api, connector["id"], acme_schema()).status_code == 200
    made = deploy(console_api, connector["id"], ["cartAdd"], "default")
    assert made.status_code == 201, made.text
    [stream] = made.json()["dataStreams"]
    with held_back(console, re.compile(rf"/ssot/data-streams/{stream['id']}\?")) as read:
        console.goto(f"/console/data360/streams/{stream['id']}?dataspace=default")
        wait_until(read.asked, timeout=15)
        console.get_by_role("button", name="Reload counts").click()
        expect(console.locator("#stream-counts")).to_contain_text("Records received")
    expect(console.locator("#stream-facts")).to_contain_text(stream["name"])
    assert problems == []
