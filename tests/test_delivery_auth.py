"""Destination authentication against the real sink: Basic, OAuth 2 client credentials (header and body
modes, token caching, refresh, one token request for many concurrent 401s), mutual TLS, and the errors
a connection's owner needs to fix it."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from headwater.connectors.http_destination.auth import (
    Authenticator,
    BasicAuth,
    ClientCredentials,
    build_authenticator,
    tls_context,
)
from headwater.connectors.http_destination.client import HttpClient, Response
from headwater.connectors.http_destination.errors import AuthError
from headwater.connectors.outbound import OutboundPolicy
from tests.fakes.sink import SinkFake

T = TypeVar("T")
LOOPBACK = OutboundPolicy(["127.0.0.1"])
OAUTH = "OAuth 2 Client Credentials"


@pytest.fixture(scope="module")
def running() -> Iterator[SinkFake]:
    with SinkFake() as sink:
        sink.protect("/basic", "basic")
        sink.protect("/bearer", "bearer")
        yield sink


@pytest.fixture
def sink(running: SinkFake) -> SinkFake:
    running.reset()
    running.token_ttl = 3600.0
    return running


def oauth(sink: SinkFake, **params: Any) -> Authenticator:
    base = {"accessTokenUrl": sink.token_url, "clientId": sink.client_id, "clientSecret": sink.client_secret}
    return build_authenticator(OAUTH, base | params, ca_file=sink.ca_file)


def run(auth: Authenticator, test: Callable[[HttpClient], Awaitable[T]]) -> T:
    async def main() -> T:
        client = HttpClient(LOOPBACK, ssl_context=auth.ssl_context)
        try:
            return await test(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


async def deliver(client: HttpClient, auth: Authenticator, url: str) -> Response:
    """What the engine does: auth headers, send, and once more with fresh headers after a 401 when the
    authenticator says it may help."""
    used = await auth.headers(client)
    response = await client.request("POST", url, [("Content-Type", "application/json"), *used], b"{}")
    if response.status == 401 and await auth.unauthorized(client, used):
        used = await auth.headers(client)
        response = await client.request("POST", url, [("Content-Type", "application/json"), *used], b"{}")
    return response


def test_no_authentication(sink: SinkFake) -> None:
    auth = build_authenticator("None", {})

    async def test(client: HttpClient) -> int:
        assert await auth.headers(client) == []
        return (await deliver(client, auth, sink.url + "/open")).status

    assert run(auth, test) == 200
    assert sink.received()[0].header("authorization") is None


def test_basic_authentication(sink: SinkFake) -> None:
    good = build_authenticator("Basic Authentication", {"username": sink.username, "password": sink.password})
    bad = BasicAuth(sink.username, "wrong")

    async def test(client: HttpClient) -> list[int]:
        assert not await bad.unauthorized(client, await bad.headers(client))
        return [(await deliver(client, a, sink.url + "/basic/x")).status for a in (good, bad)]

    assert run(good, test) == [200, 401]
    assert "wrong" not in repr(bad)
    assert sink.count(status=401) == 1  # Basic is not sent again after a 401


def test_basic_authentication_is_utf8() -> None:
    headers = asyncio.run(BasicAuth("zoë", "pässword").headers(HttpClient(LOOPBACK)))
    assert headers == [("Authorization", "Basic em/Dqzpww6Rzc3dvcmQ=")]


@pytest.mark.parametrize("location", ["header", "body"])
def test_client_credentials_token_is_fetched_once_and_reused(sink: SinkFake, location: str) -> None:
    auth = oauth(sink, credentialsLocation=location)

    async def test(client: HttpClient) -> list[int]:
        return [(await deliver(client, auth, f"{sink.url}/bearer/{i}")).status for i in range(20)]

    assert run(auth, test) == [200] * 20
    [request] = sink.token_requests
    assert (request.credentials_in, request.client_id, request.granted) == (location, sink.client_id, True)
    assert request.form["grant_type"] == "client_credentials"
    assert ("client_secret" in request.form) == (location == "body")
    headers = dict(request.headers)
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["accept"] == "application/json"
    assert all((r.header("authorization") or "").startswith("Bearer ") for r in sink.delivered())


def test_scope_extra_headers_and_form_items_reach_the_token_endpoint(sink: SinkFake) -> None:
    auth = oauth(
        sink,
        scope="deliveries profiles",
        extraHeaders={"X-Tenant": "acme"},
        formItems={"audience": "https://api.example/", "resource": "guests"},
    )
    assert run(auth, lambda client: deliver(client, auth, sink.url + "/bearer/x")).status == 200
    [request] = sink.token_requests
    assert request.form["scope"] == "deliveries profiles"
    assert (request.form["audience"], request.form["resource"]) == ("https://api.example/", "guests")
    assert dict(request.headers)["x-tenant"] == "acme"


def test_the_token_is_refreshed_shortly_before_it_expires(sink: SinkFake) -> None:
    sink.token_ttl = 100  # expires_in 100: refreshed once less than 10 s remain
    now = [1000.0]
    auth = ClientCredentials(
        sink.token_url,
        sink.client_id,
        sink.client_secret,
        ssl_context=tls_context(sink.ca_file),
        clock=lambda: now[0],
    )

    async def test(client: HttpClient) -> list[list[tuple[str, str]]]:
        seen = [await auth.headers(client)]
        now[0] += 89
        seen.append(await auth.headers(client))
        now[0] += 2
        seen.append(await auth.headers(client))
        return seen

    first, cached, refreshed = run(auth, test)
    assert first == cached != refreshed
    assert len(sink.token_requests) == 2
    assert first[0][1].startswith("Bearer ")


def test_a_grant_without_expires_in_lasts_an_hour() -> None:
    auth = ClientCredentials("https://token.example/oauth", "id", "secret")
    token = auth._parse_grant(b'{"access_token": "t", "token_type": "bearer"}', 0.0)
    assert (token.authorization, token.refresh_at) == ("Bearer t", 3600 - 60)


def test_fifty_concurrent_401s_cause_one_token_request(sink: SinkFake) -> None:
    auth = oauth(sink)

    async def test(client: HttpClient) -> list[int]:
        await deliver(client, auth, sink.url + "/bearer/first")
        sink.expire_tokens()
        responses = await asyncio.gather(
            *(deliver(client, auth, f"{sink.url}/bearer/{i}") for i in range(50))
        )
        return [r.status for r in responses]

    assert run(auth, test) == [200] * 50
    assert len(sink.token_requests) == 2
    assert sink.count(status=401) == 50
    assert len(sink.delivered()) == 51


def test_concurrent_callers_share_one_failed_fetch_and_the_next_call_tries_again(sink: SinkFake) -> None:
    sink.fail(503, times=1, path="/oauth/token")
    auth = oauth(sink)

    async def test(client: HttpClient) -> list[tuple[str, str]]:
        results = await asyncio.gather(*(auth.headers(client) for _ in range(10)), return_exceptions=True)
        assert all(isinstance(r, AuthError) and r.transient and r.token_status == 503 for r in results)
        return await auth.headers(client)

    assert run(auth, test)[0][0] == "Authorization"
    assert len(sink.token_requests) == 1  # the 503 is answered before the token logic records a request
    assert sink.count(path="/oauth/token") == 2


def test_refused_client_credentials_are_not_transient(sink: SinkFake) -> None:
    auth = oauth(sink, clientSecret="not-the-secret")
    with pytest.raises(AuthError) as caught:
        run(auth, lambda client: auth.headers(client))
    assert (caught.value.transient, caught.value.token_status) == (False, 401)
    assert "invalid_client" in str(caught.value)
    assert "not-the-secret" not in str(caught.value)


def test_an_unreachable_token_endpoint_is_transient(sink: SinkFake) -> None:
    auth = oauth(sink)
    sink.outage()
    try:
        with pytest.raises(AuthError) as caught:
            run(auth, lambda client: auth.headers(client))
    finally:
        sink.recover()
    assert (caught.value.transient, caught.value.token_status) == (True, None)
    assert sink.client_secret not in str(caught.value)


def test_a_token_answer_without_access_token_is_not_transient(sink: SinkFake) -> None:
    auth = oauth(sink, accessTokenUrl=sink.https_url + "/not-a-token-endpoint")
    with pytest.raises(AuthError, match="without an access_token") as caught:
        run(auth, lambda client: auth.headers(client))
    assert caught.value.transient is False


@pytest.mark.parametrize(
    ("spec", "params", "message"),
    [
        (OAUTH, {"accessTokenUrl": "http://127.0.0.1/oauth/token"}, "https://"),
        (OAUTH, {"clientSecret": ""}, "clientSecret"),
        (OAUTH, {"credentialsLocation": "query"}, "credentialsLocation"),
        (OAUTH, {"clientCertificate": "-----BEGIN CERTIFICATE-----"}, "clientKey"),
        (OAUTH, {"clientCertificate": "not pem", "clientKey": "not pem"}, "cannot be loaded"),
        (OAUTH, {"extraHeaders": "X-A: 1"}, "extraHeaders must be an object"),
        ("Basic Authentication", {"username": "u"}, "password"),
        ("Kerberos", {}, "unknown auth spec"),
    ],
)
def test_unusable_params_are_refused_when_built(
    sink: SinkFake, spec: str, params: dict[str, Any], message: str
) -> None:
    base = {"accessTokenUrl": sink.token_url, "clientId": "id", "clientSecret": "s3cret-value"}
    with pytest.raises(AuthError, match=message) as caught:
        build_authenticator(spec, base | params if spec == OAUTH else params)
    assert caught.value.transient is False
    assert "s3cret-value" not in str(caught.value)


def test_extra_headers_that_cannot_be_sent_are_not_transient(sink: SinkFake) -> None:
    auth = oauth(sink, extraHeaders={"X-A": "1\r\nX-Injected: 2"})
    with pytest.raises(AuthError, match="cannot be sent") as caught:
        run(auth, lambda client: auth.headers(client))
    assert caught.value.transient is False
    assert sink.token_requests == []


def test_mutual_tls_for_the_token_endpoint_and_the_destination(sink: SinkFake) -> None:
    auth = oauth(
        sink,
        accessTokenUrl=sink.mtls_url + "/oauth/token",
        clientCertificate=sink.certs.client_cert,
        clientKey=sink.certs.client_key,
    )
    assert run(auth, lambda client: deliver(client, auth, sink.mtls_url + "/bearer/m")).status == 200
    assert {r.listener for r in sink.received()} == {"mtls"}
    assert [r.path for r in sink.received()] == ["/oauth/token", "/bearer/m"]


def test_tls_context_leaves_no_key_on_disk(sink: SinkFake) -> None:
    before = set(os.listdir(tempfile.gettempdir()))
    context = tls_context(sink.ca_file, sink.certs.client_cert, sink.certs.client_key)
    leftovers = [n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("headwater-tls-")]
    assert leftovers == []
    assert context.verify_mode.name == "CERT_REQUIRED"
