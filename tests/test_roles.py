"""Roles through the API: each role against each kind of write (allowed: done; refused: a 403 naming the
missing permission, and nothing changed), roles per sandbox for people, and every write of the API
mapped to a permission."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from headwater.services import access
from tests.flows_helpers import (
    CAT,
    CONV,
    FS,
    SR,
    crm_pipeline,
    flow_body,
    profile_schema,
    salesforce_connection,
)
from tests.support import ApiClient, LiveServer, role_client

ROLES = ("Admin", "Developer", "User", "Viewer")
IDN = "/data/core/identity"
SANDBOXES = "/data/foundation/sandbox-management/sandboxes"
SSOT = "/services/data/v62.0/ssot"
HTTP_DESTINATION = "ce55fc04-f79b-4668-a8b7-2565a5c65ad4"
Prepare = Callable[[ApiClient], Any]  # what an Admin of the sandbox makes first
Act = Callable[[ApiClient, Any], httpx.Response]  # the write, by the client of the role under test


def _nothing(admin: ApiClient) -> None:
    return None


def _source_connection(me: ApiClient, _: Any) -> httpx.Response:
    return me.post(
        f"{FS}/connections",
        json={
            "name": "Salesforce",
            "auth": {
                "specName": "Basic Authentication",
                "params": {"username": "ada@example.com", "password": "pw", "securityToken": "t"},
            },
            "connectionSpec": {"id": "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5", "version": "1.0"},
        },
    )


def _destination(me: ApiClient, _: Any) -> httpx.Response:
    return me.post(
        f"{FS}/connections",
        json={
            "name": f"ESP {uuid.uuid4().hex[:6]}",
            "icon": "email",
            "connectionSpec": {"id": HTTP_DESTINATION, "version": "1.0"},
            "auth": {"specName": "None", "params": {}},
        },
    )


def _flow(me: ApiClient, ids: dict[str, str]) -> httpx.Response:
    return me.post(f"{FS}/flows", json=flow_body(ids["source"], ids["target"], ids["mapping"]))


def _run(me: ApiClient, _: Any) -> httpx.Response:
    # No such flow: an allowed role passes the permission check and gets the 4xx of a missing flow (no
    # run is queued, so nothing tries to reach a source).
    return me.post(f"{FS}/runs", json={"flowId": str(uuid.uuid4()), "params": {}})


def _mapping_set(me: ApiClient, schema: str) -> httpx.Response:
    mapping = {"destinationXdmPath": "personalEmail.address", "sourceAttribute": "Email", "version": 0}
    return me.post(
        f"{CONV}/mappingSets",
        json={"version": 0, "xdmSchema": schema, "xdmVersion": "1.0", "mappings": [mapping]},
    )


def _schema(me: ApiClient, _: Any) -> httpx.Response:
    return me.post(f"{SR}/tenant/schemas", json=_schema_body())


def _dataset(me: ApiClient, schema: str) -> httpx.Response:
    return me.post(f"{CAT}/dataSets", json={"name": "CRM data", "schemaRef": {"id": schema}})


def _delete_connection(me: ApiClient, connection: str) -> httpx.Response:
    return me.delete(f"{FS}/connections/{connection}")


def _app(me: ApiClient, _: Any) -> httpx.Response:
    return me.post(
        f"{IDN}/externalClientApps",
        json={"name": f"App {uuid.uuid4().hex[:6]}", "callbackUrl": "https://x.test/cb", "scopes": ["api"]},
    )


def _user(me: ApiClient, _: Any) -> httpx.Response:
    return me.post(f"{IDN}/users", json={"username": f"u{uuid.uuid4().hex[:10]}@example.com"})


def _sandbox(me: ApiClient, _: Any) -> httpx.Response:
    return me.post(SANDBOXES, json={"name": f"sb-{uuid.uuid4().hex[:10]}", "title": "Scratch"})


# kind of write -> (prerequisites, the write, the permission it needs, the roles that hold it)
USER_AND_UP = {"Admin", "Developer", "User"}
DEVELOPER_AND_UP = {"Admin", "Developer"}
WRITES: dict[str, tuple[Prepare, Act, str, set[str]]] = {
    "source connection": (_nothing, _source_connection, access.MANAGE_SOURCES, USER_AND_UP),
    "delete a connection": (salesforce_connection, _delete_connection, access.MANAGE_SOURCES, USER_AND_UP),
    "flow": (crm_pipeline, _flow, access.MANAGE_DATAFLOWS, USER_AND_UP),
    "mapping set": (profile_schema, _mapping_set, access.MANAGE_DATAFLOWS, USER_AND_UP),
    "run": (_nothing, _run, access.RUN_DATAFLOWS, USER_AND_UP),
    "schema": (_nothing, _schema, access.MANAGE_SCHEMAS, DEVELOPER_AND_UP),
    "dataset": (profile_schema, _dataset, access.MANAGE_DATASETS, DEVELOPER_AND_UP),
    "destination": (_nothing, _destination, access.MANAGE_DESTINATIONS, USER_AND_UP),  # document 003
    "external client app": (_nothing, _app, access.MANAGE_APPS, DEVELOPER_AND_UP),
    "user": (_nothing, _user, access.MANAGE_USERS, {"Admin"}),
    "sandbox": (_nothing, _sandbox, access.MANAGE_SANDBOXES, {"Admin"}),
}


@pytest.fixture
def as_role(server: LiveServer, api: ApiClient) -> Iterator[Callable[[str], ApiClient]]:
    made: list[ApiClient] = []

    def make(role: str) -> ApiClient:
        client = role_client(server, api, role)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _counts(api: ApiClient) -> dict[str, int]:
    """How many of each thing the sandbox (and the organization) holds: a refused write changes none."""
    sizes = {}
    for name, path in (
        ("connections", f"{FS}/connections"),
        ("flows", f"{FS}/flows"),
        ("mappingSets", f"{CONV}/mappingSets"),
        ("schemas", f"{SR}/tenant/schemas"),
        ("dataSets", f"{CAT}/dataSets"),
        ("apps", f"{IDN}/externalClientApps"),
        ("users", f"{IDN}/users"),
    ):
        response = api.get(path, params={"limit": 1000})
        assert response.status_code == 200, response.text
        body = response.json()
        if isinstance(body, dict) and "items" in body:
            sizes[name] = len(body["items"])
        elif isinstance(body, dict) and "results" in body:
            sizes[name] = len(body["results"])
        else:
            sizes[name] = len(body)
    sizes["sandboxes"] = len(api.get(SANDBOXES).json()["sandboxes"])
    return sizes


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind", list(WRITES))
def test_each_role_against_each_kind_of_write(
    api: ApiClient, as_role: Callable[[str], ApiClient], kind: str, role: str
) -> None:
    prepare, act, permission, allowed = WRITES[kind]
    context = prepare(api)
    me = as_role(role)
    before = _counts(api)
    response = act(me, context)
    if role in allowed:
        expected = (400, 404) if kind == "run" else (200, 201, 204)
        assert response.status_code in expected, response.text
        return
    assert response.status_code == 403, response.text
    if kind == "destination" and role == "Viewer":  # refused by the route (/connections) before the body
        permission = access.MANAGE_SOURCES
    body = response.json()
    report = {k: body["report"][k] for k in ("permission", "role", "sandbox")}
    assert report == {"permission": permission, "role": role, "sandbox": api.sandbox_name}
    assert permission in body["detail"] and role in body["detail"]
    assert _counts(api) == before  # a refused write changes nothing


def test_every_write_of_the_api_needs_a_named_permission(server: LiveServer) -> None:
    """A write route missing from access.ROUTES would be open to organization admins only; this keeps
    the table complete, and free of routes that no longer exist."""
    from fastapi.routing import APIRoute

    from headwater.edge.auth import platform_actor

    def routes(items: Any) -> Iterator[APIRoute]:
        for item in items:
            if hasattr(item, "dependant"):
                yield item
            else:  # an included router or a mount
                router = getattr(item, "original_router", item)  # FastAPI's lazily included routers
                yield from routes(getattr(router, "routes", []))

    def uses_actor(route: APIRoute) -> bool:
        stack = list(route.dependant.dependencies)
        while stack:
            dep = stack.pop()
            if dep.call is platform_actor:
                return True
            stack.extend(dep.dependencies)
        return False

    writes = {
        f"{method} {route.path}"
        for route in routes(server.server.config.app.routes)
        if uses_actor(route)
        for method in route.methods - {"GET", "HEAD"}
    }
    assert writes, "no platform routes found"
    assert sorted(w for w in writes if w not in access.ROUTES) == []
    listed = {k for k in access.ROUTES if not k.startswith("GET ")}
    assert sorted(listed - writes) == []


def test_a_user_has_a_role_per_sandbox(server: LiveServer, api: ApiClient) -> None:
    """A person's role comes from their roles map: the sandbox named, else "*", else Viewer; an
    organization admin is Admin everywhere. Checked through the console's session (cookie + CSRF)."""
    other = f"t{uuid.uuid4().hex[:12]}"
    assert api.post(SANDBOXES, json={"name": other}).status_code == 201
    username = f"dev{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery staple"
    body = {
        "username": username,
        "password": password,
        "roles": {api.sandbox_name: "Developer", "*": "Viewer"},
    }
    assert api.post(f"{IDN}/users", json=body).status_code == 201
    with _signed_in(server, username, password) as (session, csrf):
        here = {"x-sandbox-name": api.sandbox_name, "X-CSRF-Token": csrf}
        there = {"x-sandbox-name": other, "X-CSRF-Token": csrf}
        created = session.post(f"{SR}/tenant/schemas", headers=here, json=_schema_body())
        assert created.status_code == 201, created.text
        refused = session.post(f"{SR}/tenant/schemas", headers=there, json=_schema_body())
        assert refused.status_code == 403
        assert refused.json()["report"]["permission"] == access.MANAGE_SCHEMAS
        assert refused.json()["report"]["role"] == "Viewer"
        assert refused.json()["report"]["sandbox"] == other
        # An Admin of one sandbox is not an organization admin: users stay out of reach.
        promoted = api.patch(f"{IDN}/users/{username}", json={"roles": {api.sandbox_name: "Admin"}})
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["items"][0]["roles"] == {api.sandbox_name: "Admin"}
        user = session.post(f"{IDN}/users", headers=here, json={"username": f"x{uuid.uuid4().hex}@e.com"})
        assert user.status_code == 403 and user.json()["report"]["permission"] == access.MANAGE_USERS
        # The sandbox not named now falls back to Viewer (the "*" entry is gone).
        assert session.post(f"{SR}/tenant/schemas", headers=there, json=_schema_body()).status_code == 403
        assert api.patch(f"{IDN}/users/{username}", json={"admin": True}).status_code == 200
        made = session.post(SANDBOXES, headers=here, json={"name": f"sb-{uuid.uuid4().hex[:10]}"})
        assert made.status_code == 201, made.text


def test_a_data_stream_needs_the_permission_in_its_data_space(server: LiveServer, api: ApiClient) -> None:
    """A data stream lands in the data space (a sandbox) the body names: a person who may manage
    dataflows where the call is made, but only view the data space, is refused there."""
    from tests.test_data360_connectors import acme_schema, create_connector, deploy, upload

    space = f"t{uuid.uuid4().hex[:12]}"
    assert api.post(SANDBOXES, json={"name": space}).status_code == 201
    connector = create_connector(api, f"Shop {uuid.uuid4().hex[:6]}")
    assert upload(api, connector["id"], acme_schema()).status_code == 200
    username, password = f"u{uuid.uuid4().hex[:8]}@example.com", "correct horse battery staple"
    roles = {api.sandbox_name: "User", space: "Viewer"}
    assert (
        api.post(
            f"{IDN}/users", json={"username": username, "password": password, "roles": roles}
        ).status_code
        == 201
    )
    with _signed_in(server, username, password) as (session, csrf):
        here = {"x-sandbox-name": api.sandbox_name, "X-CSRF-Token": csrf}
        body = {"connectionId": connector["id"], "events": ["cartAdd"]}
        refused = session.post(f"{SSOT}/data-streams", headers=here, json={**body, "dataspace": space})
        assert refused.status_code == 403, refused.text
        assert refused.json()["report"]["permission"] == access.MANAGE_DATAFLOWS
        assert refused.json()["report"]["sandbox"] == space
        listed = api.get(f"{SSOT}/data-streams", params={"dataspace": space}).json()
        assert listed["totalSize"] == 0  # nothing was made
        made = session.post(
            f"{SSOT}/data-streams", headers=here, json={**body, "dataspace": api.sandbox_name}
        )
        assert made.status_code == 201, made.text
    assert deploy(api, connector["id"], ["cartAdd"], space).status_code == 201  # an Admin client may


def test_organization_level_writes_record_the_person(server: LiveServer, api: ApiClient) -> None:
    admin, password = f"a{uuid.uuid4().hex[:8]}@example.com", "correct horse battery staple"
    assert (
        api.post(f"{IDN}/users", json={"username": admin, "password": password, "admin": True}).status_code
        == 201
    )
    with _signed_in(server, admin, password) as (session, csrf):
        headers = {"x-sandbox-name": api.sandbox_name, "X-CSRF-Token": csrf}
        made = session.post(
            f"{IDN}/users", headers=headers, json={"username": f"n{uuid.uuid4().hex[:8]}@e.com"}
        )
        assert made.status_code == 201, made.text
        assert (made.json()["createdBy"], made.json()["createdClient"]) == (admin, "headwater-console")


def test_roles_and_changes_are_validated(api: ApiClient) -> None:
    bad = api.post(f"{IDN}/users", json={"username": "r@example.com", "roles": {"prod": "Owner"}})
    assert bad.status_code == 400 and bad.json()["report"]["errors"][0]["path"] == "roles.prod"
    missing = api.post(f"{IDN}/users", json={"username": "r@example.com", "roles": {"nowhere": "User"}})
    assert missing.status_code == 400
    assert missing.json()["report"]["errors"][0]["path"] == "roles.nowhere"
    username = f"v{uuid.uuid4().hex[:8]}@example.com"
    made = api.post(f"{IDN}/users", json={"username": username})
    assert made.json()["roles"] == {"*": "Viewer"}  # least privilege by default
    rename = api.patch(f"{IDN}/users/{username}", json={"username": "other@example.com"})
    assert rename.status_code == 400 and rename.json()["report"]["errors"][0]["path"] == "username"
    sandbox = api.post(SANDBOXES, json={"name": "Not Valid"})
    assert sandbox.status_code == 400


def test_the_last_admin_cannot_be_disabled_or_demoted(server: LiveServer, api: ApiClient) -> None:
    users = server.services.identity.users
    actor_admins = [
        u
        for u in users.store.scan_kind("user")
        if u.scope.org_id == api.org_id and u.doc.get("admin") and u.doc.get("enabled")
    ]
    first = f"a{uuid.uuid4().hex[:8]}@example.com"
    assert api.post(f"{IDN}/users", json={"username": first, "admin": True}).status_code == 201
    for user in actor_admins:  # leave the new one the only enabled admin
        assert api.post(f"{IDN}/users/{user.doc['username']}/action?op=disable").status_code == 200
    try:
        refused = api.post(f"{IDN}/users/{first}/action?op=disable")
        assert refused.status_code == 409 and "last enabled admin" in refused.json()["detail"]
        assert api.patch(f"{IDN}/users/{first}", json={"admin": False}).status_code == 409
        assert api.get(f"{IDN}/users/{first}").json()["items"][0]["enabled"] is True
    finally:
        for user in actor_admins:
            api.post(f"{IDN}/users/{user.doc['username']}/action?op=enable")


def _schema_body() -> dict[str, Any]:
    return {
        "type": "object",
        "title": f"Profile {uuid.uuid4().hex[:6]}",
        "allOf": [{"$ref": "https://ns.adobe.com/xdm/context/profile"}],
        "meta:class": "https://ns.adobe.com/xdm/context/profile",
    }


@contextmanager
def _signed_in(server: LiveServer, username: str, password: str) -> Iterator[tuple[httpx.Client, str]]:
    """An httpx session signed in to the console as ``username``: (client, CSRF token)."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        form = {"username": username, "password": password}
        signed = client.post("/console/login", data=form, headers={"Origin": server.base_url})
        assert signed.status_code == 303, signed.text
        page = client.get("/console/sources")
        assert page.status_code == 200, page.text
        yield client, page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
