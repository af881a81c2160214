"""Schema Registry: seed 002's schema request, composition, resolution, descriptors, evolution, isolation."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from headwater.services.schemas import closed, field_at, leaf_paths
from tests.support import ApiClient

SR = "/data/foundation/schemaregistry"
CATALOG = "/data/foundation/catalog"
PROFILE = "https://ns.adobe.com/xdm/context/profile"
EVENT = "https://ns.adobe.com/xdm/context/experienceevent"
PERSON = "https://ns.adobe.com/xdm/context/profile-person-details"
PERSONAL = "https://ns.adobe.com/xdm/context/profile-personal-details"
WORK = "https://ns.adobe.com/xdm/context/profile-work-details"
WEB = "https://ns.adobe.com/xdm/context/experienceevent-web"
XED = {"Accept": "application/vnd.adobe.xed+json; version=1"}
FULL = {"Accept": "application/vnd.adobe.xed-full+json; version=1"}

# Seed 002's request body, byte for byte as the tutorial's curl sends it.
SEED_002_SCHEMA = """{
        "type": "object",
        "title": "Target schema for CRM source connector",
        "description": "",
        "allOf": [
            {
                "$ref": "https://ns.adobe.com/xdm/context/profile"
            },
            {
                "$ref": "https://ns.adobe.com/xdm/context/profile-person-details"
            },
            {
                "$ref": "https://ns.adobe.com/xdm/context/profile-personal-details"
            }
        ],
        "meta:containerId": "tenant",
        "meta:resourceType": "schemas",
        "meta:xdmType": "object",
        "meta:class": "https://ns.adobe.com/xdm/context/profile"
    }"""


def enc(ident: str) -> str:
    return quote(ident, safe="")


def post_json(api: ApiClient, path: str, text: str) -> httpx.Response:
    return api.post(path, content=text, headers={"Content-Type": "application/json"})


def seed_schema(api: ApiClient) -> dict[str, Any]:
    response = post_json(api, f"{SR}/tenant/schemas", SEED_002_SCHEMA)
    assert response.status_code == 201, response.text
    return dict(response.json())


def schema_body(*refs: str, title: str = "Test schema") -> dict[str, Any]:
    return {"type": "object", "title": title, "allOf": [{"$ref": r} for r in refs]}


def create_schema(api: ApiClient, *refs: str) -> dict[str, Any]:
    response = api.post(f"{SR}/tenant/schemas", json=schema_body(*refs))
    assert response.status_code == 201, response.text
    return dict(response.json())


def fieldgroup_body(
    tenant: str, fields: dict[str, Any], title: str = "Loyalty", classes: tuple[str, ...] = (PROFILE,)
) -> dict[str, Any]:
    return {
        "type": "object",
        "title": title,
        "description": "Loyalty program fields",
        "meta:intendedToExtend": list(classes),
        "definitions": {"loyalty": {"properties": {f"_{tenant}": {"type": "object", "properties": fields}}}},
        "allOf": [{"$ref": "#/definitions/loyalty"}],
    }


def create_fieldgroup(api: ApiClient, fields: dict[str, Any], title: str = "Loyalty") -> dict[str, Any]:
    response = api.post(f"{SR}/tenant/fieldgroups", json=fieldgroup_body(api.tenant_id, fields, title))
    assert response.status_code == 201, response.text
    return dict(response.json())


def create_dataset(api: ApiClient, schema_id: str) -> str:
    response = api.post(f"{CATALOG}/dataSets", json={"name": "Data", "schemaRef": {"id": schema_id}})
    assert response.status_code == 201, response.text
    return str(response.json()[0].split("/")[-1])


def error_paths(response: httpx.Response) -> list[str]:
    return [e["path"] for e in response.json()["report"]["errors"]]


LOYALTY = {"loyaltyId": {"type": "string"}, "points": {"type": "integer"}}


# --- seed 002 ---
def test_seed_002_schema_request_as_written_returns_the_documented_shape(api: ApiClient) -> None:
    response = post_json(api, f"{SR}/tenant/schemas", SEED_002_SCHEMA)
    assert response.status_code == 201, response.text
    body = response.json()
    hexid = body["$id"].rsplit("/", 1)[-1]
    assert re.fullmatch(r"https://ns\.adobe\.com/headwater/schemas/[0-9a-f]{32}", body["$id"])
    assert body["meta:altId"] == f"_headwater.schemas.{hexid}"
    expected = {
        "meta:resourceType": "schemas",
        "version": "1.0",
        "title": "Target schema for CRM source connector",
        "description": "",
        "type": "object",
        "allOf": [{"$ref": PROFILE}, {"$ref": PERSON}, {"$ref": PERSONAL}],
        "meta:xdmType": "object",
        "meta:class": PROFILE,
        "meta:abstract": False,
        "meta:extensible": False,
        "meta:extends": [PROFILE, PERSON, PERSONAL],
        "meta:containerId": "tenant",
    }
    for key, value in expected.items():
        assert body[key] == value, key
    assert body["meta:registryMetadata"]["eTag"]
    assert response.headers["ETag"]
    for hidden in ("imsOrgId", "sandboxId", "createdAt", "id"):
        assert hidden not in body


def test_get_by_id_or_alt_id_returns_the_stored_schema(api: ApiClient) -> None:
    created = seed_schema(api)
    for ident in (created["$id"], created["meta:altId"], created["meta:altId"].lstrip("_")):
        response = api.get(f"{SR}/tenant/schemas/{enc(ident)}", headers=XED)
        assert response.status_code == 200, response.text
        assert response.json() == created
        assert response.headers["ETag"]


def test_full_resolution_merges_class_and_field_groups_without_refs(api: ApiClient) -> None:
    created = seed_schema(api)
    response = api.get(f"{SR}/tenant/schemas/{enc(created['$id'])}", headers=FULL)
    assert response.status_code == 200, response.text
    resolved = response.json()
    assert "$ref" not in json.dumps(resolved["properties"]) and "allOf" not in resolved
    assert resolved["type"] == "object" and resolved["$id"] == created["$id"]
    first = field_at(resolved, "person.name.firstName")
    assert first is not None and first["type"] == "string"
    assert (
        field_at(resolved, "person.name") is not None
        and field_at(resolved, "person.name")["type"] == "object"
    )
    assert field_at(resolved, "personalEmail.address")["type"] == "string"  # type: ignore[index]
    assert field_at(resolved, "_id") is not None  # from the class
    assert field_at(resolved, "person.name.nope") is None
    leaves = leaf_paths(resolved)
    assert leaves["person.name.firstName"]["type"] == "string"
    assert "person.name" not in leaves and "person.birthYear" in leaves
    notext = api.get(
        f"{SR}/tenant/schemas/{enc(created['$id'])}",
        headers={"Accept": "application/vnd.adobe.xed-full-notext+json; version=1"},
    ).json()
    assert "title" not in notext["properties"]["person"] and notext["title"] == created["title"]


def test_meta_class_is_derived_when_omitted(api: ApiClient) -> None:
    body = create_schema(api, PROFILE, PERSON)
    assert body["meta:class"] == PROFILE
    assert body["meta:extends"] == [PROFILE, PERSON]


def test_alt_ids_in_refs_are_stored_canonically(api: ApiClient) -> None:
    body = create_schema(api, "_xdm.context.profile", "_xdm.context.profile-person-details")
    assert body["allOf"] == [{"$ref": PROFILE}, {"$ref": PERSON}]


@pytest.mark.parametrize(
    ("body", "path", "needle"),
    [
        (schema_body(PROFILE, "https://ns.adobe.com/xdm/context/nope"), "allOf[1].$ref", "context/nope"),
        (schema_body(PERSON), "allOf", "class"),
        (schema_body(PROFILE, EVENT), "allOf[1].$ref", "second class"),
        ({**schema_body(PROFILE, PERSON), "meta:class": EVENT}, "meta:class", "allOf"),
        (schema_body(PROFILE, WEB), "allOf[1].$ref", "intended to extend"),
        ({"title": "x"}, "allOf", "required"),
        ({"title": "x", "allOf": "nope"}, "allOf", "required"),
        ({"title": "x", "allOf": [1, {"$ref": PROFILE}]}, "allOf[0]", "$ref"),
        ({"allOf": [{"$ref": PROFILE}]}, "title", "required"),
        ({"title": 5, "allOf": [{"$ref": PROFILE}]}, "title", "string"),
        ({**schema_body(PROFILE), "type": "array"}, "type", "object"),
    ],
)
def test_bad_compositions_are_400_naming_the_field(
    api: ApiClient, body: dict[str, Any], path: str, needle: str
) -> None:
    response = api.post(f"{SR}/tenant/schemas", json=body)
    assert response.status_code == 400, response.text
    errors = response.json()["report"]["errors"]
    assert any(e["path"] == path and needle in e["message"] for e in errors), errors
    assert response.json()["report"]["code"].startswith("SCHEMA-")
    assert api.get(f"{SR}/tenant/schemas").json()["results"] == []


@pytest.mark.parametrize(
    "body",
    [
        [],
        "x",
        3,
        None,
        {"title": "x", "allOf": [{"$ref": 7}]},
        {"title": "x", "allOf": [{"$ref": PROFILE}], "meta:class": ["a"]},
        {"title": "x", "allOf": [{"$ref": PROFILE}], "meta:immutableTags": "union"},
    ],
)
def test_malformed_schema_bodies_are_400(api: ApiClient, body: Any) -> None:
    response = api.post(
        f"{SR}/tenant/schemas", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text


# --- tenant field groups ---
def test_tenant_field_group_keeps_fields_under_the_tenant_namespace(api: ApiClient) -> None:
    group = create_fieldgroup(api, LOYALTY)
    hexid = group["$id"].rsplit("/", 1)[-1]
    assert re.fullmatch(r"https://ns\.adobe\.com/headwater/mixins/[0-9a-f]{32}", group["$id"])
    assert group["meta:altId"] == f"_headwater.mixins.{hexid}"
    assert group["meta:intendedToExtend"] == [PROFILE] and group["meta:containerId"] == "tenant"
    assert group["definitions"]["loyalty"]["properties"]["_headwater"]["properties"]["points"]["meta:xdmType"]
    schema = create_schema(api, PROFILE, group["$id"])
    resolved = api.get(f"{SR}/tenant/schemas/{enc(schema['$id'])}", headers=FULL).json()
    assert (
        field_at(resolved, "_headwater.loyaltyId")
        == group["definitions"]["loyalty"]["properties"]["_headwater"]["properties"]["loyaltyId"]
    )
    # the legacy /mixins path and the alt id reach the same field group
    again = api.get(f"{SR}/tenant/mixins/{enc(group['meta:altId'])}", headers=XED)
    assert again.status_code == 200 and again.json()["$id"] == group["$id"]
    listed = api.get(f"{SR}/tenant/fieldgroups").json()["results"]
    assert listed == [
        {"$id": group["$id"], "meta:altId": group["meta:altId"], "version": "1.0", "title": "Loyalty"}
    ]


def test_tenant_field_outside_the_namespace_is_400_naming_it(api: ApiClient) -> None:
    body = fieldgroup_body(api.tenant_id, LOYALTY)
    body["definitions"]["loyalty"]["properties"]["loyaltyId"] = {"type": "string"}
    response = api.post(f"{SR}/tenant/fieldgroups", json=body)
    assert response.status_code == 400
    assert "definitions.loyalty.properties.loyaltyId" in error_paths(response)
    assert "_headwater" in response.json()["detail"]


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"a": {"type": "strin"}}, "definitions.loyalty.properties._headwater.properties.a.type"),
        ({"a": {"type": "array"}}, "definitions.loyalty.properties._headwater.properties.a.items"),
        ({"a": {"type": "object"}}, "definitions.loyalty.properties._headwater.properties.a.properties"),
        ({"a.b": {"type": "string"}}, "definitions.loyalty.properties._headwater.properties.a.b"),
        ({"a": "string"}, "definitions.loyalty.properties._headwater.properties.a"),
        (
            {"a": {"type": "integer", "minimum": "x"}},
            "definitions.loyalty.properties._headwater.properties.a.minimum",
        ),
    ],
)
def test_bad_tenant_fields_are_400_naming_them(api: ApiClient, fields: dict[str, Any], path: str) -> None:
    response = api.post(f"{SR}/tenant/fieldgroups", json=fieldgroup_body(api.tenant_id, fields))
    assert response.status_code == 400, response.text
    assert path in error_paths(response)


def test_field_group_needs_a_known_class(api: ApiClient) -> None:
    body = fieldgroup_body(api.tenant_id, LOYALTY, classes=("https://ns.adobe.com/xdm/context/nope",))
    response = api.post(f"{SR}/tenant/fieldgroups", json=body)
    assert response.status_code == 400 and "meta:intendedToExtend[0]" in error_paths(response)


def test_two_field_groups_with_one_path_of_two_types_are_refused(api: ApiClient) -> None:
    first = create_fieldgroup(api, {"points": {"type": "integer"}}, "A")
    second = create_fieldgroup(api, {"points": {"type": "string"}}, "B")
    response = api.post(f"{SR}/tenant/schemas", json=schema_body(PROFILE, first["$id"], second["$id"]))
    assert response.status_code == 400
    errors = response.json()["report"]["errors"]
    assert errors[0]["path"] == "_headwater.points" and "integer" in errors[0]["message"]


def test_field_groups_sharing_the_namespace_merge(api: ApiClient) -> None:
    first = create_fieldgroup(api, {"a": {"type": "string"}}, "A")
    second = create_fieldgroup(api, {"b": {"type": "integer"}}, "B")
    schema = create_schema(api, PROFILE, first["$id"], second["$id"])
    resolved = api.get(f"{SR}/tenant/schemas/{enc(schema['$id'])}", headers=FULL).json()
    assert {"_headwater.a", "_headwater.b"} <= set(leaf_paths(resolved))


def test_field_group_in_use_cannot_be_deleted(api: ApiClient) -> None:
    group = create_fieldgroup(api, LOYALTY)
    schema = create_schema(api, PROFILE, group["$id"])
    assert api.delete(f"{SR}/tenant/fieldgroups/{enc(group['$id'])}").status_code == 409
    assert api.delete(f"{SR}/tenant/schemas/{enc(schema['$id'])}").status_code == 204
    assert api.delete(f"{SR}/tenant/fieldgroups/{enc(group['$id'])}").status_code == 204
    assert api.get(f"{SR}/tenant/fieldgroups/{enc(group['$id'])}").status_code == 404


# --- global classes and field groups ---
def test_global_classes_and_field_groups(api: ApiClient) -> None:
    classes = api.get(f"{SR}/global/classes")
    assert classes.status_code == 200
    body = classes.json()
    assert {
        "$id": PROFILE,
        "meta:altId": "_xdm.context.profile",
        "version": "1.0",
        "title": "XDM Individual Profile",
    } in body["results"]
    assert body["_page"]["count"] == len(body["results"]) and body["_page"]["next"] is None
    full = api.get(f"{SR}/global/classes", headers=XED).json()["results"]
    assert all("definitions" in c for c in full)
    one = api.get(f"{SR}/global/classes/{enc(PROFILE)}")
    assert one.status_code == 200 and one.json()["$id"] == PROFILE
    by_alt = api.get(f"{SR}/global/classes/_xdm.context.profile").json()
    assert by_alt["$id"] == PROFILE
    for path in ("fieldgroups", "mixins"):
        group = api.get(f"{SR}/global/{path}/{enc(PERSON)}", headers=FULL)
        assert group.status_code == 200
        assert field_at(group.json(), "person.name.firstName") is not None
    assert api.get(f"{SR}/global/classes/{enc(PERSON)}").status_code == 404
    assert (
        api.get(f"{SR}/global/fieldgroups?property=title==Demographic%20Details").json()["results"][0]["$id"]
        == PERSON
    )


def test_list_tenant_schemas_envelope(api: ApiClient) -> None:
    a = create_schema(api, PROFILE)
    b = seed_schema(api)
    listed = api.get(f"{SR}/tenant/schemas").json()
    assert [r["$id"] for r in listed["results"]] == [b["$id"], a["$id"]]  # ordered by title
    assert set(listed["results"][0]) == {"$id", "meta:altId", "version", "title"}
    assert listed["_page"] == {"orderby": "title", "next": None, "count": 2}
    full = api.get(f"{SR}/tenant/schemas", headers=XED).json()["results"]
    assert full[0]["allOf"] == b["allOf"]
    page = api.get(f"{SR}/tenant/schemas?limit=1").json()
    assert len(page["results"]) == 1 and page["_page"]["next"] and page["_links"]["next"]["href"]


# --- update ---
def test_patch_adds_a_field_group_and_honours_if_match(api: ApiClient) -> None:
    schema = seed_schema(api)
    path = f"{SR}/tenant/schemas/{enc(schema['$id'])}"
    patch = [{"op": "add", "path": "/allOf/-", "value": {"$ref": WORK}}]
    stale = api.patch(path, json=patch, headers={"If-Match": '"nope"'})
    assert stale.status_code == 412
    response = api.patch(path, json=patch)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meta:extends"][-1] == WORK and body["version"] == "1.1"
    etag = response.headers["ETag"]
    assert etag == api.get(path).headers["ETag"]
    assert etag.strip('"') == body["meta:registryMetadata"]["eTag"] != schema["meta:registryMetadata"]["eTag"]
    current = api.get(path)
    again = api.patch(
        path,
        json=[{"op": "replace", "path": "/title", "value": "Renamed"}],
        headers={"If-Match": current.headers["ETag"]},
    )
    assert again.status_code == 200 and again.json()["title"] == "Renamed"
    assert api.patch(path, json=[{"op": "replace", "path": "/$id", "value": "x"}]).status_code == 400
    assert api.patch(path, json={"op": "add"}).status_code == 400


def test_put_replaces_a_schema(api: ApiClient) -> None:
    schema = seed_schema(api)
    path = f"{SR}/tenant/schemas/{enc(schema['$id'])}"
    response = api.put(path, json={**schema, "title": "Replaced", "allOf": [{"$ref": PROFILE}]})
    assert response.status_code == 200, response.text
    assert response.json()["meta:extends"] == [PROFILE] and response.json()["$id"] == schema["$id"]


def test_delete_schema(api: ApiClient) -> None:
    schema = seed_schema(api)
    path = f"{SR}/tenant/schemas/{enc(schema['$id'])}"
    assert api.delete(path).status_code == 204
    missing = api.get(path)
    assert missing.status_code == 404 and missing.json()["report"]["code"] == "SCHEMA-1404-404"
    assert api.delete(path).status_code == 404


# --- descriptors ---
def identity(
    schema_id: str, prop: str = "/personalEmail/address", primary: bool = True, namespace: str = "Email"
) -> dict[str, Any]:
    return {
        "@type": "xdm:descriptorIdentity",
        "xdm:sourceSchema": schema_id,
        "xdm:sourceVersion": 1,
        "xdm:sourceProperty": prop,
        "xdm:namespace": namespace,
        "xdm:property": "xdm:code",
        "xdm:isPrimary": primary,
    }


def test_identity_descriptors(api: ApiClient) -> None:
    schema = seed_schema(api)
    response = api.post(f"{SR}/tenant/descriptors", json=identity(schema["$id"]))
    assert response.status_code == 201, response.text
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]{40}", body["@id"])
    assert body["meta:containerId"] == "tenant" and body["xdm:isPrimary"] is True
    assert body["xdm:sourceProperty"] == "/personalEmail/address" and body["xdm:namespace"] == "Email"
    second = api.post(
        f"{SR}/tenant/descriptors", json=identity(schema["$id"], "/mobilePhone/number", namespace="Phone")
    )
    assert second.status_code == 409 and "primary" in second.json()["detail"]
    secondary = api.post(
        f"{SR}/tenant/descriptors", json=identity(schema["meta:altId"], "/mobilePhone/number", False, "Phone")
    )
    assert secondary.status_code == 201 and secondary.json()["xdm:sourceSchema"] == schema["$id"]
    same_field = api.post(f"{SR}/tenant/descriptors", json=identity(schema["$id"], primary=False))
    assert same_field.status_code == 409
    listed = api.get(f"{SR}/tenant/descriptors").json()["results"]
    assert {d["@id"] for d in listed} == {body["@id"], secondary.json()["@id"]}
    assert api.get(f"{SR}/tenant/descriptors/{body['@id']}").json() == body
    resolved = api.get(f"{SR}/tenant/schemas/{enc(schema['$id'])}", headers=FULL).json()
    assert (
        "personalEmail" in resolved["required"]
        and "address" in resolved["properties"]["personalEmail"]["required"]
    )
    # a schema with descriptors cannot be deleted, nor lose the identity field
    assert api.delete(f"{SR}/tenant/schemas/{enc(schema['$id'])}").status_code == 409
    dropped = api.put(
        f"{SR}/tenant/schemas/{enc(schema['$id'])}",
        json={**schema, "allOf": [{"$ref": PROFILE}, {"$ref": PERSON}]},
    )
    assert dropped.status_code == 400 and "personalEmail.address" in error_paths(dropped)
    updated = api.put(
        f"{SR}/tenant/descriptors/{body['@id']}", json={**identity(schema["$id"]), "xdm:namespace": "CRMID"}
    )
    assert updated.status_code == 200 and updated.json()["xdm:namespace"] == "CRMID"
    assert api.delete(f"{SR}/tenant/descriptors/{body['@id']}").status_code == 204
    assert api.get(f"{SR}/tenant/descriptors/{body['@id']}").status_code == 404


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"xdm:sourceProperty": "/personalEmail/nope"}, "xdm:sourceProperty"),
        ({"xdm:sourceProperty": "/person/birthYear"}, "xdm:sourceProperty"),
        ({"xdm:sourceProperty": "personalEmail.address"}, "xdm:sourceProperty"),
        ({"xdm:sourceProperty": 4}, "xdm:sourceProperty"),
        ({"xdm:sourceSchema": "https://ns.adobe.com/headwater/schemas/0000"}, "xdm:sourceSchema"),
        ({"xdm:namespace": ""}, "xdm:namespace"),
        ({"xdm:namespace": None}, "xdm:namespace"),
        ({"xdm:isPrimary": "yes"}, "xdm:isPrimary"),
        ({"xdm:property": "xdm:nope"}, "xdm:property"),
        ({"@type": "xdm:descriptorOneToOne"}, "@type"),
    ],
)
def test_bad_descriptors_are_400_naming_the_field(api: ApiClient, change: dict[str, Any], path: str) -> None:
    schema = seed_schema(api)
    response = api.post(f"{SR}/tenant/descriptors", json={**identity(schema["$id"]), **change})
    assert response.status_code == 400, response.text
    assert path in error_paths(response)
    if path == "@type":
        assert "xdm:descriptorIdentity" in response.json()["detail"]


# --- evolution ---
def test_before_a_dataset_any_change_is_allowed(api: ApiClient) -> None:
    schema = seed_schema(api)
    path = f"{SR}/tenant/schemas/{enc(schema['$id'])}"
    response = api.put(path, json={**schema, "allOf": [{"$ref": PROFILE}]})
    assert response.status_code == 200


def test_once_a_dataset_exists_only_additive_changes_are_accepted(api: ApiClient) -> None:
    group = create_fieldgroup(api, LOYALTY)
    schema = create_schema(api, PROFILE, PERSON, group["$id"])
    create_dataset(api, schema["$id"])
    path = f"{SR}/tenant/schemas/{enc(schema['$id'])}"

    removed = api.patch(path, json=[{"op": "remove", "path": "/allOf/1"}])
    assert removed.status_code == 400, removed.text
    assert removed.json()["report"]["code"] == "SCHEMA-1422-400"
    paths = error_paths(removed)
    assert {"person", "person.name", "person.name.firstName", "person.birthYear"} <= set(paths)
    assert any(PERSON in e["message"] for e in removed.json()["report"]["errors"] if e["path"] == "allOf")
    assert api.get(path, headers=XED).json() == schema  # nothing changed

    klass = api.put(path, json={**schema, "allOf": [{"$ref": EVENT}], "meta:class": EVENT})
    assert klass.status_code == 400 and "meta:class" in error_paths(klass)

    added = api.patch(path, json=[{"op": "add", "path": "/allOf/-", "value": {"$ref": WORK}}])
    assert added.status_code == 200, added.text
    assert added.json()["meta:extends"][-1] == WORK


def test_field_group_of_a_dataset_schema_evolves_additively(api: ApiClient) -> None:
    group = create_fieldgroup(api, LOYALTY)
    schema = create_schema(api, PROFILE, group["$id"])
    create_dataset(api, schema["$id"])
    path = f"{SR}/tenant/fieldgroups/{enc(group['$id'])}"
    tenant = api.tenant_id

    retyped = api.put(path, json=fieldgroup_body(tenant, {**LOYALTY, "points": {"type": "string"}}))
    assert retyped.status_code == 400, retyped.text
    assert (
        error_paths(retyped) == ["_headwater.points"]
        and "integer to string" in retyped.json()["report"]["errors"][0]["message"]
    )
    assert api.get(path, headers=XED).json() == group

    dropped = api.put(path, json=fieldgroup_body(tenant, {"loyaltyId": {"type": "string"}}))
    assert dropped.status_code == 400 and error_paths(dropped) == ["_headwater.points"]

    body = fieldgroup_body(tenant, LOYALTY)
    body["definitions"]["loyalty"]["properties"]["_headwater"]["required"] = ["loyaltyId"]
    required = api.put(path, json=body)
    assert required.status_code == 400 and "_headwater.loyaltyId" in error_paths(required)

    grown = api.put(path, json=fieldgroup_body(tenant, {**LOYALTY, "tier": {"type": "string"}}))
    assert grown.status_code == 200, grown.text
    resolved = api.get(f"{SR}/tenant/schemas/{enc(schema['$id'])}", headers=FULL).json()
    assert field_at(resolved, "_headwater.tier") is not None


def test_closed_schema_refuses_unknown_keys() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}},
    }
    locked = closed(schema)
    assert (
        locked["additionalProperties"] is False and locked["properties"]["a"]["additionalProperties"] is False
    )
    assert "additionalProperties" not in schema


# --- isolation ---
def test_schemas_are_invisible_to_other_sandboxes_and_orgs(
    api: ApiClient, other_sandbox_api: ApiClient, other_org_api: ApiClient
) -> None:
    schema = seed_schema(api)
    group = create_fieldgroup(api, LOYALTY)
    for other in (other_sandbox_api, other_org_api):
        assert other.get(f"{SR}/tenant/schemas/{enc(schema['$id'])}").status_code == 404
        assert other.get(f"{SR}/tenant/schemas").json()["results"] == []
        assert other.delete(f"{SR}/tenant/schemas/{enc(schema['$id'])}").status_code == 404
        foreign = other.post(f"{SR}/tenant/schemas", json=schema_body(PROFILE, group["$id"]))
        assert foreign.status_code == 400 and "allOf[1].$ref" in error_paths(foreign)
    other_group = other_org_api.post(
        f"{SR}/tenant/fieldgroups", json=fieldgroup_body("othertenant", LOYALTY)
    ).json()
    assert other_group["$id"].startswith("https://ns.adobe.com/othertenant/mixins/")
    assert api.get(f"{SR}/tenant/schemas/{enc(schema['$id'])}").status_code == 200
