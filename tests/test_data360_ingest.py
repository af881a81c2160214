"""The Ingestion API on data streams: server-to-server events, streaming inserts, validation, deletes and
bulk jobs, authenticated with ingestion tokens.

Accepted records are checked in the flow's streaming log (what ``Streams.publish`` made durable), and
in the dataset once the micro-batcher has committed them.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from headwater.services.data360.bulk import KIND as JOB_KIND
from headwater.stores.metadata import Scope
from tests.support import ApiClient, LiveServer, wait_until
from tests.test_data360_connectors import SSOT, acme_schema, create_connector, deploy, upload

USERS = "/data/core/identity/users"


@dataclass
class Deployed:
    api: ApiClient
    connector: dict[str, Any]
    streams: dict[str, dict[str, Any]]  # "Engagement" / "Profile" -> data stream
    token: str
    base_url: str
    client: httpx.Client

    @property
    def source_id(self) -> str:
        return str(self.connector["sourceId"])

    @property
    def name(self) -> str:
        return str(self.connector["name"])

    def post(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, token, **kwargs)

    def request(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {**self._auth(token), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def _auth(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


def ingestion_token(server: LiveServer, api: ApiClient) -> str:
    """A user of the organization and an ingestion token for the api's sandbox (its data space)."""
    username = f"ingest-{uuid.uuid4().hex[:8]}@example.com"
    assert api.post(USERS, json={"username": username, "roles": {"*": "User"}}).status_code == 201
    sandbox = server.services.store.get_sandbox(api.org_id, api.sandbox_name)
    assert sandbox is not None
    token, _ = server.services.identity.issue_ingestion_token(api.org_id, sandbox.id, username)
    return token


@pytest.fixture
def deployed(server: LiveServer, api: ApiClient) -> Iterator[Deployed]:
    """The acme schema's three events deployed into the api's own sandbox, with an ingestion token for it."""
    connector = create_connector(api, "Acme Ingest")
    assert upload(api, connector["id"], acme_schema()).status_code == 200
    made = deploy(api, connector["id"], ["cartAdd", "pageView", "identity"], api.sandbox_name)
    assert made.status_code == 201, made.text
    streams = {s["category"]: s for s in made.json()["dataStreams"]}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield Deployed(api, connector, streams, ingestion_token(server, api), server.base_url, client)


def scope_of(server: LiveServer, api: ApiClient) -> Scope:
    sandbox = server.services.store.get_sandbox(api.org_id, api.sandbox_name)
    assert sandbox is not None
    return Scope(api.org_id, sandbox.id)


def published(server: LiveServer, flow_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(kind, record) of everything published to a flow's stream."""
    records = server.services.streams.log.read(flow_id, server.services.streams.log.START)
    return [(entry["k"], entry["r"]) for entry in (orjson.loads(r.payload) for r in records)]


def cart(event_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "dateTime": "2024-05-01T10:00:00.000Z",
        "deviceId": "device-1",
        "sessionId": "device-1",
        "eventType": "cartAdd",
        "category": "Engagement",
        "productId": "sku-9",
        "quantity": 2,
        "price": 19.5,
        **changes,
    }


def identity(device: str, **changes: Any) -> dict[str, Any]:
    return {
        "eventId": f"evt-{device}",
        "dateTime": "2024-05-01T10:00:00.000Z",
        "deviceId": device,
        "sessionId": device,
        "eventType": "identity",
        "category": "Profile",
        "email": f"{device}@example.com",
        "isAnonymous": False,
        "birthDate": "1990-12-10",
        **changes,
    }


def errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "report"}, body
    errors: list[dict[str, Any]] = body["report"]["errors"]
    return errors


# --- POST /server/events/{appSourceId} ---
def test_server_events_are_routed_by_event_type(server: LiveServer, deployed: Deployed) -> None:
    events = [cart("e-1"), identity("device-7"), cart("e-2", quantity=None, price=None)]
    response = deployed.post(f"/server/events/{deployed.source_id}", json={"events": events})
    assert response.status_code == 204, response.text
    engagement = published(server, deployed.streams["Engagement"]["flowId"])
    profile = published(server, deployed.streams["Profile"]["flowId"])
    assert [r["eventId"] for _, r in engagement] == ["e-1", "e-2"]
    assert [(k, r["deviceId"]) for k, r in profile] == [("raw", "device-7")]


@pytest.mark.parametrize(
    ("events", "path", "message"),
    [
        ([cart("e-1", sessionId=None)], "events[1].sessionId", "is required"),
        ([cart("e-1"), cart("e-2", productId="")], "events[2].productId", "is required"),
        ([cart("e-1", quantity="two")], "events[1].quantity", "is not a valid Number"),
        ([cart("e-1", dateTime="yesterday")], "events[1].dateTime", "is not a valid DateTime"),
        ([identity("d", birthDate="12/10/1990")], "events[1].birthDate", "is not a valid Date"),
        ([identity("d", isAnonymous="no")], "events[1].isAnonymous", "is not a valid Boolean"),
        ([cart("e-1", colour="red")], "events[1].colour", "is not a field of 'cartAdd'"),
        ([cart("e-1", eventType="checkout")], "events[1].eventType", "'checkout' has no data stream"),
        (
            [cart("e-1", category="Profile")],
            "events[1].category",
            "is 'Profile' but event 'cartAdd' is Engagement",
        ),
        (["text"], "events[1]", "must be an object"),
    ],
)
def test_server_events_are_checked_whole(
    server: LiveServer, deployed: Deployed, events: list[Any], path: str, message: str
) -> None:
    response = deployed.post(
        f"/server/events/{deployed.source_id}", json={"events": [identity("ok"), *events]}
    )
    assert response.status_code == 400, response.text
    found = [e for e in errors_of(response) if e["path"] == path]
    assert found and message in found[0]["message"], errors_of(response)
    for stream in deployed.streams.values():
        assert published(server, stream["flowId"]) == []  # nothing of a refused request is kept


def test_server_events_need_an_ingestion_token(server: LiveServer, deployed: Deployed) -> None:
    path = f"/server/events/{deployed.source_id}"
    body = {"events": [cart("e-1")]}
    missing = httpx.post(deployed.base_url + path, json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    for bad in ("not-a-jwt", deployed.api.token, deployed.token[:-3] + "abc"):
        refused = deployed.post(path, token=bad, json=body)
        assert refused.status_code == 401, refused.text
        assert "invalid or expired" in refused.json()["detail"]
    basic = httpx.post(deployed.base_url + path, json=body, headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401
    assert published(server, deployed.streams["Engagement"]["flowId"]) == []


def test_tokens_reach_only_their_data_space(
    server: LiveServer, deployed: Deployed, other_sandbox_api: ApiClient, other_org_api: ApiClient
) -> None:
    for other in (other_sandbox_api, other_org_api):
        token = ingestion_token(server, other)
        response = deployed.post(
            f"/server/events/{deployed.source_id}", token=token, json={"events": [cart("x")]}
        )
        assert response.status_code == 404, response.text
        insert = deployed.post(
            f"/api/v1/ingest/sources/{deployed.name}/cartAdd", token=token, json={"data": []}
        )
        assert insert.status_code == 404
    assert published(server, deployed.streams["Engagement"]["flowId"]) == []


def test_server_event_bodies(deployed: Deployed) -> None:
    path = f"/server/events/{deployed.source_id}"
    assert deployed.post(path, json={"events": []}).status_code == 400
    assert deployed.post(path, json=[1]).status_code == 400
    assert deployed.post(path, content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert deployed.post(path, content=b"x", headers={"Content-Type": "text/plain"}).status_code == 400
    assert deployed.post("/server/events/unknown-source", json={"events": [cart("e")]}).status_code == 404
    huge = {"events": [cart(f"e-{i}", productId="x" * 1000) for i in range(250)]}
    assert deployed.post(path, json=huge).status_code == 413


# --- the Ingestion API's streaming endpoints ---
def test_insert_records(server: LiveServer, deployed: Deployed) -> None:
    for source in (deployed.name, deployed.source_id):
        response = deployed.post(
            f"/api/v1/ingest/sources/{source}/identity", json={"data": [identity(source)]}
        )
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": True}
    keys = [r["deviceId"] for _, r in published(server, deployed.streams["Profile"]["flowId"])]
    assert keys == [deployed.name, deployed.source_id]


def test_insert_names_record_index_and_field(server: LiveServer, deployed: Deployed) -> None:
    path = f"/api/v1/ingest/sources/{deployed.name}/cartAdd"
    response = deployed.post(path, json={"data": [cart("e-1"), cart("e-2", productId=None)]})
    assert response.status_code == 400, response.text
    body = response.json()
    assert errors_of(response)[0]["path"] == "data[1].productId"
    assert body["error"] == "Bad Request" and body["internalErrorCode"] == "COMMON_ERROR_GENERIC"
    assert body["validationReport"]["failures"][0] == {
        "recordIndex": 1,
        "field": "productId",
        "reason": "is required (field 'productId' of 'cartAdd')",
    }
    assert published(server, deployed.streams["Engagement"]["flowId"]) == []
    unknown = deployed.post(f"/api/v1/ingest/sources/{deployed.name}/checkout", json={"data": [cart("e")]})
    assert unknown.status_code == 404
    assert deployed.post("/api/v1/ingest/sources/nope/cartAdd", json={"data": [cart("e")]}).status_code == 404
    big = {"data": [cart(f"e-{i}", productId="y" * 1000) for i in range(220)]}
    assert deployed.post(path, json=big).status_code == 413


def test_synchronous_validation_persists_nothing(server: LiveServer, deployed: Deployed) -> None:
    path = f"/api/v1/ingest/sources/{deployed.name}/cartAdd/actions/test"
    good = deployed.post(path, json={"data": [cart("e-1"), cart("e-2")]})
    assert good.status_code == 200, good.text
    assert good.json()["accepted"] is True and good.json()["records"] == 2
    bad = deployed.post(path, json={"data": [cart("e-1", quantity="x")]})
    assert bad.status_code == 400
    body = bad.json()
    assert body["message"] == "Bad Request: JSON is properly formatted but has a mismatch with Schema."
    assert body["path"] == f"uri=/api/v1/ingest/sources/{deployed.name}/cartAdd/actions/test"
    assert body["tenantId"] == "headwater" and body["validationReport"]["failedRecords"] == 1
    assert published(server, deployed.streams["Engagement"]["flowId"]) == []


def test_deletes(server: LiveServer, deployed: Deployed) -> None:
    path = f"/api/v1/ingest/sources/{deployed.name}/identity"
    by_query = deployed.request("DELETE", path, params={"ids": "device-1,device-2"})
    assert by_query.status_code == 202, by_query.text
    by_body = deployed.request("DELETE", path, json={"ids": ["device-3"]})
    assert by_body.status_code == 202, by_body.text
    assert published(server, deployed.streams["Profile"]["flowId"]) == [
        ("delete", {"key": "device-1"}),
        ("delete", {"key": "device-2"}),
        ("delete", {"key": "device-3"}),
    ]
    too_many = deployed.request("DELETE", path, json={"ids": [f"d{i}" for i in range(201)]})
    assert too_many.status_code == 400 and "at most 200" in too_many.json()["detail"]
    assert deployed.request("DELETE", path).status_code == 400
    assert deployed.request("DELETE", path, json={"ids": ["", 5]}).status_code == 400
    engagement = deployed.request(
        "DELETE", f"/api/v1/ingest/sources/{deployed.name}/cartAdd", params={"ids": "e"}
    )
    assert (
        engagement.status_code == 400 and "only Profile objects accept deletes" in engagement.json()["detail"]
    )


# --- bulk jobs ---
def job_path(job_id: str = "") -> str:
    return "/api/v1/ingest/jobs" + (f"/{job_id}" if job_id else "")


def create_job(deployed: Deployed, obj: str = "identity", operation: str = "upsert") -> dict[str, Any]:
    response = deployed.post(
        job_path(), json={"object": obj, "sourceName": deployed.name, "operation": operation}
    )
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    assert job["state"] == "Open" and job["object"] == obj and job["operation"] == operation
    return job


def put_csv(deployed: Deployed, job_id: str, text: str) -> httpx.Response:
    return deployed.request(
        "PUT", job_path(job_id) + "/batches", content=text.encode(), headers={"Content-Type": "text/csv"}
    )


def set_state(deployed: Deployed, job_id: str, state: str) -> httpx.Response:
    return deployed.request("PATCH", job_path(job_id), json={"state": state})


def wait_state(deployed: Deployed, job_id: str, states: tuple[str, ...]) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        job: dict[str, Any] = deployed.request("GET", job_path(job_id)).json()
        return job if job["state"] in states else None

    result: dict[str, Any] = wait_until(reached, timeout=30, interval=0.05)
    return result


IDENTITY_HEADER = "eventId,dateTime,deviceId,sessionId,eventType,category,email,isAnonymous,birthDate"


def identity_rows(*devices: str) -> str:
    rows = [
        f"evt-{d},2024-05-01T10:00:00.000Z,{d},{d},identity,Profile,{d}@example.com,false,1990-12-10"
        for d in devices
    ]
    return "\r\n".join([IDENTITY_HEADER, *rows]) + "\r\n"


def test_bulk_upsert_job(server: LiveServer, deployed: Deployed) -> None:
    job = create_job(deployed)
    assert put_csv(deployed, job["id"], identity_rows("b-1", "b-2")).status_code == 202
    second = put_csv(deployed, job["id"], identity_rows("b-3"))
    assert second.status_code == 202, second.text
    assert second.json()["numberOfFiles"] == 2 and second.json()["numberRecordsUploaded"] == 3
    closed = set_state(deployed, job["id"], "UploadComplete")
    assert closed.status_code == 200, closed.text
    assert put_csv(deployed, job["id"], identity_rows("late")).status_code == 409
    assert set_state(deployed, job["id"], "UploadComplete").status_code == 409
    done = wait_state(deployed, job["id"], ("JobComplete", "Failed"))
    assert done["state"] == "JobComplete", done
    assert done["numberRecordsProcessed"] == 3
    records = published(server, deployed.streams["Profile"]["flowId"])
    assert [(k, r["deviceId"], r["isAnonymous"]) for k, r in records] == [
        ("raw", "b-1", False),
        ("raw", "b-2", False),
        ("raw", "b-3", False),
    ]
    assert set_state(deployed, job["id"], "Aborted").status_code == 409
    listed = deployed.request("GET", job_path()).json()
    assert job["id"] in [j["id"] for j in listed["data"]]
    assert deployed.request("DELETE", job_path(job["id"])).status_code == 204
    assert deployed.request("GET", job_path(job["id"])).status_code == 404


def test_bulk_delete_job_and_abort(server: LiveServer, deployed: Deployed) -> None:
    job = create_job(deployed, operation="delete")
    assert (
        put_csv(deployed, job["id"], "device-1\r\ndevice-2,2024-05-01T10:00:00.000Z\r\n").status_code == 202
    )
    assert set_state(deployed, job["id"], "UploadComplete").status_code == 200
    assert wait_state(deployed, job["id"], ("JobComplete", "Failed"))["state"] == "JobComplete"
    assert published(server, deployed.streams["Profile"]["flowId"]) == [
        ("delete", {"key": "device-1"}),
        ("delete", {"key": "device-2"}),
    ]
    aborted = create_job(deployed)
    assert put_csv(deployed, aborted["id"], identity_rows("x")).status_code == 202
    bulk = server.services.ingestion_connectors.bulk
    folder = bulk.folder(scope_of(server, deployed.api), aborted["id"])
    assert len(list(folder.glob("*.csv"))) == 1  # kept under the home until the job ends
    assert set_state(deployed, aborted["id"], "Aborted").json()["state"] == "Aborted"
    assert not folder.exists()  # aborting deletes the uploaded data
    assert set_state(deployed, aborted["id"], "UploadComplete").status_code == 409


def test_bulk_jobs_left_unfinished_are_resumed_at_startup(
    server: LiveServer, deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk = server.services.ingestion_connectors.bulk
    store = server.services.store
    bulk.stop()  # as if the server were down
    try:
        monkeypatch.setattr(bulk, "ensure_started", lambda: None)
        closed = create_job(deployed)
        assert put_csv(deployed, closed["id"], identity_rows("r-1")).status_code == 202
        assert set_state(deployed, closed["id"], "UploadComplete").status_code == 200
        # A job a crashed process held: InProgress, lease expired, its first file already published.
        crashed = create_job(deployed)
        assert put_csv(deployed, crashed["id"], identity_rows("c-1", "c-2")).status_code == 202
        assert put_csv(deployed, crashed["id"], identity_rows("c-3")).status_code == 202
        assert set_state(deployed, crashed["id"], "UploadComplete").status_code == 200
        held = store.get(JOB_KIND, scope_of(server, deployed.api), crashed["id"])
        assert held is not None
        doc = {**held.doc, "state": "InProgress", "lease": {"owner": "gone", "until": 0}}
        doc["progress"] = {"batch": 1, "rows": 0}
        store.update(dataclasses.replace(held, doc=doc, etag='"crashed"'), held.etag)
        assert deployed.request("GET", job_path(closed["id"])).json()["state"] == "UploadComplete"
    finally:
        bulk.start()  # what the server does when it starts
    assert wait_state(deployed, closed["id"], ("JobComplete", "Failed"))["state"] == "JobComplete"
    resumed = wait_state(deployed, crashed["id"], ("JobComplete", "Failed"))
    assert resumed["state"] == "JobComplete" and resumed["retries"] == 1
    assert resumed["numberRecordsProcessed"] == 3
    keys = sorted(r["deviceId"] for _, r in published(server, deployed.streams["Profile"]["flowId"]))
    assert keys == ["c-3", "r-1"]


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        (identity_rows("a").replace("email", "mail"), "line 1.mail", "'mail' is not a field of 'identity'"),
        (identity_rows("a").replace(",sessionId", ""), "line 1.sessionId", "required field 'sessionId'"),
        (identity_rows("a") + "1,2\r\n", "line 3", "has 2 values; the header has 9"),
        (identity_rows("a").replace("false", "maybe"), "line 2.isAnonymous", "is not true or false"),
        (identity_rows("a").replace("1990-12-10", "10/12/1990"), "line 2.birthDate", "is not a valid Date"),
        (identity_rows("a").replace("evt-a", ""), "line 2.eventId", "is required"),
        ("", "line 1", "the file is empty"),
    ],
)
def test_bulk_uploads_are_checked(deployed: Deployed, text: str, path: str, message: str) -> None:
    job = create_job(deployed)
    response = put_csv(deployed, job["id"], text)
    assert response.status_code == 400, response.text
    found = [e for e in errors_of(response) if e["path"] == path]
    assert found and message in found[0]["message"], errors_of(response)
    assert deployed.request("GET", job_path(job["id"])).json()["numberOfFiles"] == 0


def test_bulk_job_requests_are_checked(deployed: Deployed) -> None:
    cases = [
        ({"object": "identity", "sourceName": deployed.name}, "operation"),
        ({"object": "identity", "sourceName": deployed.name, "operation": "merge"}, "operation"),
        ({"sourceName": deployed.name, "operation": "upsert"}, "object"),
        ({"object": "nope", "sourceName": deployed.name, "operation": "upsert"}, "object"),
        ({"object": "cartAdd", "sourceName": deployed.name, "operation": "delete"}, "operation"),
    ]
    for body, path in cases:
        response = deployed.post(job_path(), json=body)
        assert response.status_code == 400, (body, response.text)
        assert errors_of(response)[0]["path"] == path
    job = create_job(deployed)
    wrong_type = deployed.request(
        "PUT", job_path(job["id"]) + "/batches", content=b"a", headers={"Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 415
    assert set_state(deployed, job["id"], "InProgress").status_code == 400
    assert deployed.request("GET", job_path("missing")).status_code == 404
    assert httpx.get(deployed.base_url + job_path()).status_code == 401


# --- landing in the datasets (the micro-batcher's part) ---
def test_accepted_events_land_in_the_datasets(server: LiveServer, deployed: Deployed) -> None:
    from tests.streaming_helpers import streaming, wait_rows

    for stream in deployed.streams.values():
        faster = deployed.api.patch(
            f"{SSOT}/data-streams/{stream['id']}",
            params={"dataspace": deployed.api.sandbox_name},
            json={"refreshCadenceSeconds": 0},
        )
        assert faster.status_code == 200, faster.text
    with streaming(server, deployed.api):
        events = [cart("e-1"), cart("e-1"), identity("p-1"), identity("p-1", email="new@example.com")]
        assert (
            deployed.post(f"/server/events/{deployed.source_id}", json={"events": events}).status_code == 204
        )
        carts = wait_rows(server, deployed.api, deployed.streams["Engagement"]["dataSetId"], 1)
        people = wait_rows(server, deployed.api, deployed.streams["Profile"]["dataSetId"], 1)
        assert [r["_id"] for r in carts] == ["e-1"]
        assert carts[0]["_headwater"]["price"] == 19.5
        assert [r["_headwater"]["email"] for r in people] == ["new@example.com"]

        # Update Schema adds a field: the deployed stream's table gains it on its next commit.
        document = acme_schema()
        document["records"][0]["externalDataTranFields"].append(
            {"masterLabel": "Coupon", "developerName": "coupon", "dataType": "Text", "isDataRequired": False}
        )
        assert upload(deployed.api, deployed.connector["id"], document).status_code == 200

        def coupon_accepted() -> bool:
            sent = deployed.post(
                f"/server/events/{deployed.source_id}", json={"events": [cart("e-2", coupon="SPRING")]}
            )
            return sent.status_code == 204

        wait_until(coupon_accepted, timeout=10, interval=0.2)  # other processes' lookups refresh within 2 s
        carts = wait_rows(server, deployed.api, deployed.streams["Engagement"]["dataSetId"], 2)
    assert {r["_id"]: r["_headwater"].get("coupon") for r in carts} == {"e-1": None, "e-2": "SPRING"}
    # Deleting the stream deletes its flow (with its runs); its events are refused from then on.
    gone = deployed.api.delete(
        f"{SSOT}/data-streams/{deployed.streams['Engagement']['id']}",
        params={"dataspace": deployed.api.sandbox_name},
    )
    assert gone.status_code == 200 and gone.json()["keptResources"] == []
    flow = deployed.api.get(f"/data/foundation/flowservice/flows/{deployed.streams['Engagement']['flowId']}")
    assert flow.status_code == 404
    refused = deployed.post(f"/server/events/{deployed.source_id}", json={"events": [cart("e-3")]})
    assert refused.status_code == 400


def test_junk_never_causes_a_server_error(deployed: Deployed) -> None:
    from tests.test_robustness import JUNK_BODIES, JUNK_QUERIES

    job = create_job(deployed)
    writes = [
        ("POST", f"/server/events/{deployed.source_id}"),
        ("POST", "/server/events/does-not-exist"),
        ("POST", f"/api/v1/ingest/sources/{deployed.name}/identity"),
        ("POST", f"/api/v1/ingest/sources/{deployed.name}/cartAdd/actions/test"),
        ("POST", "/api/v1/ingest/sources/nope/nope"),
        ("DELETE", f"/api/v1/ingest/sources/{deployed.name}/identity"),
        ("POST", job_path()),
        ("PATCH", job_path(job["id"])),
        ("PATCH", job_path("does-not-exist")),
    ]
    for method, path in writes:
        for body in [*JUNK_BODIES, {"events": [{"eventType": {"a": 1}}]}, {"data": [[1], None]}, {"ids": {}}]:
            response = deployed.request(method, path, json=body)
            assert response.status_code < 500, (method, path, body, response.text)
            if response.status_code >= 400:
                assert {"type", "title", "status", "detail", "report"} <= set(response.json())
    for text in ("\x00,\x00\r\n", '"unterminated\r\n', "a,b\r\n" * 3, "\ufeff" + IDENTITY_HEADER):
        assert put_csv(deployed, job["id"], text).status_code < 500
    bad_utf8 = deployed.request(
        "PUT", job_path(job["id"]) + "/batches", content=b"\xff\xfe\x00", headers={"Content-Type": "text/csv"}
    )
    assert bad_utf8.status_code == 400
    for query in [*JUNK_QUERIES, "limit=0", "offset=-1", "state=%00"]:
        assert deployed.request("GET", f"{job_path()}?{query}").status_code < 500
    assert deployed.request("GET", job_path("%00")).status_code < 500


# --- the streaming log failing ---
@contextmanager
def stream_unavailable(server: LiveServer, flow_id: str) -> Iterator[None]:
    """The flow's stream folder taken by a file while the block runs: every append to it fails (as when
    the log's volume is gone), whoever the process runs as. The stream must not have been written yet."""
    from headwater.stores.log.local import LocalLog

    log = server.services.streams.log
    if not isinstance(log, LocalLog):
        pytest.skip("provokes the failure in the local log's folder")
    blocker = log.root / flow_id
    assert not blocker.exists()
    blocker.write_text("not a folder\n")
    try:
        yield
    finally:
        blocker.unlink()


def test_an_unavailable_streaming_log_answers_503_and_accepts_nothing(
    server: LiveServer, deployed: Deployed
) -> None:
    flow_id = deployed.streams["Profile"]["flowId"]
    path = f"/api/v1/ingest/sources/{deployed.name}/identity"
    calls = [
        ("POST", path, {"json": {"data": [identity("device-1")]}}),
        ("DELETE", path, {"params": {"ids": "device-2"}}),
        ("POST", f"/server/events/{deployed.source_id}", {"json": {"events": [identity("device-3")]}}),
    ]
    with stream_unavailable(server, flow_id):
        for method, target, kwargs in calls:
            response = deployed.request(method, target, **kwargs)
            assert response.status_code == 503, (target, response.text)
            body = response.json()
            assert body["status"] == 503 and body["report"]["code"] == "INGEST-1503-503", body
            assert "retry" in body["detail"].lower()
    # The log back: the same requests are accepted, and only they are in the stream
    for method, target, kwargs in calls:
        response = deployed.request(method, target, **kwargs)
        assert response.status_code in (202, 204), (target, response.text)
    assert [(k, r.get("deviceId") or r.get("key")) for k, r in published(server, flow_id)] == [
        ("raw", "device-1"),
        ("delete", "device-2"),
        ("raw", "device-3"),
    ]


def test_a_data_stream_reports_its_ingestion_counts(server: LiveServer, deployed: Deployed) -> None:
    from tests.streaming_helpers import streaming, wait_rows

    stream = deployed.streams["Engagement"]
    space = {"dataspace": deployed.api.sandbox_name}
    path = f"{SSOT}/data-streams/{stream['id']}/metrics"
    empty = deployed.api.get(path, params=space)
    assert empty.status_code == 200, empty.text
    assert {k: empty.json()[k] for k in ("totalRecordsReceived", "recordsWaiting", "refreshHistory")} == {
        "totalRecordsReceived": 0,
        "recordsWaiting": False,
        "refreshHistory": [],
    }
    events = [cart("m-1"), cart("m-2"), cart("m-2")]  # the repeated event is a duplicate, not a failure
    assert deployed.post(f"/server/events/{deployed.source_id}", json={"events": events}).status_code == 204
    waiting = deployed.api.get(path, params=space).json()
    assert waiting["recordsWaiting"] is True and waiting["totalRecordsReceived"] == 0
    assert waiting["nextRefreshDate"] and waiting["refreshCadenceSeconds"] == 900  # Engagement: 15 min

    faster = deployed.api.patch(
        f"{SSOT}/data-streams/{stream['id']}", params=space, json={"refreshCadenceSeconds": 0}
    )
    assert faster.status_code == 200, faster.text
    with streaming(server, deployed.api):
        wait_rows(server, deployed.api, stream["dataSetId"], 2)

        def counted() -> dict[str, Any] | None:
            view = deployed.api.get(path, params=space).json()
            return view if view["totalRecordsReceived"] == 3 else None

        view = wait_until(counted, timeout=20, interval=0.2)
    assert view["recordsWaiting"] is False and view["totalRecordsFailed"] == 0
    assert view["lastRunStatus"] == "IN_PROGRESS"
    [hour] = view["refreshHistory"]
    assert hour["recordsReceived"] == 3 and hour["status"] == "IN_PROGRESS"
    assert hour["windowStartDate"] < hour["windowEndDate"]
    by_name = deployed.api.get(f"{SSOT}/data-streams/{stream['name']}/metrics", params=space)
    assert by_name.json()["dataStreamId"] == stream["id"]
    missing = deployed.api.get(f"{SSOT}/data-streams/nope/metrics", params=space)
    assert missing.status_code == 404, missing.text
    assert deployed.api.get(
        f"{SSOT}/data-streams/{stream['id']}/metrics", params={"dataspace": "x"}
    ).status_code in (
        400,
        404,
    )
