"""Activation flows: records from a streaming inlet or a dataset delivered to a real sink on 127.0.0.1,
through outages, throttling, failures, dead letters and replay."""

from __future__ import annotations

import json
import time

import httpx

from tests.activation_helpers import (
    FS,
    activating,
    activation_flow,
    basic,
    dataset_source,
    dead_letters,
    delivery_totals,
    destination,
    event,
    flow_runs,
    inlet_source,
    oauth,
)
from tests.fakes.sink import SinkFake
from tests.streaming_helpers import http_api_flow, streaming, wait_rows
from tests.support import ApiClient, LiveServer, wait_until

FAST = {"retryInitialDelayMs": 50, "retryMaxDelayMs": 400}


def post_all(server: LiveServer, path: str, events: list[dict[str, object]]) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        for start in range(0, len(events), 50):
            response = client.post(
                path.replace("/collection/", "/collection/batch/"),
                json={"messages": events[start : start + 50]},
            )
            assert response.status_code == 207, response.text
            assert all("xactionId" in r for r in response.json()["responses"]), response.text


def keys(sink: SinkFake, path: str | None = None) -> list[str]:
    return [r.header("idempotency-key") or "" for r in sink.delivered(path)]


def test_streaming_records_are_delivered_with_their_variables(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    source, inlet = inlet_source(api)
    _, target = destination(api, sink.url + "/emails/${email}")
    flow = activation_flow(api, source, target)
    with activating(server, api):
        post_all(server, inlet, [event(n) for n in range(20)])
        sink.wait_for(20, timeout=15)
    got = {r.path: json.loads(r.body) for r in sink.delivered()}
    assert got["/emails/user7@example.com"] == {"email": "user7@example.com", "name": "Ada L7", "amount": 7}
    assert len(set(keys(sink))) == 20  # one stable key per record
    wait_until(lambda: delivery_totals(api, flow)["delivered"] == 20, timeout=10)
    (run,) = flow_runs(api, flow)
    assert run["metrics"]["recordSummary"]["outputRecordCount"] == 20
    assert run["metrics"]["deliverySummary"]["latencyMs"]["p99"] is not None


def test_an_inlet_feeds_its_ingestion_flow_and_its_activations(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    pipeline = http_api_flow(api)
    source = api.get(f"{FS}/flows/{pipeline['flowId']}").json()["items"][0]["sourceConnectionIds"][0]
    _, target = destination(api, sink.url + "/events", body='{"id": "${id}"}')
    activation_flow(api, source, target, {"id": {"source": "_id"}})
    envelope = {
        "header": {"datasetId": pipeline["datasetId"], "flowId": pipeline["flowId"]},
        "body": {
            "xdmEntity": {
                "_id": "evt-1",
                "timestamp": "2026-11-23T10:00:00Z",
                "_headwater": {"email": "a@b.c"},
            }
        },
    }
    with streaming(server, api), activating(server, api):
        assert httpx.post(pipeline["inletUrl"], json=envelope).status_code == 200
        sink.wait_for(1, timeout=15)
        wait_rows(server, api, pipeline["datasetId"], 1)
    assert json.loads(sink.delivered()[0].body) == {"id": "evt-1"}


def test_an_outage_of_several_seconds_loses_nothing(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    source, inlet = inlet_source(api)
    _, target = destination(api, sink.url + "/o/${email}")
    flow = activation_flow(api, source, target, **FAST)
    with activating(server, api):
        sink.outage(for_seconds=3)
        post_all(server, inlet, [event(n) for n in range(100)])
        sink.wait_for(100, timeout=30)
    assert len(set(keys(sink))) == 100
    assert dead_letters(api, flow) == []
    wait_until(lambda: delivery_totals(api, flow)["retried"] > 0, timeout=10)


def test_retry_after_is_honoured_with_the_same_idempotency_key(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    source, inlet = inlet_source(api)
    _, target = destination(api, sink.url + "/t")
    activation_flow(api, source, target, **FAST)
    with activating(server, api):
        sink.throttle(retry_after=1)
        post_all(server, inlet, [event(1)])
        sink.wait_for(1, timeout=15)
    first, second = sink.received()[:2]
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.95
    assert first.header("idempotency-key") == second.header("idempotency-key")


def test_client_errors_are_dead_letters_that_can_be_replayed(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    sink.protect("/d", "basic")
    source, inlet = inlet_source(api)
    _, target = destination(api, sink.url + "/d/${email}", auth=basic(sink))
    flow = activation_flow(api, source, target, **FAST)
    with activating(server, api):
        sink.fail(400, times=1)
        post_all(server, inlet, [event(1), event(2)])
        sink.wait_for(1, timeout=15)
        letters = wait_until(lambda: dead_letters(api, flow), timeout=10)
    (letter,) = letters
    assert letter["state"] == "dead" and letter["attempts"] == 1
    assert letter["response"]["status"] == 400 and "400" in letter["reason"]
    assert letter["request"]["method"] == "POST" and letter["request"]["url"].startswith(sink.url + "/d/user")
    assert letter["request"]["headers"].get("Authorization") in (None, "********")
    assert sink.password not in json.dumps(letter)
    assert len([r for r in sink.received() if r.status == 400]) == 1  # never retried
    replayed = api.post(f"{FS}/deadLetters/{letter['id']}/replay")
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["results"][0]["state"] == "replayed"
    assert sink.received()[-1].header("idempotency-key") == letter["idempotencyKey"]
    assert api.get(f"{FS}/deadLetters/{letter['id']}").json()["items"][0]["state"] == "replayed"
    assert len(set(keys(sink))) == 2


def test_retries_stop_at_the_maximum_age(server: LiveServer, api: ApiClient, sink: SinkFake) -> None:
    source, inlet = inlet_source(api)
    _, target = destination(api, sink.url + "/a")
    flow = activation_flow(api, source, target, retryMaxAgeSeconds=1, **FAST)
    with activating(server, api):
        sink.fail(503, for_seconds=30)
        post_all(server, inlet, [event(1)])
        letters = wait_until(lambda: dead_letters(api, flow), timeout=15)
    assert "gave up after" in letters[0]["reason"] and letters[0]["attempts"] >= 2
    sink.heal()
    result = api.post(f"{FS}/deadLetters/replay", json={"flowId": flow}).json()["results"]
    assert [r["state"] for r in result] == ["replayed"]


def test_a_missing_variable_is_a_dead_letter_naming_it(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    source, inlet = inlet_source(api)
    _, target = destination(api, sink.url + "/m")
    flow = activation_flow(api, source, target, **FAST)
    with activating(server, api):
        post_all(server, inlet, [{"email": "x@y.z", "first": "A", "last": "B"}, event(2)])
        sink.wait_for(1, timeout=15)
        letters = wait_until(lambda: dead_letters(api, flow), timeout=10)
    assert "'amount'" in letters[0]["reason"] and letters[0]["request"] is None


def test_a_slow_destination_does_not_slow_another(server: LiveServer, api: ApiClient, sink: SinkFake) -> None:
    source, inlet = inlet_source(api)
    _, slow = destination(api, sink.url + "/slow", name="Slow", readTimeoutMs=10_000)
    _, fast = destination(api, sink.url + "/fast", name="Fast")
    activation_flow(api, source, slow, maxInFlight=2)
    activation_flow(api, source, fast)
    sink.delay(5.0, path="/slow")  # the fast flow's 40 deliveries take well under a second
    with activating(server, api):
        started = time.monotonic()
        post_all(server, inlet, [event(n) for n in range(40)])
        sink.wait_for(40, timeout=15, path="/fast")
        assert time.monotonic() - started < 5.0
        assert sink.count("/slow") == 0


def test_tokens_are_refreshed_once_for_all_requests(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    sink.protect("/api", "bearer")
    source, inlet = inlet_source(api)
    _, target = destination(api, sink.https_url + "/api/${email}", auth=oauth(sink))
    activation_flow(api, source, target, **FAST)
    with activating(server, api):
        post_all(server, inlet, [event(n) for n in range(10)])
        sink.wait_for(10, timeout=15)
        sink.expire_tokens()
        post_all(server, inlet, [event(n) for n in range(10, 60)])
        wait_until(lambda: len(sink.delivered()) == 60, timeout=15)
    assert len(sink.token_requests) == 2


def test_a_dataset_run_delivers_the_rows_added_since_the_last(
    server: LiveServer, api: ApiClient, sink: SinkFake, worker: object
) -> None:
    pipeline = http_api_flow(api)
    source = dataset_source(api, pipeline["datasetId"])
    _, target = destination(api, sink.url + "/rows", body='{"id": "${id}", "email": "${email}"}')
    flow = activation_flow(
        api, source, target, {"id": {"source": "_id"}, "email": {"source": "_headwater.email"}}
    )

    def send(ids: range) -> None:
        for n in ids:
            envelope = {
                "header": {"datasetId": pipeline["datasetId"]},
                "body": {
                    "xdmEntity": {
                        "_id": f"e{n}",
                        "timestamp": "2026-11-23T10:00:00Z",
                        "_headwater": {"email": f"u{n}@x.y"},
                    }
                },
            }
            assert httpx.post(pipeline["inletUrl"], json=envelope).status_code == 200

    def run_once() -> dict[str, object]:
        created = api.post(f"{FS}/runs", json={"flowId": flow})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        return wait_until(
            lambda: (
                (r := api.get(f"{FS}/runs/{run_id}").json()["items"][0])["state"]
                in ("success", "partial", "failed")
                and r
            ),
            timeout=30,
        )

    with streaming(server, api):
        send(range(5))
        wait_rows(server, api, pipeline["datasetId"], 5)
        first = run_once()
        send(range(5, 8))
        wait_rows(server, api, pipeline["datasetId"], 8)
    assert first["state"] == "success", first
    assert first["metrics"]["recordSummary"]["outputRecordCount"] == 5
    second = run_once()
    assert second["metrics"]["recordSummary"]["outputRecordCount"] == 3, second
    ids = sorted(json.loads(r.body)["id"] for r in sink.delivered())
    assert ids == [f"e{n}" for n in range(8)]


def test_a_redirect_is_not_followed(server: LiveServer, api: ApiClient, sink: SinkFake) -> None:
    source, inlet = inlet_source(api)
    _, target = destination(api, sink.url + "/r")
    flow = activation_flow(api, source, target, **FAST)
    sink.redirect("http://169.254.169.254/latest/meta-data/", path="/r")
    with activating(server, api):
        post_all(server, inlet, [event(1)])
        letters = wait_until(lambda: dead_letters(api, flow), timeout=15)
    assert "redirects are not followed" in letters[0]["reason"] and "169.254.169.254" in letters[0]["reason"]
    assert letters[0]["response"]["status"] == 302
    assert [r.path for r in sink.received()] == ["/r"]  # asked once, never followed


def test_in_flight_and_rate_limits(server: LiveServer, api: ApiClient, sink: SinkFake) -> None:
    source, inlet = inlet_source(api)
    _, narrow = destination(api, sink.url + "/narrow", name="Narrow", readTimeoutMs=5000)
    _, paced = destination(api, sink.url + "/paced", name="Paced")
    activation_flow(api, source, narrow, maxInFlight=2)
    activation_flow(api, source, paced, requestsPerSecond=20)
    sink.delay(0.3, path="/narrow")
    with activating(server, api):
        post_all(server, inlet, [event(n) for n in range(10)])
        sink.wait_for(10, timeout=15, path="/paced")
        sink.wait_for(10, timeout=15, path="/narrow")
    paced_at = sorted(r.at for r in sink.received("/paced"))
    assert paced_at[-1] - paced_at[0] >= 9 / 20 * 0.9  # 10 requests at 20/s span at least ~0.45 s
    narrow_at = sorted(r.at for r in sink.received("/narrow"))
    # Two at a time, each answered after 0.3 s: the 10th starts at least 4 rounds after the first.
    assert narrow_at[-1] - narrow_at[0] >= 4 * 0.3 * 0.9
