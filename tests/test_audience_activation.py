"""Audience activation: an activation flow whose source is the Profile Service and whose GeneralTransform
selects a segment delivers each membership transition of that segment once to a real sink on 127.0.0.1:
entering with the flow's request, exiting with its second request (or nothing), through outages."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from headwater.stores.metadata import Scope, StillReferenced
from tests.activation_helpers import (
    FS,
    activating,
    dead_letters,
    delivery_totals,
    destination,
    inlet_source,
)
from tests.audience_helpers import (
    ENTER_BODY,
    EXIT_BODY,
    audience_body,
    audience_source,
    enter,
    leave,
    segment_definition,
)
from tests.fakes.sink import SinkFake
from tests.flows_helpers import created_id
from tests.streaming_helpers import scope_of
from tests.support import ApiClient, LiveServer, wait_until

FAST = {"retryInitialDelayMs": 50, "retryMaxDelayMs": 400}


def requests_of(api: ApiClient, sink: SinkFake, name: str = "ESP") -> tuple[str, str]:
    """(enter target, exit target): two requests of one destination."""
    conn, enter_target = destination(api, sink.url + "/enter/${email}", body=ENTER_BODY, name=name)
    exit_target = created_id(
        api.post(
            f"{FS}/targetConnections",
            json={
                "name": "exit request",
                "baseConnectionId": conn,
                "connectionSpec": {"id": "ce55fc04-f79b-4668-a8b7-2565a5c65ad4", "version": "1.0"},
                "params": {"method": "DELETE", "url": sink.url + "/exit/${email}", "body": EXIT_BODY},
            },
        )
    )
    return enter_target, exit_target


def new_segment(server: LiveServer, api: ApiClient) -> tuple[Scope, str]:
    scope = scope_of(server, api)
    segment_id = str(uuid.uuid4())
    segment_definition(server.services.store, scope, segment_id)
    return scope, segment_id


def settled(server: LiveServer, scope: Scope, flow: str, segment_id: str) -> None:
    """Wait until the flow's saved checkpoint is past the segment's last transition: every transition is
    finished (delivered, dead-lettered or sent nothing) and none will be sent again."""
    last = server.services.profiles.last_transition_seq(scope, segment_id)

    def past() -> bool:
        state = server.services.store.get("activationState", scope, flow)
        return state is not None and int(state.doc.get("offset", 0)) > last

    wait_until(past, timeout=15)


def seen(sink: SinkFake) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r.method, r.path, json.loads(r.body)) for r in sink.delivered()]


def test_enter_exit_and_enter_again_are_each_delivered_once(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    scope, segment = new_segment(server, api)
    enter_target, exit_target = requests_of(api, sink)
    source = audience_source(api)
    response = api.post(f"{FS}/flows", json=audience_body(source, [enter_target, exit_target], segment))
    flow = created_id(response)
    profiles = server.services.profiles
    with activating(server, api):
        enter(profiles, scope, segment, 1, 2)
        sink.wait_for(2, timeout=15)
        leave(profiles, scope, segment, 1)
        sink.wait_for(3, timeout=15)
        enter(profiles, scope, segment, 1)
        sink.wait_for(4, timeout=15)
        settled(server, scope, flow, segment)
    got = seen(sink)
    realized = {"status": "realized"}
    assert sorted(map(str, got[:2])) == sorted(
        map(
            str,
            [
                ("POST", "/enter/p1@example.com", {"email": "p1@example.com", "first": "Ada1", **realized}),
                ("POST", "/enter/p2@example.com", {"email": "p2@example.com", "first": "Ada2", **realized}),
            ],
        )
    )
    assert got[2:] == [
        ("DELETE", "/exit/p1@example.com", {"email": "p1@example.com", "status": "exited"}),
        ("POST", "/enter/p1@example.com", {"email": "p1@example.com", "first": "Ada1", **realized}),
    ]
    keys = [r.header("idempotency-key") for r in sink.received()]
    assert len(keys) == 4 and len(set(keys)) == 4  # each transition once, each with its own key
    wait_until(lambda: delivery_totals(api, flow)["delivered"] == 4, timeout=10)
    assert dead_letters(api, flow) == []


def test_without_an_exit_request_exits_send_nothing_and_reentries_are_counted(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    scope, segment = new_segment(server, api)
    _, target = destination(api, sink.url + "/enter/${email}", body=ENTER_BODY)
    flow = created_id(api.post(f"{FS}/flows", json=audience_body(audience_source(api), [target], segment)))
    profiles = server.services.profiles
    enter(profiles, scope, segment, 7)  # before the flow runs: a new flow starts at the first transition
    leave(profiles, scope, segment, 7)
    enter(profiles, scope, segment, 7)
    with activating(server, api):
        sink.wait_for(2, timeout=15)
        settled(server, scope, flow, segment)
    assert [(m, p) for m, p, _ in seen(sink)] == [("POST", "/enter/p7@example.com")] * 2
    assert sink.count() == 2
    wait_until(lambda: delivery_totals(api, flow)["delivered"] == 2, timeout=10)
    run = api.get(f"{FS}/runs", params={"property": f"flowId=={flow}"}).json()["items"][0]
    assert run["metrics"]["recordSummary"]["outputRecordCount"] == 2


def test_an_outage_is_retried_and_each_qualification_delivered_once(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    scope, segment = new_segment(server, api)
    enter_target, exit_target = requests_of(api, sink)
    body = audience_body(audience_source(api), [enter_target, exit_target], segment, **FAST)
    flow = created_id(api.post(f"{FS}/flows", json=body))
    with activating(server, api):
        sink.fail(503, for_seconds=1.5)
        enter(server.services.profiles, scope, segment, *range(1, 21))
        sink.wait_for(20, timeout=30)
        settled(server, scope, flow, segment)
    emails = sorted(body["email"] for _, _, body in seen(sink))
    assert emails == sorted(f"p{n}@example.com" for n in range(1, 21))
    assert len([r for r in sink.received() if r.status == 503]) > 0
    assert dead_letters(api, flow) == []
    wait_until(lambda: delivery_totals(api, flow)["retried"] > 0, timeout=10)
    assert delivery_totals(api, flow)["delivered"] == 20


def test_an_exit_refused_is_a_dead_letter_of_the_exit_request(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    scope, segment = new_segment(server, api)
    enter_target, exit_target = requests_of(api, sink)
    body = audience_body(audience_source(api), [enter_target, exit_target], segment, **FAST)
    flow = created_id(api.post(f"{FS}/flows", json=body))
    with activating(server, api):
        enter(server.services.profiles, scope, segment, 3)
        sink.wait_for(1, timeout=15)
        sink.fail(400, times=1)
        leave(server.services.profiles, scope, segment, 3)
        (letter,) = wait_until(lambda: dead_letters(api, flow), timeout=15)
    assert letter["targetConnectionId"] == exit_target  # a replay sends the exit request again
    assert letter["request"]["method"] == "DELETE" and letter["variables"]["status"] == "exited"


def test_bad_audience_flows_are_refused_naming_the_field(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    scope, segment = new_segment(server, api)
    enter_target, exit_target = requests_of(api, sink)
    source = audience_source(api)

    def refused(body: dict[str, Any]) -> list[dict[str, str]]:
        response = api.post(f"{FS}/flows", json=body)
        assert response.status_code == 400, response.text
        errors: list[dict[str, str]] = response.json()["report"]["errors"]
        return errors

    def paths(body: dict[str, Any]) -> set[str]:
        return {e["path"] for e in refused(body)}

    unknown = audience_body(source, [enter_target], "no-such-segment")
    where = "transformations[0].params.segmentSelectors.selectors[0].value.id"
    assert where in paths(unknown)
    assert "no-such-segment" in str(refused(unknown))
    assert "targetConnectionIds" in paths({**audience_body(source, [], segment)})
    no_selector = audience_body(source, [enter_target], segment)
    no_selector["transformations"] = no_selector["transformations"][1:]
    assert "transformations" in paths(no_selector)
    two = audience_body(source, [enter_target], segment)
    two["transformations"][0]["params"]["segmentSelectors"]["selectors"] *= 2
    assert "transformations[0].params.segmentSelectors.selectors" in paths(two)
    _, elsewhere = destination(api, sink.url + "/other/${email}", body=ENTER_BODY, name="Other")
    assert "targetConnectionIds[1]" in paths(audience_body(source, [enter_target, elsewhere], segment))
    unbound = audience_body(
        source, [enter_target, exit_target], segment, None
    )  # the exit request's variables need bindings too
    unbound["transformations"][1]["params"]["bindings"] = {
        "email": {"source": "identityMap.Email[0].id"},
        "first": {"source": "person.name.firstName"},
    }
    assert any("status" in e["message"] for e in refused(unbound) if e["path"] == "transformations")
    inlet, _ = inlet_source(api)
    selects = audience_body(inlet, [enter_target], segment)
    assert "transformations[0]" in paths(selects)
    assert api.get(f"{FS}/flows").json()["items"] == []  # nothing was created
    # An audience that is activated cannot be deleted from under its flow.
    created_id(api.post(f"{FS}/flows", json=audience_body(source, [enter_target, exit_target], segment)))
    with pytest.raises(StillReferenced):
        server.services.store.delete("segmentDefinition", scope, segment)


def test_the_profile_store_signals_transitions_it_wrote(server: LiveServer, api: ApiClient) -> None:
    scope, segment = new_segment(server, api)
    signal = server.services.profiles.transitions_written
    before = signal.count()
    enter(server.services.profiles, scope, segment, 5)
    count, written = signal.wait(before, 0)
    assert count > before and (scope, segment) in written
    assert signal.wait(count, 0) == (count, frozenset())
    enter(server.services.profiles, scope, segment, 5)  # already a member: nothing written, no signal
    assert signal.count() == count


def test_runs_cannot_be_requested_for_an_audience_activation(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    _, segment = new_segment(server, api)
    _, target = destination(api, sink.url + "/enter/${email}", body=ENTER_BODY)
    flow = created_id(api.post(f"{FS}/flows", json=audience_body(audience_source(api), [target], segment)))
    response = api.post(f"{FS}/runs", json={"flowId": flow})
    assert response.status_code == 400, response.text
    assert "flowId" in response.text
