"""Authentication and tenancy: tokens, each header's failure, and isolation between orgs and sandboxes."""

from __future__ import annotations

import httpx
import pytest

from tests.support import ApiClient, LiveServer, wait_until

SPECS = "/data/foundation/flowservice/connectionSpecs"
CONNECTIONS = "/data/foundation/flowservice/connections"


def _code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "report"}, body
    assert body["status"] == response.status_code
    return str(body["report"]["code"])


def test_client_credentials_grant_returns_a_bearer_token(server: LiveServer) -> None:
    c = server.creds
    response = httpx.post(
        server.base_url + "/ims/token/v3",
        data={
            "grant_type": "client_credentials",
            "client_id": c["apiKey"],
            "client_secret": c["clientSecret"],
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86400
    assert body["access_token"].count(".") == 2


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, 400, "invalid_request"),
        (
            {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
            401,
            "invalid_client",
        ),
    ],
)
def test_token_endpoint_refuses_bad_requests(
    server: LiveServer, form: dict[str, str], status: int, error: str
) -> None:
    response = httpx.post(server.base_url + "/ims/token/v3", data=form)
    assert response.status_code == status
    assert response.json()["report"]["error"] == error


def test_wrong_client_secret_is_refused(server: LiveServer) -> None:
    response = httpx.post(
        server.base_url + "/ims/token/v3",
        data={
            "grant_type": "client_credentials",
            "client_id": server.creds["apiKey"],
            "client_secret": "p8e-wrong",
        },
    )
    assert response.status_code == 401
    assert "access_token" not in response.json()


@pytest.mark.parametrize(
    ("drop", "status", "code"),
    [
        ("Authorization", 401, "401010"),
        ("x-api-key", 403, "403000"),
        ("x-gw-ims-org-id", 400, "400003"),
        ("x-sandbox-name", 400, "400003"),
    ],
)
def test_each_missing_header_has_its_own_error(api: ApiClient, drop: str, status: int, code: str) -> None:
    headers = {k: v for k, v in api.headers.items() if k.lower() != drop.lower()}
    response = httpx.get(str(api.base_url) + SPECS, headers=headers)
    assert response.status_code == status
    assert _code(response) == code
    assert response.json()["report"]["header"].lower() == drop.lower()


@pytest.mark.parametrize(
    ("header", "value", "status", "code"),
    [
        ("Authorization", "Bearer not-a-token", 401, "401013"),
        ("Authorization", "Basic abc", 401, "401013"),
        ("x-api-key", "someone-else", 403, "403003"),
        ("x-gw-ims-org-id", "0000@AdobeOrg", 403, "403025"),
        ("x-sandbox-name", "no-such-sandbox", 403, "403027"),
    ],
)
def test_each_invalid_header_has_its_own_error(
    api: ApiClient, header: str, value: str, status: int, code: str
) -> None:
    response = api.get(SPECS, headers={header: value})
    assert response.status_code == status
    assert _code(response) == code


def test_tampered_token_is_refused(api: ApiClient) -> None:
    head, payload, signature = api.token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    assert api.get(SPECS, headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_expired_token_is_refused(server: LiveServer, api: ApiClient) -> None:
    expired, _ = server.services.tokens.issue(api.api_key, api.org_id, lifetime=-1)
    response = api.get(SPECS, headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert _code(response) == "401013"


def test_disabled_client_loses_access(server: LiveServer, api: ApiClient) -> None:
    tenancy = server.services.tenancy
    client_id, secret = tenancy.create_client(api.org_id, "to-disable")
    from tests.support import token_for

    token = token_for(server.base_url, client_id, secret)
    headers = {"Authorization": f"Bearer {token}", "x-api-key": client_id}
    assert api.get(SPECS, headers=headers).status_code == 200
    server.services.store.set_client_enabled(client_id, False)
    wait_until(lambda: api.get(SPECS, headers=headers).status_code == 403, timeout=10)
    refused = httpx.post(
        server.base_url + "/ims/token/v3",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert refused.status_code == 401


def test_token_of_another_org_cannot_act_in_this_org(api: ApiClient, other_org_api: ApiClient) -> None:
    response = other_org_api.get(SPECS, headers={"x-gw-ims-org-id": api.org_id})
    assert response.status_code == 403


def test_body_requires_json_content_type(api: ApiClient) -> None:
    response = api.post(CONNECTIONS, content=b'{"name": "x"}', headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    assert response.json()["title"] == "BadRequestError"
    assert "content-type" in response.json()["detail"].lower()
    assert api.get(CONNECTIONS).json()["items"] == []


def test_malformed_json_is_a_400_that_changes_nothing(api: ApiClient) -> None:
    response = api.post(CONNECTIONS, content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]
    assert api.get(CONNECTIONS).json()["items"] == []


def _connection(api: ApiClient) -> str:
    response = api.post(
        CONNECTIONS,
        json={
            "name": "ssc",
            "auth": {
                "specName": "Basic Authentication",
                "params": {"username": "u", "password": "p", "securityToken": "t"},
            },
            "connectionSpec": {"id": "b66ab34-8619-49cb-96d1-39b37ede86ea", "version": "1.0"},
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_resources_of_another_sandbox_are_invisible(api: ApiClient, other_sandbox_api: ApiClient) -> None:
    ident = _connection(api)
    assert other_sandbox_api.get(f"{CONNECTIONS}/{ident}").status_code == 404
    assert other_sandbox_api.get(CONNECTIONS).json()["items"] == []
    patch = [{"op": "replace", "path": "/name", "value": "stolen"}]
    assert (
        other_sandbox_api.patch(f"{CONNECTIONS}/{ident}", json=patch, headers={"If-Match": "*"}).status_code
        == 404
    )
    assert other_sandbox_api.delete(f"{CONNECTIONS}/{ident}").status_code == 404
    assert api.get(f"{CONNECTIONS}/{ident}").json()["items"][0]["name"] == "ssc"


def test_resources_of_another_org_are_invisible(api: ApiClient, other_org_api: ApiClient) -> None:
    ident = _connection(api)
    response = other_org_api.get(f"{CONNECTIONS}/{ident}")
    assert response.status_code == 404
    assert response.json()["report"]["code"] == "FLOW-1439-404"
    assert other_org_api.delete(f"{CONNECTIONS}/{ident}").status_code == 404
    assert api.get(f"{CONNECTIONS}/{ident}").status_code == 200


def test_unknown_endpoint_uses_the_error_shape(api: ApiClient) -> None:
    response = api.get("/data/foundation/nowhere")
    assert response.status_code == 404
    assert _code(response) == "HW-1404-404"
