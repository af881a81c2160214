"""Data 360 identity's management API, through a live server: external client apps (the consumer secret
masked and sealed at rest, organization scope, patch and delete, validation and defaults as Salesforce
has them) and users, behind platform authentication.

The tokens the apps issue (the JWT bearer flow, the token exchange, ingestion tokens) and the helpers used
here are in tests/test_data360_identity.py.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from headwater.services.users import org_scope
from headwater.stores.secrets import MASK
from tests.support import ApiClient, LiveServer
from tests.test_data360_identity import (
    APPS,
    DOC_SCOPES,
    USERS,
    Flow,
    KeyMaterial,
    create_app,
    create_user,
    new_username,
    refusal,
)
from tests.test_data360_identity import cli_keys as cli_keys
from tests.test_data360_identity import flow as flow
from tests.test_data360_identity import other_keys as other_keys

# --- external client apps: the management API ---


def test_consumer_secret_is_masked_and_sealed_at_rest(flow: Flow, server: LiveServer) -> None:
    app = flow.app
    secret = app["consumerSecret"]
    assert secret and secret != MASK and len(secret) == 64
    assert app["consumerKey"]
    assert app["certificateInfo"]["subject"] == "CN=headwater"

    fetched = flow.api.get(f"{APPS}/{app['id']}")
    assert fetched.status_code == 200
    doc = fetched.json()["items"][0]
    assert doc["consumerSecret"] == MASK
    assert doc["consumerKey"] == app["consumerKey"]
    assert secret not in fetched.text
    listed = flow.api.get(APPS, params={"property": f"consumerKey=={app['consumerKey']}"})
    assert [d["consumerSecret"] for d in listed.json()["items"]] == [MASK]

    stored = server.services.store.get("externalClientApp", org_scope(server.creds["orgId"]), app["id"])
    assert stored is not None
    assert secret not in json.dumps(stored.doc)
    assert set(stored.doc["consumerSecret"]) == {"$enc"}
    assert server.services.identity.apps.consumer_secret(stored) == secret


def test_apps_and_users_are_org_level(flow: Flow, other_sandbox_api: ApiClient) -> None:
    assert other_sandbox_api.get(f"{APPS}/{flow.app['id']}").status_code == 200
    assert other_sandbox_api.get(f"{USERS}/{flow.user['username']}").status_code == 200
    ids = [a["id"] for a in other_sandbox_api.get(APPS, params={"limit": "1000"}).json()["items"]]
    assert flow.app["id"] in ids


def test_another_org_neither_sees_nor_uses_them(
    flow: Flow, server: LiveServer, other_org_api: ApiClient, other_keys: KeyMaterial
) -> None:
    assert other_org_api.get(f"{APPS}/{flow.app['id']}").status_code == 404
    assert other_org_api.get(f"{USERS}/{flow.user['username']}").status_code == 404
    assert flow.app["id"] not in [a["id"] for a in other_org_api.get(APPS).json()["items"]]
    assert flow.user["id"] not in [u["id"] for u in other_org_api.get(USERS).json()["items"]]
    assert other_org_api.delete(f"{APPS}/{flow.app['id']}").status_code == 404
    assert (
        other_org_api.post(f"{USERS}/{flow.user['id']}/action", params={"op": "disable"}).status_code == 404
    )

    # The other org's own app cannot get tokens for a user of the default organization.
    foreign = create_app(other_org_api, other_keys.certificate)
    error, description = refusal(Flow(server, other_org_api, other_keys, flow.user, foreign).token())
    assert error == "invalid_grant" and description.startswith("user not found")
    # The same username in the other org is another user: its token carries the other org.
    twin = create_user(other_org_api, flow.user["username"])
    foreign = create_app(other_org_api, other_keys.certificate, approvedUsers=[twin["username"]])
    response = Flow(server, other_org_api, other_keys, twin, foreign).token()
    assert response.status_code == 200
    assert f"/id/{other_org_api.org_id}/{twin['id']}" in response.json()["id"]


def test_patch_and_delete_an_app(flow: Flow) -> None:
    path = f"{APPS}/{flow.app['id']}"
    etag = flow.api.get(path).headers["etag"]
    patch = [{"op": "replace", "path": "/jwtBearerFlowEnabled", "value": False}]
    response = flow.api.patch(path, json=patch, headers={"If-Match": etag})
    assert response.status_code == 200, response.text
    assert flow.api.get(path).json()["items"][0]["consumerKey"] == flow.app["consumerKey"]
    assert "not enabled" in refusal(flow.token())[1]

    read_only = [{"op": "replace", "path": "/consumerKey", "value": "mine"}]
    refused = flow.api.patch(path, json=read_only, headers={"If-Match": response.headers["etag"]})
    assert refused.status_code == 400 and "read-only" in refused.text

    enable = [{"op": "replace", "path": "/jwtBearerFlowEnabled", "value": True}]
    assert (
        flow.api.patch(path, json=enable, headers={"If-Match": response.headers["etag"]}).status_code == 200
    )
    access = flow.access_token()
    assert flow.api.delete(path).status_code == 204
    gone = flow.api.get(path)
    assert gone.status_code == 404 and "in this organization." in gone.json()["detail"]
    assert refusal(flow.token())[0] == "invalid_client_id"
    assert "no longer exists" in refusal(flow.exchange(access))[1]


def _ec_certificate() -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("changes", "path", "expected"),
    [
        ({"scopes": ["api", "cdp_profile_api", "full"]}, "scopes", "unknown scope(s) cdp_profile_api, full"),
        ({"scopes": []}, "scopes", "at least one scope"),
        (
            {"certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"},
            "certificate",
            "PEM",
        ),
        ({"certificate": "EC"}, "certificate", "needs an RSA key"),
        ({"certificate": None}, "certificate", "required when jwtBearerFlowEnabled"),
        ({"permittedUsers": "Everyone"}, "permittedUsers", "All users may self-authorize"),
        ({"ipRelaxation": "Sometimes"}, "ipRelaxation", "Relax IP restrictions"),
        ({"approvedUsers": ["ghost@example.com"]}, "approvedUsers[0]", "no user"),
        ({"callbackUrl": None}, "callbackUrl", "required"),
        ({"name": ""}, "name", "non-empty"),
        ({"jwtBearerFlowEnabled": "maybe"}, "jwtBearerFlowEnabled", "true or false"),
    ],
)
def test_app_validation_names_the_field(
    api: ApiClient, cli_keys: KeyMaterial, changes: dict[str, Any], path: str, expected: str
) -> None:
    if changes.get("certificate") == "EC":
        changes = {"certificate": _ec_certificate()}
    body = {
        "name": "app",
        "callbackUrl": "https://localhost/callback",
        "scopes": DOC_SCOPES,
        "jwtBearerFlowEnabled": True,
        "certificate": cli_keys.certificate,
        **changes,
    }
    response = api.post(APPS, json=body)
    assert response.status_code == 400, response.text
    errors = response.json()["report"]["errors"]
    assert any(e["path"] == path and expected in e["message"] for e in errors), errors


def test_scopes_as_salesforce_labels_or_a_string(api: ApiClient, cli_keys: KeyMaterial) -> None:
    labels = [
        "Manage user data via APIs (api)",
        "Perform requests at any time (refresh_token, offline_access)",
        "Manage Data 360 Ingestion API data (cdp_ingest_api)",
    ]
    assert create_app(api, cli_keys.certificate, scopes=labels)["scopes"] == DOC_SCOPES
    assert create_app(api, cli_keys.certificate, scopes="cdp_ingest_api, api")["scopes"] == [
        "api",
        "cdp_ingest_api",
    ]
    nulls = create_app(api, cli_keys.certificate, permittedUsers=None, ipRelaxation=None, pkceRequired=None)
    assert nulls["permittedUsers"] == "Admin approved users are pre-authorized"
    assert nulls["ipRelaxation"] == "Enforce IP restrictions" and nulls["pkceRequired"] is True


def test_app_defaults_follow_salesforce(api: ApiClient) -> None:
    response = api.post(APPS, json={"name": "minimal", "callbackUrl": "https://x.test/cb", "scopes": ["api"]})
    assert response.status_code == 201, response.text
    app = response.json()
    assert app["jwtBearerFlowEnabled"] is False and app["certificate"] is None
    assert app["pkceRequired"] is True
    assert app["permittedUsers"] == "Admin approved users are pre-authorized"
    assert app["ipRelaxation"] == "Enforce IP restrictions"
    assert "sandboxId" not in app and app["imsOrgId"] == api.org_id


# --- users: the management API ---


def test_users_create_get_list_and_disable(api: ApiClient) -> None:
    username = new_username()
    user = create_user(api, username.upper(), admin=True)
    assert user["username"] == username and user["email"] == username.upper()
    assert user["enabled"] is True and user["admin"] is True
    by_id = api.get(f"{USERS}/{user['id']}").json()["items"][0]
    by_name = api.get(f"{USERS}/{username.upper()}").json()["items"][0]
    assert by_id == by_name
    listed = api.get(USERS, params={"property": f"username=={username}"}).json()["items"]
    assert [u["id"] for u in listed] == [user["id"]]

    duplicate = api.post(USERS, json={"username": username})
    assert duplicate.status_code == 409 and username in duplicate.json()["detail"]
    create_user(api, new_username(), admin=True)  # the last enabled admin could not be disabled
    disabled = api.post(f"{USERS}/{user['id']}/action", params={"op": "disable"})
    assert disabled.json()["items"][0]["enabled"] is False
    enabled = api.post(f"{USERS}/{username}/action", params={"op": "enable"})
    assert enabled.json()["items"][0]["enabled"] is True
    assert api.post(f"{USERS}/{username}/action", params={"op": "delete"}).status_code == 400
    assert api.get(f"{USERS}/nobody@nowhere.example").status_code == 404


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "username"),
        ({"username": "not-an-email"}, "username"),
        ({"username": "a" * 80 + "@example.com"}, "username"),
        ({"username": "ok@example.com", "email": "nope"}, "email"),
        ({"username": "ok@example.com", "admin": "yes"}, "admin"),
    ],
)
def test_user_validation_names_the_field(api: ApiClient, body: dict[str, Any], path: str) -> None:
    response = api.post(USERS, json=body)
    assert response.status_code == 400, response.text
    assert [e["path"] for e in response.json()["report"]["errors"]] == [path]


def test_identity_routes_need_platform_auth(server: LiveServer, flow: Flow) -> None:
    assert httpx.get(server.base_url + APPS).status_code == 401
    headers = {"Authorization": f"Bearer {flow.access_token()}", "x-api-key": flow.api.api_key}
    assert httpx.get(server.base_url + USERS, headers=headers).status_code == 401
