"""Create activation in a real browser (Debian's Chromium through Playwright): an activation built purely in
the console, from a dataset to a new request of a destination on an HTTPS sink whose CA the destination
carries itself (auth.params.caCertificate, no HEADWATER_OUTBOUND_CA_FILE), with one variable bound to a
field picked from the dataset's schema and one to an expression; a row lands in the dataset, a run starts,
and the sink receives the request whose path and body were bound from the row. Refusals are shown next to
the fields they name. The destination wizard's Authenticate step takes a CA bundle, and a bundle that is
not PEM is refused next to it."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.activation_helpers import FS, activating, connection_body, destination
from tests.conftest import screenshot
from tests.fakes.sink import SinkFake
from tests.flows_helpers import created_id
from tests.profile_helpers import profile_dataset
from tests.streaming_helpers import http_api_source
from tests.support import ApiClient, LiveServer, unique, wait_until, watch_page
from tests.test_profiles import PERSON, _land, _person

expect = pytest.importorskip("playwright.sync_api").expect
FLOW_PAGE = re.compile(r"/console/activations/[0-9a-f-]{36}\?created=1$")


@pytest.fixture
def private_sink(console_server: LiveServer) -> Iterator[SinkFake]:
    """An HTTPS sink whose test CA the console server does not trust by its settings."""
    with SinkFake() as sink:
        settings = console_server.services.settings
        before = settings.outbound_ca_file
        settings.outbound_ca_file = None
        try:
            yield sink
        finally:
            settings.outbound_ca_file = before


@pytest.fixture
def run_worker(console_server: LiveServer) -> Iterator[None]:
    """A worker executing the console server's queued runs (no scheduling, no streaming)."""
    from headwater.runtime.worker import Worker

    runner = Worker(console_server.services, name="wizard-worker", schedule=False, streaming=False)
    thread = threading.Thread(target=runner.run_forever, daemon=True)
    thread.start()
    yield
    runner.stop()
    thread.join(timeout=10)


def test_an_activation_built_in_the_console_delivers_a_dataset_row(
    console: Any,
    console_server: LiveServer,
    console_api: ApiClient,
    private_sink: SinkFake,
    run_worker: None,
) -> None:
    page, sink = console, private_sink
    problems = watch_page(page)
    tag = uuid.uuid4().hex[:6]
    _, dataset = profile_dataset(console_api, f"Wizard people {tag}", PERSON)
    dataset_name = console_api.get(f"/data/foundation/catalog/dataSets/{dataset}").json()[dataset]["name"]
    dest_name = unique("Wizard ESP")
    auth = {"specName": "None", "params": {"caCertificate": sink.certs.ca_cert}}
    conn = created_id(console_api.post(f"{FS}/connections", json=connection_body(dest_name, auth)))
    flow_name = unique("Wizard welcome")

    page.goto("/console/activations")
    page.get_by_role("link", name="Create activation").click()
    page.wait_for_url("**/console/activations/new")
    form = page.locator("#act-wizard")
    expect(form).to_have_attribute("data-ready", "true")
    step = form.locator("section:not([hidden])")
    # 1. Source: refusals next to the fields, then a dataset.
    page.get_by_label("The rows added to a dataset, at each run").check()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("textbox", name="Name", exact=True)).to_have_accessible_description(
        re.compile("is required")
    )
    expect(page.get_by_role("combobox", name="Dataset", exact=True)).to_have_accessible_description(
        re.compile("choose the dataset whose rows are sent")
    )
    page.get_by_role("textbox", name="Name", exact=True).fill(flow_name)
    page.get_by_role("combobox", name="Dataset", exact=True).select_option(label=dataset_name)
    page.get_by_role("button", name="Next").click()
    # 2. Destination: a new request of it (the destination has none yet).
    expect(step.get_by_role("heading", name="Destination")).to_be_visible()
    page.get_by_role("combobox", name="Destination", exact=True).select_option(label=dest_name)
    expect(page.get_by_label("A new request")).to_be_checked()
    page.get_by_role("textbox", name="Request name").fill("Welcome")
    page.get_by_role("textbox", name="Request URL").fill(sink.https_url + "/welcome/${first}")
    page.get_by_label("Body template").fill('{"first": "${first}", "last": "${shout}", "n": 1}')
    page.get_by_role("button", name="Next").click()
    # 3. Bindings: one row per variable; the first picked among the schema's fields.
    expect(step.get_by_role("heading", name="Variable bindings")).to_be_visible()
    assert page.locator('#w-fields option[value="person.name.firstName"]').count() == 1
    first, shout = page.get_by_label("${first}", exact=True), page.get_by_label("${shout}", exact=True)
    expect(first).to_have_attribute("list", "w-fields")
    first.fill("person.name.firstName")
    page.get_by_role("button", name="Next").click()
    expect(shout).to_have_accessible_description(re.compile("is required: the path of a field"))
    page.get_by_label("How ${shout} is bound").select_option("expression")
    shout.fill("upper(person.name.lastName")  # a broken expression: the API's words next to it
    page.get_by_role("button", name="Next").click()
    # 4. Review, then Save: the flow's refusal goes back to the field it names, nothing is left behind.
    expect(page.locator("#w-review")).to_contain_text(dest_name)
    expect(page.locator("#w-review-bindings")).to_contain_text("${first} ← person.name.firstName")
    page.get_by_role("button", name="Save").click()
    expect(shout).to_have_attribute("aria-invalid", "true")
    expect(shout).to_have_accessible_description(re.compile(r"\S"))  # the API's words about the expression
    flows = console_api.get(f"{FS}/flows", params={"property": f'name=="{flow_name}"'}).json()["items"]
    requests = console_api.get(f"{FS}/targetConnections", params={"property": f"baseConnectionId=={conn}"})
    assert flows == [] and requests.json()["items"] == []  # the new request was taken back
    shout.fill("upper(person.name.lastName)")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#w-review-bindings")).to_contain_text(
        "${shout} ← expression upper(person.name.lastName)"
    )
    page.get_by_role("button", name="Change bindings").click()  # as they are now, for the picture
    expect(shout).to_have_value("upper(person.name.lastName)")
    expect(shout).not_to_have_attribute("aria-invalid", "true")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "activation-wizard")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(FLOW_PAGE)
    flow_id = page.url.split("/")[-1].split("?")[0]
    expect(page.locator("#act-heading")).to_have_text(flow_name)
    expect(page.locator("#act-detail")).to_contain_text("${first} ← person.name.firstName")

    # A row arrives; a run of the activation sends it.
    _land(
        console_server,
        console_api,
        dataset,
        [_person({"Email": f"ada.{tag}@example.com"}, "Email", f"Ada{tag}", "2026-01-01T00:00:00Z")],
    )
    run = console_api.post(f"{FS}/runs", json={"flowId": flow_id})
    assert run.status_code == 201, run.text
    (got,) = sink.wait_for(1, timeout=30, path="/welcome/")
    assert got.path == f"/welcome/Ada{tag}" and got.listener == "https"
    assert got.json() == {"first": f"Ada{tag}", "last": "DOE", "n": 1}
    wait_until(
        lambda: console_api.get(f"{FS}/runs/{run.json()['id']}").json()["items"][0]["state"] == "success",
        timeout=30,
    )
    page.get_by_role("button", name="Refresh counts, runs and dead letters").click()
    expect(page.locator('[data-metric="delivered"] .value')).to_have_text("1")
    page.goto(f"/console/destinations/{conn}")  # the destination's page says it holds its own CA
    expect(page.get_by_text("1 certificate stored with the destination")).to_be_visible()
    assert problems == []


def test_the_destination_wizard_takes_a_ca_bundle_and_refuses_one_that_is_not_pem(console: Any) -> None:
    page = console
    problems = watch_page(page)
    page.goto("/console/destinations/new")
    page.get_by_role("textbox", name="Name", exact=True).fill(unique("Private CA"))
    page.get_by_role("button", name="Next").click()
    page.get_by_label("None").check()
    ca = page.get_by_label("Trusted CA certificates (PEM)")
    expect(ca).to_be_visible()
    ca.fill("not a certificate")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("textbox", name="Request URL").fill("https://example.com/hook")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#review")).to_contain_text("Trusted CA certificates")
    page.get_by_role("button", name="Save").click()
    expect(ca).to_have_accessible_description(re.compile("must be one or more PEM certificates"))
    expect(ca).to_be_visible()  # back on the Authenticate step
    assert problems == []


def _pick_destination(page: Any, name: str) -> None:
    page.get_by_role("combobox", name="Destination", exact=True).select_option(label=name)
    expect(page.get_by_label("A request of this destination")).to_be_checked()  # it has one: picked
    expect(page.locator("#w-request-facts")).to_contain_text("POST")


def test_a_streaming_source_to_an_existing_request(
    console: Any, console_server: LiveServer, console_api: ApiClient
) -> None:
    page = console
    problems = watch_page(page)
    flow_name, dest_name = unique("Wizard stream"), unique("Wizard hook")
    source_name = unique("Wizard inlet")
    _, params, _ = http_api_source(console_api, source_name, "raw")
    with SinkFake() as sink, activating(console_server, console_api):
        destination(console_api, sink.url + "/hook/${who}", body='{"n": "${n}"}', name=dest_name)
        page.goto("/console/activations/new")
        expect(page.locator("#act-wizard")).to_have_attribute("data-ready", "true")
        page.get_by_role("textbox", name="Name", exact=True).fill(flow_name)
        page.get_by_role("combobox", name="Streaming source").select_option(label=f"{source_name} source")
        page.get_by_role("button", name="Next").click()
        _pick_destination(page, dest_name)
        page.get_by_role("button", name="Next").click()
        page.get_by_label("${who}", exact=True).fill("user.id")
        page.get_by_label("How ${n} is bound").select_option("expression")
        page.get_by_label("${n}", exact=True).fill("upper(user.id)")
        page.get_by_role("button", name="Next").click()
        page.get_by_role("button", name="Save").click()
        page.wait_for_url(FLOW_PAGE)
        message = {"user": {"id": "u-7"}}
        answer = httpx.post(console_server.base_url + "/collection/" + params["inletId"], json=message)
        assert answer.status_code == 200, answer.text
        (got,) = sink.wait_for(1, timeout=15, path="/hook/")
    assert got.path == "/hook/u-7" and got.json() == {"n": "U-7"}
    assert problems == []


def test_an_audience_to_an_existing_request(console: Any, console_api: ApiClient) -> None:
    page = console
    problems = watch_page(page)
    audience, flow_name, dest_name = (
        unique("Wizard Lovelaces"),
        unique("Wizard audience"),
        unique("Wizard CRM"),
    )
    segment = console_api.post(
        "/data/core/ups/segment/definitions",
        json={
            "name": audience,
            "schema": {"name": "_xdm.context.profile"},
            "expression": {"type": "PQL", "format": "pql/text", "value": 'person.name.lastName = "Lovelace"'},
        },
    )
    assert segment.status_code == 200, segment.text
    segment_id = segment.json()["id"]
    _, target = destination(console_api, "http://127.0.0.1:9/members/${email}", body=None, name=dest_name)
    page.goto("/console/activations/new")
    expect(page.locator("#act-wizard")).to_have_attribute("data-ready", "true")
    page.get_by_role("textbox", name="Name", exact=True).fill(flow_name)
    page.get_by_label("Each profile entering an audience").check()
    page.get_by_role("combobox", name="Audience").select_option(label=audience)
    page.get_by_role("button", name="Next").click()
    _pick_destination(page, dest_name)
    page.get_by_role("button", name="Next").click()
    email = page.get_by_label("${email}", exact=True)
    assert page.locator('#w-fields option[value="identityMap.Email[0].id"]').count() == 1
    email.fill("identityMap.Email[0].id")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#w-review")).to_contain_text(audience)
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(FLOW_PAGE)
    expect(page.locator("#act-detail")).to_contain_text(f"From audience {audience}")
    flow_id = page.url.split("/")[-1].split("?")[0]
    flow = console_api.get(f"{FS}/flows/{flow_id}").json()["items"][0]
    assert flow["targetConnectionIds"] == [target]
    general, variables = flow["transformations"]
    assert general["params"]["segmentSelectors"]["selectors"][0]["value"]["id"] == segment_id
    assert variables["params"]["bindings"] == {"email": {"source": "identityMap.Email[0].id"}}
    (source,) = flow["sourceConnectionIds"]
    spec = console_api.get(f"{FS}/sourceConnections/{source}").json()["items"][0]["connectionSpec"]["id"]
    assert spec == "8a9c3494-9708-43d7-ae3f-cda01e5030e1"  # the Profiles source connection
    assert problems == []
