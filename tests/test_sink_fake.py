"""The destination sink of tests/fakes/sink.py does what activation tests rely on: each auth mode, mutual
TLS, and the slowness, failure, 429 and outage switches."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.fakes.sink import SinkFake


@pytest.fixture(scope="module")
def running() -> Iterator[SinkFake]:
    with SinkFake() as sink:
        yield sink


@pytest.fixture
def sink(running: SinkFake) -> SinkFake:
    running.reset()
    return running


def https(sink: SinkFake, client_cert: bool = False) -> httpx.Client:
    return httpx.Client(verify=sink.ssl_context(client_cert=client_cert), timeout=5)


def token(sink: SinkFake, mode: str = "header") -> httpx.Response:
    data = {"grant_type": "client_credentials", "scope": "deliveries"}
    with https(sink) as client:
        if mode == "header":
            return client.post(sink.token_url, data=data, auth=(sink.client_id, sink.client_secret))
        data |= {"client_id": sink.client_id, "client_secret": sink.client_secret}
        return client.post(sink.token_url, data=data)


def test_records_method_path_query_headers_and_body(sink: SinkFake) -> None:
    response = httpx.put(sink.url + "/api/guests/42?limit=3", json={"name": "Ada"}, headers={"X-Key": "k1"})
    assert response.status_code == 200
    [seen] = sink.wait_for(1)
    assert (seen.method, seen.path, seen.query, seen.listener) == ("PUT", "/api/guests/42", "limit=3", "http")
    assert seen.header("x-key") == "k1"
    assert seen.json() == {"name": "Ada"}


@pytest.mark.parametrize("mode", ["header", "body"])
def test_token_endpoint_takes_credentials_in_header_or_body(sink: SinkFake, mode: str) -> None:
    sink.token_ttl = 120
    response = token(sink, mode)
    assert response.status_code == 200
    assert response.json()["expires_in"] == 120
    assert response.json()["token_type"] == "Bearer"
    [request] = sink.token_requests
    assert (request.credentials_in, request.client_id, request.granted) == (mode, sink.client_id, True)
    assert request.form["scope"] == "deliveries"


def test_token_endpoint_refuses_wrong_secret(sink: SinkFake) -> None:
    with https(sink) as client:
        response = client.post(
            sink.token_url, data={"grant_type": "client_credentials"}, auth=(sink.client_id, "wrong")
        )
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client"}


def test_bearer_is_checked_and_expired_tokens_are_refused(sink: SinkFake) -> None:
    sink.protect("/bearer", "bearer")
    access = token(sink).json()["access_token"]
    assert httpx.post(sink.url + "/bearer/x").status_code == 401
    good = httpx.post(sink.url + "/bearer/x", headers={"Authorization": f"Bearer {access}"})
    assert good.status_code == 200
    sink.expire_tokens()
    refused = httpx.post(sink.url + "/bearer/x", headers={"Authorization": f"Bearer {access}"})
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    fresh = token(sink).json()["access_token"]
    again = httpx.post(sink.url + "/bearer/x", headers={"Authorization": f"Bearer {fresh}"})
    assert again.status_code == 200
    assert len(sink.token_requests) == 2


def test_basic_auth(sink: SinkFake) -> None:
    sink.protect("/basic", "basic")
    assert httpx.post(sink.url + "/basic").status_code == 401
    assert httpx.post(sink.url + "/basic", auth=("sink-user", "nope")).status_code == 401
    assert httpx.post(sink.url + "/basic", auth=(sink.username, sink.password)).status_code == 200
    assert httpx.post(sink.url + "/open").status_code == 200


def test_mtls_accepts_the_client_certificate_and_refuses_without(sink: SinkFake) -> None:
    with https(sink, client_cert=True) as client:
        assert client.post(sink.mtls_url + "/deliver", json={}).status_code == 200
    assert sink.received()[-1].listener == "mtls"
    with https(sink, client_cert=False) as client, pytest.raises(httpx.TransportError):
        client.post(sink.mtls_url + "/deliver", json={})
    with https(sink, client_cert=False) as client:
        assert client.post(sink.https_url + "/deliver", json={}).status_code == 200


def test_delay_holds_requests_without_blocking_others(sink: SinkFake) -> None:
    sink.delay(2.0, path="/slow")
    started = time.monotonic()
    with httpx.Client(timeout=0.1) as client, pytest.raises(httpx.ReadTimeout):
        client.post(sink.url + "/slow")
    assert httpx.post(sink.url + "/fast").status_code == 200
    assert time.monotonic() - started < 1.5  # the fast request was not held behind the slow one
    assert httpx.post(sink.url + "/slow", timeout=10).status_code == 200


def test_fail_next_requests_then_recover(sink: SinkFake) -> None:
    sink.fail(503, times=2)
    statuses = [httpx.post(sink.url + "/d").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert sink.count(status=503) == 2
    assert len(sink.delivered()) == 1


def test_fail_for_a_time_window(sink: SinkFake) -> None:
    # The window is long enough that two requests land in it on a loaded 2-core machine.
    sink.fail(500, for_seconds=2.0)
    assert httpx.post(sink.url + "/d").status_code == 500
    assert httpx.post(sink.url + "/d").status_code == 500
    deadline = time.monotonic() + 10
    while httpx.post(sink.url + "/d").status_code == 500:
        assert time.monotonic() < deadline, "the 500 window never closed"
    assert sink.delivered()


def test_429_carries_retry_after(sink: SinkFake) -> None:
    sink.throttle(retry_after=2)
    first = httpx.post(sink.url + "/d")
    assert (first.status_code, first.headers["retry-after"]) == (429, "2")
    assert httpx.post(sink.url + "/d").status_code == 200


def test_faults_spare_the_token_endpoint_unless_aimed_at_it(sink: SinkFake) -> None:
    sink.fail(503, times=None)
    assert token(sink).status_code == 200
    sink.heal()
    sink.fail(408, path="/oauth/token")
    assert token(sink).status_code == 408


def test_outage_refuses_connections_then_recovers_on_the_same_port(sink: SinkFake) -> None:
    url = sink.url
    sink.outage()
    with pytest.raises(httpx.ConnectError):
        httpx.post(url + "/d")
    sink.recover()
    assert sink.url == url
    assert httpx.post(url + "/d").status_code == 200


def test_timed_outage_ends_by_itself(sink: SinkFake) -> None:
    sink.outage(for_seconds=0.3)
    transport = httpx.HTTPTransport(retries=0)
    deadline = time.monotonic() + 5
    with httpx.Client(transport=transport) as client:
        while True:
            try:
                assert client.post(sink.url + "/d").status_code == 200
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the sink never came back"
    sink.wait_for(1)


def test_wait_for_times_out_with_a_useful_message(sink: SinkFake) -> None:
    sink.fail(503)
    httpx.post(sink.url + "/d")
    with pytest.raises(TimeoutError, match=r"0 of 1 .*\[503\]"):
        sink.wait_for(1, timeout=0.05)


def test_keeps_up_with_concurrent_clients(sink: SinkFake) -> None:
    with httpx.Client() as client, ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(lambda i: client.post(sink.url + "/bulk", content=str(i)).status_code, range(400))
        )
    assert statuses == [200] * 400
    assert sorted(int(r.body) for r in sink.wait_for(400, path="/bulk")) == list(range(400))
