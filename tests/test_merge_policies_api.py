"""Merge policies through the API (/data/core/ups/config/mergePolicies): AEP's shapes and paging, one
default per schema class, the implicit default of a sandbox, datasets in a precedence order, bad input
refused naming the field with nothing changed, sandboxes and roles."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from headwater.services import access
from tests.flows_helpers import CAT, dataset, profile_schema
from tests.support import ApiClient, LiveServer, role_client

MP = "/data/core/ups/config/mergePolicies"
FIELDS = {
    "id",
    "name",
    "imsOrgId",
    "sandbox",
    "schema",
    "version",
    "identityGraph",
    "attributeMerge",
    "isActiveOnEdge",
    "default",
    "updateEpoch",
}


def policy(**change: Any) -> dict[str, Any]:
    return {
        "name": "Loyalty members ordered by time",
        "identityGraph": {"type": "none"},
        "attributeMerge": {"type": "timestampOrdered"},
        "schema": {"name": "_xdm.context.profile"},
        "isActiveOnEdge": False,
        "default": False,
        **change,
    }


def error_paths(response: httpx.Response) -> list[str]:
    return [e["path"] for e in response.json()["report"]["errors"]]


def children(api: ApiClient, **params: Any) -> list[dict[str, Any]]:
    response = api.get(MP, params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["children"])


def create(api: ApiClient, **change: Any) -> dict[str, Any]:
    response = api.post(MP, json=policy(**change))
    assert response.status_code == 200, response.text
    return dict(response.json())


def defaults(api: ApiClient) -> list[str]:
    return [p["id"] for p in children(api) if p["default"]]


def test_a_new_sandbox_has_an_implicit_default(api: ApiClient, server: LiveServer) -> None:
    listed = api.get(MP).json()
    assert listed["_page"] == {"totalCount": 1, "pageSize": 1} and listed["_links"] == {"next": {"href": ""}}
    (implicit,) = listed["children"]
    assert set(implicit) == FIELDS
    assert (implicit["default"], implicit["identityGraph"], implicit["attributeMerge"]) == (
        True,
        {"type": "pdg"},
        {"type": "timestampOrdered"},
    )
    assert implicit["sandbox"]["sandboxName"] == api.sandbox_name and implicit["imsOrgId"] == api.org_id
    assert api.get(f"{MP}/{implicit['id']}").json() == implicit
    sandbox = next(s for s in server.services.store.list_sandboxes(api.org_id) if s.name == api.sandbox_name)
    from headwater.stores.metadata import Scope

    assert server.services.merge_policies.default_policy(Scope(api.org_id, sandbox.id)) == implicit
    # PUT on the implicit default stores it, under the same id
    stored = api.put(f"{MP}/{implicit['id']}", json=policy(name="Profile default", default=True))
    assert stored.status_code == 200, stored.text
    assert stored.json()["id"] == implicit["id"] and stored.json()["name"] == "Profile default"
    assert [p["name"] for p in children(api)] == ["Profile default"]


def test_create_get_and_list_in_aeps_shape(api: ApiClient) -> None:
    made = create(api)
    assert set(made) == FIELDS
    assert made["version"] == 1 and isinstance(made["updateEpoch"], int) and made["updateEpoch"] < 10**11
    sandbox = made["sandbox"]
    assert set(sandbox) == {"sandboxId", "sandboxName", "type", "default"}
    assert sandbox["sandboxName"] == api.sandbox_name and sandbox["default"] is False
    assert api.get(f"{MP}/{made['id']}").json() == made
    listed = children(api)
    assert [p["name"] for p in listed] == ["Default Timebased", made["name"]]  # ordered by name
    assert [p["id"] for p in children(api, default="false")] == [made["id"]]
    assert [p["name"] for p in children(api, orderBy="-name")] == [made["name"], "Default Timebased"]


def test_pages(api: ApiClient) -> None:
    for n in range(3):
        create(api, name=f"Policy {n}")
    first = api.get(MP, params={"limit": 2}).json()
    assert first["_page"] == {"totalCount": 4, "pageSize": 2}
    href = first["_links"]["next"]["href"]
    assert href.startswith("@/mergePolicies?start=2")
    second = api.get(MP + href[len("@/mergePolicies") :]).json()
    assert second["_page"]["pageSize"] == 2 and second["_links"]["next"]["href"] == ""
    names = [p["name"] for p in first["children"] + second["children"]]
    assert names == ["Default Timebased", "Policy 0", "Policy 1", "Policy 2"]


def test_one_default_per_class_a_new_default_unsets_the_old(api: ApiClient) -> None:
    first = create(api, name="First", default=True)
    assert defaults(api) == [first["id"]]  # the implicit default is gone
    second = create(api, name="Second", default=True)
    assert defaults(api) == [second["id"]]
    assert api.get(f"{MP}/{first['id']}").json()["default"] is False
    # AEP's documented PATCH: one operation, a string value
    patched = api.patch(f"{MP}/{first['id']}", json={"op": "add", "path": "/default", "value": "true"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["default"] is True and patched.json()["version"] == 3
    assert defaults(api) == [first["id"]]


def test_dataset_precedence_needs_datasets_of_the_sandbox(
    api: ApiClient, other_sandbox_api: ApiClient
) -> None:
    schema = profile_schema(api)
    crm, web = dataset(api, schema), dataset(api, schema)
    merge = {"type": "dataSetPrecedence", "order": [crm, web]}
    made = create(api, attributeMerge=merge)
    assert made["attributeMerge"] == merge
    elsewhere = dataset(other_sandbox_api, profile_schema(other_sandbox_api))
    before = children(api)
    for order, path in (
        ([crm, elsewhere], "attributeMerge.order[1]"),
        ([crm, crm], "attributeMerge.order[1]"),
        (["nope"], "attributeMerge.order[0]"),
        ([3], "attributeMerge.order[0]"),
        ([], "attributeMerge.order"),
        (None, "attributeMerge.order"),
    ):
        refused = api.post(MP, json=policy(attributeMerge={"type": "dataSetPrecedence", "order": order}))
        assert refused.status_code == 400 and path in error_paths(refused), (order, refused.text)
    assert children(api) == before
    # a dataset a policy orders cannot be deleted until the policy changes
    blocked = api.delete(f"{CAT}/dataSets/{web}")
    assert blocked.status_code == 409, blocked.text
    assert api.patch(
        f"{MP}/{made['id']}", json=[{"op": "replace", "path": "/attributeMerge/order", "value": [crm]}]
    ).json()["attributeMerge"] == {"type": "dataSetPrecedence", "order": [crm]}
    assert api.delete(f"{CAT}/dataSets/{web}").status_code == 200


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"schema": {"name": "_xdm.context.experienceevent"}}, "schema.name"),
        ({"schema": None}, "schema.name"),
        ({"identityGraph": {"type": "private"}}, "identityGraph.type"),
        ({"attributeMerge": {"type": "mostRecent"}}, "attributeMerge.type"),
        ({"attributeMerge": "timestampOrdered"}, "attributeMerge.type"),
        ({"attributeMerge": {"type": "timestampOrdered", "order": ["x"]}}, "attributeMerge.order"),
        ({"default": "yes"}, "default"),
        ({"isActiveOnEdge": 1}, "isActiveOnEdge"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_policies_are_400_naming_the_field(api: ApiClient, change: dict[str, Any], path: str) -> None:
    before = children(api)
    response = api.post(MP, json=policy(**change))
    assert response.status_code == 400, response.text
    assert path in error_paths(response)
    assert response.json()["report"]["code"].startswith("UPS-")
    assert children(api) == before


def test_bad_updates_change_nothing(api: ApiClient) -> None:
    made = create(api)
    for response in (
        api.put(f"{MP}/{made['id']}", json=policy(identityGraph={"type": "x"})),
        api.patch(f"{MP}/{made['id']}", json=[{"op": "replace", "path": "/schema/name", "value": "x"}]),
        api.patch(f"{MP}/{made['id']}", json=[{"op": "replace", "path": "/version", "value": 9}]),
        api.put(f"{MP}/{made['id']}", json=policy(), headers={"If-Match": '"stale"'}),
    ):
        assert response.status_code in (400, 412), response.text
    assert api.get(f"{MP}/{made['id']}").json() == made
    # what GET answers can be sent back on PUT
    again = api.put(f"{MP}/{made['id']}", json={**made, "name": "Renamed"})
    assert again.status_code == 200 and again.json()["name"] == "Renamed" and again.json()["version"] == 2


def test_one_policy_active_on_edge_which_cannot_be_deleted(api: ApiClient) -> None:
    edge = create(api, name="Edge", isActiveOnEdge=True)
    second = api.post(MP, json=policy(name="Also edge", isActiveOnEdge=True))
    assert second.status_code == 409 and second.json()["report"]["path"] == "isActiveOnEdge"
    assert api.delete(f"{MP}/{edge['id']}").status_code == 409
    api.patch(f"{MP}/{edge['id']}", json=[{"op": "replace", "path": "/isActiveOnEdge", "value": False}])
    deleted = api.delete(f"{MP}/{edge['id']}")
    assert deleted.status_code == 200 and deleted.content == b""
    assert api.get(f"{MP}/{edge['id']}").status_code == 404
    implicit = children(api)[0]
    assert api.delete(f"{MP}/{implicit['id']}").status_code == 409


def test_policies_are_invisible_to_other_sandboxes(api: ApiClient, other_sandbox_api: ApiClient) -> None:
    made = create(api, default=True)
    assert other_sandbox_api.get(f"{MP}/{made['id']}").status_code == 404
    assert [p["name"] for p in children(other_sandbox_api)] == ["Default Timebased"]
    assert other_sandbox_api.delete(f"{MP}/{made['id']}").status_code == 404
    assert api.get(f"{MP}/{made['id']}").status_code == 200


@pytest.mark.parametrize("role", ["User", "Viewer"])
def test_users_and_viewers_read_but_cannot_manage(server: LiveServer, api: ApiClient, role: str) -> None:
    made = create(api)
    with role_client(server, api, role) as me:
        assert me.get(MP).status_code == 200 and me.get(f"{MP}/{made['id']}").status_code == 200
        for response in (
            me.post(MP, json=policy()),
            me.put(f"{MP}/{made['id']}", json=policy(name="x")),
            me.patch(f"{MP}/{made['id']}", json=[{"op": "replace", "path": "/name", "value": "x"}]),
            me.delete(f"{MP}/{made['id']}"),
        ):
            assert response.status_code == 403, response.text
            assert response.json()["report"]["permission"] == access.MANAGE_PROFILE_CONFIGS
    assert children(api)[1] == made
    with role_client(server, api, "Developer") as developer:
        assert developer.post(MP, json=policy(name="By a developer")).status_code == 200


def test_the_roles_of_the_profile_permissions() -> None:
    def holders(permission: str) -> set[str]:
        return {role for role, granted in access.ROLES.items() if permission in granted}

    assert holders(access.MANAGE_PROFILE_CONFIGS) == {"Admin", "Developer"}
    assert holders(access.VIEW_PROFILES) == {"Admin", "Developer", "User"}
    assert holders(access.MANAGE_SEGMENTS) == {"Admin", "Developer", "User"}
