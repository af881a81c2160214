"""The request template of an HTTP destination, rendering: each value encoded for its place (percent-encoded
in the url, JSON-escaped or bare JSON in the body, checked in headers), variables looked up and reported when
missing, sensitive headers masked. Compile-time checks are in tests/test_delivery_template.py."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote

import pytest

from headwater.engines.template import (
    DEFAULT_HEADERS,
    MissingVariable,
    RenderedRequest,
    RenderError,
    RequestTemplate,
    masked_headers,
)
from tests.test_delivery_template import URL, compile_


def body_of(body: str, **variables: Any) -> Any:
    rendered = compile_(body=body).render(variables).body
    assert rendered is not None
    return json.loads(rendered)


# --- url -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("a b", "a%20b"),
        ("a/b", "a%2Fb"),
        ("a?b&c=d#e", "a%3Fb%26c%3Dd%23e"),
        ("Zoë", "Zo%C3%AB"),
        ("東京", "%E6%9D%B1%E4%BA%AC"),
        ("😀", "%F0%9F%98%80"),
        ("50%+", "50%25%2B"),
        ("plain-Value_1.~", "plain-Value_1.~"),
    ],
)
def test_url_variables_are_percent_encoded(value: str, encoded: str) -> None:
    template = compile_(url="https://api.example.com/users/${id}?q=${id}")
    url = template.render({"id": value}).url
    assert url == f"https://api.example.com/users/{encoded}?q={encoded}"
    assert encoded == quote(value, safe="") and unquote(encoded) == value


def test_url_encoding_matches_urllib_quote_for_many_texts() -> None:
    template = compile_(url="https://h/${v}")
    for text in ["", "abc", "a.b-c_d~e", "a b", "ä", "x/y", "%", "=&;,", "\t\n", "'\"<>", "a" * 300]:
        assert template.render({"v": text}).url == "https://h/" + quote(text, safe="")


def test_url_literal_text_is_kept_as_written() -> None:
    template = compile_(url="https://api.example.com/a%20b/${x}?fixed=1&y=%7E#frag")
    assert template.render({"x": "v"}).url == "https://api.example.com/a%20b/v?fixed=1&y=%7E#frag"


def test_url_without_placeholders_renders_unchanged() -> None:
    assert compile_().render({}).url == URL


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (2**80, str(2**80)),
        (1.5, "1.5"),
        ({"a": [1]}, '{"a":[1]}'),
    ],
)
def test_non_string_values_become_text(value: Any, text: str) -> None:
    assert compile_(url="https://h/${v}").render({"v": value}).url == "https://h/" + quote(text, safe="")


# --- body ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        'say "hi"',
        "back\\slash \\n not a newline",
        "line\nbreak\r\n",
        "tab\there",
        "control \x00\x01\x1f\x7f",
        "Zoë 東京 😀 \u2028",
        "</script>",
        "${not.a.placeholder}",
    ],
)
def test_text_inside_a_json_string_is_escaped(text: str) -> None:
    rendered = compile_(body='{"v": "${v}"}').render({"v": text}).body
    assert rendered == b'{"v": "' + json.dumps(text, ensure_ascii=False)[1:-1].encode() + b'"}'
    assert json.loads(rendered) == {"v": text}


def test_several_placeholders_in_one_string() -> None:
    body = body_of(
        '{"greeting": "Hi ${first} ${last}, you owe ${amount} (${paid})"}',
        first='J"o',
        last="Zoë\n",
        amount=2.5,
        paid=False,
    )
    assert body == {"greeting": 'Hi J"o Zoë\n, you owe 2.5 (false)'}


@pytest.mark.parametrize(
    "value",
    [
        7,
        -3,
        2**80,
        0.1,
        1e20,
        True,
        False,
        'text "quoted"\n',
        {"a": [1, None, {"b": "ü"}]},
        [1, "two", 3.0],
        [],
    ],
)
def test_bare_placeholder_is_the_json_value(value: Any) -> None:
    assert body_of('{"v": ${v}, "w": [${v}]}', v=value) == {"v": value, "w": [value]}


def test_bare_values_are_compact_json() -> None:
    rendered = compile_(body='{"v":${v}}').render({"v": {"a": [1, 2], "b": "c"}}).body
    assert rendered == b'{"v":{"a":[1,2],"b":"c"}}'


def test_objects_inside_a_string_are_escaped_json_text() -> None:
    assert body_of('{"v": "${v}"}', v={"a": "b"}) == {"v": '{"a":"b"}'}


def test_decimal_stays_an_exact_number() -> None:
    assert compile_(body='{"v": ${v}}').render({"v": Decimal("12.50")}).body == b'{"v": 12.50}'
    assert body_of('{"v": "${v}"}', v=Decimal("12.50")) == {"v": "12.50"}


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), -float("inf"), [1.0, float("nan")], {"a": float("inf")}]
)
@pytest.mark.parametrize("body", ['{"v": ${v}}', '{"v": "${v}"}'])
def test_nan_and_infinity_are_refused(value: Any, body: str) -> None:
    with pytest.raises(RenderError) as caught:
        compile_(body=body).render({"v": value})
    assert caught.value.variable == "v" and caught.value.where == "body"
    assert "NaN or infinity" in str(caught.value)


def test_nan_in_the_url_is_refused() -> None:
    with pytest.raises(RenderError, match="NaN or infinity") as caught:
        compile_(url="https://h/${v}").render({"v": float("nan")})
    assert caught.value.where == "url"


def test_unpaired_surrogate_is_a_render_error() -> None:
    with pytest.raises(RenderError) as in_body:
        compile_(body='{"v": "${v}"}').render({"v": "\ud800"})
    assert in_body.value.variable == "v"
    with pytest.raises(RenderError) as in_url:
        compile_(url="https://h/${v}").render({"v": "\ud800"})
    assert in_url.value.where == "url"


def test_placeholder_after_escaped_quote_is_still_inside_the_string() -> None:
    assert body_of('{"v": "say \\"${v}\\" now", "n": ${n}}', v='"', n=1) == {"v": 'say """ now', "n": 1}


def test_keys_can_be_placeholders() -> None:
    assert body_of('{"${key}": ${value}}', key='a"b', value=1) == {'a"b': 1}


def test_body_literal_unicode_is_utf8() -> None:
    rendered = compile_(body='{"name": "Zoë", "v": "${v}"}').render({"v": "東京"}).body
    assert rendered == '{"name": "Zoë", "v": "東京"}'.encode()


@pytest.mark.parametrize("body", [None, ""])
def test_no_body(body: Any) -> None:
    assert compile_(body=body).render({}).body is None
    assert compile_().render({}).body is None


# --- variables -------------------------------------------------------------------------------------


def test_dotted_names_walk_nested_mappings() -> None:
    template = compile_(url="https://h/${user.address.city}", body='{"c": "${user.address.city}"}')
    rendered = template.render({"user": {"address": {"city": "Zoë"}}})
    assert rendered.url == "https://h/Zo%C3%AB"
    assert json.loads(rendered.body or b"") == {"c": "Zoë"}


def test_dotted_names_prefer_a_flat_key() -> None:
    template = compile_(body='{"c": "${a.b}"}')
    assert json.loads(template.render({"a.b": "flat", "a": {"b": "nested"}}).body or b"") == {"c": "flat"}
    assert json.loads(template.render({"a.b": None, "a": {"b": "nested"}}).body or b"") == {"c": "nested"}


@pytest.mark.parametrize("variables", [{}, {"a": {}}, {"a": None}, {"a": "text"}, {"a": {"b": None}}])
def test_dotted_name_without_value_is_missing(variables: dict[str, Any]) -> None:
    with pytest.raises(MissingVariable) as caught:
        compile_(url="https://h/${a.b}").render(variables)
    assert caught.value.variable == "a.b"
    assert "variable 'a.b' has no value (used in the url)" in str(caught.value)


@pytest.mark.parametrize(
    ("params", "where", "used_in"),
    [
        ({"url": "https://h/${v}"}, "url", "the url"),
        ({"headers": {"X-Id": "${v}"}}, "header", "the header X-Id"),
        ({"headers": {"X-${v}": "1"}}, "header", "a header name"),
        ({"body": '{"v": "${v}"}'}, "body", "the body"),
        ({"body": '{"v": ${v}}'}, "body", "the body"),
    ],
)
@pytest.mark.parametrize("variables", [{}, {"v": None}, {"other": 1}])
def test_missing_variable_names_it_and_its_place(
    params: dict[str, Any], where: str, used_in: str, variables: dict[str, Any]
) -> None:
    with pytest.raises(MissingVariable) as caught:
        compile_(**params).render(variables)
    assert caught.value.variable == "v" and caught.value.where == where
    assert str(caught.value).startswith(f"variable 'v' has no value (used in {used_in})")
    assert isinstance(caught.value, RenderError)


def test_first_missing_variable_is_named_in_url_headers_body_order() -> None:
    template = compile_(url="https://h/${u}", headers={"X-H": "${h}"}, body='{"b": "${b}", "u": "${u}"}')
    for variables, missing in [({}, "u"), ({"u": 1}, "h"), ({"u": 1, "h": 2}, "b")]:
        with pytest.raises(MissingVariable) as caught:
            template.render(variables)
        assert caught.value.variable == missing


def test_falsy_values_are_not_missing() -> None:
    assert body_of('{"a": "${a}", "b": ${b}, "c": ${c}}', a="", b=0, c=False) == {"a": "", "b": 0, "c": False}


# --- headers ---------------------------------------------------------------------------------------


def test_rendered_headers_include_defaults_and_templated_values() -> None:
    template = compile_(headers={"X-User": "id ${id}", "Accept-Encoding": "", "x-${kind}-Id": "${id}"})
    rendered = template.render({"id": "u-1", "kind": "Customer"})
    assert rendered.headers == [
        ("Accept", "application/json"),
        ("Content-Type", "application/json"),
        ("X-User", "id u-1"),
        ("x-Customer-Id", "u-1"),
    ]


def test_non_string_header_values_become_text() -> None:
    rendered = compile_(headers={"X-A": "${a}", "X-B": "${b}"}).render({"a": 12, "b": True})
    assert rendered.headers[-2:] == [("X-A", "12"), ("X-B", "true")]


@pytest.mark.parametrize("text", ["a\r\nInjected: 1", "a\nb", "a\rb", "a\x00b"])
def test_line_break_in_a_header_value_variable_is_refused(text: str) -> None:
    with pytest.raises(RenderError) as caught:
        compile_(headers={"X-A": "v=${v}"}).render({"v": text})
    assert caught.value.variable == "v" and caught.value.where == "header"
    assert "holds a line break, which is refused in headers" in str(caught.value)


def test_line_break_in_a_header_name_variable_is_refused() -> None:
    with pytest.raises(RenderError) as caught:
        compile_(headers={"X-${v}": "1"}).render({"v": "a\r\nb"})
    assert caught.value.variable == "v" and caught.value.where == "header"


@pytest.mark.parametrize("value", ["a b", "a:b", "", "Zoë"])
def test_rendered_header_name_must_be_a_token(value: str) -> None:
    with pytest.raises(RenderError) as caught:
        compile_(headers={"${v}": "1"}).render({"v": value})
    assert caught.value.variable == "v" and caught.value.where == "header"
    assert "header name" in str(caught.value)


@pytest.mark.parametrize("value", ["Host", "content-length", "Transfer-Encoding"])
def test_rendered_header_name_must_not_be_reserved(value: str) -> None:
    with pytest.raises(RenderError, match="Headwater sets") as caught:
        compile_(headers={"${v}": "1"}).render({"v": value})
    assert caught.value.variable == "v"


# --- masking -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "authorization",
        "Proxy-Authorization",
        "Cookie",
        "Set-Cookie",
        "X-Api-Key",
        "X-APIKEY",
        "x-api_key",
        "X-Auth-Token",
        "X-Auth",
        "Access-Token",
        "X-Client-Secret",
        "X-Password",
        "X-Passwd",
        "X-Signature",
        "X-Session-Id",
    ],
)
def test_sensitive_headers_are_masked(name: str) -> None:
    assert masked_headers([(name, "s3cr3t")]) == [(name, "********")]
    assert masked_headers([(name, "s3cr3t")], mask="<hidden>") == [(name, "<hidden>")]


def test_other_headers_are_shown_in_order() -> None:
    headers = [
        ("Accept", "application/json"),
        ("Authorization", "Bearer x"),
        ("X-Request-Id", "r1"),
        ("Author", "me"),
    ]
    assert masked_headers(headers) == [
        ("Accept", "application/json"),
        ("Authorization", "********"),
        ("X-Request-Id", "r1"),
        ("Author", "me"),
    ]


# --- the template as a whole ---------------------------------------------------------------------------


def test_full_render() -> None:
    template = RequestTemplate.compile(
        {
            "method": "PUT",
            "url": "https://api.example.com/v1/users/${user.id}?source=${source}",
            "headers": {"Authorization": "Bearer abc", "X-Segment": "${segment}"},
            "connectionTimeoutMs": 1000,
            "readTimeoutMs": 2000,
            "body": '{\n  "email": "${user.email}",\n  "points": ${points},\n  "tags": ${tags}\n}',
        }
    )
    rendered = template.render(
        {
            "user": {"id": "a/1", "email": 'x"y@z'},
            "source": "web app",
            "segment": "vip",
            "points": 12,
            "tags": ["a"],
        }
    )
    assert rendered == RenderedRequest(
        "PUT",
        "https://api.example.com/v1/users/a%2F1?source=web%20app",
        [*DEFAULT_HEADERS.items(), ("Authorization", "Bearer abc"), ("X-Segment", "vip")],
        b'{\n  "email": "x\\"y@z",\n  "points": 12,\n  "tags": ["a"]\n}',
    )


def test_one_template_renders_concurrently() -> None:
    template = compile_(url="https://h/${id}", headers={"X-Id": "${id}"}, body='{"id": "${id}", "n": ${n}}')

    def render(n: int) -> RenderedRequest:
        return template.render({"id": f"u{n}", "n": n})

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(render, range(2000)))
    for n, rendered in enumerate(results):
        assert rendered.url == f"https://h/u{n}"
        assert rendered.headers[-1] == ("X-Id", f"u{n}")
        assert json.loads(rendered.body or b"") == {"id": f"u{n}", "n": n}


def test_rendering_is_fast() -> None:
    template = compile_(
        url="https://api.example.com/v1/users/${id}/events",
        headers={"X-User": "${id}", "Authorization": "Bearer abc"},
        body='{"email": "${email}", "name": "${first} ${last}", "points": ${points}}',
    )
    variables = {"id": "u-123", "email": "a@example.com", "first": "Zoë", "last": "X", "points": 5}
    started = time.perf_counter()
    for _ in range(10_000):
        template.render(variables)
    assert time.perf_counter() - started < 2.0
