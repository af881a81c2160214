"""POST /data/foundation/conversion/mappingSets/preview against a live server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Match

from headwater.api.routes import mappingpreview
from tests.flows_helpers import CONV, mapping_set, profile_schema
from tests.support import ApiClient, LiveServer
from tests.test_robustness import JUNK_BODIES

PREVIEW = f"{CONV}/mappingSets/preview"


@pytest.fixture(autouse=True)
def preview_route(server: LiveServer) -> None:
    """Serve the preview router on the live app if the app does not route the path yet."""
    app = server.server.config.app
    assert isinstance(app, FastAPI)
    scope = {"type": "http", "method": "POST", "path": PREVIEW, "root_path": "", "headers": []}
    if not any(route.matches(scope)[0] == Match.FULL for route in app.router.routes):
        app.include_router(mappingpreview.router)
        app.openapi_schema = None


def inline(schema_id: str, *mappings: dict[str, Any]) -> dict[str, Any]:
    return {"outputSchema": {"schemaRef": {"id": schema_id}}, "mappings": list(mappings)}


def rule(source_type: str, source: str, destination: str) -> dict[str, Any]:
    return {"sourceType": source_type, "source": source, "destination": destination}


def error_paths(response: httpx.Response) -> list[str]:
    return [e["path"] for e in response.json()["report"]["errors"]]


def test_seed_002_mapping_inline(api: ApiClient) -> None:
    schema = profile_schema(api)
    body = {
        "mappingSet": {
            "xdmSchema": schema,
            "xdmVersion": "1.0",
            "mappings": [
                {"destinationXdmPath": "person.name.firstName", "sourceAttribute": "first_name"},
                {"destinationXdmPath": "person.name.lastName", "sourceAttribute": "last_name"},
                {"destinationXdmPath": "personalEmail.address", "sourceAttribute": "email"},
            ],
        },
        "data": [
            {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"},
            {"first_name": "Alan", "last_name": None, "email": "alan@example.com", "extra": {"a": 1}},
        ],
    }
    response = api.post(PREVIEW, json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["errors"] == []
    assert out["outputSchemaRef"] == {"id": schema, "contentType": "1.0"}
    assert out["data"] == [
        {
            "person": {"name": {"firstName": "Ada", "lastName": "Lovelace"}},
            "personalEmail": {"address": "ada@example.com"},
        },
        {"person": {"name": {"firstName": "Alan"}}, "personalEmail": {"address": "alan@example.com"}},
    ]


def test_stored_mapping_set_with_a_row_error(api: ApiClient) -> None:
    schema = profile_schema(api)
    ident = mapping_set(api, schema)  # Email -> personalEmail.address
    response = api.post(
        PREVIEW, json={"mappingSetId": ident, "data": [{"Email": "a@x.org"}, {"Email": "not-an-email"}, {}]}
    )
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["data"] == [{"personalEmail": {"address": "a@x.org"}}, None, {}]
    assert out["errors"] == [
        {
            "row": 1,
            "code": "INGEST-1401-400",
            "message": "row 1: personalEmail.address: 'not-an-email' is not a valid email address",
            "path": "personalEmail.address",
        }
    ]
    again = api.post(
        PREVIEW, json={"mappingSetId": ident, "mappingSetVersion": 0, "data": [{"Email": "b@x.org"}]}
    )
    assert again.status_code == 200 and again.json()["data"] == [{"personalEmail": {"address": "b@x.org"}}]


def test_expressions_static_values_and_conversion_errors(api: ApiClient) -> None:
    schema = profile_schema(api)
    mapping = inline(
        schema,
        rule("EXPRESSION", 'concat(upper(last), ", ", first)', "person.name.fullName"),
        rule("EXPRESSION", "to_integer(year)", "person.birthYear"),
        rule("ATTRIBUTE", "born", "person.birthDate"),
        rule("STATIC", "true", "personalEmail.primary"),
        rule("ATTRIBUTE", "contact.emails[0]", "personalEmail.address"),
    )
    data = [
        {
            "first": "Ada",
            "last": "Lovelace",
            "year": "1815",
            "born": "1815-12-10",
            "contact": {"emails": ["a@x.org"]},
        },
        {"first": "Bob", "last": "B", "year": "18x5", "born": "1815-12-10", "contact": None},
    ]
    response = api.post(PREVIEW, json={"mappingSet": mapping, "data": data})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["data"][0] == {
        "person": {"name": {"fullName": "LOVELACE, Ada"}, "birthDate": "1815-12-10", "birthYear": 1815},
        "personalEmail": {"primary": True, "address": "a@x.org"},
    }
    assert out["data"][1] is None
    (error,) = out["errors"]
    assert error["row"] == 1 and error["code"] == "MAPPER-3700-400" and error["path"] == "person.birthYear"
    assert error["message"] == (
        "row 1: mappings[1] (EXPRESSION to person.birthYear): "
        "to_integer(): cannot convert '18x5' to an integer"
    )


def test_top_level_output_schema_and_mixed_types(api: ApiClient) -> None:
    schema = profile_schema(api)
    body = {
        "outputSchema": {"schemaRef": {"id": schema}},
        "mappingSet": {"mappings": [rule("ATTRIBUTE", "code", "person.name.suffix")]},
        "data": [{"code": 7}, {"code": "VII"}, {"code": {"roman": True}}],
    }
    response = api.post(PREVIEW, json=body)
    assert response.status_code == 200, response.text
    assert [r["person"]["name"]["suffix"] for r in response.json()["data"]] == ["7", "VII", '{"roman":true}']


def test_a_bad_expression_is_400_naming_the_mapping_source(api: ApiClient) -> None:
    schema = profile_schema(api)
    mapping = inline(
        schema,
        rule("ATTRIBUTE", "first", "person.name.firstName"),
        rule("EXPRESSION", "upper(first", "person.name.lastName"),
    )
    response = api.post(PREVIEW, json={"mappingSet": mapping, "data": [{"first": "a"}]})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["report"]["code"] == "CONV-1400-400" and body["type"].endswith("CONV-1400-400")
    assert error_paths(response) == ["mappingSet.mappings[1].source"]
    assert "expected ',' or ')'" in body["report"]["errors"][0]["message"]
    assert "position 12" in body["detail"]


def test_a_mapping_set_whose_expression_does_not_parse_is_refused_at_save(api: ApiClient) -> None:
    schema = profile_schema(api)
    created = api.post(
        f"{CONV}/mappingSets", json=inline(schema, rule("EXPRESSION", "eval('1')", "person.name.firstName"))
    )
    assert created.status_code == 400
    assert error_paths(created) == ["mappings[0].source"]
    assert "unknown function 'eval'" in created.json()["detail"]


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({"data": [{}]}, ["mappingSet"]),
        ({"mappingSet": {"mappings": []}, "mappingSetId": "x", "data": []}, ["mappingSet"]),
        ({"mappingSetId": "abc"}, ["data"]),
        ({"mappingSetId": "abc", "data": [{}] * 1001}, ["data"]),
        ({"mappingSetId": "abc", "data": [{}, 3]}, ["data[1]"]),
        ({"mappingSetId": "abc", "data": "rows"}, ["data"]),
        ({"mappingSetId": "abc", "mappingSetVersion": -1, "data": []}, ["mappingSetVersion"]),
        ({"mappingSet": "nope", "data": []}, ["mappingSet"]),
        ({"mappingSet": {"mappings": []}, "data": []}, ["mappingSet.xdmSchema"]),
        ([1, 2], [""]),
    ],
)
def test_bad_requests_are_400(api: ApiClient, body: Any, paths: list[str]) -> None:
    response = api.post(PREVIEW, json=body)
    assert response.status_code == 400, response.text
    assert error_paths(response) == paths


def test_inline_mapping_sets_are_validated_like_stored_ones(api: ApiClient) -> None:
    schema = profile_schema(api)
    mapping = inline(schema, rule("ATTRIBUTE", "a", "person.nope"), rule("SQL", "a", "person.name.firstName"))
    response = api.post(PREVIEW, json={"mappingSet": mapping, "data": []})
    assert response.status_code == 400
    assert error_paths(response) == [
        "mappingSet.mappings[0].destination",
        "mappingSet.mappings[1].sourceType",
    ]
    unknown = {
        "mappingSet": {"mappings": [rule("ATTRIBUTE", "a", "person.name.firstName")]},
        "outputSchema": {"schemaRef": {"id": "https://ns.adobe.com/headwater/schemas/" + "0" * 32}},
        "data": [],
    }
    response = api.post(PREVIEW, json=unknown)
    assert response.status_code == 400
    assert error_paths(response) == ["mappingSet.outputSchema.schemaRef.id"]


def test_unknown_mapping_set_is_404_and_nothing_is_stored(api: ApiClient) -> None:
    response = api.post(PREVIEW, json={"mappingSetId": "0" * 32, "data": []})
    assert response.status_code == 404
    assert response.json()["report"]["code"] == "CONV-1404-404"
    schema = profile_schema(api)
    ok = api.post(
        PREVIEW, json={"mappingSet": inline(schema, rule("ATTRIBUTE", "a", "personID")), "data": []}
    )
    assert ok.status_code == 200 and ok.json()["data"] == []
    assert api.get(f"{CONV}/mappingSets").json()["_page"]["count"] == 0


def test_preview_needs_credentials(server: LiveServer) -> None:
    response = httpx.post(server.base_url + PREVIEW, json={"mappingSetId": "x", "data": []})
    assert response.status_code == 401


def test_junk_never_causes_a_server_error(api: ApiClient) -> None:
    schema = profile_schema(api)
    rows: list[Any] = [{"a": [1, {"b": None}]}, {"a": "x"}, {"\u0000": "\ud7ff"}, {"a": 10**30}, {}]
    mapping = inline(schema, rule("EXPRESSION", "concat(a, to_integer(a), date(a))", "person.name.fullName"))
    bodies: list[Any] = [*JUNK_BODIES, {"mappingSet": mapping, "data": rows}]
    bodies += [{"mappingSet": mapping, "data": [body]} for body in JUNK_BODIES if isinstance(body, dict)]
    bodies += [{"mappingSet": {**mapping, "mappings": body}, "data": []} for body in JUNK_BODIES]
    for body in bodies:
        response = api.post(PREVIEW, json=body)
        assert response.status_code in (200, 400, 404), (body, response.text)
