"""Unified profiles: records of profile-enabled datasets, projected from the lake, merge through the
identity graph into one profile that the AEP entities API returns, under the graph's limits.

The records are written into the datasets' Iceberg tables as a flow commits them; the projection is
stepped as a batch run steps it before it ends (``catch_up``). The lookups go through the real server.
"""

from __future__ import annotations

import uuid
from typing import Any

import pyarrow as pa
import pytest

from tests.profile_helpers import land, profile_dataset
from tests.streaming_helpers import scope_of
from tests.support import ApiClient, LiveServer, role_client

SR = "/data/foundation/schemaregistry/tenant/schemas"
DATASETS = "/data/foundation/catalog/dataSets"
ENTITIES = "/data/core/ups/access/entities"
PROFILE = "https://ns.adobe.com/xdm/context/profile"
PERSON = "https://ns.adobe.com/xdm/context/profile-person-details"

IDENTITY = pa.struct([("id", pa.string()), ("primary", pa.bool_())])
ROWS = pa.schema(
    [
        ("identityMap", pa.map_(pa.string(), pa.list_(IDENTITY))),
        ("person", pa.struct([("name", pa.struct([("firstName", pa.string()), ("lastName", pa.string())]))])),
        ("extSourceSystemAudit", pa.struct([("lastUpdatedDate", pa.string())])),
    ]
)


def _dataset(api: ApiClient, name: str) -> str:
    return profile_dataset(api, name, PERSON)[1]


def _person(identities: dict[str, str], primary: str, first: str | None, updated: str) -> dict[str, Any]:
    return {
        "identityMap": [(ns, [{"id": value, "primary": ns == primary}]) for ns, value in identities.items()],
        "person": {"name": {"firstName": first, "lastName": "Doe"}},
        "extSourceSystemAudit": {"lastUpdatedDate": updated},
    }


def _land(server: LiveServer, api: ApiClient, dataset_id: str, rows: list[dict[str, Any]]) -> None:
    land(server, api, dataset_id, ROWS, rows)


def _profile(api: ApiClient, namespace: str, value: str) -> dict[str, Any]:
    response = api.get(
        ENTITIES, params={"schema.name": "_xdm.context.profile", "entityIdNS": namespace, "entityId": value}
    )
    assert response.status_code == 200, response.text
    (entity,) = response.json().values()
    return dict(entity)


def test_two_sources_about_one_person_give_one_merged_profile(server: LiveServer, api: ApiClient) -> None:
    tag = uuid.uuid4().hex[:8]
    crm, web = _dataset(api, "CRM"), _dataset(api, "Web")
    email, crmid, ecid = f"jane.{tag}@example.com", f"CRM-{tag}", f"{uuid.uuid4().int:038d}"[:38]
    _land(
        server, api, crm, [_person({"CRMID": crmid, "Email": email}, "CRMID", "Jane", "2026-01-01T00:00:00Z")]
    )
    _land(
        server, api, web, [_person({"ECID": ecid, "Email": email}, "ECID", "Janet", "2026-03-01T00:00:00Z")]
    )

    by_ecid, by_crmid = _profile(api, "ECID", ecid), _profile(api, "CRMID", crmid)
    assert by_ecid == by_crmid  # one profile whichever identity asks
    assert by_ecid["entity"]["person"]["name"] == {"firstName": "Janet", "lastName": "Doe"}  # newest wins
    assert sorted(by_ecid["entity"]["identityMap"]) == ["CRMID", "ECID", "Email"]
    assert sorted(by_ecid["sources"]) == sorted([crm, web])

    members = api.get("/data/core/identity/cluster/members", params={"namespace": "email", "id": email})
    assert members.status_code == 200, members.text
    assert sorted(m["namespace"]["code"] for m in members.json()["members"]) == ["CRMID", "ECID", "Email"]


def test_a_shared_identity_beyond_the_graph_limit_does_not_merge_people(
    server: LiveServer, api: ApiClient
) -> None:
    tag = uuid.uuid4().hex[:8]
    dataset = _dataset(api, "Shared")
    shared = "+1555" + "".join(c if c.isdigit() else "7" for c in tag)
    people = [
        _person(
            {"Email": f"p{i}.{tag}@example.com", "Phone": shared}, "Email", f"P{i}", "2026-01-01T00:00:00Z"
        )
        for i in range(60)
    ]
    _land(server, api, dataset, people)
    members = api.get(
        "/data/core/identity/cluster/members", params={"namespace": "Phone", "id": shared}
    ).json()
    limit = server.services.settings.identity_graph_max_identities
    assert len(members["members"]) == limit  # the 51st identity and later stay apart
    last = _profile(api, "Email", f"p59.{tag}@example.com")
    assert last["entity"]["person"]["name"]["firstName"] == "P59"
    assert sorted(last["entity"]["identityMap"]) == ["Email"]  # its link to the shared phone was refused
    store, scope = server.services.profiles, scope_of(server, api)
    refused, _ = store.refused_links(scope, 100)
    assert sum(1 for r in refused if shared in (r.id_a, r.id_b)) == 60 - (limit - 1)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"schema.name": "_xdm.context.profile", "entityIdNS": "Email"}, "entityId"),
        (
            {"schema.name": "_xdm.context.profile", "entityIdNS": "Email", "entityId": "not-an-email"},
            "entityId",
        ),
        ({"schema.name": "_xdm.context.profile", "entityId": "x@example.com"}, "entityIdNS"),
        (
            {"schema.name": "_xdm.context.nothing", "entityIdNS": "Email", "entityId": "x@example.com"},
            "schema.name",
        ),
    ],
)
def test_a_bad_lookup_is_a_400_naming_the_parameter(
    api: ApiClient, params: dict[str, str], field: str
) -> None:
    response = api.get(ENTITIES, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["report"]["errors"][0]["path"] == field


def test_an_unknown_identity_is_a_404_and_viewers_may_not_read_profiles(
    server: LiveServer, api: ApiClient
) -> None:
    params = {"schema.name": "_xdm.context.profile", "entityIdNS": "Email", "entityId": "nobody@example.com"}
    assert api.get(ENTITIES, params=params).status_code == 404
    viewer = role_client(server, api, "Viewer")
    response = viewer.get(ENTITIES, params=params)
    assert response.status_code == 403 and "view-profiles" in response.text


def _rewrite(server: LiveServer, api: ApiClient, dataset_id: str, rows: list[dict[str, Any]]) -> Any:
    """A full refresh of the dataset's table (its rows replaced in one commit), projected as a run does."""
    lake, scope = server.services.lake, scope_of(server, api)
    table = lake.ensure_table(scope, dataset_id, ROWS)
    files = lake.write_files(table, iter([pa.RecordBatch.from_pylist(rows, schema=ROWS)]), ROWS)
    lake.commit(table, files, {"runId": uuid.uuid4().hex}, replace=True)
    return server.services.profile_projector.catch_up(scope, dataset_id)


def _lookup_status(api: ApiClient, namespace: str, value: str) -> int:
    params = {"schema.name": "_xdm.context.profile", "entityIdNS": namespace, "entityId": value}
    return api.get(ENTITIES, params=params).status_code


def test_a_rewrite_takes_a_deleted_records_identities_out_of_the_profile(
    server: LiveServer, api: ApiClient
) -> None:
    tag = uuid.uuid4().hex[:8]
    crm, web = _dataset(api, "CRM"), _dataset(api, "Web")
    ann, bob, ecid = f"ann.{tag}@example.com", f"bob.{tag}@example.com", f"{uuid.uuid4().int:038d}"[:38]
    bob_row = _person({"CRMID": f"B-{tag}", "Email": bob}, "CRMID", "Bob", "2026-01-01T00:00:00Z")
    _land(
        server,
        api,
        crm,
        [_person({"CRMID": f"A-{tag}", "Email": ann}, "CRMID", "Ann", "2026-01-01T00:00:00Z"), bob_row],
    )
    _land(server, api, web, [_person({"ECID": ecid, "Email": ann}, "ECID", "Annie", "2026-02-01T00:00:00Z")])
    assert sorted(_profile(api, "ECID", ecid)["entity"]["identityMap"]) == ["CRMID", "ECID", "Email"]

    report = _rewrite(server, api, crm, [bob_row])  # Ann's CRM record is deleted at the source
    assert report is not None and report.rebuilt and report.removed_identities == 1

    assert _lookup_status(api, "CRMID", f"A-{tag}") == 404  # her CRM identity left the graph
    annie = _profile(api, "ECID", ecid)
    assert sorted(annie["entity"]["identityMap"]) == ["ECID", "Email"]
    assert annie["sources"] == [web] and annie["entity"]["person"]["name"]["firstName"] == "Annie"
    assert _profile(api, "CRMID", f"B-{tag}")["entity"]["person"]["name"]["firstName"] == "Bob"


def test_a_deleted_dataset_splits_the_profiles_it_joined(server: LiveServer, api: ApiClient) -> None:
    tag = uuid.uuid4().hex[:8]
    people, joins = _dataset(api, "People"), _dataset(api, "Household")
    ann, bob = f"ann.{tag}@example.com", f"bob.{tag}@example.com"
    _land(
        server,
        api,
        people,
        [
            _person({"Email": ann}, "Email", "Ann", "2026-01-01T00:00:00Z"),
            _person({"Email": bob}, "Email", "Bob", "2026-01-01T00:00:00Z"),
        ],
    )
    household = _person({"Email": ann}, "Email", None, "2026-01-01T00:00:00Z")
    household["identityMap"] = [("Email", [{"id": ann, "primary": True}, {"id": bob, "primary": False}])]
    _land(server, api, joins, [household])
    assert _profile(api, "Email", ann) == _profile(api, "Email", bob)  # the household record joined them

    assert api.delete(f"{DATASETS}/{joins}").status_code in (200, 204)

    by_ann, by_bob = _profile(api, "Email", ann), _profile(api, "Email", bob)
    assert by_ann["entity"]["person"]["name"]["firstName"] == "Ann" and by_ann["sources"] == [people]
    assert by_bob["entity"]["person"]["name"]["firstName"] == "Bob" and by_bob["sources"] == [people]
    members = api.get("/data/core/identity/cluster/members", params={"namespace": "Email", "id": ann})
    assert [m["id"] for m in members.json()["members"]] == [ann]
