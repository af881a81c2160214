"""HTTP destinations (document 003): the wizard's steps through the API, the refusals at save time, the
immutability of a saved destination, and Test Request against a real sink on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.activation_helpers import (
    ACTIVATION,
    BODY,
    FS,
    HTTP_DESTINATION,
    activation_body,
    basic,
    connection_body,
    destination,
    inlet_source,
    oauth,
    request_params,
)
from tests.fakes.sink import SinkFake
from tests.support import ApiClient, unique

VARS = {"email": "a@b.c", "name": "A", "amount": 1}


def errors_of(response: Any) -> list[dict[str, str]]:
    return response.json()["report"]["errors"]


def paths_of(response: Any) -> set[str]:
    return {e["path"] for e in errors_of(response)}


def target_body(conn: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "Request",
        "baseConnectionId": conn,
        "connectionSpec": {"id": HTTP_DESTINATION, "version": "1.0"},
        "params": params,
    }


# --- the wizard: name and describe, authenticate, configure the request, review and save ---
def test_destination_saved_in_the_steps_of_document_003(api: ApiClient, sink: SinkFake) -> None:
    conn, target = destination(api, sink.https_url + "/emails/${email}", auth=oauth(sink, scope="send"))
    saved = api.get(f"{FS}/connections/{conn}").json()["items"][0]
    assert saved["name"] == "ESP" and saved["icon"] == "email"
    assert saved["description"] == "Abandoned cart emails"
    assert saved["auth"]["specName"] == "OAuth 2 Client Credentials"
    assert saved["auth"]["params"]["clientSecret"] == "********"  # never returned
    assert sink.client_secret not in json.dumps(saved)
    request = api.get(f"{FS}/targetConnections/{target}").json()["items"][0]["params"]
    assert request["headers"] == {
        "Accept": "application/json",
        "Accept-Encoding": "gzip",
        "Content-Type": "application/json",
    }
    assert request["connectionTimeoutMs"] == 1000 and request["readTimeoutMs"] == 1000
    assert request["method"] == "POST" and request["body"] == BODY


def test_default_headers_can_be_overridden_and_removed(api: ApiClient, sink: SinkFake) -> None:
    headers = {"accept": "application/vnd.api+json", "Accept-Encoding": "", "X-Tenant": "${tenant}"}
    _, target = destination(api, sink.url + "/h", headers=headers)
    saved = api.get(f"{FS}/targetConnections/{target}").json()["items"][0]["params"]["headers"]
    assert saved == {
        "accept": "application/vnd.api+json",
        "Content-Type": "application/json",
        "X-Tenant": "${tenant}",
        "Accept-Encoding": "",
    }
    result = api.post(
        f"{FS}/targetConnections/{target}/test", json={"variables": {"tenant": "t1", **VARS}}
    ).json()
    assert result["response"]["status"] == 200, result
    got = sink.received()[-1]
    assert got.header("accept-encoding") is None and got.header("x-tenant") == "t1"
    assert got.header("accept") == "application/vnd.api+json"


def test_name_is_unique_in_the_sandbox_and_icon_from_the_list(api: ApiClient, sink: SinkFake) -> None:
    assert api.post(f"{FS}/connections", json=connection_body("Twice")).status_code == 201
    again = api.post(f"{FS}/connections", json=connection_body("Twice"))
    assert again.status_code == 409 and "name" in paths_of(again)
    bad_icon = api.post(f"{FS}/connections", json=connection_body("Icon", icon="rocket"))
    assert bad_icon.status_code == 400 and "icon" in paths_of(bad_icon)


def test_saved_destination_cannot_be_edited(api: ApiClient, sink: SinkFake) -> None:
    conn, target = destination(api, sink.url + "/x", auth=basic(sink))
    for kind, ident in (("connections", conn), ("targetConnections", target)):
        before = api.get(f"{FS}/{kind}/{ident}")
        etag = before.headers["etag"]
        patch = api.patch(
            f"{FS}/{kind}/{ident}",
            json=[{"op": "replace", "path": "/name", "value": "Renamed"}],
            headers={"If-Match": etag},
        )
        assert patch.status_code == 400, patch.text
        assert "cannot be edited" in patch.json()["detail"] and "new" in patch.json()["detail"]
        after = api.get(f"{FS}/{kind}/{ident}")
        assert after.headers["etag"] == etag and after.json()["items"][0]["name"] != "Renamed"


def test_destination_deleted_only_while_no_activation_uses_it(api: ApiClient, sink: SinkFake) -> None:
    conn, target = destination(api, sink.url + "/x")
    source, _ = inlet_source(api)
    flow = api.post(f"{FS}/flows", json=activation_body(source, target))
    assert flow.status_code == 201, flow.text
    refused = api.delete(f"{FS}/connections/{conn}")
    assert refused.status_code == 409 and flow.json()["id"] in refused.text
    assert api.delete(f"{FS}/flows/{flow.json()['id']}").status_code == 204
    assert api.delete(f"{FS}/connections/{conn}").status_code == 204
    assert api.get(f"{FS}/targetConnections/{target}").status_code == 404


# --- refusals at save time ---
@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"url": "https://api.example.com/u/${guest.email}"}, "params.url"),
        ({"headers": {"X-Email": "${guest.email}"}}, "params.headers.X-Email"),
        ({"body": '{"email": "${guest.email}"}'}, "params.body"),
        ({"body": '{"email": "${email}",}'}, "params.body"),
        ({"body": '{"email": ${email'}, "params.body"),
        ({"url": "https://${host}/api"}, "params.url"),
        ({"method": "GET"}, "params.method"),
        ({"headers": {"Host": "evil.example"}}, "params.headers.Host"),
    ],
)
def test_bad_requests_are_refused_at_save(
    api: ApiClient, sink: SinkFake, params: dict[str, Any], path: str
) -> None:
    conn = api.post(f"{FS}/connections", json=connection_body("Refusals")).json()["id"]
    body = target_body(conn, {**request_params(sink.url + "/x"), **params})
    response = api.post(f"{FS}/targetConnections", json=body)
    assert response.status_code == 400, response.text
    assert path in paths_of(response), errors_of(response)
    listed = api.get(f"{FS}/targetConnections").json()["items"]
    assert not [t for t in listed if t.get("baseConnectionId") == conn]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.1.2.3/api",
        "https://[::1]/api",
        "http://example.com/api",  # plain HTTP to a host HEADWATER_OUTBOUND_ALLOW does not list
    ],
)
def test_internal_addresses_and_plain_http_are_refused(api: ApiClient, url: str) -> None:
    conn = api.post(f"{FS}/connections", json=connection_body("SSRF")).json()["id"]
    response = api.post(f"{FS}/targetConnections", json=target_body(conn, request_params(url)))
    assert response.status_code == 400, response.text
    assert "params.url" in paths_of(response)


def test_token_url_must_be_https_and_allowed(api: ApiClient, sink: SinkFake) -> None:
    plain = oauth(sink)
    plain["params"]["accessTokenUrl"] = sink.url + "/oauth/token"
    response = api.post(f"{FS}/connections", json=connection_body("Plain token", plain))
    assert response.status_code == 400 and "auth.params.accessTokenUrl" in paths_of(response)
    metadata = oauth(sink)
    metadata["params"]["accessTokenUrl"] = "https://169.254.169.254/token"
    response = api.post(f"{FS}/connections", json=connection_body("Metadata token", metadata))
    assert response.status_code == 400 and "auth.params.accessTokenUrl" in paths_of(response)


def test_activation_needs_a_binding_for_every_variable(api: ApiClient, sink: SinkFake) -> None:
    _, target = destination(api, sink.url + "/x")
    source, _ = inlet_source(api)
    response = api.post(f"{FS}/flows", json=activation_body(source, target, {"email": {"source": "email"}}))
    assert response.status_code == 400
    assert "amount" in response.text and "name" in response.text
    bad = {"email": {"source": "email"}, "name": {"expression": "concat(("}, "amount": {"source": "a"}}
    response = api.post(f"{FS}/flows", json=activation_body(source, target, bad))
    assert response.status_code == 400
    assert "transformations[0].params.bindings.name.expression" in paths_of(response)
    options = api.post(f"{FS}/flows", json=activation_body(source, target, maxInFlight=0))
    assert options.status_code == 400 and "options.maxInFlight" in paths_of(options)


# --- Test Request ---
def test_request_before_saving_sends_the_rendered_request(api: ApiClient, sink: SinkFake) -> None:
    variables = {"email": "zoë+1@example.com", "name": 'Ada "The Countess"\nLovelace ✓', "amount": 12.5}
    response = api.post(
        f"{FS}/targetConnections/test",
        json={
            "params": request_params(sink.url + "/emails/${email}?q=${name}"),
            "variables": variables,
        },
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["response"]["status"] == 200 and result["error"] is None
    assert result["response"]["body"] == '{"ok":true}'
    assert result["elapsedMs"] >= 0
    (got,) = sink.received()
    assert got.path == "/emails/zo%C3%AB%2B1%40example.com" or got.path == "/emails/zoë+1@example.com"
    assert json.loads(got.body) == variables  # quotes, newline, unicode escaped properly, number bare
    assert got.header("content-type") == "application/json"
    assert got.header("idempotency-key") == "test-request"
    assert result["request"]["url"].startswith(sink.url + "/emails/zo%C3%AB%2B1%40example.com?q=Ada%20%22")
    assert json.loads(result["request"]["body"]) == variables


def test_request_with_a_missing_variable_sends_nothing(api: ApiClient, sink: SinkFake) -> None:
    response = api.post(
        f"{FS}/targetConnections/test",
        json={"params": request_params(sink.url + "/x"), "variables": {"email": "a@b.c", "amount": 1}},
    )
    assert response.status_code == 400
    assert "variables.name" in paths_of(response) and "'name'" in response.text
    broken = api.post(
        f"{FS}/targetConnections/test",
        json={"params": request_params(sink.url + "/x", body='{"a": "${a}"'), "variables": {"a": 1}},
    )
    assert broken.status_code == 400 and "params.body" in paths_of(broken)
    assert sink.received() == []


def test_header_variable_with_a_line_break_is_refused(api: ApiClient, sink: SinkFake) -> None:
    response = api.post(
        f"{FS}/targetConnections/test",
        json={
            "params": request_params(sink.url + "/x", body=None, headers={"X-Name": "${who}"}),
            "variables": {"who": "a\r\nX-Injected: yes"},
        },
    )
    assert response.status_code == 400 and "variables.who" in paths_of(response)
    assert sink.received() == []


def test_saved_destination_with_basic_auth(api: ApiClient, sink: SinkFake) -> None:
    sink.protect("/basic", "basic")
    _, target = destination(api, sink.url + "/basic/${email}", auth=basic(sink), body='{"n": ${amount}}')
    result = api.post(
        f"{FS}/targetConnections/{target}/test", json={"variables": {"email": "a@b.c", "amount": 3}}
    ).json()
    assert result["response"]["status"] == 200, result
    assert sink.password not in json.dumps(result)
    wrong = basic(sink)
    wrong["params"]["password"] = "wrong"
    _, other = destination(api, sink.url + "/basic/x", auth=wrong, body=None, name="Wrong basic")
    refused = api.post(f"{FS}/targetConnections/{other}/test", json={"variables": {}}).json()
    assert refused["response"]["status"] == 401


@pytest.mark.parametrize("location", ["header", "body"])
def test_oauth_client_credentials(api: ApiClient, sink: SinkFake, location: str) -> None:
    sink.protect("/api", "bearer")
    auth = oauth(sink, location, extraHeaders={"X-Partner": "hw"}, formItems={"audience": "esp"})
    _, target = destination(api, sink.https_url + "/api/${email}", auth=auth, name=f"OAuth {location}")
    result = api.post(
        f"{FS}/targetConnections/{target}/test",
        json={"variables": {"email": "a@b.c", "name": "A", "amount": 1}},
    ).json()
    assert result["response"]["status"] == 200, result
    (token_request,) = sink.token_requests
    assert token_request.credentials_in == location and token_request.granted
    assert dict(token_request.headers).get("x-partner") == "hw"
    assert token_request.form.get("audience") == "esp"
    shown = json.dumps(result)
    assert sink.client_secret not in shown and "Bearer " not in shown.replace("Bearer ********", "")


def test_mutual_tls(api: ApiClient, sink: SinkFake) -> None:
    auth = oauth(sink, clientCertificate=sink.certs.client_cert, clientKey=sink.certs.client_key)
    _, target = destination(api, sink.mtls_url + "/m", auth=auth, body=None, name="mTLS")
    result = api.post(f"{FS}/targetConnections/{target}/test", json={"variables": {}}).json()
    assert result["response"]["status"] == 200, result
    assert sink.received()[-1].listener == "mtls"
    _, plain = destination(api, sink.mtls_url + "/m", auth=basic(sink), body=None, name="No client cert")
    refused = api.post(f"{FS}/targetConnections/{plain}/test", json={"variables": {}}).json()
    assert refused["response"] is None and refused["error"]["kind"] in ("tls", "connect", "protocol")


def test_jwks_publishes_the_key_of_the_certificate_presented_in_mtls(
    api: ApiClient, other_org_api: ApiClient, sink: SinkFake
) -> None:
    """Document 003's mTLS JWKS: the set holds the public key of the client certificate Headwater
    presents, so a destination can verify what its holder signs (here a JWT signed with the client key)."""
    import jwt
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    auth = oauth(sink, clientCertificate=sink.certs.client_cert, clientKey=sink.certs.client_key)
    conn, _ = destination(api, sink.mtls_url + "/m", auth=auth, body=None, name=unique("JWKS"))
    answer = api.get(f"{FS}/jwks", params={"connectionId": conn})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/jwk-set+json")
    (key,) = answer.json()["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["use"] == "sig"
    certificate = x509.load_pem_x509_certificate(sink.certs.client_cert.encode())
    assert jwt.utils.base64url_decode(key["x5t#S256"]) == certificate.fingerprint(hashes.SHA256())
    signed = jwt.encode({"sub": "headwater"}, sink.certs.client_key, algorithm="ES256")
    assert jwt.decode(signed, jwt.PyJWK(key).key, algorithms=["ES256"]) == {"sub": "headwater"}
    # The sandbox's set holds it once, however many destinations present it; nothing leaks elsewhere.
    destination(api, sink.mtls_url + "/n", auth=auth, body=None, name=unique("JWKS again"))
    kids = [k["kid"] for k in api.get(f"{FS}/jwks").json()["keys"]]
    assert kids.count(key["kid"]) == 1
    assert other_org_api.get(f"{FS}/jwks").json() == {"keys": []}
    assert other_org_api.get(f"{FS}/jwks", params={"connectionId": conn}).status_code == 404
    plain, _ = destination(api, sink.url + "/p", auth=basic(sink), name=unique("No mTLS"))
    assert api.get(f"{FS}/jwks", params={"connectionId": plain}).json() == {"keys": []}


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"clientCertificate": "not pem", "clientKey": "not pem"}, "auth.params.clientCertificate"),
        ({"clientCertificate": "mismatch", "clientKey": "mismatch"}, "auth.params.clientCertificate"),
    ],
)
def test_mutual_tls_material_that_cannot_work_is_refused_at_save(
    api: ApiClient, sink: SinkFake, params: dict[str, str], path: str
) -> None:
    """A client certificate and key that do not parse or do not match are a 400 naming the field, and
    nothing is stored (they were stored before, and failed at the first request)."""
    if params.get("clientCertificate") == "mismatch":  # two good PEMs that are not a pair
        params = {"clientCertificate": sink.certs.client_cert, "clientKey": _other_key()}
    name = unique("Bad mTLS")
    answer = api.post(f"{FS}/connections", json=connection_body(name, oauth(sink, **params)))
    assert answer.status_code == 400, answer.text
    assert [e["path"] for e in answer.json()["report"]["errors"]] == [path]
    assert "BEGIN" not in answer.text  # the PEMs are not echoed
    listed = api.get(f"{FS}/connections", params={"property": f"name=={name}"}).json()["items"]
    assert listed == []


def _other_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_read_timeout(api: ApiClient, sink: SinkFake) -> None:
    sink.delay(1.0)
    _, target = destination(api, sink.url + "/slow", body=None, readTimeoutMs=150)
    result = api.post(f"{FS}/targetConnections/{target}/test", json={"variables": {}}).json()
    assert result["response"] is None
    assert result["error"]["kind"] == "timeout" and result["error"]["retryable"] is True
    assert result["elapsedMs"] < 900


def test_destinations_are_scoped_to_their_sandbox(
    api: ApiClient, other_org_api: ApiClient, sink: SinkFake
) -> None:
    conn, target = destination(api, sink.url + "/x")
    assert other_org_api.get(f"{FS}/connections/{conn}").status_code == 404
    assert (
        other_org_api.post(f"{FS}/targetConnections/{target}/test", json={"variables": {}}).status_code == 404
    )
    assert (
        other_org_api.post(
            f"{FS}/flows", json={**activation_body("x", target), "flowSpec": {"id": ACTIVATION}}
        ).status_code
        == 400
    )
    assert sink.received() == []


def test_header_value_the_wire_cannot_carry_is_a_400_not_a_500(api: ApiClient, sink: SinkFake) -> None:
    response = api.post(
        f"{FS}/targetConnections/test",
        json={
            "params": request_params(sink.url + "/x", body=None, headers={"X-City": "${city}"}),
            "variables": {"city": "東京"},
        },
    )
    assert response.status_code == 400, response.text
    assert "params.headers" in paths_of(response)
    assert sink.received() == []


@pytest.mark.parametrize(
    "body",
    [
        {"params": {"method": "POST", "url": 5}},
        {"params": {"method": "POST", "url": "https://x.example/a", "connectionTimeoutMs": "soon"}},
        {"params": {"method": "POST", "url": "https://x.example/a", "headers": []}},
        {"params": {"method": "POST", "url": "https://x.example/a"}, "auth": "basic"},
        {
            "params": {"method": "POST", "url": "https://x.example/a"},
            "auth": {"specName": "Basic Authentication"},
        },
        {"params": {"method": "POST", "url": "https://x.example/a"}, "variables": []},
        {"params": {"method": "POST", "url": "https://x.example/a"}, "baseConnectionId": "nope"},
    ],
)
def test_junk_test_requests_are_4xx(api: ApiClient, body: dict[str, Any]) -> None:
    response = api.post(f"{FS}/targetConnections/test", json=body)
    assert 400 <= response.status_code < 500, response.text
