"""The audit log: every write through the platform API lands as one event (who, where, what, how it
ended) before it is answered, and organization admins read and filter them at
``GET /data/foundation/audit/events``."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pytest

from headwater.edge.session import COOKIE, CSRF_HEADER
from headwater.services.users import actor_for
from tests.flows_helpers import FS, SALESFORCE
from tests.support import ApiClient, LiveServer, role_client

EVENTS = "/data/foundation/audit/events"
CONNECTIONS = f"{FS}/connections"
SANDBOXES = "/data/foundation/sandbox-management/sandboxes"
PREVIEW = "/data/foundation/conversion/mappingSets/preview"


def _connection_body(name: str = "Salesforce") -> dict[str, Any]:
    return {
        "name": name,
        "auth": {
            "specName": "Basic Authentication",
            "params": {"username": "ada@example.com", "password": "s3cret-pw", "securityToken": "tok"},
        },
        "connectionSpec": {"id": SALESFORCE, "version": "1.0"},
    }


def _events(reader: ApiClient, *properties: str, **params: Any) -> dict[str, Any]:
    response = reader.get(EVENTS, params=[("property", p) for p in properties] + list(params.items()))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _listed(reader: ApiClient, *properties: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = _events(reader, *properties, limit=1000)["_embedded"]["events"]
    return events


def _of_sandbox(reader: ApiClient, sandbox: str, *properties: str) -> list[dict[str, Any]]:
    return _listed(reader, f"sandboxName=={sandbox}", *properties)


def _create_update_delete(me: ApiClient) -> str:
    created = me.post(CONNECTIONS, json=_connection_body())
    assert created.status_code == 201, created.text
    ident = str(created.json()["id"])
    patch = [{"op": "replace", "path": "/name", "value": "Renamed"}]
    updated = me.patch(f"{CONNECTIONS}/{ident}", json=patch, headers={"If-Match": created.json()["etag"]})
    assert updated.status_code == 200, updated.text
    assert me.delete(f"{CONNECTIONS}/{ident}").status_code == 204
    return ident


def test_create_update_delete_each_land_as_allowed_events(server: LiveServer, api: ApiClient) -> None:
    developer = role_client(server, api, "Developer")
    with developer:
        ident = _create_update_delete(developer)
    events = _listed(api, f"clientId=={developer.api_key}")
    assert [e["action"] for e in events] == ["Delete", "Update", "Create"]  # newest first
    for event, status_code, method in zip(events, (204, 200, 201), ("DELETE", "PATCH", "POST"), strict=True):
        assert event["status"] == "Allow"
        assert event["statusCode"] == status_code
        assert event["method"] == method
        assert event["userEmail"] == f"{developer.api_key}@AdobeID"
        assert event["clientId"] == developer.api_key
        assert event["role"] == "Developer"
        assert event["assetType"] == "connections"
        assert event["assetId"] == ident
        assert event["permission"] == "manage-sources"
        assert event["permissionType"] == "WRITE"
        assert event["imsOrgId"] == api.org_id
        assert event["sandboxName"] == api.sandbox_name
        assert event["failureCode"] == ""
        assert event["clientIp"] == "127.0.0.1"
        assert event["timestamp"].endswith("+0000") and len(event["timestamp"]) == 28
    assert events[2]["path"] == CONNECTIONS
    assert events[0]["path"] == f"{CONNECTIONS}/{ident}"


def test_concurrent_writes_each_have_their_event_once_answered(api: ApiClient) -> None:
    """Events of calls that finish together are committed together; each answer still waits for its own."""
    from concurrent.futures import ThreadPoolExecutor

    def create(n: int) -> str:
        response = api.post(CONNECTIONS, json=_connection_body(f"Salesforce {n}"))
        assert response.status_code == 201, response.text
        # the answer is back: its event must be readable now, without waiting
        assert [e["id"] for e in _of_sandbox(api, api.sandbox_name, f"assetId=={response.json()['id']}")]
        return str(response.json()["id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        created = set(pool.map(create, range(40)))
    events = _of_sandbox(api, api.sandbox_name, "action==create")
    assert sorted(e["assetId"] for e in events) == sorted(created)
    assert len({e["id"] for e in events}) == 40


def test_request_id_header_becomes_the_events_request_id(api: ApiClient) -> None:
    request_id = "trace-" + uuid.uuid4().hex
    created = api.post(CONNECTIONS, json=_connection_body(), headers={"x-request-id": request_id})
    assert created.status_code == 201
    (event,) = _of_sandbox(api, api.sandbox_name)
    assert event["requestId"] == request_id
    api.delete(f"{CONNECTIONS}/{created.json()['id']}")
    newest = _of_sandbox(api, api.sandbox_name)[0]
    assert newest["action"] == "Delete" and newest["requestId"] and newest["requestId"] != request_id


def test_a_refused_write_lands_as_deny_naming_the_permission(server: LiveServer, api: ApiClient) -> None:
    with role_client(server, api, "Viewer") as viewer:
        refused = viewer.post(CONNECTIONS, json=_connection_body())
    assert refused.status_code == 403
    assert refused.json()["report"]["permission"] == "manage-sources"
    assert api.get(CONNECTIONS).json()["items"] == []  # nothing changed
    (event,) = _listed(api, f"clientId=={viewer.api_key}")
    assert event["status"] == "Deny"
    assert event["statusCode"] == 403
    assert event["failureCode"] == "HW-1403-403"
    assert event["permission"] == "manage-sources"
    assert event["permissionResource"] == "Sources"
    assert event["role"] == "Viewer"
    assert event["action"] == "Create"
    assert event["assetType"] == "connections"
    assert event["assetId"] is None


def test_a_validation_failure_lands_as_failure(api: ApiClient) -> None:
    response = api.post(CONNECTIONS, json={"name": "no spec"})
    assert response.status_code == 400
    (event,) = _of_sandbox(api, api.sandbox_name)
    assert event["status"] == "Failure"
    assert event["statusCode"] == 400
    assert event["failureCode"] == response.json()["report"]["code"]
    assert event["action"] == "Create"
    assert event["assetId"] is None
    assert _of_sandbox(api, api.sandbox_name, "statusCode==400") == [event]
    assert _of_sandbox(api, api.sandbox_name, "status==failure") == [event]


def test_previews_and_reads_are_not_recorded(api: ApiClient) -> None:
    assert api.get(CONNECTIONS).status_code == 200
    preview = api.post(PREVIEW, json={})  # permission read: it changes nothing, whatever it answers
    assert preview.status_code in (200, 400), preview.text
    assert _of_sandbox(api, api.sandbox_name) == []


def test_an_organization_wide_write_has_no_sandbox(api: ApiClient) -> None:
    name = "a" + uuid.uuid4().hex[:12]
    response = api.post(SANDBOXES, json={"name": name})
    assert response.status_code == 201, response.text
    (event,) = _listed(api, "assetType==sandboxes", f"assetId=={response.json()['id']}")
    assert event["sandboxName"] is None
    assert event["permission"] == "manage-sandboxes"
    assert event["status"] == "Allow"


def test_a_console_write_records_the_person(server: LiveServer, api: ApiClient) -> None:
    org = server.services.store.get_org(api.org_id)
    assert org is not None
    username = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    user = server.services.identity.users.create(
        actor_for(org, "test"), {"username": username, "roles": {api.sandbox_name: "User"}}
    )
    cookie, session = server.services.sessions.issue(user.id, org.id, username)
    headers = {CSRF_HEADER: session.csrf, "x-sandbox-name": api.sandbox_name, "Cookie": f"{COOKIE}={cookie}"}
    response = httpx.post(server.base_url + CONNECTIONS, json=_connection_body(), headers=headers)
    assert response.status_code == 201, response.text
    (event,) = _listed(api, f"user=={username}")
    assert event["userEmail"] == username
    assert event["clientId"] == "headwater-console"
    assert event["role"] == "User"
    assert event["assetId"] == response.json()["id"]
    assert _listed(api, f"userEmail=={username}") == [event]


def test_console_sign_ins_and_sign_outs_are_events(server: LiveServer, api: ApiClient) -> None:
    username, password = f"signin-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery staple"
    made = api.post("/data/core/identity/users", json={"username": username, "password": password})
    assert made.status_code == 201, made.text
    with httpx.Client(base_url=server.base_url, timeout=30) as browser:
        origin = {"Origin": server.base_url}
        wrong = browser.post(
            "/console/login", data={"username": username, "password": "not it"}, headers=origin
        )
        assert wrong.status_code == 401
        right = browser.post(
            "/console/login", data={"username": username, "password": password}, headers=origin
        )
        assert right.status_code == 303
        page = browser.get("/console/sources").text
        csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        assert browser.post("/console/logout", data={"csrf": csrf}).status_code == 303
    events = _listed(api, f"user=={username}", "assetType==sessions")
    seen = [(e["action"], e["status"], e["statusCode"], e["failureCode"]) for e in reversed(events)]
    assert seen == [
        ("Sign in", "Failure", 401, "bad-credentials"),
        ("Sign in", "Allow", 303, ""),
        ("Sign out", "Allow", 303, ""),
    ]
    assert {e["sandboxName"] for e in events} == {None} and events[-1]["assetId"] == made.json()["id"]
    assert [e["action"] for e in _listed(api, f"user=={username}", "action==signin")] == ["Sign in"] * 2


def test_filters_select_events(server: LiveServer, api: ApiClient) -> None:
    developer = role_client(server, api, "Developer")
    viewer = role_client(server, api, "Viewer")
    with developer, viewer:
        ident = _create_update_delete(developer)
        assert viewer.delete(f"{CONNECTIONS}/{ident}").status_code == 403
    sandbox = api.sandbox_name
    everything = _of_sandbox(api, sandbox)
    assert len(everything) == 4
    assert [e["action"] for e in _of_sandbox(api, sandbox, "action==create")] == ["Create"]
    assert [e["action"] for e in _of_sandbox(api, sandbox, "action==Delete")] == ["Delete", "Delete"]
    assert [e["clientId"] for e in _of_sandbox(api, sandbox, "status==deny")] == [viewer.api_key]
    assert len(_of_sandbox(api, sandbox, "status==allow")) == 3
    assert len(_of_sandbox(api, sandbox, f"user=={developer.api_key}@AdobeID")) == 3
    assert len(_of_sandbox(api, sandbox, "role==viewer")) == 1
    assert len(_of_sandbox(api, sandbox, "assetType==connections", f"assetId=={ident}")) == 4
    assert _of_sandbox(api, sandbox, "assetType==flows") == []
    assert len(_of_sandbox(api, sandbox, 'permission=="manage-sources"')) == 4
    # timestamps: as rendered (ISO 8601 with +0000), as Z, and as epoch milliseconds
    oldest, newest = everything[-1]["timestamp"], everything[0]["timestamp"]
    assert len(_of_sandbox(api, sandbox, f"timestamp>={oldest}", f"timestamp<={newest}")) == 4
    assert _of_sandbox(api, sandbox, f"timestamp<{oldest}") == []
    assert everything[0] in _of_sandbox(api, sandbox, f"timestamp>={newest}")
    assert _of_sandbox(api, sandbox, "timestamp>2999-01-01T00:00:00Z") == []
    assert len(_of_sandbox(api, sandbox, "timestamp>=0", "timestamp<32503680000000")) == 4
    # another sandbox of the same organization has its own events
    assert _of_sandbox(api, "t" + uuid.uuid4().hex[:12]) == []


def test_paging_follows_limit_start_and_next(server: LiveServer, api: ApiClient) -> None:
    for _ in range(5):
        assert api.post(CONNECTIONS, json={"name": "invalid"}).status_code == 400
    everything = [e["id"] for e in _of_sandbox(api, api.sandbox_name)]
    assert len(everything) == 5
    first = _events(api, f"sandboxName=={api.sandbox_name}", limit=2)
    assert first["_page"] == {"limit": 2, "start": 0, "count": 2, "totalElements": 5}
    assert [e["id"] for e in first["_embedded"]["events"]] == everything[:2]
    assert first["_links"]["self"]["href"].startswith(EVENTS + "?")
    seen = [e["id"] for e in first["_embedded"]["events"]]
    page = first
    while "next" in page["_links"]:
        response = api.get(page["_links"]["next"]["href"])
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [e["id"] for e in page["_embedded"]["events"]]
    assert seen == everything
    assert page["_page"] == {"limit": 2, "start": 4, "count": 1, "totalElements": 5}
    default = _events(api, f"sandboxName=={api.sandbox_name}")
    assert default["_page"]["limit"] == 50 and "next" not in default["_links"]


@pytest.mark.parametrize("role", ["Developer", "Viewer"])
def test_only_organization_admins_read_the_log(server: LiveServer, api: ApiClient, role: str) -> None:
    with role_client(server, api, role) as someone:
        refused = someone.get(EVENTS)
    assert refused.status_code == 403
    assert refused.json()["report"]["permission"] == "view-user-activity-log"
    with role_client(server, api, "Admin") as admin:
        assert admin.post(CONNECTIONS, json=_connection_body()).status_code == 201
        (event,) = _listed(admin, f"clientId=={admin.api_key}")
    assert event["role"] == "Admin"
    assert _listed(api, f"clientId=={someone.api_key}") == []  # reading is not a write


def test_another_organizations_events_are_invisible(api: ApiClient, other_org_api: ApiClient) -> None:
    assert other_org_api.post(CONNECTIONS, json=_connection_body()).status_code == 201
    assert api.post(CONNECTIONS, json=_connection_body()).status_code == 201
    assert _of_sandbox(api, other_org_api.sandbox_name) == []
    assert _listed(api, f"clientId=={other_org_api.api_key}") == []
    theirs = _listed(other_org_api, f"clientId=={other_org_api.api_key}")
    assert theirs and {e["imsOrgId"] for e in theirs} == {other_org_api.org_id}
    assert _of_sandbox(other_org_api, api.sandbox_name) == []
    assert all(e["imsOrgId"] == other_org_api.org_id for e in _listed(other_org_api))


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"property": "nope==1"}, "property"),
        ({"property": "action!=create"}, "property"),
        ({"property": "action==explode"}, "property"),
        ({"property": "status==maybe"}, "property"),
        ({"property": "role==Owner"}, "property"),
        ({"property": "user"}, "property"),
        ({"property": "user=="}, "property"),
        ({"property": "user==a\x00b"}, "property"),
        ({"property": "statusCode==abc"}, "property"),
        ({"property": "statusCode>=400"}, "property"),
        ({"property": "timestamp>=yesterday"}, "property"),
        ({"property": "timestamp==2026-11-23T00:00:00Z"}, "property"),
        ({"property": "timestamp>=99999999999999999999999"}, "property"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"start": "-1"}, "start"),
    ],
)
def test_bad_queries_are_400_naming_the_parameter(
    api: ApiClient, params: dict[str, str], parameter: str
) -> None:
    response = api.get(EVENTS, params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "report"}
    assert body["report"]["parameter"] == parameter
    assert body["report"]["code"].startswith("AUDIT-")


def test_resource_system_fields_match_the_events(server: LiveServer, api: ApiClient) -> None:
    with role_client(server, api, "Developer") as developer:
        created = developer.post(CONNECTIONS, json=_connection_body())
    assert created.status_code == 201
    ident = created.json()["id"]
    patch = [{"op": "replace", "path": "/name", "value": "By the admin"}]
    assert api.patch(f"{CONNECTIONS}/{ident}", json=patch, headers={"If-Match": "*"}).status_code == 200
    doc = api.get(f"{CONNECTIONS}/{ident}").json()["items"][0]
    (create,) = _of_sandbox(api, api.sandbox_name, "action==create")
    (update,) = _of_sandbox(api, api.sandbox_name, "action==update")
    assert (doc["createdBy"], doc["createdClient"]) == (create["userEmail"], create["clientId"])
    assert (doc["updatedBy"], doc["updatedClient"]) == (update["userEmail"], update["clientId"])
    assert create["clientId"] == developer.api_key and update["clientId"] == api.api_key


def test_a_failed_audit_write_is_logged_and_the_call_still_answered(
    server: LiveServer, api: ApiClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Any) -> None:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(server.services.store, "append_audit", broken)
    with caplog.at_level(logging.ERROR, logger="headwater.audit"):
        response = api.post(CONNECTIONS, json=_connection_body())
    assert response.status_code == 201
    monkeypatch.undo()
    logged = [r for r in caplog.records if r.name == "headwater.audit"]
    assert logged and response.json()["id"] in logged[0].getMessage()
    assert _of_sandbox(api, api.sandbox_name) == []


def test_an_unexpected_error_lands_as_a_500_failure(
    server: LiveServer, api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(resource: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(server.services.store, "insert", broken)
    # on a connection of its own: uvicorn closes a connection whose application raised
    response = httpx.post(str(api.base_url) + CONNECTIONS, json=_connection_body(), headers=api.headers)
    monkeypatch.undo()
    assert response.status_code == 500
    (event,) = _of_sandbox(api, api.sandbox_name)
    assert (event["status"], event["statusCode"], event["action"]) == ("Failure", 500, "Create")
