"""The delivery HTTP client against the real sink (tests/fakes/sink.py); the responses the sink does not
send come from a scripted HTTP/1.1 server in tests/test_delivery_protocol.py.
``python -m tests.test_delivery_client`` measures its throughput against the sink, beside httpx's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from headwater.connectors.http_destination.auth import tls_context
from headwater.connectors.http_destination.client import HttpClient, Response, Timeouts
from headwater.connectors.http_destination.errors import TransportError
from headwater.connectors.outbound import OutboundPolicy
from tests.fakes.sink import SinkFake

T = TypeVar("T")
LOOPBACK = OutboundPolicy(["127.0.0.1"])
JSON = [("Content-Type", "application/json")]


@pytest.fixture(scope="module")
def running() -> Iterator[SinkFake]:
    with SinkFake() as sink:
        yield sink


@pytest.fixture
def sink(running: SinkFake) -> SinkFake:
    running.reset()
    running.response_body = b'{"ok":true}'
    return running


def run(test: Callable[[HttpClient], Awaitable[T]], **options: Any) -> T:
    """Run ``test`` with a fresh client on a fresh event loop; the client is closed afterwards."""

    async def main() -> T:
        client = HttpClient(options.pop("outbound", LOOPBACK), **options)
        try:
            return await test(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


async def post(client: HttpClient, url: str, body: bytes = b"{}", **kwargs: Any) -> Response:
    return await client.request("POST", url, JSON, body, **kwargs)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


# -- requests and responses -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_methods_send_url_headers_and_body(sink: SinkFake, method: str) -> None:
    body = json.dumps({"id": 42, "name": "Ada"}).encode()

    async def test(client: HttpClient) -> Response:
        return await client.request(method, f"{sink.url}/api/guests/42?x=1#frag", [("X-Key", "k1")], body)

    response = run(test)
    assert (response.status, response.body, response.truncated) == (200, b'{"ok":true}', False)
    assert response.header("Content-Type") == "application/json"
    assert all(name == name.lower() for name, _ in response.headers)
    assert 0 < response.elapsed < 1
    [seen] = sink.received()
    assert (seen.method, seen.path, seen.query, seen.body) == (method, "/api/guests/42", "x=1", body)
    assert seen.header("host") == sink.url.removeprefix("http://")
    assert seen.header("x-key") == "k1"
    assert seen.header("content-length") == str(len(body))


def test_content_length_zero_for_an_empty_body_and_none_without_body(sink: SinkFake) -> None:
    async def test(client: HttpClient) -> None:
        await client.request("POST", sink.url + "/empty", [], b"")
        await client.request("DELETE", sink.url + "/none", [], None)

    run(test)
    empty, none = sink.received()
    assert (empty.header("content-length"), empty.body) == ("0", b"")
    assert none.header("content-length") is None


def test_the_client_frames_requests_itself_and_refuses_header_injection(sink: SinkFake) -> None:
    async def test(client: HttpClient) -> None:
        smuggled = [("Content-Length", "999"), ("Host", "evil.example"), ("Transfer-Encoding", "chunked")]
        assert (await client.request("POST", sink.url + "/framed", smuggled, b"{}")).status == 200
        for headers in ([("X-A", "1\r\nX-Injected: yes")], [("X-A", "1\nX-B: 2")], [("Bad Name", "v")]):
            with pytest.raises(ValueError):
                await client.request("POST", sink.url + "/injected", headers, b"{}")
        with pytest.raises(ValueError, match="Latin-1"):
            await client.request("POST", sink.url + "/injected", [("X-A", "snow ☃")], b"{}")

    run(test)
    [seen] = sink.received()
    assert (seen.header("content-length"), seen.header("host")) == ("2", sink.url.removeprefix("http://"))
    assert seen.header("transfer-encoding") is None


def test_keep_alive_reuses_connections(sink: SinkFake) -> None:
    async def test(client: HttpClient) -> int:
        for i in range(10):
            await post(client, f"{sink.url}/seq/{i}")
        statuses = await asyncio.gather(*(post(client, f"{sink.url}/par/{i}") for i in range(40)))
        assert statuses and all(r.status == 200 for r in statuses)
        return client.open_connections

    open_connections = run(test, max_connections=4)
    assert len({r.peer for r in sink.received("/seq/")}) == 1
    assert len({r.peer for r in sink.received()}) <= 4
    assert open_connections <= 4


def test_concurrency_is_capped_at_max_connections(sink: SinkFake) -> None:
    asyncio.run(until(lambda: sink.in_flight() == 0))  # requests held by earlier tests do not count
    sink.reset()
    sink.delay(0.05)

    async def test(client: HttpClient) -> list[Response]:
        return await asyncio.gather(*(post(client, f"{sink.url}/capped/{i}") for i in range(8)))

    responses = run(test, max_connections=2)
    assert [r.status for r in responses] == [200] * 8
    assert sink.peak_in_flight == 2
    assert len({r.peer for r in sink.received()}) == 2


def test_the_connection_limit_is_shared_by_every_host(sink: SinkFake) -> None:
    async def test(client: HttpClient) -> None:
        await post(client, sink.url + "/a")
        assert client.open_connections == 1
        # another origin: the idle connection to the first is closed to make room
        assert (await post(client, sink.url.replace("127.0.0.1", "localhost") + "/b")).status == 200
        assert client.open_connections == 1

    run(test, max_connections=1)


def test_gzip_responses_are_decoded(sink: SinkFake) -> None:
    sink.compress()
    sink.response_body = json.dumps({"items": list(range(500))}).encode()

    async def test(client: HttpClient) -> list[Response]:
        accept = [("Accept-Encoding", "gzip")]
        return [
            await client.request("POST", sink.url + "/gz", accept, b"{}"),
            await client.request("POST", sink.url + "/plain", [], b"{}"),
        ]

    gzipped, plain = run(test)
    assert gzipped.header("content-encoding") == "gzip"
    assert int(gzipped.header("content-length") or 0) < len(sink.response_body)
    assert gzipped.body == plain.body == sink.response_body
    assert plain.header("content-encoding") is None


def test_chunked_responses_are_read(sink: SinkFake) -> None:
    sink.chunk()
    sink.response_body = b"0123456789" * 100

    async def test(client: HttpClient) -> list[Response]:
        return [await post(client, f"{sink.url}/chunked/{i}") for i in range(3)]

    responses = run(test)
    assert all(r.header("transfer-encoding") == "chunked" for r in responses)
    assert all(r.body == sink.response_body for r in responses)
    assert len({r.peer for r in sink.received()}) == 1  # still keep-alive


def test_redirects_are_returned_not_followed(sink: SinkFake) -> None:
    sink.redirect("https://elsewhere.example/next", 302)

    response = run(lambda client: post(client, sink.url + "/moved"))
    assert (response.status, response.header("location")) == (302, "https://elsewhere.example/next")
    assert [r.path for r in sink.received()] == ["/moved"]


def test_a_long_body_is_truncated_and_its_connection_closed(sink: SinkFake) -> None:
    sink.response_body = b"x" * 50_000

    async def test(client: HttpClient) -> Response:
        response = await post(client, sink.url + "/big")
        assert client.open_connections == 0
        return response

    response = run(test, max_body=1000)
    assert (response.status, response.body, response.truncated) == (200, b"x" * 1000, True)


def test_a_decoded_body_is_truncated_at_max_body(sink: SinkFake) -> None:
    sink.compress()
    sink.response_body = b"y" * 200_000  # a few hundred bytes on the wire

    async def test(client: HttpClient) -> Response:
        return await client.request("GET", sink.url + "/bomb", [("Accept-Encoding", "gzip")], None)

    response = run(test, max_body=5000)
    assert (response.body, response.truncated) == (b"y" * 5000, True)


# -- TLS -----------------------------------------------------------------------------------------


def test_https_with_the_sinks_ca(sink: SinkFake) -> None:
    context = tls_context(ca_file=sink.ca_file)

    async def test(client: HttpClient) -> list[int]:
        return [(await post(client, f"{sink.https_url}/tls/{i}")).status for i in range(3)]

    assert run(test, ssl_context=context) == [200] * 3
    assert {r.listener for r in sink.received()} == {"https"}
    assert len({r.peer for r in sink.received()}) == 1


def test_an_untrusted_certificate_is_a_terminal_tls_error(sink: SinkFake) -> None:
    with pytest.raises(TransportError) as caught:
        run(lambda client: post(client, sink.https_url + "/tls"))
    assert (caught.value.kind, caught.value.transient) == ("tls", False)
    assert "not trusted" in str(caught.value)
    assert sink.received() == []


def test_mutual_tls_with_and_without_the_client_certificate(sink: SinkFake) -> None:
    with_cert = tls_context(sink.ca_file, sink.certs.client_cert, sink.certs.client_key)
    assert run(lambda client: post(client, sink.mtls_url + "/m"), ssl_context=with_cert).status == 200
    assert [r.listener for r in sink.received()] == ["mtls"]
    with pytest.raises(TransportError) as caught:
        run(lambda client: post(client, sink.mtls_url + "/m"), ssl_context=tls_context(sink.ca_file))
    assert caught.value.kind in ("connect", "tls")
    assert "client certificate" in str(caught.value)


# -- failures ------------------------------------------------------------------------------------


def test_connection_refused_is_a_transient_connect_error(sink: SinkFake) -> None:
    url = sink.url
    sink.outage()
    try:
        with pytest.raises(TransportError) as caught:
            run(lambda client: post(client, url + "/down"))
    finally:
        sink.recover()
    assert (caught.value.kind, caught.value.transient) == ("connect", True)
    assert "127.0.0.1" in str(caught.value)


def test_read_timeout_closes_the_connection(sink: SinkFake) -> None:
    async def test(client: HttpClient) -> Response:
        await post(client, sink.url + "/warm")
        sink.delay(3.0, path="/slow")
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            await post(client, sink.url + "/slow", timeouts=Timeouts(read=0.1))
        assert 0.09 < time.monotonic() - started < 2.0  # cut at the read timeout, not at the answer
        assert (caught.value.kind, caught.value.transient) == ("timeout", True)
        assert "read timeout after 100 ms" in str(caught.value)
        assert client.open_connections == 0
        return await post(client, sink.url + "/after")

    assert run(test).status == 200
    peers = {r.path: r.peer for r in sink.received()}
    assert peers["/after"] != peers["/warm"]


def test_a_tls_handshake_that_never_completes_is_a_connect_timeout() -> None:
    with socket.socket() as listener:  # accepts TCP in the kernel's backlog, never speaks TLS
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"https://127.0.0.1:{listener.getsockname()[1]}/x"
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            run(lambda client: post(client, url, timeouts=Timeouts(connect=0.1)))
    assert time.monotonic() - started < 2.0  # without the timeout it would wait for ever
    assert (caught.value.kind, caught.value.transient) == ("timeout", True)
    assert "connect timeout after 100 ms" in str(caught.value)


@pytest.mark.parametrize(
    ("allow", "url"),
    [
        (["127.0.0.1"], "http://169.254.169.254/latest/meta-data/"),
        (["127.0.0.1"], "https://169.254.169.254/latest/meta-data/"),
        (["127.0.0.1"], "http://10.0.0.1/x"),
        (["127.0.0.1"], "https://10.0.0.1/x"),
        (["127.0.0.1"], "ftp://127.0.0.1/x"),
        (["127.0.0.1"], "http:///no-host"),
        ([], "http://localhost:{port}/x"),
        ([], "https://127.0.0.1:{port}/x"),
    ],
)
def test_outbound_policy_refusals(sink: SinkFake, allow: list[str], url: str) -> None:
    port = sink.url.rsplit(":", 1)[1]
    with pytest.raises(TransportError) as caught:
        run(lambda client: post(client, url.format(port=port)), outbound=OutboundPolicy(allow))
    assert (caught.value.kind, caught.value.transient) == ("refused", False)
    assert sink.received() == []


def test_a_listed_hostname_is_connected_to_at_its_checked_address(sink: SinkFake) -> None:
    port = sink.url.rsplit(":", 1)[1]
    assert run(lambda client: post(client, f"http://localhost:{port}/named")).status == 200
    [seen] = sink.received()
    assert seen.header("host") == f"localhost:{port}"


def test_the_policy_resolves_once_and_check_url_still_refuses() -> None:
    policy = OutboundPolicy(["127.0.0.1"])
    assert [str(a) for a in policy.resolve("http://127.0.0.1:9/x")] == ["127.0.0.1"]
    policy.check_url("http://127.0.0.1:9/x")
    with pytest.raises(Exception, match="internal address"):
        policy.check_url("https://10.0.0.1/x")


def test_an_idle_connection_the_server_closed_is_replaced(sink: SinkFake) -> None:
    async def test(client: HttpClient) -> None:
        await post(client, sink.url + "/one")
        sink.close_connections()
        # the request meets the closed connection before the client noticed: sent again, once
        assert (await post(client, sink.url + "/two")).status == 200
        sink.close_connections()
        await until(lambda: client.open_connections == 0)  # noticed while idle this time
        assert (await post(client, sink.url + "/three")).status == 200

    run(test)
    assert [r.path for r in sink.received()] == ["/one", "/two", "/three"]
    assert len({r.peer for r in sink.received()}) == 3


def test_idle_connections_are_closed_after_idle_seconds(sink: SinkFake) -> None:
    async def test(client: HttpClient) -> None:
        await asyncio.gather(*(post(client, f"{sink.url}/i/{i}") for i in range(3)))
        assert client.open_connections == 3
        await until(lambda: client.open_connections == 0, timeout=2)

    run(test, idle_seconds=0.05)


def test_closing_the_client_fails_requests_in_flight(sink: SinkFake) -> None:
    sink.delay(1, path="/held")

    async def test(client: HttpClient) -> None:
        held = asyncio.ensure_future(post(client, sink.url + "/held"))
        await until(lambda: sink.in_flight("/held") == 1)
        await client.aclose()
        with pytest.raises(TransportError, match="closed while a request") as caught:
            await held
        assert caught.value.kind == "connect"
        with pytest.raises(RuntimeError, match="closed"):
            await post(client, sink.url + "/later")

    run(test)


def test_a_cancelled_request_does_not_leave_its_connection_behind(sink: SinkFake) -> None:
    sink.delay(1, path="/held")

    async def test(client: HttpClient) -> Response:
        held = asyncio.ensure_future(post(client, sink.url + "/held"))
        await until(lambda: sink.in_flight("/held") == 1)
        held.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held
        assert client.open_connections == 0
        return await post(client, sink.url + "/next")

    assert run(test).status == 200


def test_several_clients_share_one_loop(sink: SinkFake) -> None:
    async def main() -> list[int]:
        first, second = HttpClient(LOOPBACK), HttpClient(LOOPBACK, max_connections=1)
        try:
            responses = await asyncio.gather(
                *(post(client, f"{sink.url}/{i}") for i in range(10) for client in (first, second))
            )
        finally:
            await first.aclose()
            await second.aclose()
        return [r.status for r in responses]

    assert asyncio.run(main()) == [200] * 20


def test_works_on_uvloop_too(sink: SinkFake) -> None:
    uvloop = pytest.importorskip("uvloop")
    context = tls_context(ca_file=sink.ca_file)

    async def main() -> list[int]:
        client = HttpClient(LOOPBACK, ssl_context=context)
        try:
            return [(await post(client, url + "/uv")).status for url in (sink.url, sink.https_url)]
        finally:
            await client.aclose()

    assert uvloop.run(main()) == [200, 200]


# -- throughput (not a test): python -m tests.test_delivery_client --------------------------------


async def _rate(send: Callable[[int], Awaitable[int]], seconds: float, tasks: int) -> float:
    done = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop:
            assert await send(done) == 200
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return done / (time.monotonic() - started)


async def _ours(url: str, body: bytes, seconds: float, tasks: int) -> float:
    client = HttpClient(LOOPBACK, max_connections=64)

    async def send(i: int) -> int:
        return (await client.request("POST", f"{url}/guests/{i}", JSON, body)).status

    try:
        return await _rate(send, seconds, tasks)
    finally:
        await client.aclose()


async def _httpx(url: str, body: bytes, seconds: float, tasks: int) -> float:
    import httpx

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits) as client:

        async def send(i: int) -> int:
            response = await client.post(f"{url}/guests/{i}", content=body, headers=dict(JSON))
            return response.status_code

        return await _rate(send, seconds, tasks)


def main() -> None:
    """Requests/s of concurrent tasks POSTing ~200-byte JSON over plain-http keep-alive to the sink in its
    own process (a fresh one per measurement): this client with 64 tasks, then httpx.AsyncClient with 64
    and with 8 (httpx slows down as concurrency grows). ``asyncio`` as argument: the default event loop
    instead of uvloop."""
    import subprocess
    import sys

    runner: Callable[[Awaitable[float]], float] = asyncio.run  # type: ignore[assignment]
    loop = "asyncio"
    if "asyncio" not in sys.argv[1:]:
        with contextlib.suppress(ImportError):
            import uvloop

            runner, loop = uvloop.run, "uvloop"  # type: ignore[assignment]
    record = {"guestId": "guest-000001", "email": "ada.lovelace@example.com", "firstName": "Ada"}
    record |= {"lastName": "Lovelace", "country": "GB", "city": "London", "phone": "+44 20 7946 0000"}
    body = json.dumps({**record, "attributes": {"tier": "gold", "score": 42, "consent": True}}).encode()
    for name, measure, tasks in (("headwater", _ours, 64), ("httpx", _httpx, 64), ("httpx", _httpx, 8)):
        sink = subprocess.Popen([sys.executable, "-m", "tests.fakes.sink"], stdout=subprocess.PIPE, text=True)
        try:
            url = json.loads(sink.stdout.readline())["url"] if sink.stdout else ""
            runner(measure(url, body, 1.0, tasks))  # warm up
            rate = runner(measure(url, body, 5.0, tasks))
            shape = f"{tasks:>2} tasks, {len(body)}-byte JSON, {loop}"
            print(f"{name:<10} {rate:>6.0f} requests/s  {shape}", flush=True)
        finally:
            sink.terminate()
            sink.wait()


if __name__ == "__main__":
    main()
