"""Identity namespaces through the API (/data/core/idnamespace/identities): the standard ones, custom ones
per sandbox, AEP's shapes, bad input refused naming the field, roles; and the namespace codes that mapping
sets and identity descriptors name must exist."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from headwater.services import access
from tests.flows_helpers import CONV, SR, profile_schema
from tests.support import ApiClient, LiveServer, role_client

IDNS = "/data/core/idnamespace/identities"
FIELDS = {
    "updateTime",
    "code",
    "status",
    "description",
    "id",
    "createTime",
    "idType",
    "name",
    "namespaceType",
    "custom",
}


def loyalty(**change: Any) -> dict[str, Any]:
    return {
        "name": "Loyalty Member",
        "code": "Loyalty",
        "description": "Loyalty Program Member ID",
        "idType": "CROSS_DEVICE",
        **change,
    }


def error_paths(response: httpx.Response) -> list[str]:
    return [e["path"] for e in response.json()["report"]["errors"]]


def codes(api: ApiClient) -> list[str]:
    response = api.get(IDNS)
    assert response.status_code == 200, response.text
    return [n["code"] for n in response.json()]


@pytest.fixture
def viewer(server: LiveServer, api: ApiClient) -> Iterator[ApiClient]:
    with role_client(server, api, "Viewer") as client:
        yield client


def test_the_standard_namespaces_are_listed_in_aeps_shape(api: ApiClient) -> None:
    listed = api.get(IDNS).json()
    assert isinstance(listed, list)
    by_code = {n["code"]: n for n in listed}
    assert {c: (by_code[c]["id"], by_code[c]["idType"]) for c in ("Email", "Phone", "ECID")} == {
        "Email": (6, "EMAIL"),
        "Phone": (7, "PHONE"),
        "ECID": (4, "COOKIE"),
    }
    assert by_code["CRMID"]["idType"] == "CROSS_DEVICE"
    assert all(set(n) - {"hashFunction"} == FIELDS and n["status"] == "ACTIVE" for n in listed)
    # AEP's own are Standard; CRMID is the custom namespace AEP organizations make, shipped in every sandbox
    assert all(
        (n["custom"], n["namespaceType"]) == (False, "Standard") for n in listed if n["code"] != "CRMID"
    )
    assert (by_code["CRMID"]["custom"], by_code["CRMID"]["namespaceType"]) == (True, "Custom")
    email = api.get(f"{IDNS}/6")
    assert email.status_code == 200 and email.json() == by_code["Email"]


def test_create_a_custom_namespace_and_read_it_back(api: ApiClient) -> None:
    created = api.post(IDNS, json=loyalty(idType="Cross_device"))
    assert created.status_code == 200, created.text
    body = created.json()
    assert set(body) == FIELDS
    assert (body["code"], body["name"], body["idType"], body["custom"]) == (
        "Loyalty",
        "Loyalty Member",
        "CROSS_DEVICE",  # AEP's reference writes it in either case; stored upper-case
        True,
    )
    assert isinstance(body["id"], int) and body["id"] >= 10_000_000
    assert api.get(f"{IDNS}/{body['id']}").json() == body
    assert codes(api)[-1] == "Loyalty"


def test_put_changes_name_and_description_only(api: ApiClient) -> None:
    made = api.post(IDNS, json=loyalty()).json()
    updated = api.put(f"{IDNS}/{made['id']}", json=loyalty(name="Loyalty program", description="New"))
    assert updated.status_code == 200, updated.text
    assert (updated.json()["name"], updated.json()["description"], updated.json()["code"]) == (
        "Loyalty program",
        "New",
        "Loyalty",
    )
    for change, path in (
        ({"code": "Other"}, "code"),
        ({"idType": "EMAIL"}, "idType"),
        ({"name": ""}, "name"),
    ):
        refused = api.put(f"{IDNS}/{made['id']}", json=loyalty(**change))
        assert refused.status_code == 400 and path in error_paths(refused), refused.text
    assert api.get(f"{IDNS}/{made['id']}").json()["name"] == "Loyalty program"
    standard = api.put(f"{IDNS}/6", json={"name": "Mail", "code": "Email", "idType": "EMAIL"})
    assert standard.status_code == 400 and error_paths(standard) == ["id"]
    assert api.put(f"{IDNS}/123456789", json=loyalty()).status_code == 404


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"code": None}, "code"),
        ({"code": "has space"}, "code"),
        ({"code": "9lives"}, "code"),
        ({"code": "a" * 65}, "code"),
        ({"code": 5}, "code"),
        ({"idType": "PERSON"}, "idType"),
        ({"idType": None}, "idType"),
        ({"description": 5}, "description"),
    ],
)
def test_bad_namespaces_are_400_naming_the_field(api: ApiClient, change: dict[str, Any], path: str) -> None:
    before = codes(api)
    response = api.post(IDNS, json=loyalty(**change))
    assert response.status_code == 400, response.text
    assert path in error_paths(response)
    assert response.json()["report"]["code"].startswith("IDNS-")
    assert codes(api) == before


@pytest.mark.parametrize("code", ["loyalty", "LOYALTY", "email", "ECID", "crmid"])
def test_a_code_taken_case_insensitively_is_409(api: ApiClient, code: str) -> None:
    assert api.post(IDNS, json=loyalty()).status_code == 200
    before = codes(api)
    response = api.post(IDNS, json=loyalty(code=code, name="Another"))
    assert response.status_code == 409, response.text
    assert response.json()["report"]["path"] == "code"
    assert codes(api) == before


def test_a_custom_namespace_is_visible_in_its_sandbox_only(
    api: ApiClient, other_sandbox_api: ApiClient, other_org_api: ApiClient
) -> None:
    made = api.post(IDNS, json=loyalty()).json()
    for other in (other_sandbox_api, other_org_api):
        assert "Loyalty" not in codes(other)
        assert other.get(f"{IDNS}/{made['id']}").status_code == 404
        assert other.post(IDNS, json=loyalty()).status_code == 200  # the code is free there


def test_a_viewer_can_read_but_not_create(api: ApiClient, viewer: ApiClient) -> None:
    assert viewer.get(IDNS).status_code == 200
    refused = viewer.post(IDNS, json=loyalty())
    assert refused.status_code == 403
    assert refused.json()["report"]["permission"] == access.MANAGE_IDENTITY_NAMESPACES
    assert "Loyalty" not in codes(api)
    made = api.post(IDNS, json=loyalty()).json()
    assert viewer.put(f"{IDNS}/{made['id']}", json=loyalty(name="x")).status_code == 403


def test_the_roles_that_manage_namespaces() -> None:
    holders = {role for role, granted in access.ROLES.items() if access.MANAGE_IDENTITY_NAMESPACES in granted}
    assert holders == {"Admin", "Developer"}


# --- the services that name a namespace ---
def _mapping_body(schema_id: str, code: Any) -> dict[str, Any]:
    return {
        "outputSchema": {"schemaRef": {"id": schema_id, "contentType": "1.0"}},
        "mappings": [
            {"source": "first", "destination": "person.name.firstName"},
            {
                "source": "email",
                "destination": "personalEmail.address",
                "identity": True,
                "primaryIdentity": True,
                "namespaceCode": code,
            },
        ],
    }


def test_a_mapping_to_an_unknown_namespace_is_400_naming_it(api: ApiClient) -> None:
    schema = profile_schema(api)
    refused = api.post(f"{CONV}/mappingSets", json=_mapping_body(schema, "Loyalty"))
    assert refused.status_code == 400, refused.text
    assert error_paths(refused) == ["mappings[1].namespaceCode"]
    assert api.get(f"{CONV}/mappingSets").json()["data"] == []
    assert api.post(IDNS, json=loyalty()).status_code == 200
    made = api.post(f"{CONV}/mappingSets", json=_mapping_body(schema, "loyalty"))
    assert made.status_code == 201, made.text
    assert made.json()["mappings"][1]["namespaceCode"] == "Loyalty"  # the namespace's own code


def test_an_identity_descriptor_in_an_unknown_namespace_is_400_naming_it(
    api: ApiClient, other_sandbox_api: ApiClient
) -> None:
    schema = profile_schema(api)
    descriptor = {
        "@type": "xdm:descriptorIdentity",
        "xdm:sourceSchema": schema,
        "xdm:sourceVersion": 1,
        "xdm:sourceProperty": "/personalEmail/address",
        "xdm:namespace": "Loyalty",
        "xdm:property": "xdm:code",
        "xdm:isPrimary": True,
    }
    refused = api.post(f"{SR}/tenant/descriptors", json=descriptor)
    assert refused.status_code == 400 and error_paths(refused) == ["xdm:namespace"], refused.text
    assert api.get(f"{SR}/tenant/descriptors").json()["results"] == []
    assert other_sandbox_api.post(IDNS, json=loyalty()).status_code == 200  # another sandbox's does not count
    assert api.post(f"{SR}/tenant/descriptors", json=descriptor).status_code == 400
    email = api.post(f"{SR}/tenant/descriptors", json={**descriptor, "xdm:namespace": "EMAIL"})
    assert email.status_code == 201 and email.json()["xdm:namespace"] == "Email", email.text
