"""Data 360 identity as document 000 sets it up: users, an external client app with the certificate that
``headwater keys create`` made, the JWT bearer flow, the token exchange, and ingestion tokens.

Everything goes through a live server; refusals are checked for their OAuth error and description. The
management API of apps and users is tested in tests/test_data360_apps.py, with the helpers defined here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from headwater.services.data360.identity import IngestPrincipal
from headwater.services.data360.keys import generate, self_signed_certificate
from tests.support import ApiClient, LiveServer, wait_until

HEADWATER = Path(sys.executable).parent / "headwater"
USERS = "/data/core/identity/users"
APPS = "/data/core/identity/externalClientApps"
SPECS = "/data/foundation/flowservice/connectionSpecs"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CDP = "urn:salesforce:grant-type:external:cdp"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"
DOC_SCOPES = ["api", "refresh_token", "offline_access", "cdp_ingest_api"]


@dataclass(frozen=True)
class KeyMaterial:
    certificate: str
    private_key: bytes


@pytest.fixture(scope="module")
def cli_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyMaterial:
    """The certificate and PKCS#8 key made by the real ``headwater keys create`` command."""
    folder = tmp_path_factory.mktemp("keys")
    result = subprocess.run(
        [str(HEADWATER), "keys", "create", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    paths = json.loads(result.stdout)
    return KeyMaterial(Path(paths["certificate"]).read_text(), Path(paths["privateKey"]).read_bytes())


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyMaterial:
    files = generate(tmp_path_factory.mktemp("other-keys"))
    return KeyMaterial(files.certificate.read_text(), files.private_key.read_bytes())


def new_username() -> str:
    return f"integration-{uuid.uuid4().hex[:10]}@example.com"


def create_user(api: ApiClient, username: str | None = None, **fields: Any) -> dict[str, Any]:
    """A user of the organization; a User everywhere unless ``roles`` says otherwise (ingestion needs the
    ingest-data permission, which a Viewer lacks)."""
    body = {"username": username or new_username(), "roles": {"*": "User"}, **fields}
    response = api.post(USERS, json=body)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def create_app(api: ApiClient, certificate: str, **overrides: Any) -> dict[str, Any]:
    """An app set up as document 000 says: its scopes, JWT bearer flow, certificate, no PKCE, all users
    may self-authorize, relaxed IP restrictions."""
    body = {
        "name": "Server-to-server ingestion",
        "contactEmail": "ops@example.com",
        "callbackUrl": "https://localhost/callback",
        "scopes": DOC_SCOPES,
        "jwtBearerFlowEnabled": True,
        "certificate": certificate,
        "pkceRequired": False,
        "permittedUsers": "All users may self-authorize",
        "ipRelaxation": "Relax IP restrictions",
        **overrides,
    }
    response = api.post(APPS, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def assertion(
    key: bytes, iss: str, sub: str, aud: str, exp_in: float = 120, alg: str = "RS256", **extra: Any
) -> str:
    claims = {"iss": iss, "sub": sub, "aud": aud, "exp": int(time.time() + exp_in), **extra}
    return jwt.encode(claims, key, algorithm=alg)


def token_request(server: LiveServer, form: dict[str, str]) -> httpx.Response:
    return httpx.post(server.base_url + "/services/oauth2/token", data=form, timeout=30)


def exchange_request(server: LiveServer, form: dict[str, str]) -> httpx.Response:
    return httpx.post(server.base_url + "/services/a360/token", data=form, timeout=30)


def refusal(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "error_description"}, body
    return body["error"], body["error_description"]


@dataclass
class Flow:
    """A user and an app of the default organization, and the means to get tokens for them."""

    server: LiveServer
    api: ApiClient
    keys: KeyMaterial
    user: dict[str, Any]
    app: dict[str, Any]

    def assertion(self, **changes: Any) -> str:
        key = changes.pop("key", self.keys.private_key)
        values = {
            "iss": self.app["consumerKey"],
            "sub": self.user["username"],
            "aud": self.server.settings.base_url,
            **changes,
        }
        return assertion(key, **values)

    def token(self, **changes: Any) -> httpx.Response:
        return token_request(self.server, {"grant_type": JWT_BEARER, "assertion": self.assertion(**changes)})

    def access_token(self) -> str:
        response = self.token()
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def exchange(self, subject_token: str, **form: str) -> httpx.Response:
        return exchange_request(
            self.server,
            {"grant_type": CDP, "subject_token": subject_token, "subject_token_type": ACCESS_TYPE, **form},
        )


@pytest.fixture
def flow(server: LiveServer, api: ApiClient, cli_keys: KeyMaterial) -> Flow:
    user = create_user(api)
    # pre-approved by the organization's admin (the api fixture): the JWT bearer flow needs an approval
    app = create_app(api, cli_keys.certificate, approvedUsers=[user["username"]])
    return Flow(server, api, cli_keys, user, app)


# --- the whole flow ---


def test_document_000_flow_from_key_pair_to_ingestion_token(flow: Flow, server: LiveServer) -> None:
    org_id = server.creds["orgId"]
    response = flow.token()
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "scope", "instance_url", "id", "token_type"}
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == server.settings.base_url
    assert body["id"] == f"{server.settings.base_url}/id/{org_id}/{flow.user['id']}"
    assert set(body["scope"].split()) == set(DOC_SCOPES)

    exchanged = flow.exchange(body["access_token"])
    assert exchanged.status_code == 200, exchanged.text
    data360 = exchanged.json()
    assert data360["token_type"] == "Bearer"
    assert data360["issued_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    # the Data Cloud instance as Salesforce names it: a host without a scheme
    assert data360["instance_url"] == server.settings.base_url.split("://", 1)[1]
    assert 0 < data360["expires_in"] <= 7200

    identity = server.services.identity
    prod = server.services.store.get_sandbox(org_id, "prod")
    assert prod is not None
    principal = identity.verify_ingestion_token(data360["access_token"])
    app_key = flow.app["consumerKey"]
    expected = IngestPrincipal(
        org_id, prod.id, flow.user["username"], tuple(DOC_SCOPES), app_key, "jwt_bearer", 1
    )
    assert principal == expected  # bound to its app, whose IP policy holds for ingestion calls


def test_only_a_role_that_may_ingest_gets_and_uses_an_ingestion_token(flow: Flow, server: LiveServer) -> None:
    """Sending records is a write: a Viewer in the data space gets no ingestion token, and a token
    whose user is demoted stops working within seconds."""
    username = flow.user["username"]
    assert flow.api.patch(f"{USERS}/{username}", json={"roles": {"*": "Viewer"}}).status_code == 200
    refused = flow.exchange(flow.access_token())
    assert refusal(refused)[0] == "invalid_grant"
    assert "'ingest-data'" in refusal(refused)[1] and "Viewer" in refusal(refused)[1]

    assert flow.api.patch(f"{USERS}/{username}", json={"roles": {"prod": "User"}}).status_code == 200
    exchanged = flow.exchange(flow.access_token())
    assert exchanged.status_code == 200, exchanged.text
    bearer = {"Authorization": f"Bearer {exchanged.json()['access_token']}"}
    url = server.base_url + "/api/v1/ingest/sources/nowhere/Thing/actions/test"

    def call() -> httpx.Response:
        return httpx.post(url, json={"data": [{"id": 1}]}, headers=bearer, timeout=30)

    assert call().status_code == 404  # let in: there is just no such source
    assert flow.api.patch(f"{USERS}/{username}", json={"roles": {"*": "Viewer"}}).status_code == 200
    denied = wait_until(lambda: (r := call()).status_code == 403 and r, timeout=10)
    assert denied.json()["report"]["permission"] == "ingest-data"


def test_dataspace_names_the_sandbox(flow: Flow, server: LiveServer) -> None:
    org_id = server.creds["orgId"]
    access = flow.access_token()
    sandbox = server.services.store.get_sandbox(org_id, flow.api.sandbox_name)
    prod = server.services.store.get_sandbox(org_id, "prod")
    assert sandbox is not None and prod is not None
    for dataspace, expected in ((flow.api.sandbox_name, sandbox.id), ("default", prod.id)):
        response = flow.exchange(access, dataspace=dataspace)
        assert response.status_code == 200, response.text
        principal = server.services.identity.verify_ingestion_token(response.json()["access_token"])
        assert principal is not None and principal.sandbox_id == expected


def test_unknown_dataspace_is_refused_by_name(flow: Flow) -> None:
    error, description = refusal(flow.exchange(flow.access_token(), dataspace="nosuchspace"))
    assert error == "invalid_request"
    assert "'nosuchspace'" in description


def test_verify_ingestion_token_refuses_tampered_expired_and_other_tokens(
    flow: Flow, server: LiveServer, default_token: str
) -> None:
    identity = server.services.identity
    org_id, username = server.creds["orgId"], flow.user["username"]
    sandbox = server.services.store.get_sandbox(org_id, "prod")
    assert sandbox is not None
    good, lifetime = identity.issue_ingestion_token(org_id, sandbox.id, username)
    assert lifetime > 0
    assert identity.verify_ingestion_token(good) is not None

    header, payload, signature = good.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    forged_claims = jwt.decode(good, options={"verify_signature": False}) | {"sub": "someone@example.com"}
    forged_payload = jwt.encode(forged_claims, "x" * 32, algorithm="HS256").split(".")[1]
    expired = identity._sign(
        "a360_ingest", -5, org=org_id, sbx=sandbox.id, sub=username, scp=["cdp_ingest_api"]
    )
    access = flow.access_token()
    for token in (
        f"{header}.{payload}.{flipped}",
        f"{header}.{forged_payload}.{signature}",
        expired,
        access,  # a Salesforce-style access token is not an ingestion token
        default_token,  # nor is a platform token
        "not-a-token",
        "",
    ):
        assert identity.verify_ingestion_token(token) is None, token


def test_disabling_a_user_stops_tokens_at_once(flow: Flow, server: LiveServer) -> None:
    data360 = flow.exchange(flow.access_token()).json()["access_token"]
    access = flow.access_token()
    identity = server.services.identity
    assert identity.verify_ingestion_token(data360) is not None
    response = flow.api.post(f"{USERS}/{flow.user['username']}/action", params={"op": "disable"})
    assert response.status_code == 200, response.text
    assert response.json()["items"][0]["enabled"] is False
    assert identity.verify_ingestion_token(data360) is None
    assert refusal(flow.exchange(access)) == (
        "invalid_grant",
        f"inactive user: {flow.user['username']!r} is disabled",
    )
    error, description = refusal(flow.token())
    assert error == "invalid_grant" and description.startswith("inactive user")


# --- each refusal of the JWT bearer flow ---


def test_bad_signature(flow: Flow, other_keys: KeyMaterial) -> None:
    error, description = refusal(flow.token(key=other_keys.private_key))
    assert error == "invalid_grant"
    assert "signature does not verify" in description


@pytest.mark.parametrize(
    ("exp_in", "expected"),
    [(-300, "expired assertion"), (3700, "at most 3600 seconds (1 hour) ahead")],
)
def test_expiry_window(flow: Flow, exp_in: int, expected: str) -> None:
    error, description = refusal(flow.token(exp_in=exp_in))
    assert error == "invalid_grant"
    assert expected in description


def test_small_clock_skew_is_allowed(flow: Flow) -> None:
    assert flow.token(exp_in=-5).status_code == 200
    assert flow.token(exp_in=3610).status_code == 200  # the connector's hour, and some skew


def test_wrong_audience(flow: Flow) -> None:
    error, description = refusal(flow.token(aud="https://login.salesforce.com"))
    assert error == "invalid_grant"
    assert description.startswith("audience is invalid")


def test_audience_may_end_with_a_slash(flow: Flow, server: LiveServer) -> None:
    assert flow.token(aud=server.settings.base_url + "/").status_code == 200


def test_unknown_user(flow: Flow) -> None:
    error, description = refusal(flow.token(sub="nobody-here@example.com"))
    assert error == "invalid_grant"
    assert description.startswith("user not found") and "nobody-here@example.com" in description


def test_disabled_user(flow: Flow) -> None:
    disabled = create_user(flow.api, enabled=False)
    error, description = refusal(flow.token(sub=disabled["username"]))
    assert (error, description) == ("invalid_grant", f"inactive user: {disabled['username']!r} is disabled")


def test_admin_approved_policy(api: ApiClient, server: LiveServer, cli_keys: KeyMaterial) -> None:
    approved, other = create_user(api), create_user(api)
    app = create_app(
        api,
        cli_keys.certificate,
        permittedUsers="AdminApprovedPreAuthorized",
        approvedUsers=[approved["username"].upper()],
    )
    assert app["permittedUsers"] == "Admin approved users are pre-authorized"
    assert app["approvedUsers"] == [approved["username"]]
    ok = Flow(server, api, cli_keys, approved, app)
    assert ok.token().status_code == 200
    error, description = refusal(Flow(server, api, cli_keys, other, app).token())
    assert error == "invalid_grant"
    assert "not in its approvedUsers" in description and other["username"] in description


def test_jwt_flow_disabled(api: ApiClient, server: LiveServer, cli_keys: KeyMaterial) -> None:
    app = create_app(api, cli_keys.certificate, jwtBearerFlowEnabled=False)
    error, description = refusal(Flow(server, api, cli_keys, create_user(api), app).token())
    assert error == "invalid_grant"
    assert "JWT bearer flow is not enabled" in description


def test_app_without_api_or_ingestion_scope(
    api: ApiClient, server: LiveServer, cli_keys: KeyMaterial
) -> None:
    app = create_app(api, cli_keys.certificate, scopes=["refresh_token", "offline_access"])
    error, description = refusal(Flow(server, api, cli_keys, create_user(api), app).token())
    assert error == "invalid_grant"
    assert "none of the api, cdp_ingest_api and cdp_query_api scopes" in description


def test_subject_token_without_ingestion_scope(
    api: ApiClient, server: LiveServer, cli_keys: KeyMaterial
) -> None:
    user = create_user(api)
    app = create_app(api, cli_keys.certificate, scopes=["api"], approvedUsers=[user["username"]])
    flow = Flow(server, api, cli_keys, user, app)
    error, description = refusal(flow.exchange(flow.access_token()))
    assert error == "invalid_grant"
    assert "cdp_ingest_api" in description


def test_unknown_consumer_key(flow: Flow) -> None:
    right_shape = flow.app["consumerKey"].split(".")[0] + ".never-issued"  # the org's prefix, no such app
    for iss in (right_shape, "3MVG9-not-ours", "!!.x", ""):
        error, description = refusal(flow.token(iss=iss))
        assert error == "invalid_client_id", iss
        assert description.startswith("client identifier invalid")


@pytest.mark.parametrize(
    ("form", "error", "expected"),
    [
        ({"grant_type": "device_code", "client_id": "a"}, "unsupported_grant_type", "'device_code'"),
        (  # the username-password flow names its app first (tests/test_data360_query.py)
            {"grant_type": "password", "username": "a", "password": "b"},
            "invalid_client_id",
            "client identifier invalid",
        ),
        ({"grant_type": JWT_BEARER}, "invalid_request", "assertion is required"),
        ({"assertion": "x.y.z"}, "invalid_request", "grant_type is required"),
        ({"grant_type": JWT_BEARER, "assertion": "not a jwt"}, "invalid_grant", "not a well-formed JWT"),
        ({"grant_type": JWT_BEARER, "assertion": "a.b.c"}, "invalid_grant", "not a well-formed JWT"),
    ],
)
def test_malformed_token_requests(
    server: LiveServer, form: dict[str, str], error: str, expected: str
) -> None:
    got_error, description = refusal(token_request(server, form))
    assert got_error == error
    assert expected in description


def test_assertion_must_be_rs256(flow: Flow) -> None:
    error, description = refusal(flow.token(key=b"a-shared-secret-of-32-bytes-long!", alg="HS256"))
    assert error == "invalid_grant"
    assert "RS256" in description


def test_json_body_is_an_invalid_request(flow: Flow, server: LiveServer) -> None:
    response = httpx.post(
        server.base_url + "/services/oauth2/token",
        json={"grant_type": JWT_BEARER, "assertion": flow.assertion()},
    )
    error, description = refusal(response)
    assert error == "invalid_request" and "x-www-form-urlencoded" in description


def test_query_parameters_work_as_salesforce_accepts_them(flow: Flow, server: LiveServer) -> None:
    response = httpx.post(
        server.base_url + "/services/oauth2/token",
        params={"grant_type": JWT_BEARER, "assertion": flow.assertion()},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("form", "error", "expected"),
    [
        ({"grant_type": JWT_BEARER, "subject_token": "x"}, "unsupported_grant_type", JWT_BEARER),
        ({"grant_type": CDP}, "invalid_request", "subject_token is required"),
        (
            {"grant_type": CDP, "subject_token": "x", "subject_token_type": "urn:x"},
            "invalid_request",
            "subject_token_type",
        ),
        ({"grant_type": CDP, "subject_token": "garbage"}, "invalid_grant", "invalid subject_token"),
    ],
)
def test_malformed_exchanges(server: LiveServer, form: dict[str, str], error: str, expected: str) -> None:
    got_error, description = refusal(exchange_request(server, form))
    assert got_error == error
    assert expected in description


# --- tokens stay in their lanes ---


def test_platform_token_is_not_a_subject_token(flow: Flow, default_token: str) -> None:
    error, description = refusal(flow.exchange(default_token))
    assert error == "invalid_grant"
    assert "platform token" in description


def test_ingestion_token_is_not_a_subject_token(flow: Flow) -> None:
    data360 = flow.exchange(flow.access_token()).json()["access_token"]
    error, _ = refusal(flow.exchange(data360))
    assert error == "invalid_grant"


def test_salesforce_style_tokens_are_not_platform_tokens(flow: Flow, server: LiveServer) -> None:
    access = flow.access_token()
    data360 = flow.exchange(access).json()["access_token"]
    assert flow.api.get(SPECS).status_code == 200
    for token in (access, data360):
        response = flow.api.get(SPECS, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, response.text
        assert server.services.tokens.verify(token) is None


# --- the routes, hostile assertions, the certificate helper ---


def test_openapi_documents_the_routes(server: LiveServer) -> None:
    spec = httpx.get(server.base_url + "/openapi.json").json()
    paths = spec["paths"]
    for path, method in (
        ("/services/oauth2/token", "post"),
        ("/services/a360/token", "post"),
        (USERS, "get"),
        (USERS, "post"),
        (USERS + "/{ident}", "get"),
        (USERS + "/{ident}/action", "post"),
        (APPS, "get"),
        (APPS, "post"),
        (APPS + "/{ident}", "get"),
        (APPS + "/{ident}", "patch"),
        (APPS + "/{ident}", "delete"),
    ):
        assert paths[path][method]["summary"], (path, method)
    for path in ("/services/oauth2/token", "/services/a360/token"):
        content = paths[path]["post"]["requestBody"]["content"]
        assert "grant_type" in content["application/x-www-form-urlencoded"]["schema"]["properties"]
        assert "400" in paths[path]["post"]["responses"]


def test_never_a_server_error_on_hostile_assertions(flow: Flow, server: LiveServer) -> None:
    header = jwt.utils.base64url_encode(b'{"alg":"RS256"}').decode()
    weird_payloads = [b"[]", b'"x"', b"{", b'{"iss": 5}', b'{"iss": ["a"]}', b"\xff\xfe"]
    candidates = [f"{header}.{jwt.utils.base64url_encode(p).decode()}.sig" for p in weird_payloads]
    candidates += [
        flow.assertion(exp="soon"),
        flow.assertion(exp=True),
        flow.assertion(aud=["a", 5]),
        flow.assertion(aud=5),
        flow.assertion(sub=5),
        flow.assertion(iat="x"),
        flow.assertion(nbf=time.time() + 3600),
        "x" * 70_000,
    ]
    for candidate in candidates:
        response = token_request(server, {"grant_type": JWT_BEARER, "assertion": candidate})
        assert response.status_code == 400, (candidate[:80], response.text)
        assert set(response.json()) == {"error", "error_description"}


def test_self_signed_certificate_helper_matches_its_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = self_signed_certificate(key, "unit")
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
