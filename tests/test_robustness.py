"""No client input may produce a 500: every documented endpoint answers junk with a 4xx in the error shape,
and the OpenAPI document describes the API."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import ApiClient, LiveServer, start_server

JUNK_BODIES: list[Any] = [
    None,
    [],
    "text",
    42,
    {},
    {"name": 5},
    {"name": "x" * 10_000},
    {"name": "ok", "auth": []},
    {"name": "ok", "connectionSpec": "abc"},
    {"name": "ok", "connectionSpec": {"id": ["x"]}},
    {"name": "ok", "flowSpec": {"id": None}, "sourceConnectionIds": [{}], "targetConnectionIds": "x"},
    {"allOf": [{"$ref": 5}], "meta:class": []},
    {"schemaRef": {"id": {"a": 1}}},
    {"mappings": [{"destinationXdmPath": []}], "xdmSchema": 1},
    [{"op": "replace", "path": 5}],
    [{"op": "add", "path": "/a/b/c/d", "value": 1}],
    {"a": {"b": {"c": {"d": {"e": [1, [2, [3, [4]]]]}}}}},
    {"\u0000": "\ud7ff", "name": "\u202e"},
]
JUNK_QUERIES = [
    "property===",
    "property=a.b.c[]>x",
    "orderby=-",
    "limit=-1",
    "start=abc",
    "continuationToken=%00",
    "count=maybe",
    "property=name==%22unterminated",
    "version=x",
]


def _endpoints(api: ApiClient) -> list[tuple[str, str]]:
    spec = api.get("/openapi.json").json()
    out = []
    for path, methods in spec["paths"].items():
        if not path.startswith("/data/"):
            continue
        concrete = re.sub(r"\{[^}]+\}", "does-not-exist", path)
        out += [(method.upper(), concrete) for method in methods]
    return out


def _assert_client_error(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.request.method, response.request.url, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert {"type", "title", "status", "detail", "report"} <= set(body), body


def test_openapi_documents_every_api(api: ApiClient) -> None:
    spec = api.get("/openapi.json").json()
    paths = set(spec["paths"])
    for expected in (
        "/ims/token/v3",
        "/data/foundation/flowservice/connections",
        "/data/foundation/flowservice/flows/{ident}",
        "/data/foundation/flowservice/flowSpecs",
        "/data/foundation/schemaregistry/tenant/schemas",
        "/data/foundation/catalog/dataSets",
        "/data/foundation/conversion/mappingSets",
    ):
        assert expected in paths, expected
    assert "bearer" in spec["components"]["securitySchemes"]
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


@pytest.mark.parametrize("body", JUNK_BODIES, ids=range(len(JUNK_BODIES)))
def test_junk_bodies_never_cause_a_server_error(api: ApiClient, body: Any) -> None:
    for method, path in _endpoints(api):
        if method in ("POST", "PUT", "PATCH"):
            response = api.request(
                method, path.replace("/does-not-exist", ""), json=body, headers={"If-Match": "*"}
            )
            _assert_client_error(response)
            response = api.request(method, path, json=body, headers={"If-Match": "*"})
            _assert_client_error(response)


def test_junk_query_parameters_never_cause_a_server_error(api: ApiClient) -> None:
    for method, path in _endpoints(api):
        if method == "GET":
            for query in JUNK_QUERIES:
                _assert_client_error(api.get(f"{path}?{query}"))
                _assert_client_error(api.get(f"{path.replace('/does-not-exist', '')}?{query}"))


def test_oversized_body_is_a_413(api: ApiClient) -> None:
    big = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = api.post(
        "/data/foundation/flowservice/connections", content=big, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_unauthenticated_junk_is_refused_before_parsing(server: LiveServer) -> None:
    response = httpx.post(server.base_url + "/data/foundation/flowservice/flows", content=b"{{{{")
    assert response.status_code == 401


def test_an_integer_too_long_to_parse_is_a_400(api: ApiClient) -> None:
    body = b'{"name": 1' + b"1" * 5000 + b"}"
    response = api.post(
        "/data/foundation/flowservice/connections", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text


# --- hand-made hostile forms (issue 12 item 6): each answered 4xx, never 5xx or a dropped connection ---

HOSTILE_RAW: list[bytes] = [
    b"[" * 10_000 + b"]" * 10_000,  # nested 10,000 deep
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b'{"name": NaN}',
    b'{"name": Infinity,}',  # lenient path
    b'{"name": -Infinity}',
    b'{"name": 1' + b"0" * 400 + b"}",  # an integer beyond 64 bits
    b'{"name": 1e999}',  # a float beyond float64
    b'{"name": "\\ud800"}',  # a lone surrogate escape
    b'{"name": "a\x00b"}',  # a raw NUL in a string
    b'{"name": "\xff\xfe"}',  # not UTF-8
    b"\xef\xbb\xbf{}",  # a byte order mark
    b'{"name": "ok"} trailing',
]


@pytest.mark.parametrize("raw", HOSTILE_RAW, ids=range(len(HOSTILE_RAW)))
def test_hostile_json_never_causes_a_server_error(api: ApiClient, raw: bytes) -> None:
    for path in (
        "/data/foundation/flowservice/connections",
        "/data/foundation/flowservice/flows",
        "/data/foundation/flowservice/runs",
        "/data/foundation/schemaregistry/tenant/schemas",
        "/data/foundation/conversion/mappingSets/preview",
    ):
        response = api.post(path, content=raw, headers={"Content-Type": "application/json"})
        _assert_client_error(response)


@pytest.mark.parametrize(
    "window",
    [1796582106398, 10**30, -1, True, "1" * 5000, "not a date", 1e308, "9999-12-31T23:59:59-05:00"],
)
def test_hostile_run_windows_never_cause_a_server_error(api: ApiClient, window: Any) -> None:
    response = api.post(
        "/data/foundation/flowservice/runs",
        json={"flowId": "does-not-exist", "params": {"windowStartTime": window, "windowEndTime": window}},
    )
    _assert_client_error(response)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server of its own: the fuzzer creates organizations' users, apps and sandboxes at will."""
    from tests.conftest import _postgres_database, make_settings

    home = tmp_path_factory.mktemp(f"headwater-fuzz-{request.param}")
    with contextlib.ExitStack() as stack:
        overrides: dict[str, Any] = {}
        if request.param == "postgresql":
            overrides["database_url"] = stack.enter_context(_postgres_database())
        live = start_server(make_settings(home, **overrides))
        yield live
        live.stop()
        live.services.close()


def test_schemathesis_finds_no_server_error(fuzz_server: LiveServer) -> None:
    """Every operation of the OpenAPI, all phases, valid credentials, 30 s a backend (bench/fuzz_api.py
    --seconds N runs longer)."""
    from bench.fuzz_api import fuzz, platform_headers

    headers = platform_headers(fuzz_server.base_url, fuzz_server.creds)
    outcome = fuzz(fuzz_server.base_url, headers, seconds=30)
    assert not outcome.server_errors, outcome.output[-6000:]
