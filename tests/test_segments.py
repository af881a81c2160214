"""Audiences through the real server: segment definitions (AEP's Segmentation Service API), batch segment
jobs checked against the brute-force evaluator, streaming entry and exit, roles and sandboxes.

Records are committed to profile-enabled datasets' tables and projected as a run projects them
(``catch_up``); the projection re-evaluates streaming segments for the profiles it touched. Segment jobs
are run by the server's job runner thread.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
import pyarrow as pa
import pytest

from headwater.engines.segments import brute, pql
from tests.profile_helpers import land, profile_dataset
from tests.streaming_helpers import scope_of
from tests.support import ApiClient, LiveServer, role_client

T = TypeVar("T")
SR = "/data/foundation/schemaregistry/tenant/schemas"
DATASETS = "/data/foundation/catalog/dataSets"
DEFINITIONS = "/data/core/ups/segment/definitions"
JOBS = "/data/core/ups/segment/jobs"
ENTITIES = "/data/core/ups/access/entities"
PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"
EVENT_CLASS = "https://ns.adobe.com/xdm/context/experienceevent"

IDENTITY = pa.struct([("id", pa.string()), ("primary", pa.bool_())])
IDENTITY_MAP = ("identityMap", pa.map_(pa.string(), pa.list_(IDENTITY)))
PEOPLE = pa.schema(
    [
        IDENTITY_MAP,
        ("person", pa.struct([("name", pa.struct([("firstName", pa.string())])), ("birthYear", pa.int64())])),
        ("homeAddress", pa.struct([("city", pa.string()), ("countryCode", pa.string())])),
        ("extSourceSystemAudit", pa.struct([("lastUpdatedDate", pa.string())])),
    ]
)
EVENTS = pa.schema(
    [IDENTITY_MAP, ("_id", pa.string()), ("timestamp", pa.string()), ("eventType", pa.string())]
)

CITIES = ["Paris", "Oslo", "Berlin", None]
COUNTRIES = ["FR", "NO", "DE", "US", None]
NAMES = ["Ada", "alan", "Grace", "Bob", None]


@pytest.fixture(autouse=True)
def job_runner(server: LiveServer) -> Iterator[None]:
    """The segment job runner a worker starts, for the test (start is idempotent)."""
    server.services.segment_job_runner.start()
    yield
    server.services.segment_job_runner.stop()  # not left polling a database the session drops


def _dataset(api: ApiClient, name: str, klass: str = PROFILE_CLASS) -> str:
    return profile_dataset(api, name, klass=klass)[1]


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _person(email: str, updated: datetime, name: Any, year: Any, city: Any, country: Any) -> dict[str, Any]:
    return {
        "identityMap": [("Email", [{"id": email, "primary": True}])],
        "person": {"name": {"firstName": name}, "birthYear": year},
        "homeAddress": {"city": city, "countryCode": country},
        "extSourceSystemAudit": {"lastUpdatedDate": _iso(updated)},
    }


def _event(email: str, at: datetime, event_type: str) -> dict[str, Any]:
    return {
        "identityMap": [("Email", [{"id": email, "primary": True}])],
        "_id": uuid.uuid4().hex,
        "timestamp": _iso(at),
        "eventType": event_type,
    }


def _define(api: ApiClient, pql_text: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": f"seg {uuid.uuid4().hex[:8]}",
        "expression": {"type": "PQL", "format": "pql/text", "value": pql_text},
    }
    response = api.post(DEFINITIONS, json={**body, **extra})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _poll(what: str, probe: Callable[[], T | None], seconds: float = 10.0) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {seconds} s")


def _run_job(api: ApiClient, segment_ids: list[str]) -> dict[str, Any]:
    created = api.post(JOBS, json={"segments": [{"segmentId": s} for s in segment_ids]})
    assert created.status_code == 200, created.text
    job_id = created.json()["id"]

    def ended() -> dict[str, Any] | None:
        job = api.get(f"{JOBS}/{job_id}").json()
        return job if job["status"] in ("SUCCEEDED", "FAILED") else None

    job = _poll("the segment job ends", ended, 20.0)
    assert job["status"] == "SUCCEEDED", job
    return job


def _members(server: LiveServer, api: ApiClient, segment_id: str) -> set[str]:
    """The emails of the segment's realized members."""
    store, scope = server.services.profiles, scope_of(server, api)
    clusters = store.segment_members(scope, segment_id, 10_000)
    return {ident for _, ns, ident in store.members(scope, clusters) if ns == "Email"}


def _membership(api: ApiClient, email: str) -> dict[str, Any]:
    response = api.get(
        ENTITIES, params={"schema.name": "_xdm.context.profile", "entityIdNS": "Email", "entityId": email}
    )
    assert response.status_code == 200, response.text
    (entity,) = response.json().values()
    return dict(entity["entity"].get("segmentMembership", {}).get("ups", {}))


# --- definitions ---


def test_definitions_crud_in_aeps_shape(api: ApiClient) -> None:
    created = _define(api, 'homeAddress.countryCode = "US"', description="Americans")
    assert created["expression"] == {
        "type": "PQL",
        "format": "pql/text",
        "value": 'homeAddress.countryCode = "US"',
    }
    assert created["schema"] == {"name": "_xdm.context.profile"}
    assert created["evaluationInfo"] == {
        "batch": {"enabled": True},
        "continuous": {"enabled": False},
        "synchronous": {"enabled": False},
    }
    default = api.get("/data/core/ups/config/mergePolicies").json()["children"][0]
    assert created["mergePolicyId"] == default["id"] and created["imsOrgId"] == api.org_id
    ident = created["id"]
    assert api.get(f"{DEFINITIONS}/{ident}").json() == created
    patched = api.patch(
        f"{DEFINITIONS}/{ident}", json=[{"op": "replace", "path": "/description", "value": "US"}]
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["description"] == "US" and patched.json()["updateTime"] >= created["updateTime"]
    listed = api.get(DEFINITIONS, params={"limit": "5"}).json()
    assert [s["id"] for s in listed["segments"]] == [ident] and listed["page"]["totalCount"] == 1
    assert api.delete(f"{DEFINITIONS}/{ident}").status_code == 200
    assert api.get(f"{DEFINITIONS}/{ident}").status_code == 404


def test_a_streaming_definition_that_is_not_streamable_is_evaluated_in_batch(api: ApiClient) -> None:
    streaming = {"continuous": {"enabled": True}}
    fine = _define(api, 'xEvent[eventType = "x"].count() > 0', evaluationInfo=streaming)
    assert fine["evaluationInfo"]["continuous"] == {"enabled": True}
    windowed = 'xEvent[eventType = "x" and timestamp occurs <= 7 days before now].count() >= 2'
    batch = _define(api, windowed, evaluationInfo=streaming)
    assert batch["evaluationInfo"]["continuous"] == {"enabled": False}
    assert batch["evaluationInfo"]["batch"] == {"enabled": True}


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        ({"expression": {"type": "PQL", "format": "pql/text", "value": "a = 1"}}, "name", "required"),
        ({"name": "x"}, "expression", "PQL"),
        ({"name": "x", "expression": {"type": "SQL", "value": "a = 1"}}, "expression.type", "PQL"),
        (
            {"name": "x", "expression": {"format": "pql/json", "value": "a = 1"}},
            "expression.format",
            "pql/text",
        ),
        ({"name": "x", "expression": {"value": ""}}, "expression.value", "required"),
        ({"name": "x", "expression": {"value": 'homeAddress.city == "Oslo"'}}, "expression.value", "at 17"),
        ({"name": "x", "expression": {"value": 'name.startWith("A")'}}, "expression.value", "startsWith"),
        ({"name": "x", "expression": {"value": "a ="}}, "expression.value", "at 3"),
        ({"name": "x", "expression": {"value": "a = 1"}, "mergePolicyId": "nope"}, "mergePolicyId", "'nope'"),
        (
            {"name": "x", "expression": {"value": "a = 1"}, "schema": {"name": "_xdm.other"}},
            "schema.name",
            "",
        ),
        (
            {"name": "x", "expression": {"value": "a = 1"}, "evaluationInfo": {"batch": {"enabled": 1}}},
            "evaluationInfo.batch.enabled",
            "",
        ),
        (
            {"name": "x", "expression": {"value": "a = 1"}, "evaluationInfo": {"edge": {"enabled": True}}},
            "evaluationInfo.edge",
            "",
        ),
        ({"name": "x", "expression": {"value": "a = 1"}, "colour": "blue"}, "colour", "not a segment"),
    ],
)
def test_bad_definitions_are_a_400_naming_the_field(
    api: ApiClient, body: dict[str, Any], path: str, words: str
) -> None:
    response = api.post(DEFINITIONS, json=body)
    assert response.status_code == 400, response.text
    problems = [p for p in response.json()["report"]["errors"] if p["path"] == path]
    assert problems and words in problems[0]["message"], response.json()
    assert api.get(DEFINITIONS).json()["page"]["totalCount"] == 0  # nothing stored


def test_bad_jobs_and_patches_are_a_4xx_naming_the_field(api: ApiClient) -> None:
    ident = _define(api, "a = 1")["id"]
    bad_pql = api.patch(
        f"{DEFINITIONS}/{ident}", json=[{"op": "replace", "path": "/expression/value", "value": "a =="}]
    )
    assert bad_pql.status_code == 400 and bad_pql.json()["report"]["errors"][0]["path"] == "expression.value"
    assert api.get(f"{DEFINITIONS}/{ident}").json()["expression"]["value"] == "a = 1"
    for body, path in (
        ({}, "segments"),
        ({"segments": [{"segmentId": "missing"}]}, "segments[0].segmentId"),
        ({"segments": [{"id": ident}]}, "segments[0].segmentId"),
    ):
        response = api.post(JOBS, json=body)
        assert response.status_code == 400, response.text
        assert response.json()["report"]["errors"][0]["path"] == path
    assert api.get(f"{JOBS}/nope").status_code == 404
    assert api.get(JOBS).json()["_page"]["totalCount"] == 0


# --- batch evaluation ---


def test_a_segment_job_qualifies_exactly_what_brute_force_evaluation_does(
    server: LiveServer, api: ApiClient
) -> None:
    rng = random.Random(14)
    tag = uuid.uuid4().hex[:6]
    crm, web, events = _dataset(api, "CRM"), _dataset(api, "Web"), _dataset(api, "Events", EVENT_CLASS)
    now = datetime.now(UTC)
    people, later, activity = [], [], []
    for i in range(200):
        email = f"p{i}.{tag}@example.com"
        fields = [
            rng.choice(NAMES),
            rng.choice([1970, 1985, 1999, None]),
            rng.choice(CITIES),
            rng.choice(COUNTRIES),
        ]
        people.append(_person(email, now - timedelta(days=30), *fields))
        if i % 3 == 0:  # a newer fragment from another source: the merge takes its values
            later.append(
                _person(email, now - timedelta(days=2), rng.choice(NAMES), None, rng.choice(CITIES), None)
            )
        for _ in range(rng.randrange(4)):
            days = rng.choice([1, 3, 20])  # well inside or outside the 7-day window
            activity.append(
                _event(email, now - timedelta(days=days), rng.choice(["commerce.purchases", "web.visit"]))
            )
    land(server, api, crm, PEOPLE, people)
    land(server, api, web, PEOPLE, later)
    land(server, api, events, EVENTS, activity)
    texts = [
        'homeAddress.city = "Paris" and person.birthYear >= 1985',
        'person.name.firstName.startsWith("a", false) or homeAddress.countryCode in ["DE", "FR"]',
        'xEvent[eventType = "commerce.purchases" and timestamp occurs <= 7 days before now].count() >= 2',
        'not (homeAddress.city = "Paris") and xEvent.count() > 0',
    ]
    segments = [_define(api, text)["id"] for text in texts]
    job = _run_job(api, segments)

    store, scope = server.services.profiles, scope_of(server, api)
    emails = {ident: cluster for cluster, ns, ident in store.members(scope, _all_clusters(server, api))}
    expected = _brute(server, api, texts, segments, emails, job["metrics"]["totalTime"]["startTimeInMs"])
    for segment in segments:
        assert _members(server, api, segment) == expected[segment], texts[segments.index(segment)]
        assert job["metrics"]["segmentedProfileCounter"][segment] == len(expected[segment])
    assert job["metrics"]["totalProfiles"] == 200
    assert all(expected.values())  # every definition qualifies someone: the comparison means something


def _all_clusters(server: LiveServer, api: ApiClient) -> list[int]:
    scope = scope_of(server, api)
    return sorted(
        {
            c
            for batch in server.services.profiles.iter_fragments(scope)
            for c in batch.column("cluster_id").to_pylist()
        }
    )


def _brute(
    server: LiveServer,
    api: ApiClient,
    texts: list[str],
    segments: list[str],
    emails: dict[str, int],
    now_ms: int,
) -> dict[str, set[str]]:
    """Each segment's qualifying emails by brute.evaluate_population over the store's rows."""
    store, scope = server.services.profiles, scope_of(server, api)
    fragments = [
        (row["cluster_id"], row["dataset_id"], row["ts_ms"], orjson.loads(row["attributes"]))
        for batch in store.iter_fragments(scope)
        for row in batch.to_pylist()
    ]
    events = [
        (row["cluster_id"], row["ts_ms"], orjson.loads(row["body"]))
        for batch in store.iter_events(scope)
        for row in batch.to_pylist()
    ]
    policy = server.services.merge_policies.default_policy(scope)
    definitions = {s: pql.parse(t) for s, t in zip(segments, texts, strict=True)}
    results = brute.evaluate_population(fragments, events, definitions, policy, now_ms)
    email_of = {c: e for e, c in emails.items()}
    return {s: {email_of[c] for c, r in results.items() if r[s]} for s in segments}


def test_a_second_job_exits_who_no_longer_qualifies(server: LiveServer, api: ApiClient) -> None:
    tag = uuid.uuid4().hex[:6]
    crm = _dataset(api, "CRM")
    now = datetime.now(UTC)
    ann, bob = f"ann.{tag}@example.com", f"bob.{tag}@example.com"
    land(
        server,
        api,
        crm,
        PEOPLE,
        [_person(e, now - timedelta(days=9), "A", 1990, "Oslo", "NO") for e in (ann, bob)],
    )
    segment = _define(api, 'homeAddress.city = "Oslo"')["id"]
    _run_job(api, [segment])
    assert _members(server, api, segment) == {ann, bob}
    assert _membership(api, ann)[segment]["status"] == "realized"
    land(server, api, crm, PEOPLE, [_person(bob, now - timedelta(days=1), "B", 1990, "Bergen", "NO")])
    job = _run_job(api, ["*"])
    assert _members(server, api, segment) == {ann}
    assert _membership(api, bob)[segment]["status"] == "exited"
    assert job["metrics"]["segmentTransitionCounter"][segment] == {"realized": 0, "exited": 1}
    store, scope = server.services.profiles, scope_of(server, api)
    moves = store.transitions(scope, segment, 0, 10)
    assert [(m.status, m.profile["homeAddress"]["city"]) for m in moves][-1] == ("exited", "Bergen")
    assert moves[-1].profile["identityMap"] == {"Email": [{"id": bob}]}
    listed = api.get(JOBS, params={"status": "SUCCEEDED"}).json()
    assert listed["children"][0]["id"] == job["id"] and listed["_page"]["totalCount"] == 2


def test_a_preview_counts_and_shows_the_audience(server: LiveServer, api: ApiClient) -> None:
    tag = uuid.uuid4().hex[:6]
    crm = _dataset(api, "CRM")
    now = datetime.now(UTC)
    rows = [
        _person(f"q{i}.{tag}@example.com", now, "Q", 1990, ["Oslo", "Rome"][i % 2], "NO") for i in range(7)
    ]
    land(server, api, crm, PEOPLE, rows)
    created = api.post("/data/core/ups/preview", json={"predicateExpression": 'homeAddress.city = "Oslo"'})
    assert created.status_code == 200, created.text
    preview_id = created.json()["previewId"]
    estimate = api.get(f"/data/core/ups/estimate/{preview_id}").json()
    assert estimate["estimatedSize"] == 4 and estimate["profilesReadSoFar"] == 7
    page = api.get(f"/data/core/ups/preview/{preview_id}", params={"limit": "3"}).json()
    assert len(page["results"]) == 3 and page["links"]["next"]
    assert {r["entity"]["homeAddress"]["city"] for r in page["results"]} == {"Oslo"}
    bad = api.post("/data/core/ups/preview", json={"predicateExpression": "a =="})
    assert bad.status_code == 400 and bad.json()["report"]["errors"][0]["path"] == "predicateExpression"
    viewer = role_client(server, api, "Viewer")
    assert viewer.get(f"/data/core/ups/estimate/{preview_id}").status_code == 200  # a count, no profiles
    assert viewer.get(f"/data/core/ups/preview/{preview_id}").status_code == 403


# --- streaming ---


def test_streaming_segments_enter_on_a_new_event_and_exit_on_an_update(
    server: LiveServer, api: ApiClient
) -> None:
    tag = uuid.uuid4().hex[:6]
    crm, events = _dataset(api, "CRM"), _dataset(api, "Events", EVENT_CLASS)
    now = datetime.now(UTC)
    eve = f"eve.{tag}@example.com"
    streaming = {"continuous": {"enabled": True}, "batch": {"enabled": False}}
    buyers = _define(api, 'xEvent[eventType = "commerce.purchases"].count() > 0', evaluationInfo=streaming)[
        "id"
    ]
    oslo = _define(api, 'homeAddress.city = "Oslo"', evaluationInfo=streaming)["id"]
    batch_only = _define(api, 'homeAddress.city = "Oslo"')["id"]
    land(server, api, crm, PEOPLE, [_person(eve, now - timedelta(days=3), "Eve", 1990, "Oslo", "NO")])
    _poll("eve enters the Oslo segment", lambda: _membership(api, eve).get(oslo))
    assert buyers not in _membership(api, eve) and batch_only not in _membership(api, eve)

    land(server, api, events, EVENTS, [_event(eve, now, "commerce.purchases")])
    entered = _poll("eve enters the buyers", lambda: _membership(api, eve).get(buyers))
    assert entered["status"] == "realized" and entered["lastQualificationTime"].endswith("Z")

    land(server, api, crm, PEOPLE, [_person(eve, now - timedelta(days=1), "Eve", 1990, "Bergen", "NO")])

    def exited() -> dict[str, Any] | None:
        held = _membership(api, eve).get(oslo)
        return held if held is not None and held["status"] == "exited" else None

    left = _poll("eve exits Oslo", exited)
    assert left["status"] == "exited" and _membership(api, eve)[buyers]["status"] == "realized"


# --- roles and sandboxes ---


def test_viewers_read_definitions_but_cannot_define_segments_or_read_members(
    server: LiveServer, api: ApiClient
) -> None:
    ident = _define(api, "a = 1")["id"]
    viewer = role_client(server, api, "Viewer")
    assert viewer.get(f"{DEFINITIONS}/{ident}").status_code == 200
    assert viewer.get(DEFINITIONS).status_code == 200
    for response in (
        viewer.post(DEFINITIONS, json={"name": "v", "expression": {"value": "a = 1"}}),
        viewer.patch(f"{DEFINITIONS}/{ident}", json=[{"op": "replace", "path": "/name", "value": "v"}]),
        viewer.delete(f"{DEFINITIONS}/{ident}"),
        viewer.post(JOBS, json={"segments": [{"segmentId": ident}]}),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["report"]["permission"] == "manage-segments"
    assert viewer.get(ENTITIES, params={"entityIdNS": "Email", "entityId": "a@b.co"}).status_code == 403
    user = role_client(server, api, "User")
    assert user.post(JOBS, json={"segments": [{"segmentId": ident}]}).status_code == 200


def test_sandboxes_do_not_see_each_others_segments(api: ApiClient, other_sandbox_api: ApiClient) -> None:
    ident = _define(api, "a = 1")["id"]
    assert other_sandbox_api.get(f"{DEFINITIONS}/{ident}").status_code == 404
    assert other_sandbox_api.get(DEFINITIONS).json()["page"]["totalCount"] == 0
    refused = other_sandbox_api.post(JOBS, json={"segments": [{"segmentId": ident}]})
    assert (
        refused.status_code == 400
        and refused.json()["report"]["errors"][0]["path"] == "segments[0].segmentId"
    )
    assert other_sandbox_api.delete(f"{DEFINITIONS}/{ident}").status_code == 404
