"""The request template of an HTTP destination, compile-time and save-time checks: what a template may hold
in its method, url, headers and body, the refusals listing every problem, and the variables it uses. Rendering
is in tests/test_delivery_render.py."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from headwater.engines.template import (
    DEFAULT_HEADERS,
    RequestTemplate,
    TemplateInvalid,
    effective_headers,
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


# --- url -------------------------------------------------------------------------------------------


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
