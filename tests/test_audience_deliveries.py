"""What the console reads of audience activations, through the API as any client: the activation flows of
some audiences (the flows list filtered on the GeneralTransform's selector, AEP's ``property=`` with
``[]``), and a run's deliveries split by request (entering and exiting), against a real sink on 127.0.0.1."""

from __future__ import annotations

from typing import Any

from tests.activation_helpers import (
    FS,
    activating,
    activation_flow,
    dead_letters,
    delivery_totals,
    destination,
    event,
    inlet_source,
)
from tests.audience_helpers import audience_body, audience_source, enter, leave
from tests.fakes.sink import SinkFake
from tests.flows_helpers import created_id
from tests.support import ApiClient, LiveServer, wait_until
from tests.test_activation import post_all
from tests.test_audience_activation import FAST, new_segment, requests_of, settled

SELECTOR = "transformations[].params.segmentSelectors.selectors[].value.id"


def flows_where(api: ApiClient, *filters: str) -> list[str]:
    response = api.get(f"{FS}/flows", params=[("property", f) for f in filters])
    assert response.status_code == 200, response.text
    return sorted(f["id"] for f in response.json()["items"])


def test_the_flows_of_an_audience_are_listed_by_its_selector(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    (_, first), (_, second) = new_segment(server, api), new_segment(server, api)
    _, target = destination(api, sink.url + "/enter/${email}", body=None)
    source = audience_source(api)
    a1, a2 = (created_id(api.post(f"{FS}/flows", json=audience_body(source, [target], first))) for _ in "12")
    b = created_id(api.post(f"{FS}/flows", json=audience_body(source, [target], second)))
    other_source, _ = inlet_source(api)
    plain = activation_flow(api, other_source, target, {"email": {"source": "email"}})

    assert flows_where(api, f"{SELECTOR}=={first}") == sorted([a1, a2])
    assert flows_where(api, f"{SELECTOR}=={first},{second}") == sorted([a1, a2, b])
    assert flows_where(api, f"{SELECTOR}==no-such-segment") == []
    assert plain not in flows_where(api, SELECTOR)  # the field exists: audience activations only
    assert sorted([a1, a2, b, plain]) == flows_where(api, "flowSpec.id==cf0ccb51-d329-4dd2-a912-d3c87e068aa4")


def requests_of_runs(api: ApiClient, flow: str) -> dict[str, dict[str, Any]]:
    response = api.get(f"{FS}/runs", params={"property": f"flowId=={flow}"})
    assert response.status_code == 200, response.text
    out: dict[str, dict[str, Any]] = {}
    for run in response.json()["items"]:
        for row in (run["metrics"].get("deliverySummary") or {}).get("requests", []):
            counts = out.setdefault(row["targetConnectionId"], {"delivered": 0, "deadLettered": 0})
            counts["delivered"] += row["delivered"]
            counts["deadLettered"] += row["deadLettered"]
    return out


def test_a_run_counts_entering_and_exiting_deliveries_by_request(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    scope, segment = new_segment(server, api)
    enter_target, exit_target = requests_of(api, sink)
    body = audience_body(audience_source(api), [enter_target, exit_target], segment, **FAST)
    flow = created_id(api.post(f"{FS}/flows", json=body))
    profiles = server.services.profiles
    with activating(server, api):
        enter(profiles, scope, segment, 1, 2, 3)
        sink.wait_for(3, timeout=15)
        leave(profiles, scope, segment, 1)
        sink.wait_for(4, timeout=15)
        sink.fail(400, times=1)  # the next exit is refused: a dead letter of the exit request
        leave(profiles, scope, segment, 2)
        wait_until(lambda: dead_letters(api, flow), timeout=15)
        settled(server, scope, flow, segment)
    wanted = {
        enter_target: {"delivered": 3, "deadLettered": 0},
        exit_target: {"delivered": 1, "deadLettered": 1},
    }
    wait_until(lambda: requests_of_runs(api, flow) == wanted, timeout=10)
    totals = delivery_totals(api, flow)
    assert (totals["delivered"], totals["deadLettered"]) == (4, 1)  # the totals are the requests' sum
    assert len(sink.delivered()) == 4  # what the sink took is what the run says was delivered


def test_a_plain_activation_counts_its_one_request(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    source, inlet = inlet_source(api)
    _, target = destination(api, sink.url + "/d/${email}")
    flow = activation_flow(api, source, target)
    with activating(server, api):
        post_all(server, inlet, [event(1), event(2)])
        sink.wait_for(2, timeout=15)
        wait_until(lambda: requests_of_runs(api, flow), timeout=10)
    wait_until(
        lambda: requests_of_runs(api, flow) == {target: {"delivered": 2, "deadLettered": 0}}, timeout=10
    )
