"""Profile export jobs through the real server (AEP's ``/data/core/ups/export/jobs``): an audience's
members written, merged, into a dataset's Iceberg table in one commit recorded as a catalog batch; bad
requests, roles and sandboxes; cancelling; and exactly once across a crash after the commit and a second
attempt of the same job.

Records are committed to a profile-enabled dataset's table and projected as a run projects them; segment
and export jobs run in the server's job runner threads (started per test, as a worker starts them).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
import pyarrow as pa
import pytest

from headwater.runtime.exportjobs import ExportExecution, ExportJobs, ExportServices
from headwater.services.tenancy import Actor
from tests.profile_helpers import land, profile_dataset
from tests.streaming_helpers import scope_of
from tests.support import ApiClient, LiveServer, role_client, wait_until

T = TypeVar("T")
EXPORTS = "/data/core/ups/export/jobs"
SEGMENT_JOBS = "/data/core/ups/segment/jobs"
DEFINITIONS = "/data/core/ups/segment/definitions"
SCHEMAS = "/data/foundation/schemaregistry/tenant/schemas"
DATASETS = "/data/foundation/catalog/dataSets"
XDM = "https://ns.adobe.com/xdm/context"
PROFILE_CLASS, EVENT_CLASS = f"{XDM}/profile", f"{XDM}/experienceevent"
IDENTITY_MAP, PERSON, PERSONAL = (
    f"{XDM}/identitymap",
    f"{XDM}/profile-person-details",
    f"{XDM}/profile-personal-details",
)
SEGMENTATION = f"{XDM}/profile-segmentation"

IDENTITY = pa.struct([("id", pa.string()), ("primary", pa.bool_())])
PEOPLE = pa.schema(
    [
        ("identityMap", pa.map_(pa.string(), pa.list_(IDENTITY))),
        ("person", pa.struct([("name", pa.struct([("firstName", pa.string()), ("lastName", pa.string())]))])),
        ("personalEmail", pa.struct([("address", pa.string())])),
        ("homeAddress", pa.struct([("city", pa.string())])),
        ("extSourceSystemAudit", pa.struct([("lastUpdatedDate", pa.string())])),
    ]
)


@pytest.fixture(autouse=True)
def runners(server: LiveServer) -> Iterator[None]:
    """The segment and export job runners a worker starts (start is idempotent)."""
    server.services.segment_job_runner.start()
    server.services.export_job_runner.start()
    yield
    server.services.export_job_runner.stop()
    server.services.segment_job_runner.stop()


# --- helpers ---


def _poll(what: str, probe: Callable[[], T | None], seconds: float = 15.0) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {seconds} s")


def _person(email: str, first: str, city: str, days_ago: int = 5) -> dict[str, Any]:
    updated = (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "identityMap": [("Email", [{"id": email, "primary": True}])],
        "person": {"name": {"firstName": first, "lastName": f"{first}son"}},
        "personalEmail": {"address": email},
        "homeAddress": {"city": city},
        "extSourceSystemAudit": {"lastUpdatedDate": updated},
    }


def _people(server: LiveServer, api: ApiClient, cities: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Profiles landed in a profile-enabled dataset: (the dataset, first name -> email)."""
    tag = uuid.uuid4().hex[:6]
    crm = profile_dataset(api, "CRM", IDENTITY_MAP, PERSON, PERSONAL)[1]
    emails = {name: f"{name.lower()}.{tag}@example.com" for name in cities}
    land(server, api, crm, PEOPLE, [_person(emails[n], n, c) for n, c in cities.items()])
    return crm, emails


def _export_dataset(
    api: ApiClient, *groups: str, klass: str = PROFILE_CLASS, enabled: bool = False, primary: str = ""
) -> str:
    """A dataset for exports: a schema of ``klass`` and ``groups``, not enabled for profile (unless
    ``enabled``), with the field at the JSON pointer ``primary`` its primary identity (an Email)."""
    body: dict[str, Any] = {
        "type": "object",
        "title": f"Export {uuid.uuid4().hex[:6]}",
        "allOf": [{"$ref": klass}, *({"$ref": g} for g in groups)],
    }
    tags: dict[str, list[str]] = {}
    if enabled:
        body["meta:immutableTags"] = ["union"]
        tags["unifiedProfile"] = ["enabled:true"]
    schema = api.post(SCHEMAS, json=body)
    assert schema.status_code == 201, schema.text
    if primary:
        descriptor = {
            "@type": "xdm:descriptorIdentity",
            "xdm:sourceSchema": schema.json()["$id"],
            "xdm:sourceVersion": 1,
            "xdm:sourceProperty": primary,
            "xdm:namespace": "Email",
            "xdm:property": "xdm:code",
            "xdm:isPrimary": True,
        }
        made = api.post(f"{SCHEMAS[: -len('/schemas')]}/descriptors", json=descriptor)
        assert made.status_code == 201, made.text
    created = api.post(
        DATASETS,
        json={
            "name": f"export {uuid.uuid4().hex[:6]}",
            "schemaRef": {"id": schema.json()["$id"]},
            "tags": tags,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()[0].split("/")[-1])


def _segment(api: ApiClient, pql_text: str) -> str:
    body = {"name": f"seg {uuid.uuid4().hex[:8]}", "expression": {"type": "PQL", "value": pql_text}}
    response = api.post(DEFINITIONS, json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _evaluate(api: ApiClient, segment_id: str) -> None:
    created = api.post(SEGMENT_JOBS, json={"segments": [{"segmentId": segment_id}]})
    assert created.status_code == 200, created.text
    ended = _ended(api, f"{SEGMENT_JOBS}/{created.json()['id']}")
    assert ended["status"] == "SUCCEEDED", ended


def _ended(api: ApiClient, path: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        job = api.get(path).json()
        return dict(job) if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED") else None

    return _poll(f"{path} ends", probe)


def _export(api: ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    created = api.post(EXPORTS, json=body)
    assert created.status_code == 200, created.text
    job = created.json()
    assert job["status"] == "NEW" and isinstance(job["id"], int) and job["jobType"] == "BATCH"
    return job


def _run(api: ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    """An export job, created and run to its end."""
    return _ended(api, f"{EXPORTS}/{_export(api, body)['id']}")


def _rows(api: ApiClient, dataset_id: str) -> list[dict[str, Any]]:
    response = api.get(f"{DATASETS}/{dataset_id}/preview", params={"limit": "1000"})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def _emails(rows: list[dict[str, Any]]) -> set[str]:
    """The Email identities of exported rows (a map column reads as [key, value] pairs)."""
    return {i["id"] for r in rows for ns, ids in r["identityMap"] for i in ids if ns == "Email"}


def _commits(server: LiveServer, api: ApiClient, dataset_id: str, key: str) -> int:
    table = server.services.lake.load(scope_of(server, api), dataset_id)
    assert table is not None
    return sum(1 for _ in server.services.lake.checkpoints(table, exportJobKey=key))


def _actor(server: LiveServer, api: ApiClient) -> Actor:
    org = server.services.store.get_org(api.org_id)
    sandbox = server.services.store.get_sandbox(api.org_id, api.sandbox_name)
    assert org is not None and sandbox is not None
    return Actor(org=org, sandbox=sandbox, client_id="test")


# --- exporting ---


def test_an_export_writes_exactly_the_realized_members_with_the_requested_fields(
    server: LiveServer, api: ApiClient
) -> None:
    _, emails = _people(
        server, api, {"Ada": "Oslo", "Bob": "Oslo", "Cy": "Rome", "Di": "Oslo", "Ed": "Paris"}
    )
    oslo = _segment(api, 'homeAddress.city = "Oslo"')
    _evaluate(api, oslo)
    target = _export_dataset(api, IDENTITY_MAP, PERSON, PERSONAL, SEGMENTATION)
    body = {
        "fields": "person.name.firstName,personalEmail",
        "filter": {"segments": [{"segmentId": oslo, "segmentNs": "ups", "status": ["realized"]}]},
        "destination": {"datasetId": target, "segmentPerBatch": False},
        "schema": {"name": "_xdm.context.profile"},
    }
    created = _export(api, body)
    default = api.get("/data/core/ups/config/mergePolicies").json()["children"][0]
    assert created["mergePolicy"] == {"id": default["id"], "version": 1}
    job = _ended(api, f"{EXPORTS}/{created['id']}")
    assert job["status"] == "SUCCEEDED", job
    assert job["metrics"]["totalExportedProfileCounter"] == 3
    assert job["metrics"]["exportedProfileByNamespaceCounter"] == {"Email": 3}
    assert job["metrics"]["totalTime"]["totalTimeInMs"] >= 0 and job["errors"] == []
    batch_id = job["destination"]["batchId"]
    batch = api.get(f"/data/foundation/catalog/batches/{batch_id}").json()[batch_id]
    assert batch["status"] == "success" and batch["metrics"]["outputRecordCount"] == 3
    assert {"type": "dataSet", "id": target} in batch["relatedObjects"]

    rows = _rows(api, target)
    members = {emails[n] for n in ("Ada", "Bob", "Di")}
    assert len(rows) == 3 and _emails(rows) == members
    assert {r["personalEmail"]["address"] for r in rows} == members
    assert {r["person"]["name"]["firstName"] for r in rows} == {"Ada", "Bob", "Di"}
    assert all(r["person"]["name"]["lastName"] is None for r in rows)  # not asked for
    assert all(r["homeAddress"] is None for r in rows)  # asked for neither
    for row in rows:
        ((namespace, by_segment),) = row["segmentMembership"]
        assert namespace == "ups" and [(s, m["status"]) for s, m in by_segment] == [(oslo, "realized")]
        assert row["_id"].startswith("hw")
    result = server.services.queries.run(
        _actor(server, api),
        "SELECT count(*) AS n, count(DISTINCT personalEmail.address) AS e FROM dataset",
        target,
    )
    assert result.table.to_pylist() == [{"n": 3, "e": 3}]
    assert _commits(server, api, target, job["computeGatewayJobId"]["exportJob"]) == 1

    listed = api.get(EXPORTS, params={"status": "SUCCEEDED"}).json()
    assert [r["id"] for r in listed["records"]] == [job["id"]] and listed["page"]["pageSize"] == 1


def test_exited_members_every_profile_and_evaluation_first(server: LiveServer, api: ApiClient) -> None:
    """``status: ["exited"]`` exports those who left; no filter exports every profile; with
    ``evaluationInfo.segmentation`` the job evaluates the segment itself. Fields the schema lacks are
    dropped: this schema has no homeAddress."""
    crm, emails = _people(server, api, {"Ann": "Oslo", "Ben": "Oslo", "Cat": "Rome"})
    oslo = _segment(api, 'homeAddress.city = "Oslo"')
    _evaluate(api, oslo)
    land(server, api, crm, PEOPLE, [_person(emails["Ben"], "Ben", "Bergen", days_ago=1)])
    _evaluate(api, oslo)
    target = _export_dataset(api, IDENTITY_MAP, PERSON, SEGMENTATION)

    exited = {"segments": [{"segmentId": oslo, "status": ["exited"]}]}
    left = _run(api, {"filter": exited, "destination": {"datasetId": target}})
    assert left["status"] == "SUCCEEDED" and left["metrics"]["totalExportedProfileCounter"] == 1
    everyone = _run(api, {"destination": {"datasetId": target}})
    assert everyone["status"] == "SUCCEEDED" and everyone["metrics"]["totalExportedProfileCounter"] == 3

    rome = _segment(api, 'homeAddress.city = "Rome"')  # never evaluated by a segment job
    body = {
        "filter": {"segments": [{"segmentId": rome}]},
        "destination": {"datasetId": target},
        "evaluationInfo": {"segmentation": True},
    }
    evaluated = _run(api, body)
    assert evaluated["status"] == "SUCCEEDED" and evaluated["metrics"]["totalExportedProfileCounter"] == 1
    assert "profileSegmentationTime" in evaluated["metrics"]

    rows = _rows(api, target)
    assert len(rows) == 1 + 3 + 1
    assert all("homeAddress" not in r and r["person"]["name"]["firstName"] for r in rows)
    assert len({j["destination"]["batchId"] for j in (left, everyone, evaluated)}) == 3
    assert _emails([r for r in rows if r["segmentMembership"] and rome in str(r["segmentMembership"])]) == {
        emails["Cat"]
    }
    ben = [r for r in rows if _emails([r]) == {emails["Ben"]}]
    statuses = sorted(dict(dict(r["segmentMembership"])["ups"])[oslo]["status"] for r in ben)
    assert statuses == ["exited", "exited"]  # the exited export, and every profile's export

    # A profile that does not conform to the destination's schema is a row error of the batch.
    dot = f"dot.{uuid.uuid4().hex[:6]}@example.com"
    land(server, api, crm, PEOPLE, [{**_person(dot, "Dot", "Oslo"), "personalEmail": None}])
    strict = _export_dataset(api, IDENTITY_MAP, PERSONAL, primary="/personalEmail/address")
    partial = _run(api, {"destination": {"datasetId": strict}})
    assert partial["status"] == "SUCCEEDED" and partial["metrics"]["totalExportedProfileCounter"] == 3
    (warning,) = partial["errors"]
    assert warning["type"] == "Warning" and "row_errors" in warning["msg"]
    batch_id = partial["destination"]["batchId"]
    batch = api.get(f"/data/foundation/catalog/batches/{batch_id}").json()[batch_id]
    assert batch["metrics"]["failedRecordCount"] == 1 and batch["metrics"]["outputRecordCount"] == 3
    meta = api.get(
        f"/data/foundation/export/batches/{batch_id}/meta", params={"path": "row_errors/row_errors.json"}
    )
    (failed,) = [orjson.loads(line) for line in meta.content.splitlines()]
    assert failed["_corrupt_record"]["identityMap"] == {"Email": [{"id": dot}]}
    assert dot not in _emails(_rows(api, strict))


# --- bad requests, roles, sandboxes ---


def test_bad_export_requests_are_a_400_naming_the_field_and_create_nothing(
    server: LiveServer, api: ApiClient
) -> None:
    target = _export_dataset(api, IDENTITY_MAP, PERSON)
    events = _export_dataset(api, IDENTITY_MAP, klass=EVENT_CLASS)
    enabled = _export_dataset(api, IDENTITY_MAP, PERSON, enabled=True)
    segment = _segment(api, 'homeAddress.city = "Oslo"')
    good = {"destination": {"datasetId": target}}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({}, "destination", "required"),
        ({"destination": {"datasetId": "nope"}}, "destination.datasetId", "no dataset"),
        ({"destination": {"datasetId": events}}, "destination.datasetId", "XDM Individual Profile"),
        ({"destination": {"datasetId": enabled}}, "destination.datasetId", "unifiedProfile"),
        ({"destination": {"datasetId": target, "segmentPerBatch": True}}, "destination.segmentPerBatch", ""),
        ({**good, "filter": {"segments": [{"segmentId": "nope"}]}}, "filter.segments[0].segmentId", "nope"),
        (
            {**good, "filter": {"segments": [{"segmentId": segment, "status": ["gone"]}]}},
            "filter.segments[0].status",
            "realized",
        ),
        (
            {**good, "filter": {"segments": [{"segmentId": segment, "segmentNs": "AAM"}]}},
            "filter.segments[0].segmentNs",
            "ups",
        ),
        ({**good, "filter": {"segments": []}}, "filter.segments", ""),
        ({**good, "filter": {"emptyProfiles": "yes"}}, "filter.emptyProfiles", ""),
        ({**good, "filter": {"fromIngestTimestamp": "yesterday"}}, "filter.fromIngestTimestamp", "RFC 3339"),
        ({**good, "fields": "person.nope"}, "fields", "person.nope"),
        ({**good, "fields": "homeAddress.city"}, "fields", "not a field"),
        ({**good, "fields": "person..name"}, "fields", "dotted"),
        ({**good, "mergePolicy": {"id": "nope", "version": 1}}, "mergePolicy.id", "nope"),
        ({**good, "schema": {"name": "_xdm.context.experienceevent"}}, "schema.name", ""),
        ({**good, "additionalFields": {"eventList": {"fields": "x"}}}, "additionalFields", "not supported"),
        ({**good, "evaluationInfo": {"segmentation": True}}, "evaluationInfo.segmentation", "segments"),
        ({**good, "colour": "blue"}, "colour", "not an export job field"),
    ]
    for body, path, words in cases:
        response = api.post(EXPORTS, json=body)
        assert response.status_code == 400, (body, response.text)
        problems = [p for p in response.json()["report"]["errors"] if p["path"] == path]
        assert problems and words in problems[0]["message"], (body, response.json())
    policy = api.get("/data/core/ups/config/mergePolicies").json()["children"][0]["id"]
    stale = api.post(EXPORTS, json={**good, "mergePolicy": {"id": policy, "version": 7}})
    assert stale.status_code == 400 and stale.json()["report"]["errors"][0]["path"] == "mergePolicy.version"
    assert api.get(EXPORTS).json()["records"] == []  # nothing was created
    assert server.services.store.list("batch", scope_of(server, api)).items == []
    for path in (f"{EXPORTS}/1", f"{EXPORTS}/abc", f"{EXPORTS}/\u00b2"):  # "²" is a digit to str.isdigit
        assert api.get(path).status_code == 404 and api.delete(path).status_code == 404
    for params, name in (
        ({"limit": "0"}, "limit"),
        ({"limit": "\u00b2"}, "limit"),
        ({"offset": "x"}, "offset"),
        ({"status": "nope"}, "status"),
    ):
        listed = api.get(EXPORTS, params=params)
        assert listed.status_code == 400 and listed.json()["report"]["errors"][0]["path"] == name


def test_roles_and_sandboxes(server: LiveServer, api: ApiClient, other_sandbox_api: ApiClient) -> None:
    target = _export_dataset(api, IDENTITY_MAP, PERSON)
    job = _export(api, {"destination": {"datasetId": target}})
    viewer = role_client(server, api, "Viewer")
    refused = viewer.post(EXPORTS, json={"destination": {"datasetId": target}})
    assert refused.status_code == 403 and refused.json()["report"]["permission"] == "view-profiles"
    cancel = viewer.delete(f"{EXPORTS}/{job['id']}")
    assert cancel.status_code == 403 and cancel.json()["report"]["permission"] == "manage-segments"
    assert viewer.get(f"{EXPORTS}/{job['id']}").status_code == 200  # a job holds no profile data
    user = role_client(server, api, "User")
    second = user.post(EXPORTS, json={"destination": {"datasetId": target}})
    assert second.status_code == 200 and second.json()["id"] == job["id"] + 1
    first_page = api.get(EXPORTS, params={"limit": "1"}).json()
    assert [r["id"] for r in first_page["records"]] == [job["id"] + 1]
    offset = first_page["page"]["pageOffset"]
    assert first_page["link"]["next"] == f"/export/jobs/?limit=1&offset={offset}"
    last_page = api.get(EXPORTS, params={"limit": "1", "offset": offset}).json()
    assert [r["id"] for r in last_page["records"]] == [job["id"]] and last_page["link"]["next"] == ""

    assert other_sandbox_api.get(f"{EXPORTS}/{job['id']}").status_code == 404
    assert other_sandbox_api.get(EXPORTS).json()["records"] == []
    assert other_sandbox_api.delete(f"{EXPORTS}/{job['id']}").status_code == 404
    theirs = other_sandbox_api.post(EXPORTS, json={"destination": {"datasetId": target}})
    assert (
        theirs.status_code == 400 and theirs.json()["report"]["errors"][0]["path"] == "destination.datasetId"
    )
    mine = _export_dataset(other_sandbox_api, IDENTITY_MAP, PERSON)
    own = _export(other_sandbox_api, {"destination": {"datasetId": mine}})
    assert own["id"] == 1  # ids count per sandbox


# --- cancelling, crashes and retries ---


def _services(server: LiveServer) -> ExportServices:
    services = server.services.export_job_runner.jobs
    assert isinstance(services, ExportJobs)
    return services.services


class _Crash(BaseException):
    """The process dying at a point: nothing after it runs (not an Exception: nothing catches it)."""


class _CrashingLake:
    """The server's lake, whose next commit kills the attempt before or after it lands."""

    def __init__(self, lake: Any, after: bool) -> None:
        self._lake, self._after = lake, after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lake, name)

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        if not self._after:
            raise _Crash()
        self._lake.commit(*args, **kwargs)
        raise _Crash()


class _TakeOverLake:
    """The server's lake, on which ``meanwhile`` happens while an attempt writes its files."""

    def __init__(self, lake: Any, meanwhile: Callable[[], None]) -> None:
        self._lake, self._meanwhile = lake, meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lake, name)

    def write_files(self, *args: Any, **kwargs: Any) -> Any:
        files = self._lake.write_files(*args, **kwargs)
        self._meanwhile()
        return files


def _play_the_runner(server: LiveServer) -> None:
    """Stop the export runner once it has run every job earlier tests left (on this session's server), so
    that a claim made by the test takes the test's own job."""
    jobs = server.services.profile_exports
    jobs.created.notify()
    wait_until(lambda: not jobs.pending.candidates(), timeout=30)
    server.services.export_job_runner.stop()


def test_cancelling_and_an_attempt_taken_over(server: LiveServer, api: ApiClient) -> None:
    _play_the_runner(server)  # the jobs wait for this test to run them
    target = _export_dataset(api, IDENTITY_MAP, PERSON)
    waiting = _export(api, {"destination": {"datasetId": target}})
    assert api.delete(f"{EXPORTS}/{waiting['id']}").json() == {
        "status": True,
        "message": "Export job has been marked for cancelling",
    }
    assert api.get(f"{EXPORTS}/{waiting['id']}").json()["status"] == "CANCELLED"
    assert api.delete(f"{EXPORTS}/{waiting['id']}").json()["status"] is False  # it has ended

    running = _export(api, {"destination": {"datasetId": target}})
    jobs = server.services.profile_exports
    claimed = jobs.claim_next("test")
    assert claimed is not None and claimed.id == str(running["id"])
    assert api.delete(f"{EXPORTS}/{running['id']}").json()["status"] is True
    ended = ExportExecution(_services(server), claimed).execute()
    assert ended is not None and ended.doc["status"] == "CANCELLED"
    batch_id = ended.doc["destination"]["batchId"]
    assert api.get(f"/data/foundation/catalog/batches/{batch_id}").json()[batch_id]["status"] == "aborted"
    assert _commits(server, api, target, ended.doc["key"]) == 0

    # An attempt whose lease runs out while it writes, and whose job is taken over, stops before its
    # commit; the attempt that took it over commits.
    taken = _export(api, {"destination": {"datasetId": target}})
    late = jobs.claim_next("late")
    assert late is not None and late.id == str(taken["id"])
    took: list[Any] = []

    def take_over() -> None:
        held = jobs.current(late)
        assert jobs.save(held, leaseUntil=0) is not None
        took.append(jobs.claim_next("taker"))

    slow = dataclasses.replace(_services(server), lake=_TakeOverLake(server.services.lake, take_over))
    assert ExportExecution(slow, late).execute() is None
    assert _commits(server, api, target, late.doc["key"]) == 0
    (taker,) = took
    finished = ExportExecution(_services(server), taker).execute()
    assert finished is not None and finished.doc["status"] == "SUCCEEDED"
    assert _commits(server, api, target, late.doc["key"]) == 1


def test_a_crash_around_the_commit_and_a_second_attempt_write_the_rows_once(
    server: LiveServer, api: ApiClient
) -> None:
    _play_the_runner(server)  # this test plays the runners
    _, emails = _people(server, api, {"Eva": "Oslo", "Fox": "Oslo", "Gil": "Rome"})
    oslo = _segment(api, 'homeAddress.city = "Oslo"')
    _evaluate(api, oslo)
    # Its primary identity is required: exported whatever ``fields`` says, or no row would conform.
    target = _export_dataset(api, IDENTITY_MAP, PERSONAL, SEGMENTATION, primary="/personalEmail/address")
    body = {
        "fields": "homeAddress.city",
        "filter": {"segments": [{"segmentId": oslo}]},
        "destination": {"datasetId": target},
    }
    created = _export(api, body)
    jobs, services = server.services.profile_exports, _services(server)

    def attempt(lake: Any = None) -> Any:
        """Claim the job (its earlier attempt's lease expired) and run it, on ``lake`` when given."""
        held = jobs.get(_actor(server, api), str(created["id"]))
        if held.doc["status"] == "PROCESSING":  # its runner died: the lease runs out
            assert jobs.save(held, leaseUntil=0) is not None
        claimed = jobs.claim_next("test")
        assert claimed is not None
        run_on = dataclasses.replace(services, lake=lake) if lake is not None else services
        return claimed, ExportExecution(run_on, claimed)

    _, dies_before = attempt(_CrashingLake(server.services.lake, after=False))
    with pytest.raises(_Crash):
        dies_before.execute()
    _, dies_after = attempt(_CrashingLake(server.services.lake, after=True))
    with pytest.raises(_Crash):
        dies_after.execute()
    key = created["computeGatewayJobId"]["exportJob"]
    assert _commits(server, api, target, key) == 1  # the rows are in; the bookkeeping is not
    batch_id = jobs.current(dies_after.job).doc["destination"]["batchId"]
    assert api.get(f"/data/foundation/catalog/batches/{batch_id}").json()[batch_id]["status"] == "loading"

    late, _ = attempt()  # an attempt that will run late, after the next one took the job over
    _, taker = attempt()
    done = taker.execute()
    assert done is not None and done.doc["status"] == "SUCCEEDED"
    assert ExportExecution(services, late).execute() is None  # it lost the job: it stops

    job = api.get(f"{EXPORTS}/{created['id']}").json()
    assert job["status"] == "SUCCEEDED" and job["destination"]["batchId"] == batch_id
    assert job["metrics"]["totalExportedProfileCounter"] == 2
    assert api.get(f"/data/foundation/catalog/batches/{batch_id}").json()[batch_id]["status"] == "success"
    rows = _rows(api, target)
    assert len(rows) == 2 and _emails(rows) == {emails["Eva"], emails["Fox"]}
    assert {r["personalEmail"]["address"] for r in rows} == {emails["Eva"], emails["Fox"]}
    assert {r["homeAddress"]["city"] for r in rows} == {"Oslo"}
    assert _commits(server, api, target, key) == 1
