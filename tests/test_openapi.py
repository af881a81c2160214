"""The OpenAPI document is valid OpenAPI and self-contained: every reference resolves inside it; the docs
page that shows it works offline."""

from __future__ import annotations

from typing import Any

import httpx
from openapi_spec_validator import validate

from tests.support import ApiClient, LiveServer

# Keys whose values are data, never schemas or references: examples of every kind, defaults, constants.
_DATA_KEYS = frozenset({"examples", "example", "default", "const", "enum", "value", "x-examples"})


def _references(node: Any, where: str = "") -> list[tuple[str, str]]:
    """Every (location, target) of a ``$ref`` in ``node``, the keys of ``properties`` maps taken as
    names (a property may be called "$ref") and data under :data:`_DATA_KEYS` of media types skipped."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}/{key}"
            if key == "$ref" and isinstance(value, str):
                found.append((where, value))
            elif key in ("properties", "patternProperties") and isinstance(value, dict):
                for name, schema in value.items():
                    found += _references(schema, f"{here}/{name}")
            elif key == "examples" and "schema" in node:  # a media type's examples: data
                continue
            else:
                found += _references(value, here)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += _references(item, f"{where}/{index}")
    return found


def _resolve(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_openapi_document_is_valid(api: ApiClient) -> None:
    document = api.get("/openapi.json").json()
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_every_reference_in_the_openapi_document_resolves_inside_it(api: ApiClient) -> None:
    """Example schemas written as live ``$ref``s (``https://ns.adobe.com/xdm/context/profile``) made the
    Schema Registry's POST and PUT unusable to validators and fuzzers."""
    document = api.get("/openapi.json").json()
    references = _references(document)
    assert references, "the document uses components"
    outside = [(where, target) for where, target in references if not target.startswith("#/")]
    assert outside == [], outside
    for _where, target in references:
        _resolve(document, target)  # KeyError names a dangling reference


def test_schema_registry_bodies_keep_their_examples_as_examples(api: ApiClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    schemas = "/data/foundation/schemaregistry/tenant/schemas"
    for path, method in ((schemas, "post"), (schemas + "/{ident}", "put")):
        media = paths[path][method]["requestBody"]["content"]["application/json"]
        assert "example" not in media["schema"]
        assert media["examples"]["example"]["value"]["allOf"][0]["$ref"].startswith("https://ns.adobe.com/")


def test_the_api_docs_page_works_offline(server: LiveServer, browser: Any) -> None:
    """/docs renders Swagger UI from Headwater's own assets: the page asks nothing of any other host."""
    page = browser.new_page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    try:
        page.goto(f"{server.base_url}/docs")
        title = page.locator(".swagger-ui .info .title")
        title.wait_for(timeout=15_000)
        assert "Headwater" in title.inner_text()
        assert page.locator(".opblock").count() > 100  # the operations are listed
    finally:
        page.close()
    origin = server.base_url.rstrip("/")
    assert asked and all(url.startswith(origin) for url in asked), [
        u for u in asked if not u.startswith(origin)
    ]
    headers = httpx.get(f"{origin}/docs").headers
    assert "script-src 'self'" in headers["content-security-policy"]
