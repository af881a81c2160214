"""The request template of an HTTP destination: compile-time checks, rendering and encoding per place."""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote

import pytest

from headwater.runtime.delivery.template import (
    DEFAULT_HEADERS,
    MissingVariable,
    RenderedRequest,
    RenderError,
    RequestTemplate,
    TemplateInvalid,
    effective_headers,
    masked_headers,
)

URL = "https://api.example.com/v1/events"


def compile_(**params: Any) -> RequestTemplate:
    return RequestTemplate.compile({"method": "POST", "url": URL, **params})


def errors_of(**params: Any) -> list[dict[str, str]]:
    with pytest.raises(TemplateInvalid) as caught:
        RequestTemplate.compile({"method": "POST", "url": URL, **params})
    return caught.value.errors


def only_error(**params: Any) -> dict[str, str]:
    errors = errors_of(**params)
    assert len(errors) == 1, errors
    return errors[0]


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


@pytest.mark.parametrize(
    "url",
    [
        "https://${host}/x",
        "https://api.${env}.example.com/x",
        "https://api.example.com:${port}/x",
        "https://${user}@api.example.com/x",
        "http://api.example.com${path}",
    ],
)
def test_placeholder_in_scheme_host_or_port_is_refused(url: str) -> None:
    error = only_error(url=url)
    assert error["path"] == "params.url"
    assert "host" in error["message"] and "outbound policy" in error["message"]


def test_placeholders_in_path_query_and_fragment_are_allowed() -> None:
    template = compile_(url="https://api.example.com:8443/${a}?b=${b}#${c}")
    rendered = template.render({"a": "1", "b": "2", "c": "3"})
    assert rendered.url == "https://api.example.com:8443/1?b=2#3"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        (None, "is required"),
        ("", "is required"),
        ("ftp://example.com/x", "http:// or https://"),
        ("${base}/x", "http:// or https://"),
        ("example.com/x", "http:// or https://"),
        ("https:///x", "has no host"),
        ("https://example.com:99999/x", "invalid host or port"),
        ("https://example.com/a b", "percent-encode"),
        ("https://evil.example\\@good.example/x", "percent-encode"),
        ("https://example.com/a\tb", "percent-encode"),
    ],
)
def test_bad_urls_are_refused(url: Any, fragment: str) -> None:
    error = only_error(url=url)
    assert error["path"] == "params.url"
    assert fragment in error["message"]


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


def test_invalid_json_body_is_refused_with_line_and_column() -> None:
    body = '{\n  "email": "${email}",\n  "count": ${count}\n  "x": 1\n}'
    error = only_error(body=body)
    assert error["path"] == "params.body"
    assert "is not valid JSON: Expecting ',' delimiter at line 4 column 3" in error["message"]


def test_json_error_column_counts_the_placeholders_as_written() -> None:
    body = '{"a": "${a_long_variable_name}" "b": 1}'
    error = only_error(body=body)
    column = body.index('"b"') + 1  # one-based, in the template as written
    assert f"line 1 column {column}" in error["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"a": ${n} "b": 1}', "Expecting ',' delimiter"),
        ('{"a": "${n}}', "Unterminated string starting at line 1 column 7"),
        ("{${k}: 1}", "Expecting property name"),
        ('{"a": NaN}', "NaN is not a JSON value"),
        ('{"a": 1}}', "Extra data"),
        ("[", "Expecting value"),
    ],
)
def test_invalid_json_bodies(body: str, fragment: str) -> None:
    error = only_error(body=body)
    assert error["path"] == "params.body" and fragment in error["message"]


def test_body_must_be_a_string() -> None:
    error = only_error(body={"email": "${email}"})
    assert error == {"path": "params.body", "message": error["message"]}
    assert "must be a string" in error["message"]


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


def test_variables_are_listed_once_in_first_use_order() -> None:
    template = compile_(
        url="https://h/${path}/${ id }",
        headers={"X-${kind}": "${token}", "X-Id": "${id}"},
        body='{"a": "${user.email}", "b": ${count}, "c": "${path}"}',
    )
    assert template.variables == ("path", "id", "kind", "token", "user.email", "count")


def test_spaces_inside_the_braces_are_ignored() -> None:
    template = compile_(url="https://h/${ email }/${email}")
    assert template.variables == ("email",)
    assert template.render({"email": "a"}).url == "https://h/a/a"


def test_lone_dollar_is_literal_text() -> None:
    template = compile_(url="https://h/price$5", headers={"X-Cost": "$ {x} $"}, body='{"a": "$${v}$"}')
    rendered = template.render({"v": "1"})
    assert rendered.url == "https://h/price$5"
    assert ("X-Cost", "$ {x} $") in rendered.headers
    assert json.loads(rendered.body or b"") == {"a": "$1$"}
    assert template.variables == ("v",)


@pytest.mark.parametrize(
    "placeholder",
    ["${}", "${ }", "${1x}", "${a b}", '${name!"x"}', "${name?upper_case}", "${a+b}", "${a.}", "${.a}"],
)
@pytest.mark.parametrize("place", ["url", "header", "body"])
def test_malformed_placeholders_are_refused(placeholder: str, place: str) -> None:
    params: dict[str, dict[str, Any]] = {
        "url": {"url": f"https://h/{placeholder}"},
        "header": {"headers": {"X-A": placeholder}},
        "body": {"body": f'{{"a": "{placeholder}"}}'},
    }
    error = only_error(**params[place])
    assert (
        error["path"] == {"url": "params.url", "header": "params.headers.X-A", "body": "params.body"}[place]
    )
    assert f"only ${{name}} and ${{a.b}} placeholders are supported, not {placeholder}" in error["message"]


@pytest.mark.parametrize("text", ["https://h/${email", "https://h/${a ${b}"])
def test_unterminated_placeholder_is_refused(text: str) -> None:
    error = only_error(url=text)
    assert error["path"] == "params.url" and "unterminated ${" in error["message"]


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"url": "https://h/${guest.email}"}, "params.url"),
        ({"headers": {"X-Email": "${guest.email}"}}, "params.headers.X-Email"),
        ({"body": '{"e": "${guest.email}"}'}, "params.body"),
        ({"body": '{"g": ${guest}}'}, "params.body"),
        ({"body": '{"g": "${ guest.dataExtensions.x }"}'}, "params.body"),
    ],
)
def test_guest_variables_are_refused(params: dict[str, Any], path: str) -> None:
    error = only_error(**params)
    assert error["path"] == path
    assert "guest data object cannot be used in a connection" in error["message"]
    assert "bind a plain variable such as ${" in error["message"]


def test_guest_refusal_suggests_the_plain_name() -> None:
    assert "such as ${email}" in only_error(body='{"e": "${guest.email}"}')["message"]


def test_names_merely_starting_with_guest_are_fine() -> None:
    assert compile_(body='{"a": "${guests}", "b": "${guestEmail}"}').variables == ("guests", "guestEmail")


# --- method ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_methods(method: str) -> None:
    assert RequestTemplate.compile({"method": method, "url": URL}).render({}).method == method


@pytest.mark.parametrize("method", ["post", "GET", "Put", "", None, 1])
def test_bad_methods_are_refused(method: Any) -> None:
    error = only_error(method=method)
    assert error["path"] == "params.method" and "POST, PUT, PATCH or DELETE" in error["message"]


def test_missing_method_is_refused() -> None:
    with pytest.raises(TemplateInvalid) as caught:
        RequestTemplate.compile({"url": URL})
    assert [error["path"] for error in caught.value.errors] == ["params.method"]


# --- headers ---------------------------------------------------------------------------------------


def test_effective_headers_defaults() -> None:
    assert effective_headers(None) == DEFAULT_HEADERS
    assert effective_headers({}) == DEFAULT_HEADERS
    assert effective_headers({}) is not DEFAULT_HEADERS


def test_effective_headers_override_case_insensitively_in_place() -> None:
    headers = effective_headers(
        {"X-One": "1", "accept": "text/csv", "CONTENT-TYPE": "text/plain", "X-Two": "2"}
    )
    assert list(headers.items()) == [
        ("accept", "text/csv"),
        ("Accept-Encoding", "gzip"),
        ("CONTENT-TYPE", "text/plain"),
        ("X-One", "1"),
        ("X-Two", "2"),
    ]


def test_effective_headers_empty_string_removes_a_header() -> None:
    assert effective_headers({"accept-encoding": "", "X-Gone": ""}) == {
        "Accept": "application/json",
        "Content-Type": "application/json",
    }


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


@pytest.mark.parametrize(
    "headers",
    [{"X-A": "a\r\nb"}, {"X-A": "a\nb"}, {"X-A\r\nB": "1"}, {"X-A": "a\x00"}],
)
def test_literal_line_break_in_a_header_is_refused(headers: dict[str, str]) -> None:
    error = only_error(headers=headers)
    assert error["path"] == f"params.headers.{next(iter(headers))}"
    assert "line break" in error["message"]


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "host",
        "Content-Length",
        "TRANSFER-ENCODING",
        "Connection",
        "Upgrade",
        "TE",
        "Trailer",
        "Keep-Alive",
        "Proxy-Connection",
    ],
)
def test_reserved_headers_are_refused(name: str) -> None:
    assert only_error(headers={name: "x"}) == {
        "path": f"params.headers.{name}",
        "message": "is set by Headwater (a reserved header): remove it from the headers",
    }


@pytest.mark.parametrize("name", ["Bad Name", "X:Y", "X-Ä", "X(1)", "X-${a} b", ""])
def test_invalid_header_names_are_refused(name: str) -> None:
    error = only_error(headers={name: "1"})
    assert error["path"] == f"params.headers.{name}"
    assert "not a valid header name" in error["message"]


def test_token_punctuation_is_a_valid_header_name() -> None:
    name = "X-!#$%&'*+.^_`|~1"
    assert (name, "v") in compile_(headers={name: "v"}).render({}).headers


@pytest.mark.parametrize("headers", [["X-A", "1"], "X-A: 1"])
def test_headers_must_be_an_object(headers: Any) -> None:
    assert only_error(headers=headers)["path"] == "params.headers"


def test_header_values_must_be_strings() -> None:
    error = only_error(headers={"X-Count": 5})
    assert error["path"] == "params.headers.X-Count" and "must be a string" in error["message"]


def test_header_given_twice_in_different_case_is_refused() -> None:
    error = only_error(headers={"X-Id": "1", "x-id": "2"})
    assert error["path"] == "params.headers.x-id" and "given twice" in error["message"]


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


def test_every_problem_is_listed() -> None:
    errors = errors_of(
        method="get",
        url="https://${host}/x",
        headers={"Host": "h", "X-A": "${guest.email}"},
        body='{"a": ${a} "b": 1}',
    )
    assert [error["path"] for error in errors] == [
        "params.method",
        "params.url",
        "params.headers.Host",
        "params.headers.X-A",
        "params.body",
    ]
    with pytest.raises(TemplateInvalid) as caught:
        RequestTemplate.compile({"method": "get", "url": URL})
    assert isinstance(caught.value, ValueError)
    assert "params.method" in str(caught.value)


def test_params_must_be_an_object() -> None:
    with pytest.raises(TemplateInvalid) as caught:
        RequestTemplate.compile("POST https://h")  # type: ignore[arg-type]
    assert caught.value.errors[0]["path"] == "params"


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


def test_template_and_rendered_request_are_immutable() -> None:
    template = compile_(headers={"X-A": "${a}"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        template.method = "PUT"  # type: ignore[misc]
    rendered = template.render({"a": "1"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        rendered.url = "https://elsewhere"  # type: ignore[misc]
    rendered.headers.append(("X-Extra", "1"))
    rendered.headers[0] = ("Accept", "changed")
    assert template.render({"a": "2"}).headers == [*DEFAULT_HEADERS.items(), ("X-A", "2")]


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
