"""Hostile input at the HTTP boundary (issue 12, items 6 and 5c): deep and non-strict JSON, bodies over
the limits sent by ordinary clients, slow clients, and windows in every spelling aepp and scripts use."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from tests.conftest import make_settings
from tests.flows_helpers import crm_pipeline, flow_body, profile_schema
from tests.streaming_helpers import http_api_source
from tests.support import ApiClient, LiveServer, start_server

FS = "/data/foundation/flowservice"
MB = 1024 * 1024
CHUNK = b"x" * 65536


def _json_headers(api: ApiClient) -> dict[str, str]:
    return {
        **{k: v for k, v in api.headers.items() if k.lower() != "content-length"},
        "Content-Type": "application/json",
    }


# --- JSON: nesting depth and strictness ---


def _nested(depth: int) -> bytes:
    return b'{"name": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("path", [f"{FS}/connections", f"{FS}/flows"])
def test_json_nested_ten_thousand_deep_is_a_400_that_says_so(api: ApiClient, path: str) -> None:
    response = api.post(path, content=_nested(10_000), headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    body = response.json()
    assert "deeper than 64" in body["detail"] and body["report"]["maxDepth"] == 64


def test_nesting_up_to_the_limit_is_parsed(api: ApiClient) -> None:
    at_limit = api.post(
        f"{FS}/connections", content=_nested(63), headers={"Content-Type": "application/json"}
    )
    assert at_limit.status_code == 400 and "deeper" not in at_limit.json()["detail"], at_limit.text
    over = api.post(f"{FS}/connections", content=_nested(64), headers={"Content-Type": "application/json"})
    assert over.status_code == 400 and "deeper than 64" in over.json()["detail"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": NaN, "connectionSpec": {"id": "x"}}',
        b'{"name": "a", "x": Infinity}',
        b'{"name": "a", "x": -Infinity}',
        b'{"name": "a", "x": [NaN,],}',  # the lenient (trailing comma) path is strict about numbers too
    ],
)
def test_nan_and_infinity_are_refused(api: ApiClient, raw: bytes) -> None:
    response = api.post(f"{FS}/connections", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "not JSON" in response.json()["detail"]


# --- bodies over the limit, sent by ordinary clients ---


class _Sized:
    """A body of ``size`` bytes produced as it is read (requests sends it with its Content-Length)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def __len__(self) -> int:
        return self.left

    def read(self, n: int = -1) -> bytes:
        take = min(self.left, len(CHUNK) if n < 0 else n, len(CHUNK))
        self.left -= take
        return CHUNK[:take]


def _chunks(size: int) -> Iterator[bytes]:
    while size > 0:
        take = min(size, len(CHUNK))
        size -= take
        yield CHUNK[:take]


def _send(client: str, url: str, headers: dict[str, str], size: int, tmp: Path) -> tuple[int, Any]:
    """POST ``size`` bytes with ``client``; the status and the parsed answer (never generated whole)."""
    headers = {**headers, "Content-Length": str(size)}
    if client == "urllib":
        request = urllib.request.Request(url, data=_chunks(size), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
    if client == "requests":
        answer = requests.post(url, data=_Sized(size), headers=headers, timeout=60)
        return answer.status_code, answer.json()
    if client == "httpx":
        reply = httpx.post(url, content=_chunks(size), headers=headers, timeout=60)
        return reply.status_code, reply.json()
    body = tmp / f"body-{size}"
    with body.open("wb") as handle:
        handle.truncate(size)  # sparse: costs no disk
    argv = ["curl", "-sS", "-X", "POST", "-T", str(body), "-w", "\n%{http_code}", "--max-time", "60"]
    argv += [
        item for k, v in headers.items() if k.lower() != "content-length" for item in ("-H", f"{k}: {v}")
    ]
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    text, _, code = done.stdout.rpartition("\n")
    return int(code), json.loads(text)


@pytest.mark.parametrize("size", [10 * MB, 100 * MB], ids=["10MB", "100MB"])
@pytest.mark.parametrize("client", ["urllib", "requests", "httpx", "curl"])
def test_an_oversized_control_plane_body_is_a_readable_413(
    api: ApiClient, client: str, size: int, tmp_path: Path
) -> None:
    status, body = _send(client, str(api.base_url) + f"{FS}/connections", _json_headers(api), size, tmp_path)
    assert status == 413
    assert {"type", "title", "status", "detail", "report"} <= set(body), body
    assert body["report"]["limitBytes"] == MB and body["report"]["code"] == "HW-1413-413"


@pytest.mark.parametrize("size", [MB + 100, 10 * MB, 100 * MB], ids=["1MB+", "10MB", "100MB"])
@pytest.mark.parametrize("client", ["urllib", "requests", "httpx", "curl"])
def test_an_oversized_inlet_message_is_a_readable_413(
    api: ApiClient, server: LiveServer, client: str, size: int, tmp_path: Path
) -> None:
    inlet = _inlet(api)
    headers = {"Content-Type": "application/json"}
    status, body = _send(client, f"{server.base_url}/collection/{inlet}", headers, size, tmp_path)
    assert status == 413
    assert body["status"] == 413 and "data-collection-service" in body["type"], body


_INLETS: dict[str, str] = {}


def _inlet(api: ApiClient) -> str:
    key = str(api.base_url)
    if key not in _INLETS:
        _INLETS[key] = http_api_source(api, "Oversize inlet")[1]["inletId"]
    return _INLETS[key]


def test_a_chunked_body_is_refused_once_it_passes_the_limit(api: ApiClient) -> None:
    response = requests.post(
        str(api.base_url) + f"{FS}/connections", data=_chunks(10 * MB), headers=_json_headers(api), timeout=60
    )
    assert response.status_code == 413 and response.json()["report"]["limitBytes"] == MB


def test_the_connection_serves_the_next_request_after_a_413(api: ApiClient) -> None:
    with requests.Session() as session:
        session.headers.update(_json_headers(api))
        url = str(api.base_url) + f"{FS}/connections"
        assert session.post(url, data=_Sized(5 * MB), timeout=60).status_code == 413
        assert session.get(url, timeout=60).status_code == 200


def test_an_unauthenticated_big_body_gets_its_401(server: LiveServer) -> None:
    """An answer before the body is read (here: no token) is readable too."""
    request = urllib.request.Request(
        server.base_url + f"{FS}/connections",
        data=_chunks(900 * 1024),
        headers={"Content-Type": "application/json", "Content-Length": str(900 * 1024)},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 401


# --- slow clients ---


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with short read timeouts (the defaults are 10 s for headers, 30 s for bodies)."""
    home = tmp_path_factory.mktemp("headwater-home-timeouts")
    live = start_server(make_settings(home, header_timeout_seconds=1.0, body_timeout_seconds=1.0))
    yield live
    live.stop()
    live.services.close()


def _connect(live: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", live.settings.port), timeout=30)


def _read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes the connection (AssertionError past ``deadline``)."""
    data = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"the server kept the connection open; got {data[:200]!r}"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_half_a_header_line_is_closed_in_bounded_time(strict_server: LiveServer) -> None:
    with _connect(strict_server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: abc")
        answer = _read_until_closed(sock, time.monotonic() + 30)
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_an_idle_connection_is_closed_in_bounded_time(strict_server: LiveServer) -> None:
    with _connect(strict_server) as sock:
        assert _read_until_closed(sock, time.monotonic() + 30) == b""


def test_two_hundred_slow_clients_do_not_stop_a_normal_request(strict_server: LiveServer) -> None:
    slow = []
    try:
        for _ in range(200):
            sock = _connect(strict_server)
            sock.sendall(b"POST /data/foundation/flowservice/connections HTTP/1.1\r\nHost: x\r\nX-A: ")
            slow.append(sock)
        assert httpx.get(strict_server.base_url + "/health", timeout=30).status_code == 200
        deadline = time.monotonic() + 60
        for sock in slow:
            _read_until_closed(sock, deadline)
    finally:
        for sock in slow:
            sock.close()


def test_headers_larger_than_64_kb_are_refused(strict_server: LiveServer) -> None:
    with _connect(strict_server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 * 1024))
        answer = _read_until_closed(sock, time.monotonic() + 30)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]


def test_a_body_that_stops_arriving_is_a_408(strict_server: LiveServer) -> None:
    with _connect(strict_server) as sock:
        sock.sendall(
            b"POST /ims/token/v3 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100\r\n\r\ngrant_type"
        )
        answer = _read_until_closed(sock, time.monotonic() + 30)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(body)["report"]["code"] == "HW-1408-408"


def test_a_stalled_body_after_an_early_answer_does_not_hold_the_connection(strict_server: LiveServer) -> None:
    with _connect(strict_server) as sock:
        sock.sendall(
            b"POST /collection/abc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":'
        )
        answer = _read_until_closed(sock, time.monotonic() + 30)
    # the inlet does not exist: its 404 waits for the rest of the body only a body timeout, then the
    # connection closes
    assert answer.startswith(b"HTTP/1.1 404") and b"connection: close" in answer.lower(), answer


# --- run windows ---


@pytest.fixture
def crm_flow(api: ApiClient) -> str:
    parts = crm_pipeline(api)
    response = api.post(f"{FS}/flows", json=flow_body(parts["source"], parts["target"], parts["mapping"]))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize(
    "start,end",
    [
        (1796582106398, 1796582206398),  # epoch milliseconds, as aepp sends them
        (1796582106, 1796582206),  # epoch seconds
        ("1796582106398", "1796582206398"),
        ("2026-12-06T10:00:00Z", "2026-12-06T11:00:00.500+01:00"),
    ],
    ids=["ms", "seconds", "ms-text", "iso"],
)
def test_run_windows_in_every_documented_form(api: ApiClient, crm_flow: str, start: Any, end: Any) -> None:
    response = api.post(
        f"{FS}/runs", json={"flowId": crm_flow, "params": {"windowStartTime": start, "windowEndTime": end}}
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "value",
    [10**30, -1, True, "yesterday", 253402300800000, [1], {"a": 1}, "1" * 5000, 1.5e300],
    ids=["huge", "negative", "boolean", "text", "past-9999", "list", "object", "digits", "float"],
)
def test_a_bad_run_window_is_a_400_naming_the_field(api: ApiClient, crm_flow: str, value: Any) -> None:
    response = api.post(f"{FS}/runs", json={"flowId": crm_flow, "params": {"windowStartTime": value}})
    assert response.status_code == 400, response.text
    assert response.json()["report"]["errors"][0]["path"] == "params.windowStartTime"


# --- expression results and previews ---

PREVIEW = "/data/foundation/conversion/mappingSets/preview"


def _preview(api: ApiClient, expression: str, rows: list[dict[str, Any]]) -> httpx.Response:
    schema = profile_schema(api)
    mapping = {
        "outputSchema": {"schemaRef": {"id": schema}},
        "mappings": [
            {"sourceType": "EXPRESSION", "source": expression, "destination": "person.name.fullName"}
        ],
    }
    return api.post(PREVIEW, json={"mappingSet": mapping, "data": rows})


def test_a_huge_pad_width_is_a_400_naming_the_expression(api: ApiClient) -> None:
    response = _preview(api, "lpad(id, 300000000)", [{"id": "1"}])
    assert response.status_code == 400, response.text
    error = response.json()["report"]["errors"][0]
    assert error["path"] == "mappingSet.mappings[0].source" and "at most 65536" in error["message"]


def test_a_value_that_grows_past_one_mib_fails_its_row(api: ApiClient) -> None:
    rows = [{"id": "a" * 1000}, {"id": "b"}]
    response = _preview(api, 'replacestr(id, "a", "' + "z" * 2000 + '")', rows)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"][0] is None and body["data"][1] == {"person": {"name": {"fullName": "b"}}}
    assert body["errors"][0]["row"] == 0 and "more than the 1048576" in body["errors"][0]["message"]


def test_many_large_values_fail_the_batch_instead_of_growing_the_server(api: ApiClient) -> None:
    """65,536 characters per pad, 40 pads a row, 1000 rows would be 2.6 GB; the budget stops it at 64 MB."""
    expression = "concat(" + ", ".join(["lpad(id, 65536)"] * 40) + ")"
    response = _preview(api, expression, [{"id": str(i)} for i in range(1000)])
    assert response.status_code == 200, response.text
    body = response.json()
    assert all(row is None for row in body["data"])
    assert "pass 67108864 bytes" in body["errors"][0]["message"]


def test_a_preview_larger_than_16_mb_is_refused(api: ApiClient) -> None:
    response = _preview(api, "lpad(id, 60000)", [{"id": str(i)} for i in range(1000)])
    assert response.status_code == 400, response.text
    assert "more than a preview returns" in response.json()["report"]["errors"][0]["message"]


@pytest.mark.parametrize(
    "start,stored", [(1796582106398, 1796582106), (1796582106, 1796582106)], ids=["ms", "seconds"]
)
def test_a_schedule_start_in_milliseconds_is_stored_in_seconds(
    api: ApiClient, start: int, stored: int
) -> None:
    parts = crm_pipeline(api)
    body = flow_body(parts["source"], parts["target"], parts["mapping"], startTime=start, frequency="once")
    response = api.post(f"{FS}/flows", json=body)
    assert response.status_code == 201, response.text
    flow = api.get(f"{FS}/flows/{response.json()['id']}").json()["items"][0]
    assert flow["scheduleParams"]["startTime"] == stored


@pytest.mark.parametrize("start", [10**30, -5, 253402300800000], ids=["huge", "negative", "past-9999"])
def test_a_schedule_start_out_of_range_is_a_400_naming_it(api: ApiClient, start: int) -> None:
    parts = crm_pipeline(api)
    body = flow_body(parts["source"], parts["target"], parts["mapping"], startTime=start, frequency="once")
    response = api.post(f"{FS}/flows", json=body)
    assert response.status_code == 400, response.text
    paths = [e["path"] for e in response.json()["report"]["errors"]]
    assert "scheduleParams.startTime" in paths


def test_headwater_serve_applies_the_header_timeout(tmp_path: Path) -> None:
    """`headwater serve` builds the same configuration as the tests' servers."""
    from tests.test_cli import serve as serve_cli

    served = serve_cli(tmp_path / "home", tmp_path, HEADWATER_HEADER_TIMEOUT_SECONDS="1")
    live = next(served)
    try:
        port = int(live.base_url.rsplit(":", 1)[1])
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a")
                assert _read_until_closed(sock, time.monotonic() + 30).startswith(b"HTTP/1.1 408")
    finally:
        served.close()
