"""Flow Service: specs, connections with encrypted secrets, flows and their validation, lists, PATCH,
DELETE."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.flows_helpers import (
    CRM_FLOW_SPEC,
    DATA_LAKE,
    FS,
    SALESFORCE,
    created_id,
    crm_pipeline,
    flow_body,
    salesforce_connection,
    source_connection,
)
from tests.support import ApiClient, LiveServer

REQUIRED_CONNECTION_SPECS = {
    "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5",
    "b66ab34-8619-49cb-96d1-39b37ede86ea",
    "38ad80fe-8b06-4938-94f4-d4ee80266b07",
    "96479064-7b8a-4d69-b9ed-21c5683837ea",
    "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb",
    DATA_LAKE,
}
REQUIRED_FLOW_SPECS = {
    "14518937-270c-4525-bdec-c2ba7cce3860",
    CRM_FLOW_SPEC,
    "e77fde5a-22a8-11ed-861d-0242ac120002",
    "c1a19761-d2c7-4702-b9fa-fe91f0613e81",
    "d8a6f005-7eaf-4153-983e-e8574508b877",
}


def _errors(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 400, response.text
    return list(response.json()["report"]["errors"])


def _paths(response: Any) -> set[str]:
    return {e["path"] for e in _errors(response)}


# --- specs ---


def test_catalog_holds_every_documented_spec(api: ApiClient) -> None:
    conn_specs = api.get(f"{FS}/connectionSpecs", params={"limit": 1000}).json()["items"]
    assert {s["id"] for s in conn_specs} >= REQUIRED_CONNECTION_SPECS
    for spec in conn_specs:
        for auth in spec["authSpec"]:
            assert {"name", "spec"} <= set(auth)
    flow_specs = api.get(f"{FS}/flowSpecs", params={"limit": 1000}).json()["items"]
    assert {s["id"] for s in flow_specs} >= REQUIRED_FLOW_SPECS
    assert all("transformationSpecs" in s and "scheduleSpec" in s for s in flow_specs)


def test_flow_spec_lookup_by_name_as_in_the_document(api: ApiClient) -> None:
    response = api.get(f"{FS}/flowSpecs?property=name==%22CRMToAEP%22")
    assert response.status_code == 200
    items = response.json()["items"]
    assert {i["name"] for i in items} == {"CRMToAEP"}
    assert "14518937-270c-4525-bdec-c2ba7cce3860" in {i["id"] for i in items}
    schedule = items[0]["scheduleSpec"]["spec"]
    assert schedule["properties"]["frequency"]["enum"] == ["once", "minute", "hour", "day", "week"]


def test_get_spec_by_id_and_unknown_id(api: ApiClient) -> None:
    assert api.get(f"{FS}/connectionSpecs/{SALESFORCE}").json()["items"][0]["id"] == SALESFORCE
    missing = api.get(f"{FS}/connectionSpecs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404


# --- connections and secrets ---


def test_connection_secrets_are_masked_and_encrypted_at_rest(
    server: LiveServer, api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Zebra-Secret-4711-Unique"
    caplog.set_level(logging.DEBUG)
    ident = salesforce_connection(api, password=secret)
    got = api.get(f"{FS}/connections/{ident}")
    assert secret not in got.text
    params = got.json()["items"][0]["auth"]["params"]
    assert params["password"] == "********"
    assert params["username"] == "ada@example.com"
    listed = api.get(f"{FS}/connections")
    assert secret not in listed.text
    # Scan from another process: opening the SQLite file in this one (the server's) and closing it would
    # drop every POSIX lock the server holds on it, a documented SQLite hazard.
    home: Path = server.settings.home

    def grep(text: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["grep", "-r", "-l", "-a", "-F", text, str(home)], capture_output=True, text=True
        )

    if server.settings.database_url is None:  # SQLite: the database file is in the home
        assert grep("ada@example.com").returncode == 0  # the scan does see what is stored in plain text
    else:  # PostgreSQL: search every stored document and client
        from sqlalchemy import text

        with server.services.store.engine.connect() as conn:

            def stored(value: str) -> int:
                query = text(
                    "SELECT (SELECT count(*) FROM resources WHERE doc::text LIKE :v)"
                    " + (SELECT count(*) FROM api_clients WHERE sealed_secret::text LIKE :v)"
                )
                return int(conn.execute(query, {"v": f"%{value}%"}).scalar_one())

            assert stored("ada@example.com") >= 1
            assert stored(secret) == 0
    found = grep(secret)
    assert found.returncode == 1 and not found.stdout, f"plain secret found in {found.stdout}"
    assert secret not in caplog.text
    conn = server.services.store.get("connection", _scope(server, api), ident)
    assert conn is not None
    assert server.services.connections.secret_params(_actor(server, api), conn)["password"] == secret


def _scope(server: LiveServer, api: ApiClient) -> Any:
    return _actor(server, api).scope


def _actor(server: LiveServer, api: ApiClient) -> Any:
    from headwater.services.tenancy import Actor

    store = server.services.store
    org = store.get_org(api.org_id)
    sandbox = store.get_sandbox(api.org_id, api.sandbox_name)
    assert org is not None and sandbox is not None
    return Actor(org, sandbox, api.api_key)


def test_patch_keeps_a_secret_sent_back_masked_and_replaces_a_new_one(
    server: LiveServer, api: ApiClient
) -> None:
    ident = salesforce_connection(api, password="first-password")
    etag = api.get(f"{FS}/connections/{ident}").json()["items"][0]["etag"]
    patched = api.patch(
        f"{FS}/connections/{ident}",
        headers={"If-Match": etag},
        json=[
            {"op": "replace", "path": "/auth/params/password", "value": "********"},
            {"op": "replace", "path": "/name", "value": "renamed"},
        ],
    )
    assert patched.status_code == 200, patched.text
    conn = server.services.store.get("connection", _scope(server, api), ident)
    assert conn is not None
    assert (
        server.services.connections.secret_params(_actor(server, api), conn)["password"] == "first-password"
    )
    patched = api.patch(
        f"{FS}/connections/{ident}",
        headers={"If-Match": patched.json()["etag"]},
        json=[{"op": "replace", "path": "/auth/params/password", "value": "second-password"}],
    )
    assert patched.status_code == 200
    conn = server.services.store.get("connection", _scope(server, api), ident)
    assert conn is not None
    assert (
        server.services.connections.secret_params(_actor(server, api), conn)["password"] == "second-password"
    )


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": "x", "connectionSpec": {"id": SALESFORCE}}, "auth"),
        (
            {
                "name": "x",
                "auth": {"specName": "Basic Authentication", "params": {"username": "u", "password": "p"}},
                "connectionSpec": {"id": SALESFORCE},
            },
            "auth.params.securityToken",
        ),
        (
            {"name": "x", "auth": {"specName": "Magic", "params": {}}, "connectionSpec": {"id": SALESFORCE}},
            "auth.specName",
        ),
        (
            {
                "name": "x",
                "auth": {
                    "specName": "Basic Authentication",
                    "params": {"username": 5, "password": "p", "securityToken": "t"},
                },
                "connectionSpec": {"id": SALESFORCE},
            },
            "auth.params.username",
        ),
        ({"name": "x", "connectionSpec": {"id": "nope"}}, "connectionSpec.id"),
        (
            {
                "connectionSpec": {"id": SALESFORCE},
                "auth": {"specName": "Basic Authentication", "params": {}},
            },
            "name",
        ),
    ],
)
def test_invalid_connections_are_refused_naming_the_field(
    api: ApiClient, body: dict[str, Any], path: str
) -> None:
    response = api.post(f"{FS}/connections", json=body)
    assert path in _paths(response)
    assert api.get(f"{FS}/connections").json()["items"] == []


def test_validation_errors_never_echo_secret_values(api: ApiClient) -> None:
    response = api.post(
        f"{FS}/connections",
        json={
            "name": "x",
            "auth": {
                "specName": "Basic Authentication",
                "params": {"username": "u", "password": ["Leaky-Secret-99"], "securityToken": "t"},
            },
            "connectionSpec": {"id": SALESFORCE},
        },
    )
    assert response.status_code == 400
    assert "Leaky-Secret-99" not in response.text


# --- source and target connections ---


def test_source_connection_takes_its_spec_from_the_base_connection(api: ApiClient) -> None:
    conn = salesforce_connection(api)
    source = source_connection(api, conn)
    doc = api.get(f"{FS}/sourceConnections/{source}").json()["items"][0]
    assert doc["connectionSpec"]["id"] == SALESFORCE
    assert doc["baseConnectionId"] == conn
    assert doc["data"]["format"] == "tabular"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": "s", "baseConnectionId": "missing", "data": {"format": "tabular"}}, "baseConnectionId"),
        ({"name": "s", "data": {"format": "tabular"}}, "baseConnectionId"),
        ({"name": "s", "baseConnectionId": "{conn}", "data": {"format": "xml"}}, "data.format"),
        ({"name": "s", "baseConnectionId": "{conn}"}, "data.format"),
    ],
)
def test_invalid_source_connections_name_the_field(api: ApiClient, body: dict[str, Any], path: str) -> None:
    conn = salesforce_connection(api)
    if body.get("baseConnectionId") == "{conn}":
        body["baseConnectionId"] = conn
    assert path in _paths(api.post(f"{FS}/sourceConnections", json=body))


def test_target_connection_dataset_and_schema_must_exist_and_agree(api: ApiClient) -> None:
    ids = crm_pipeline(api)
    base = {"name": "t", "connectionSpec": {"id": DATA_LAKE, "version": "1.0"}}
    missing = api.post(
        f"{FS}/targetConnections", json={**base, "params": {"dataSetId": "000000000000000000000000"}}
    )
    assert "params.dataSetId" in _paths(missing)
    other_schema = api.post(
        "/data/foundation/schemaregistry/tenant/schemas",
        json={
            "title": "other",
            "allOf": [{"$ref": "https://ns.adobe.com/xdm/context/profile"}],
            "meta:class": "https://ns.adobe.com/xdm/context/profile",
        },
    ).json()["$id"]
    disagree = api.post(
        f"{FS}/targetConnections",
        json={**base, "params": {"dataSetId": ids["dataset"]}, "data": {"schema": {"id": other_schema}}},
    )
    assert "data.schema.id" in _paths(disagree)


# --- flows ---


def test_flow_create_and_get_shape(api: ApiClient) -> None:
    ids = crm_pipeline(api)
    created = api.post(f"{FS}/flows", json=flow_body(ids["source"], ids["target"], ids["mapping"]))
    flow_id = created_id(created)
    assert created.json()["etag"].startswith('"')
    flow = api.get(f"{FS}/flows/{flow_id}").json()["items"][0]
    assert flow["state"] == "enabled"
    assert flow["etag"] == flow["version"] == created.json()["etag"]
    assert flow["scheduleParams"] == {"startTime": 1567411548, "frequency": "minute", "interval": 30}
    inherited = flow["inheritedAttributes"]
    assert inherited["sourceConnections"] == [
        {"id": ids["source"], "connectionSpec": {"id": SALESFORCE, "version": "1.0"}}
    ]
    assert inherited["targetConnections"][0]["connectionSpec"]["id"] == DATA_LAKE
    assert flow["runs"] == f"/runs?property=flowId=={flow_id}"
    assert flow["imsOrgId"] == api.org_id and flow["sandboxName"] == api.sandbox_name
    assert "options" in flow


@pytest.mark.parametrize(
    ("schedule", "path"),
    [
        ({"startTime": "1567411548", "frequency": "minute", "interval": "10"}, "scheduleParams.interval"),
        ({"startTime": 1567411548, "frequency": "month", "interval": 1}, "scheduleParams.frequency"),
        ({"startTime": 1567411548, "frequency": "hour"}, "scheduleParams.interval"),
        ({"startTime": 1567411548, "frequency": "once", "backfill": True}, "scheduleParams.backfill"),
        ({"frequency": "day", "interval": 1}, "scheduleParams.startTime"),
        ({"startTime": "soon", "frequency": "day", "interval": 1}, "scheduleParams.startTime"),
    ],
)
def test_schedule_validation_names_the_field(api: ApiClient, schedule: dict[str, Any], path: str) -> None:
    ids = crm_pipeline(api)
    response = api.post(
        f"{FS}/flows", json=flow_body(ids["source"], ids["target"], ids["mapping"], **schedule)
    )
    assert path in _paths(response), response.text
    assert api.get(f"{FS}/flows").json()["items"] == []


@pytest.mark.parametrize(
    "schedule",
    [
        {"startTime": 1567411548, "frequency": "once"},
        {"startTime": "1567411548", "frequency": "minute", "interval": "15"},
        {"startTime": 1567411548, "frequency": "week", "interval": 1, "backfill": False},
    ],
)
def test_valid_schedules_are_accepted(api: ApiClient, schedule: dict[str, Any]) -> None:
    ids = crm_pipeline(api)
    created_id(
        api.post(f"{FS}/flows", json=flow_body(ids["source"], ids["target"], ids["mapping"], **schedule))
    )


def test_once_with_an_interval_is_accepted_and_the_interval_ignored(api: ApiClient) -> None:
    """Document 002: the interval "is not required when frequency is set as once"; sent anyway, the
    flow is created, runs once, and keeps no interval."""
    ids = crm_pipeline(api)
    schedule = {"startTime": 1567411548, "frequency": "once", "interval": 15}
    flow_id = created_id(
        api.post(f"{FS}/flows", json=flow_body(ids["source"], ids["target"], ids["mapping"], **schedule))
    )
    flow = api.get(f"{FS}/flows/{flow_id}").json()["items"][0]
    assert flow["scheduleParams"]["frequency"] == "once"
    assert "interval" not in flow["scheduleParams"]


def test_flow_references_and_transformations_are_validated(
    api: ApiClient, other_sandbox_api: ApiClient
) -> None:
    ids = crm_pipeline(api)
    body = flow_body(ids["source"], ids["target"], "no-such-mapping")
    assert "transformations[1].params.mappingId" in _paths(api.post(f"{FS}/flows", json=body))
    body = flow_body(ids["source"], ids["target"], ids["mapping"])
    body["transformations"][1]["params"]["mappingVersion"] = 7
    assert "transformations[1].params.mappingVersion" in _paths(api.post(f"{FS}/flows", json=body))
    body["transformations"][1]["params"]["mappingVersion"] = "0"
    assert api.post(f"{FS}/flows", json=body).status_code == 201
    body = flow_body("no-such-source", ids["target"], ids["mapping"])
    assert "sourceConnectionIds[0]" in _paths(api.post(f"{FS}/flows", json=body))
    body = flow_body(ids["source"], ids["target"], ids["mapping"])
    body["transformations"][0] = {"name": "Copy", "params": {}}
    assert "transformations[0].params.deltaColumn" in _paths(api.post(f"{FS}/flows", json=body))
    body["transformations"][0] = {"name": "Explode", "params": {}}
    assert "transformations[0].name" in _paths(api.post(f"{FS}/flows", json=body))
    body = flow_body(ids["source"], ids["target"], ids["mapping"])
    body["flowSpec"]["id"] = "e77fde5a-22a8-11ed-861d-0242ac120002"  # Customer.io: salesforce not allowed
    assert "sourceConnectionIds[0]" in _paths(api.post(f"{FS}/flows", json=body))
    # ids of another sandbox do not exist here
    other = flow_body(ids["source"], ids["target"], ids["mapping"])
    response = other_sandbox_api.post(f"{FS}/flows", json=other)
    assert {"sourceConnectionIds[0]", "targetConnectionIds[0]"} <= _paths(response)


def test_patch_requires_if_match_and_rejects_stale_etags(api: ApiClient) -> None:
    ids = crm_pipeline(api)
    flow_id = created_id(
        api.post(f"{FS}/flows", json=flow_body(ids["source"], ids["target"], ids["mapping"]))
    )
    url = f"{FS}/flows/{flow_id}"
    etag = api.get(url).json()["items"][0]["etag"]
    change = [
        {"op": "replace", "path": "/scheduleParams/frequency", "value": "hour"},
        {"op": "replace", "path": "/scheduleParams/interval", "value": 2},
    ]
    missing = api.patch(url, json=change)
    assert missing.status_code == 428
    ok = api.patch(url, json=change, headers={"If-Match": etag})
    assert ok.status_code == 200, ok.text
    assert ok.json()["etag"] != etag and ok.headers["ETag"] == ok.json()["etag"]
    stale = api.patch(
        url, json=[{"op": "replace", "path": "/name", "value": "x"}], headers={"If-Match": etag}
    )
    assert stale.status_code == 412
    flow = api.get(url).json()["items"][0]
    assert flow["scheduleParams"]["frequency"] == "hour" and flow["name"] == "CRM flow"
    assert flow["lastOperation"]["operation"] == "update"


def test_invalid_patch_is_a_400_and_changes_nothing(api: ApiClient) -> None:
    ids = crm_pipeline(api)
    flow_id = created_id(
        api.post(f"{FS}/flows", json=flow_body(ids["source"], ids["target"], ids["mapping"]))
    )
    url = f"{FS}/flows/{flow_id}"
    before = api.get(url).json()["items"][0]
    for patch in (
        [{"op": "replace", "path": "/scheduleParams/interval", "value": 5}],
        [{"op": "remove", "path": "/name"}],
        [{"op": "replace", "path": "/id", "value": "mine"}],
        [{"op": "replace", "path": "/does/not/exist", "value": 1}],
        [{"op": "explode", "path": "/name"}],
        {"op": "replace"},
    ):
        response = api.patch(url, json=patch, headers={"If-Match": before["etag"]})
        assert response.status_code == 400, (patch, response.text)
    assert api.get(url).json()["items"][0] == before


def test_enable_and_disable_a_flow(api: ApiClient) -> None:
    ids = crm_pipeline(api)
    flow_id = created_id(
        api.post(f"{FS}/flows", json=flow_body(ids["source"], ids["target"], ids["mapping"]))
    )
    response = api.post(f"{FS}/flows/{flow_id}/action?op=disable")
    assert response.status_code == 200
    flow = api.get(f"{FS}/flows/{flow_id}").json()["items"][0]
    assert flow["state"] == "disabled" and flow["lastOperation"]["operation"] == "disable"
    api.post(f"{FS}/flows/{flow_id}/action?op=enable")
    assert api.get(f"{FS}/flows/{flow_id}").json()["items"][0]["state"] == "enabled"
    assert api.post(f"{FS}/flows/{flow_id}/action?op=explode").status_code == 400


def test_delete_in_use_connection_is_a_409_naming_the_flows(api: ApiClient) -> None:
    ids = crm_pipeline(api)
    flow_id = created_id(
        api.post(f"{FS}/flows", json=flow_body(ids["source"], ids["target"], ids["mapping"]))
    )
    response = api.delete(f"{FS}/sourceConnections/{ids['source']}")
    assert response.status_code == 409
    assert flow_id in response.json()["detail"]
    assert response.json()["report"]["referencedBy"] == [{"type": "flow", "id": flow_id}]
    assert api.delete(f"{FS}/connections/{ids['connection']}").status_code == 409
    assert api.delete(f"{FS}/flows/{flow_id}").status_code == 204
    assert api.get(f"{FS}/flows/{flow_id}").status_code == 404
    assert api.delete(f"{FS}/sourceConnections/{ids['source']}").status_code == 204
    assert api.delete(f"{FS}/connections/{ids['connection']}").status_code == 204


# --- lists ---


def _named_connections(api: ApiClient, names: list[str]) -> list[str]:
    return [salesforce_connection(api, name=n) for n in names]


def test_filters_ordering_and_count(api: ApiClient) -> None:
    _named_connections(api, ["delta", "alpha", "charlie", "bravo"])
    url = f"{FS}/connections"
    names = [c["name"] for c in api.get(url, params={"orderby": "name"}).json()["items"]]
    assert names == ["alpha", "bravo", "charlie", "delta"]
    names = [c["name"] for c in api.get(url, params={"orderby": "-name"}).json()["items"]]
    assert names == ["delta", "charlie", "bravo", "alpha"]
    assert api.get(url, params={"property": 'name=="alpha"'}).json()["items"][0]["name"] == "alpha"
    assert len(api.get(url, params={"property": "name==alpha,bravo"}).json()["items"]) == 2
    assert len(api.get(url, params={"property": "name!=alpha"}).json()["items"]) == 3
    both = [("property", "name!=alpha"), ("property", "name<charlie")]
    assert [c["name"] for c in api.get(url, params=both).json()["items"]] == ["bravo"]
    nested = api.get(url, params={"property": f"connectionSpec.id=={SALESFORCE}", "count": "true"})
    assert nested.json() == {"count": 4}
    newest = api.get(url, params={"orderby": "-createdAt", "limit": 1}).json()["items"][0]
    assert newest["name"] == "bravo"
    created = api.get(url, params={"property": f"createdAt>={newest['createdAt']}"}).json()["items"]
    assert "bravo" in {c["name"] for c in created}
    assert api.get(url, params={"property": "name=="}).status_code == 200
    bad = api.get(url, params={"property": "==x"})
    assert bad.status_code == 400 and bad.json()["report"]["parameter"] == "property"


def test_array_filters_with_brackets(api: ApiClient) -> None:
    ids = crm_pipeline(api)
    flow_id = created_id(
        api.post(f"{FS}/flows", json=flow_body(ids["source"], ids["target"], ids["mapping"]))
    )
    hits = api.get(f"{FS}/flows", params={"property": f"sourceConnectionIds[]=={ids['source']}"}).json()[
        "items"
    ]
    assert [f["id"] for f in hits] == [flow_id]
    none = api.get(f"{FS}/flows", params={"property": "sourceConnectionIds[]==other"}).json()["items"]
    assert none == []


def test_pagination_walks_every_item_once(api: ApiClient) -> None:
    created = set(_named_connections(api, [f"c{i:02d}" for i in range(7)]))
    seen: list[str] = []
    url: str | None = f"{FS}/connections?limit=3"
    pages = 0
    while url:
        body = api.get(url).json()
        seen += [c["id"] for c in body["items"]]
        url = body["_links"].get("next", {}).get("href")
        pages += 1
    assert pages == 3
    assert sorted(seen) == sorted(created) and len(seen) == len(set(seen))
    filtered: list[str] = []
    url = f"{FS}/connections?limit=2&property=name!=c00&orderby=-name"
    while url:
        body = api.get(url).json()
        filtered += [c["name"] for c in body["items"]]
        url = body["_links"].get("next", {}).get("href")
    assert filtered == [f"c{i:02d}" for i in range(6, 0, -1)]


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "continuationToken=garbage"])
def test_bad_list_parameters_are_400(api: ApiClient, query: str) -> None:
    response = api.get(f"{FS}/connections?{query}")
    assert response.status_code == 400
    assert response.json()["report"]["parameter"] in ("limit", "continuationToken")
