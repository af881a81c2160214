"""No client input may produce a 500: every documented endpoint answers junk with a 4xx in the error shape,
and the OpenAPI document describes the API."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.support import ApiClient, LiveServer

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
