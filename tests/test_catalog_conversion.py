"""Catalog datasets and Conversion mapping sets: the seeds' requests as written, validation, isolation."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from headwater.errors import NotFound
from headwater.services.tenancy import Actor
from tests.flows_helpers import profile_schema
from tests.support import ApiClient, LiveServer
from tests.test_schemaregistry import (
    LOYALTY,
    PERSON,
    PERSONAL,
    PROFILE,
    SR,
    create_fieldgroup,
    create_schema,
    error_paths,
    seed_schema,
)
from tests.test_tutorials import DOC_004_MAPPING

CATALOG = "/data/foundation/catalog"
CONVERSION = "/data/foundation/conversion"

# Seed 002's dataset request; {SCHEMA_ID} stands for the $id the schema request returned.
SEED_002_DATASET = """{
        "name": "Target Dataset for CRM data",
        "schemaRef": {
            "id": "{SCHEMA_ID}",
            "contentType": "application/vnd.adobe.xed-full-notext+json; version=1"
        }
    }"""

# Seed 002's mapping request as written, with the schema id of this test substituted.
SEED_002_MAPPING = """{
        "version": 0,
        "xdmSchema": "{SCHEMA_ID}",
        "xdmVersion": "1.0",
        "id": null,
        "mappings": [
            {
                "destinationXdmPath": "person.name.firstName",
                "sourceAttribute": "first_name",
                "identity": false,
                "identityGroup": null,
                "namespaceCode": null,
                "version": 0
            },
            {
                "destinationXdmPath": "person.name.lastName",
                "sourceAttribute": "last_name",
                "identity": false,
                "identityGroup": null,
                "namespaceCode": null,
                "version": 0
            },
            {
                "destinationXdmPath": "personalEmail.address",
                "sourceAttribute": "email",
                "identity": false,
                "identityGroup": null,
                "namespaceCode": null,
                "version": 0
            }
        ]
    }"""

HEX32 = re.compile(r"[0-9a-f]{32}")


def post_text(api: ApiClient, path: str, text: str) -> httpx.Response:
    return api.post(path, content=text, headers={"Content-Type": "application/json"})


def create_dataset(api: ApiClient, schema_id: str, name: str = "Data", **extra: Any) -> str:
    response = api.post(f"{CATALOG}/dataSets", json={"name": name, "schemaRef": {"id": schema_id}, **extra})
    assert response.status_code == 201, response.text
    return str(response.json()[0].split("/")[-1])


def seed_mapping(api: ApiClient, schema_id: str) -> dict[str, Any]:
    response = post_text(api, f"{CONVERSION}/mappingSets", SEED_002_MAPPING.replace("{SCHEMA_ID}", schema_id))
    assert response.status_code == 201, response.text
    return dict(response.json())


def mapping_set(schema_id: str, *mappings: dict[str, Any]) -> dict[str, Any]:
    return {
        "outputSchema": {
            "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"}
        },
        "mappings": list(mappings),
    }


# --- datasets ---
def test_seed_002_dataset_request_as_written(api: ApiClient) -> None:
    schema = seed_schema(api)
    body = SEED_002_DATASET.replace("{SCHEMA_ID}", schema["$id"])
    response = post_text(api, f"{CATALOG}/dataSets?requestDataSource=true", body)
    assert response.status_code == 201, response.text
    refs = response.json()
    assert len(refs) == 1 and re.fullmatch(r"@/dataSets/[0-9a-f]{24}", refs[0])
    ident = refs[0].split("/")[-1]
    got = api.get(f"{CATALOG}/dataSets/{ident}")
    assert got.status_code == 200 and list(got.json()) == [ident]
    dataset = got.json()[ident]
    assert dataset["name"] == "Target Dataset for CRM data"
    assert dataset["schemaRef"] == {
        "id": schema["$id"],
        "contentType": "application/vnd.adobe.xed-full-notext+json; version=1",
    }
    assert dataset["imsOrg"] == api.org_id and dataset["version"] == "1.0.0"
    assert isinstance(dataset["created"], int) and dataset["created"] == dataset["updated"]
    assert dataset["files"] == f"@/dataSetFiles?dataSetId={ident}"
    assert dataset["tags"]["adobe/pqs/table"] == ["target_dataset_for_crm_data"]
    assert dataset["createdClient"] == api.api_key and dataset["sandboxId"]


def test_dataset_by_schema_alt_id_stores_the_canonical_id(api: ApiClient) -> None:
    schema = seed_schema(api)
    ident = create_dataset(api, schema["meta:altId"])
    assert api.get(f"{CATALOG}/dataSets/{ident}").json()[ident]["schemaRef"]["id"] == schema["$id"]
    again = create_dataset(api, schema["$id"])
    table = api.get(f"{CATALOG}/dataSets/{again}").json()[again]["tags"]["adobe/pqs/table"]
    assert table == ["data_1"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": "x", "schemaRef": {"id": "https://ns.adobe.com/headwater/schemas/nope"}}, "schemaRef.id"),
        ({"name": "x"}, "schemaRef.id"),
        ({"name": "x", "schemaRef": "abc"}, "schemaRef.id"),
        ({"name": "x", "schemaRef": {"id": 5}}, "schemaRef.id"),
        ({"schemaRef": {"id": "SCHEMA"}}, "name"),
        ({"name": "", "schemaRef": {"id": "SCHEMA"}}, "name"),
        ({"name": "x", "schemaRef": {"id": "SCHEMA"}, "tags": ["a"]}, "tags"),
        ({"name": "x", "schemaRef": {"id": "SCHEMA"}, "description": 4}, "description"),
    ],
)
def test_bad_datasets_are_400_naming_the_field(api: ApiClient, body: dict[str, Any], path: str) -> None:
    schema = seed_schema(api)
    text = json.dumps(body).replace('"SCHEMA"', json.dumps(schema["$id"]))
    response = post_text(api, f"{CATALOG}/dataSets", text)
    assert response.status_code == 400, response.text
    assert path in error_paths(response)
    assert response.json()["report"]["code"].startswith("CAT-")
    assert api.get(f"{CATALOG}/dataSets").json() == {}


def test_list_datasets(api: ApiClient) -> None:
    schema = seed_schema(api)
    other = create_schema(api, PROFILE)
    ids = [create_dataset(api, schema["$id"], name) for name in ("b", "a", "c")]
    last = create_dataset(api, other["$id"], "d")
    listed = api.get(f"{CATALOG}/dataSets").json()
    assert list(listed) == [*ids, last]
    assert list(api.get(f"{CATALOG}/dataSets?orderBy=desc:created").json()) == [last, *reversed(ids)]
    assert list(api.get(f"{CATALOG}/dataSets?orderBy=asc:name").json()) == [ids[1], ids[0], ids[2], last]
    assert list(api.get(f"{CATALOG}/dataSets?limit=2&start=1").json()) == ids[1:3]
    assert api.get(f"{CATALOG}/dataSets?name=c").json().keys() == {ids[2]}
    by_schema = api.get(f"{CATALOG}/dataSets", params={"schemaRef.id": other["$id"]}).json()
    assert list(by_schema) == [last]
    assert list(api.get(f"{CATALOG}/dataSets", params={"property": "name==a,b"}).json()) == ids[:2]
    projected = api.get(f"{CATALOG}/dataSets?properties=name,schemaRef").json()
    assert projected[ids[0]] == {
        "name": "b",
        "schemaRef": {"id": schema["$id"], "contentType": projected[ids[0]]["schemaRef"]["contentType"]},
    }
    assert list(api.get(f"{CATALOG}/dataSets/{ids[0]},{ids[2]}?properties=name").json().values()) == [
        {"name": "b"},
        {"name": "c"},
    ]
    assert len(api.get(f"{CATALOG}/dataSets?limit=500").json()) == 4  # capped at 100, not refused
    for bad in ("limit=0", "limit=x", "start=-1", "orderBy=sideways:name"):
        assert api.get(f"{CATALOG}/dataSets?{bad}").status_code == 400, bad


def test_patch_and_delete_dataset(api: ApiClient) -> None:
    schema = seed_schema(api)
    other = create_schema(api, PROFILE)
    ident = create_dataset(api, schema["$id"])
    path = f"{CATALOG}/dataSets/{ident}"
    response = api.patch(path, json={"name": "Renamed", "description": "d", "tags": {"team": ["crm"]}})
    assert response.status_code == 200 and response.json() == [f"@/dataSets/{ident}"]
    dataset = api.get(path).json()[ident]
    assert dataset["name"] == "Renamed" and dataset["tags"] == {"team": ["crm"], "adobe/pqs/table": ["data"]}
    assert dataset["updated"] >= dataset["created"]
    moved = api.patch(path, json={"schemaRef": {"id": other["$id"]}})
    assert moved.status_code == 400 and "schemaRef.id" in error_paths(moved)
    assert api.patch(path, json={"bogus": 1}).status_code == 400
    assert api.patch(path, json=[{"op": "replace", "path": "/name", "value": "Patched"}]).status_code == 200
    assert api.get(path).json()[ident]["name"] == "Patched"
    assert api.patch(path, json={"name": "x"}, headers={"If-Match": '"stale"'}).status_code == 412
    # the schema is now bound to the dataset: it cannot be deleted
    assert api.delete(f"{SR}/tenant/schemas/{quote(schema['$id'], safe='')}").status_code == 409
    deleted = api.delete(path)
    assert deleted.status_code == 200 and deleted.json() == [f"@/dataSets/{ident}"]
    missing = api.get(path)
    assert missing.status_code == 404 and missing.json()["report"]["code"] == "CAT-1404-404"
    assert api.delete(path).status_code == 404


def test_datasets_are_invisible_to_other_sandboxes_and_orgs(
    api: ApiClient, other_sandbox_api: ApiClient, other_org_api: ApiClient
) -> None:
    schema = seed_schema(api)
    ident = create_dataset(api, schema["$id"])
    for other in (other_sandbox_api, other_org_api):
        assert other.get(f"{CATALOG}/dataSets/{ident}").status_code == 404
        assert other.get(f"{CATALOG}/dataSets").json() == {}
        assert other.delete(f"{CATALOG}/dataSets/{ident}").status_code == 404
        refused = other.post(f"{CATALOG}/dataSets", json={"name": "x", "schemaRef": {"id": schema["$id"]}})
        assert refused.status_code == 400 and "schemaRef.id" in error_paths(refused)
        mapping = other.post(
            f"{CONVERSION}/mappingSets",
            json=mapping_set(schema["$id"], {"source": "a", "destination": "person.name.firstName"}),
        )
        assert mapping.status_code == 400 and "outputSchema.schemaRef.id" in error_paths(mapping)
    assert api.get(f"{CATALOG}/dataSets/{ident}").status_code == 200


# --- mapping sets ---
def test_seed_002_mapping_request_as_written(api: ApiClient) -> None:
    schema = seed_schema(api)
    response = post_text(
        api, f"{CONVERSION}/mappingSets", SEED_002_MAPPING.replace("{SCHEMA_ID}", schema["$id"])
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert HEX32.fullmatch(body["id"]) and body["version"] == 0
    assert body["inputSchemaRef"] == {"id": None, "contentType": None}
    assert body["outputSchemaRef"] == {"id": schema["$id"], "contentType": "1.0"}
    assert body["schemaRef"] == body["outputSchemaRef"] and body["xdmSchema"] == schema["$id"]
    assert body["status"] == "PUBLISHED" and body["xdmVersion"] == "1.0"
    assert isinstance(body["createdDate"], int) and isinstance(body["modifiedDate"], int)
    first = body["mappings"][0]
    keys = {
        "id",
        "version",
        "createdDate",
        "modifiedDate",
        "sourceType",
        "source",
        "destination",
        "identity",
        "primaryIdentity",
        "namespaceCode",
        "matchScore",
        "sourceAttribute",
        "destinationXdmPath",
    }
    assert keys <= set(first)
    assert HEX32.fullmatch(first["id"]) and first["sourceType"] == "text/x.schema-path"
    assert (first["source"], first["destination"]) == ("first_name", "person.name.firstName")
    assert first["sourceAttribute"] == "first_name" and first["destinationXdmPath"] == "person.name.firstName"
    assert first["identity"] is False and first["primaryIdentity"] is False and first["matchScore"] == 0.0
    assert [m["destination"] for m in body["mappings"]] == [
        "person.name.firstName",
        "person.name.lastName",
        "personalEmail.address",
    ]
    got = api.get(f"{CONVERSION}/mappingSets/{body['id']}")
    assert got.status_code == 200 and got.json() == body and got.headers["ETag"]


def test_seed_004_mapping_request_as_written(api: ApiClient) -> None:
    tenant = api.tenant_id
    fields = {
        name: {"type": "string"}
        for name in ("cio_id", "email", "event_id0", "metricx", "object_type1", "timestampx")
    }
    group = create_fieldgroup(api, fields, "Customer.io")
    schema = create_schema(api, PROFILE, group["$id"])
    text = DOC_004_MAPPING.replace("{SCHEMA_ID}", schema["$id"]).replace("_extconndev.", f"_{tenant}.")
    response = post_text(api, f"{CONVERSION}/mappingSets", text)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["version"] == 0 and HEX32.fullmatch(body["id"])
    assert body["outputSchemaRef"] == {
        "id": schema["$id"],
        "contentType": "application/vnd.adobe.xed-full+json;version=1",
    }
    assert body["mappings"][0]["source"] == "data.identifiers.cio_id"
    assert body["mappings"][5]["destination"] == f"_{tenant}.timestampx"
    assert body["createdBy"] and body["modifiedBy"]


def test_data_prep_shape_with_source_types_and_identities(api: ApiClient) -> None:
    schema = seed_schema(api)
    body = {
        "name": "CRM mapping",
        "inputSchema": {"id": "https://example.com/input", "version": "1"},
        "outputSchema": {
            "schemaRef": {"id": schema["$id"], "contentType": "application/vnd.adobe.xed-full+json;version=1"}
        },
        "mappings": [
            {
                "sourceType": "ATTRIBUTE",
                "source": "email",
                "destination": "personalEmail.address",
                "identity": True,
                "primaryIdentity": True,
                "namespaceCode": "Email",
            },
            {
                "sourceType": "text/x.aep-xl",
                "source": "concat(upper(lastName), upper(firstName))",
                "destination": "person.name.fullName",
            },
            {"sourceType": "static", "source": "Mr.", "destination": "person.name.courtesyTitle"},
            {
                "sourceType": "text/x.schema-path",
                "source": "${First Name}",
                "destination": "person.name.firstName",
            },
            {"source": "name", "destination": "person.name"},
        ],
    }
    response = api.post(f"{CONVERSION}/mappingSets", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["name"] == "CRM mapping"
    assert created["inputSchemaRef"] == {"id": "https://example.com/input", "contentType": "1"}
    types = [m["sourceType"] for m in created["mappings"]]
    # Document 002's answer spells attribute mappings text/x.schema-path.
    assert types == ["text/x.schema-path", "EXPRESSION", "STATIC", "text/x.schema-path", "text/x.schema-path"]
    email = created["mappings"][0]
    assert (
        email["identity"] is True and email["primaryIdentity"] is True and email["namespaceCode"] == "Email"
    )
    assert created["mappings"][1]["source"] == "concat(upper(lastName), upper(firstName))"


@pytest.mark.parametrize(
    ("mapping", "path"),
    [
        (
            {"destinationXdmPath": "person.name.fistName", "sourceAttribute": "x"},
            "mappings[2].destinationXdmPath",
        ),
        ({"destination": "nope", "source": "x"}, "mappings[2].destination"),
        ({"destination": "person.name.firstName", "source": ""}, "mappings[2].source"),
        ({"destination": "person.name.firstName"}, "mappings[2].source"),
        ({"source": "x"}, "mappings[2].destination"),
        ({"source": "x", "destination": 5}, "mappings[2].destination"),
        (
            {"source": "x", "destination": "person.name.firstName", "sourceType": "SQL"},
            "mappings[2].sourceType",
        ),
        ({"source": "x", "destination": "person.name.firstName", "identity": "yes"}, "mappings[2].identity"),
        (
            {"source": "x", "destination": "person.name.firstName", "identity": True},
            "mappings[2].namespaceCode",
        ),
        (
            {"source": "x", "destination": "person.birthYear", "identity": True, "namespaceCode": "CRMID"},
            "mappings[2].destination",
        ),
        (
            {"source": "x", "destination": "person.name.firstName", "namespaceCode": 3},
            "mappings[2].namespaceCode",
        ),
        ({"source": "x", "destination": "person.name.lastName"}, "mappings[2].destination"),
        (
            {"source": "x", "sourceAttribute": "y", "destination": "person.name.middleName"},
            "mappings[2].sourceAttribute",
        ),
        (
            {
                "source": "x",
                "destination": "person.name.middleName",
                "primaryIdentity": True,
                "namespaceCode": "Email",
            },
            "mappings[2].primaryIdentity",
        ),
        ("oops", "mappings[2]"),
    ],
)
def test_bad_mappings_are_400_naming_the_mapping(api: ApiClient, mapping: Any, path: str) -> None:
    schema = seed_schema(api)
    body = mapping_set(
        schema["$id"],
        {"source": "first", "destination": "person.name.firstName"},
        {
            "source": "last",
            "destination": "person.name.lastName",
            "identity": True,
            "primaryIdentity": True,
            "namespaceCode": "CRMID",
        },
        mapping,
    )
    response = api.post(f"{CONVERSION}/mappingSets", json=body)
    assert response.status_code == 400, response.text
    assert path in error_paths(response), response.json()
    assert response.json()["report"]["code"].startswith("CONV-")
    assert api.get(f"{CONVERSION}/mappingSets").json()["data"] == []


def test_destination_error_names_the_path(api: ApiClient) -> None:
    schema = seed_schema(api)
    text = SEED_002_MAPPING.replace("{SCHEMA_ID}", schema["$id"]).replace(
        "personalEmail.address", "personal.mail"
    )
    response = post_text(api, f"{CONVERSION}/mappingSets", text)
    assert response.status_code == 400
    error = response.json()["report"]["errors"][0]
    assert error["path"] == "mappings[2].destinationXdmPath" and "personal.mail" in error["message"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"xdmSchema": "https://ns.adobe.com/headwater/schemas/nope", "mappings": []}, "xdmSchema"),
        ({"outputSchema": {"schemaRef": {"id": "nope"}}, "mappings": []}, "outputSchema.schemaRef.id"),
        ({"outputSchema": {}, "mappings": []}, "outputSchema.schemaRef.id"),
        ({"mappings": []}, "xdmSchema"),
        ({"xdmSchema": 3, "mappings": []}, "xdmSchema"),
        ({"xdmSchema": "SCHEMA"}, "mappings"),
        ({"xdmSchema": "SCHEMA", "mappings": {}}, "mappings"),
        ({"xdmSchema": "SCHEMA", "mappings": [{"source": "a", "destination": "_id"}], "name": 4}, "name"),
        (
            {"xdmSchema": "SCHEMA", "mappings": [{"source": "a", "destination": "_id"}], "inputSchema": 4},
            "inputSchema",
        ),
    ],
)
def test_bad_mapping_sets_are_400(api: ApiClient, body: dict[str, Any], path: str) -> None:
    schema = seed_schema(api)
    response = post_text(
        api, f"{CONVERSION}/mappingSets", json.dumps(body).replace('"SCHEMA"', json.dumps(schema["$id"]))
    )
    assert response.status_code == 400, response.text
    assert path in error_paths(response)


def test_put_makes_a_new_version_and_keeps_the_old_one(api: ApiClient) -> None:
    schema = seed_schema(api)
    first = seed_mapping(api, schema["$id"])
    path = f"{CONVERSION}/mappingSets/{first['id']}"
    body = mapping_set(schema["$id"], {"source": "mail", "destination": "personalEmail.address"})
    assert api.put(path, json=body, headers={"If-Match": '"stale"'}).status_code == 412
    response = api.put(path, json=body)
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["id"] == first["id"] and second["version"] == 1
    assert second["createdDate"] == first["createdDate"] and [m["source"] for m in second["mappings"]] == [
        "mail"
    ]
    assert api.get(path).json() == second
    assert api.get(f"{path}?version=0").json() == first
    assert api.get(f"{path}?version=7").status_code == 404
    assert api.get(f"{path}?version=x").status_code == 400
    bad = api.put(path, json=mapping_set(schema["$id"], {"source": "a", "destination": "nope"}))
    assert bad.status_code == 400 and api.get(path).json()["version"] == 1


def test_list_and_delete_mapping_sets(api: ApiClient) -> None:
    schema = seed_schema(api)
    ids = [seed_mapping(api, schema["$id"])["id"] for _ in range(3)]
    named = api.post(
        f"{CONVERSION}/mappingSets",
        json={
            **mapping_set(schema["$id"], {"source": "a", "destination": "person.name.firstName"}),
            "name": "special",
        },
    ).json()["id"]
    listed = api.get(f"{CONVERSION}/mappingSets?limit=2&start=0").json()
    assert [m["id"] for m in listed["data"]] == ids[:2]
    assert listed["_page"] == {"count": 4, "limit": 2, "start": 0}
    newest = api.get(f"{CONVERSION}/mappingSets?orderby=-createdDate").json()["data"]
    assert [m["id"] for m in newest] == [named, *reversed(ids)]
    assert [m["id"] for m in api.get(f"{CONVERSION}/mappingSets?name=special").json()["data"]] == [named]
    assert api.get(f"{CONVERSION}/mappingSets?orderby=size").status_code == 400
    # the output schema is referenced by the mapping sets
    assert api.delete(f"{SR}/tenant/schemas/{quote(schema['$id'], safe='')}").status_code == 409
    assert api.delete(f"{CONVERSION}/mappingSets/{ids[0]}").status_code == 204
    missing = api.get(f"{CONVERSION}/mappingSets/{ids[0]}")
    assert missing.status_code == 404 and missing.json()["report"]["code"] == "CONV-1404-404"


def test_mapping_to_tenant_fields_and_nested_arrays(api: ApiClient) -> None:
    group = create_fieldgroup(
        api,
        {
            **LOYALTY,
            "history": {
                "type": "array",
                "items": {"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}}},
            },
        },
    )
    schema = create_schema(
        api, PROFILE, PERSON, PERSONAL, group["$id"], "https://ns.adobe.com/xdm/context/identitymap"
    )
    body = mapping_set(
        schema["$id"],
        {"source": "id", "destination": f"_{api.tenant_id}.loyaltyId"},
        {"source": "when", "destination": f"_{api.tenant_id}.history[*].at"},
        {"source": "when2", "destination": f"_{api.tenant_id}.history[0].at"},
        {"source": "ids", "destination": "identityMap.Email"},
    )
    response = api.post(f"{CONVERSION}/mappingSets", json=body)
    assert response.status_code == 201, response.text


# --- the helpers other services call ---
def test_public_helpers(server: LiveServer, api: ApiClient) -> None:
    services = server.services
    org = services.store.get_org(api.org_id)
    sandbox = services.store.get_sandbox(api.org_id, api.sandbox_name)
    assert org is not None and sandbox is not None
    actor = Actor(org=org, sandbox=sandbox, client_id=api.api_key)
    schema = seed_schema(api)
    registry = services.schemas
    assert registry.tenant_namespace(actor) == "_headwater"
    found = registry.get_schema(actor, schema["meta:altId"])
    assert found is not None and found.id == schema["$id"]
    assert registry.get_schema(actor, "https://ns.adobe.com/headwater/schemas/nope") is None
    resolved = registry.resolve(actor, schema["meta:altId"])
    assert registry.field_at(resolved, "person.name.firstName")["type"] == "string"  # type: ignore[index]
    assert "person.name.firstName" in registry.leaf_paths(resolved)
    with pytest.raises(NotFound) as missing:
        registry.resolve(actor, "https://ns.adobe.com/headwater/schemas/nope")
    assert missing.value.code == "SCHEMA-1404-404"
    dataset_id = create_dataset(api, schema["$id"])
    assert services.datasets.get(actor, dataset_id).doc["schemaRef"]["id"] == schema["$id"]
    with pytest.raises(NotFound) as no_dataset:
        services.datasets.get(actor, "0" * 24)
    assert no_dataset.value.code == "CAT-1404-404"
    mapping = seed_mapping(api, schema["$id"])
    assert services.mapping_sets.get(actor, mapping["id"]).doc["outputSchemaRef"]["id"] == schema["$id"]
    with pytest.raises(NotFound) as no_mapping:
        services.mapping_sets.get(actor, "0" * 32)
    assert no_mapping.value.code == "CONV-1404-404"
    descriptor = api.post(
        f"{SR}/tenant/descriptors",
        json={
            "@type": "xdm:descriptorIdentity",
            "xdm:sourceSchema": schema["$id"],
            "xdm:sourceProperty": "/personalEmail/address",
            "xdm:namespace": "Email",
            "xdm:isPrimary": True,
        },
    )
    assert descriptor.status_code == 201
    assert [d["xdm:namespace"] for d in registry.identities(actor, schema["$id"])] == ["Email"]
    filtered = api.get(f"{SR}/tenant/descriptors", params={"property": f"xdm:sourceSchema=={schema['$id']}"})
    assert [d["@id"] for d in filtered.json()["results"]] == [descriptor.json()["@id"]]


def test_an_expression_that_does_not_parse_is_refused_at_save(api: ApiClient) -> None:
    schema = profile_schema(api)
    response = api.post(
        "/data/foundation/conversion/mappingSets",
        json={
            "xdmSchema": schema,
            "mappings": [
                {
                    "sourceType": "EXPRESSION",
                    "source": "concat(upper(last_name), ",
                    "destination": "person.name.fullName",
                }
            ],
        },
    )
    assert response.status_code == 400
    assert response.json()["report"]["errors"][0]["path"] == "mappings[0].source"
    good = api.post(
        "/data/foundation/conversion/mappingSets",
        json={
            "xdmSchema": schema,
            "mappings": [
                {
                    "sourceType": "EXPRESSION",
                    "source": 'concat(upper(last_name), ", ", first_name)',
                    "destination": "person.name.fullName",
                }
            ],
        },
    )
    assert good.status_code == 201, good.text
