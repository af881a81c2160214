"""The request template of an HTTP destination: FreeMarker-like ``${name}`` and ``${a.b}`` placeholders
in the url, the header names and values and the JSON body, compiled once and rendered once per record.

    RequestTemplate.compile(params) -> RequestTemplate     raises TemplateInvalid (every problem found)
    RequestTemplate.render(variables) -> RenderedRequest   raises RenderError / MissingVariable
    effective_headers(headers) -> dict                     DEFAULT_HEADERS overridden; "" removes one
    masked_headers(headers) -> list                        sensitive values masked, for display

A variable's text is encoded for where it lands: percent-encoded in the url, JSON-escaped inside a JSON
string of the body, JSON-encoded where it stands bare in the body, refused in a header if it holds a line
break. A compiled template is immutable: one instance is shared by every task and thread.

Errors, all terminal (the same record with the same template fails the same way on every retry):

    ValueError
    ├── TemplateInvalid        the destination's params are wrong; ``errors`` lists {path, message}
    └── RenderError            this record cannot be rendered; ``variable`` and ``where`` say why
        └── MissingVariable    a variable is absent or None
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from itertools import chain, zip_longest
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

DEFAULT_HEADERS: dict[str, str] = {
    "Accept": "application/json",
    "Accept-Encoding": "gzip",
    "Content-Type": "application/json",
}
# fmt: off
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade", "te",
                              "trailer", "keep-alive", "proxy-connection"})
_SENSITIVE = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SENSITIVE_PARTS = ("token", "secret", "password", "passwd", "api-key", "apikey", "api_key", "x-auth",
                    "signature", "session")
# fmt: on
_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 7230 token
_LINE_BREAK = re.compile(r"[\r\n\x00]")
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")  # URL parsers disagree on a raw backslash
_SURROGATE = re.compile("[\ud800-\udfff]")  # not text: cannot be encoded as UTF-8
_AUTHORITY_END = re.compile(r"[/?#]")
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch  # what quote(text, safe="") leaves as it is
_dumps = orjson.dumps

# Compiled text: the literal head, then (index of a variable, literal after it) pairs. The body's pairs
# also say whether the placeholder stands bare (JSON value) or inside a JSON string (escaped text).
_Parts = tuple[str, tuple[tuple[int, str], ...]]
_BodyParts = tuple[bytes, tuple[tuple[int, bool, bytes], ...]]


class TemplateInvalid(ValueError):
    """The request params cannot be compiled; ``errors`` holds every problem as {path, message}."""

    transient = False

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{error['path']} {error['message']}" for error in errors))
        self.errors = errors


class RenderError(ValueError):
    """A record's variables cannot be put into the request; ``where`` is "url", "header" or "body"."""

    transient = False

    def __init__(self, message: str, variable: str | None, where: str) -> None:
        super().__init__(message)
        self.variable = variable
        self.where = where


class MissingVariable(RenderError):
    """A variable the template uses is absent from the record, or None."""


@dataclass(frozen=True, slots=True)
class RenderedRequest:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None


# A frozen dataclass's generated __init__ goes through object.__setattr__ once per field, a fifth of a small
# render; setting the slots through their descriptors builds the same object in about half the time.
_new = object.__new__
_set_method, _set_url, _set_headers, _set_body = (
    RenderedRequest.__dict__[name].__set__ for name in ("method", "url", "headers", "body")
)


def effective_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """DEFAULT_HEADERS overridden case-insensitively by ``headers`` (the given spelling wins); a header
    given as "" is removed. Defaults come first, then the other headers in the given order."""
    merged = {name.lower(): (name, value) for name, value in DEFAULT_HEADERS.items()}
    for name, value in (headers or {}).items():
        merged[name.lower()] = (name, value)
    return {name: value for name, value in merged.values() if value != ""}


def masked_headers(headers: Iterable[tuple[str, str]], mask: str = "********") -> list[tuple[str, str]]:
    """The headers for display (test responses, dead letters, logs), sensitive values replaced by mask."""
    return [(name, mask if _is_sensitive(name) else value) for name, value in headers]


def _is_sensitive(name: str) -> bool:
    lower = name.lower()
    return lower in _SENSITIVE or any(part in lower for part in _SENSITIVE_PARTS)


@dataclass(frozen=True, slots=True)
class RequestTemplate:
    method: str
    variables: tuple[str, ...]
    _lookups: tuple[tuple[str, tuple[str, ...] | None], ...] = field(repr=False)  # (name, dotted path)
    _uses: tuple[tuple[str, str], ...] = field(repr=False)  # (where, described) of each first use
    _url: _Parts = field(repr=False)
    _headers: tuple[tuple[str, str], ...] = field(repr=False)  # templated ones are replaced at render
    _templated: tuple[tuple[int, _Parts | None, _Parts | None], ...] = field(repr=False)
    _body: _BodyParts | None = field(repr=False)

    @classmethod
    def compile(cls, params: Mapping[str, Any]) -> RequestTemplate:
        """Compile a destination's request params; raises TemplateInvalid listing every problem."""
        if not isinstance(params, Mapping):
            raise TemplateInvalid([{"path": "params", "message": "must be an object with method and url"}])
        compiler = _Compiler()
        method = params.get("method")
        if method not in _METHODS:
            compiler.error(
                "params.method", f"must be POST, PUT, PATCH or DELETE in upper case, not {method!r}"
            )
        url = compiler.url(params.get("url"))
        headers = compiler.headers(params.get("headers"))
        body = compiler.body(params.get("body"))
        if compiler.errors:
            raise TemplateInvalid(compiler.errors)
        templated = tuple(
            (index, _or_none(name), _or_none(value))
            for index, (name, value) in enumerate(headers)
            if name[1] or value[1]
        )
        lookups = tuple((name, tuple(name.split(".")) if "." in name else None) for name in compiler.names)
        fixed = tuple((name[0], value[0]) for name, value in headers)
        return cls(
            str(method), tuple(compiler.names), lookups, tuple(compiler.uses), url, fixed, templated, body
        )

    def render(self, variables: Mapping[str, Any]) -> RenderedRequest:
        """The request for one record. Raises MissingVariable for the first variable without a value (in
        url, headers, body order), RenderError for a value that cannot be put where it is used."""
        values: list[Any] = []
        for name, path in self._lookups:
            value = variables.get(name)  # a flat "a.b" key first, then a walk through nested mappings
            if value is None and path is not None:
                value = _walk(variables, path)
            if value is None:
                where, described = self._uses[len(values)]
                message = f"variable {name!r} has no value (used in {described}): give it a value for every"
                raise MissingVariable(
                    f"{message} record, or remove ${{{name}}} from the template", name, where
                )
            values.append(value)
        names = self.variables
        url = _url(self._url, values, names) if self._url[1] else self._url[0]
        headers = list(self._headers)
        for index, name_parts, value_parts in self._templated:
            name, value = headers[index]
            if name_parts is not None:
                name = _header_name(name_parts, values, names)
            if value_parts is not None:
                value = _header_value(value_parts, values, names)
            headers[index] = (name, value)
        body = None if self._body is None else _body(self._body, values, names)
        request = _new(RenderedRequest)
        _set_method(request, self.method)
        _set_url(request, url)
        _set_headers(request, headers)
        _set_body(request, body)
        return request


def _or_none(parts: _Parts) -> _Parts | None:
    return parts if parts[1] else None


def _walk(variables: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = variables
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
        if current is None:
            return None
    return current


def _text(value: Any, name: str, where: str) -> str:
    """A value as text: str as is, bool as true/false, numbers as JSON numbers, dict/list as JSON."""
    if value.__class__ is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, float | dict | list | tuple):
        return _json(value, name, where).decode()
    if isinstance(value, Decimal) and not value.is_finite():
        raise _not_finite(name, where)
    if isinstance(value, datetime):
        return value.isoformat()  # as orjson writes it where the placeholder stands bare
    return str(value)


def _json(value: Any, name: str, where: str) -> bytes:
    if value.__class__ is int:
        return int.__repr__(value).encode()  # orjson refuses ints past 64 bits
    try:
        encoded = orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:  # orjson.JSONEncodeError
        message = f"variable {name!r} cannot be written as JSON ({exc}): bind a string, number, boolean,"
        raise RenderError(f"{message} object or array", name, where) from exc
    if b"null" in encoded and _has_non_finite(value):  # orjson writes NaN and infinity as null
        raise _not_finite(name, where)
    return encoded


def _json_default(value: Any) -> Any:
    if not isinstance(value, Decimal):
        return str(value)
    if not value.is_finite():
        raise TypeError("NaN or infinity is not a JSON number")
    return orjson.Fragment(str(value))  # the exact digits, as a JSON number


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    return isinstance(value, list | tuple) and any(_has_non_finite(item) for item in value)


def _not_finite(name: str, where: str) -> RenderError:
    message = f"variable {name!r} holds NaN or infinity, which JSON cannot carry (used in the {where}):"
    return RenderError(f"{message} bind a finite number or leave it empty", name, where)


def _url(parts: _Parts, values: list[Any], names: tuple[str, ...]) -> str:
    head, tail = parts
    pieces = [head]
    for index, literal in tail:
        value = values[index]
        text = value if value.__class__ is str else _text(value, names[index], "url")
        if _UNRESERVED(text) is None:  # quote() is slow even when it has nothing to do
            try:
                text = quote(text, safe="")
            except UnicodeEncodeError as exc:
                message = (
                    f"variable {names[index]!r} is not valid text ({exc.reason}): fix it in the bindings"
                )
                raise RenderError(message, names[index], "url") from exc
        pieces.append(text)
        pieces.append(literal)
    return "".join(pieces)


def _header_value(parts: _Parts, values: list[Any], names: tuple[str, ...]) -> str:
    head, tail = parts
    pieces = [head]
    for index, literal in tail:
        value = values[index]
        text = value if value.__class__ is str else _text(value, names[index], "header")
        if _LINE_BREAK.search(text):
            message = f"variable {names[index]!r} holds a line break, which is refused in headers:"
            raise RenderError(
                f"{message} strip CR, LF and NUL from it in the bindings", names[index], "header"
            )
        pieces.append(text)
        pieces.append(literal)
    return "".join(pieces)


def _header_name(parts: _Parts, values: list[Any], names: tuple[str, ...]) -> str:
    name = _header_value(parts, values, names)
    if _TOKEN.fullmatch(name) and name.lower() not in RESERVED_HEADERS:
        return name
    variable = names[parts[1][0][0]]
    message = f"header name {name[:60]!r} made with variable {variable!r} is refused: a name is letters,"
    message += " digits and !#$%&'*+-.^_`|~ only, and not one that Headwater sets (Host...): bind another"
    raise RenderError(message, variable, "header")


def _body(parts: _BodyParts, values: list[Any], names: tuple[str, ...]) -> bytes:
    head, tail = parts
    pieces = [head]
    for index, bare, literal in tail:
        value = values[index]
        if value.__class__ is str:  # the common case, in one call
            try:
                encoded = _dumps(value)
            except TypeError:  # an unpaired surrogate: let _json raise the RenderError
                encoded = _json(value, names[index], "body")
        else:
            encoded = _json(value if bare else _text(value, names[index], "body"), names[index], "body")
        pieces.append(encoded if bare else encoded[1:-1])  # inside a string: escaped, without quotes
        pieces.append(literal)
    return b"".join(pieces)


class _Compiler:
    """Collects every problem of one params object and numbers the variables in first-use order."""

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []
        self.names: list[str] = []
        self.uses: list[tuple[str, str]] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "message": message})

    def split(self, text: str, path: str) -> tuple[list[str], list[str]]:
        """The placeholders' raw text (``${ name }``) and the n + 1 literals around them; malformed
        placeholders are reported and dropped."""
        literals, raws = [""], list[str]()
        position = 0
        while (start := text.find("${", position)) >= 0:
            end = text.find("}", start + 2)
            literals[-1] += text[position:start]
            raw, name = text[start : end + 1], text[start + 2 : end].strip()
            if end < 0 or "${" in raw[2:] or "\n" in raw:
                self.error(path, f"has an unterminated ${{ at character {start + 1}: close it with }}")
                return literals, raws
            if not _NAME.fullmatch(name):
                self.error(
                    path, f"only ${{name}} and ${{a.b}} placeholders are supported, not {raw}: {_NO_FTL}"
                )
            elif name == "guest" or name.startswith("guest."):
                plain = name.rsplit(".", 1)[-1] if "." in name else "email"
                self.error(
                    path, f"uses {raw}, but {_NO_GUEST}: bind a plain variable such as ${{{plain}}} instead"
                )
            else:
                raws.append(raw)
                literals.append("")
            position = end + 1
        literals[-1] += text[position:]
        return literals, raws

    def parts(self, literals: list[str], raws: list[str], where: str, described: str) -> _Parts:
        indices = [self.variable(raw[2:-1].strip(), where, described) for raw in raws]
        return literals[0], tuple(zip(indices, literals[1:], strict=True))

    def variable(self, name: str, where: str, described: str) -> int:
        if name not in self.names:
            self.names.append(name)
            self.uses.append((where, described))
        return self.names.index(name)

    def url(self, url: object) -> _Parts:
        path = "params.url"
        if not isinstance(url, str) or not url:
            self.error(path, "is required: give the full address, e.g. https://api.example.com/v1/events")
            return "", ()
        literals, raws = self.split(url, path)
        if not url.lower().startswith(("http://", "https://")):
            self.error(path, "must start with http:// or https:// followed by a fixed host")
            return "", ()
        host_start = url.index("//") + 2
        found = _AUTHORITY_END.search(url, host_start)
        authority = url[: found.start() if found else len(url)]
        try:
            if "${" in authority[host_start:]:
                self.error(path, f"has a placeholder in the user info, host or port: {_FIXED_HOST}")
            elif not urlsplit(authority).hostname:
                self.error(path, "has no host: write it as https://host/path")
            else:
                _ = urlsplit(authority).port  # raises ValueError for a port that is not a number in range
        except ValueError as exc:
            self.error(path, f"has an invalid host or port ({exc}): write it as https://host:port/path")
        if any(_URL_UNSAFE.search(literal) for literal in literals):
            self.error(
                path, "contains a space, backslash or control character: percent-encode it (a space is %20)"
            )
        return self.parts(literals, raws, "url", "the url")

    def headers(self, given: object) -> list[tuple[_Parts, _Parts]]:
        if given is not None and not isinstance(given, Mapping):
            self.error("params.headers", "must be an object of header names to values")
            given = None
        valid: dict[str, str] = {}
        for name, value in (given or {}).items():
            path = f"params.headers.{name}"
            if not isinstance(name, str) or not isinstance(value, str):
                self.error(path, 'must be a string (give "" to remove a default header)')
            elif twin := next((other for other in valid if other.lower() == name.lower()), None):
                self.error(path, f"is given twice (as {twin} and {name}): header names are case-insensitive")
            else:
                valid[name] = value
        return [self.header(name, value) for name, value in effective_headers(valid).items()]

    def header(self, name: str, value: str) -> tuple[_Parts, _Parts]:
        path = f"params.headers.{name}"
        if _LINE_BREAK.search(name) or _LINE_BREAK.search(value):
            self.error(path, "has a line break in its name or value: a header is one line, remove it")
            return (name, ()), (value, ())
        literals, raws = self.split(name, path)
        if not name or any(literal and not _TOKEN.fullmatch(literal) for literal in literals):
            self.error(path, "is not a valid header name: use letters, digits and !#$%&'*+-.^_`|~ only")
        if name.lower() in RESERVED_HEADERS:
            self.error(path, "is set by Headwater (a reserved header): remove it from the headers")
        name_parts = self.parts(literals, raws, "header", "a header name")
        return name_parts, self.parts(*self.split(value, path), "header", f"the header {name}")

    def body(self, body: object) -> _BodyParts | None:
        path = "params.body"
        if body is None or body == "":
            return None
        if not isinstance(body, str) or _SURROGATE.search(body):
            self.error(path, "must be a string of UTF-8 text holding a JSON template, or null for no body")
            return None
        errors_before = len(self.errors)
        literals, raws = self.split(body, path)
        bare, in_string = [], False
        for literal in literals[:-1]:  # whether each placeholder stands inside a JSON string
            in_string = _ends_in_string(literal, in_string)
            bare.append(not in_string)
        if len(self.errors) == errors_before:
            # Stand-ins as long as the placeholders, so line and column point into the body as written.
            stand_ins = [
                "0".ljust(len(raw)) if alone else "x" * len(raw)
                for raw, alone in zip(raws, bare, strict=True)
            ]
            self.check_json("".join(chain.from_iterable(zip_longest(literals, stand_ins, fillvalue=""))))
        head, tail = self.parts(literals, raws, "body", "the body")
        return head.encode(), tuple(
            (i, alone, text.encode()) for (i, text), alone in zip(tail, bare, strict=True)
        )

    def check_json(self, sample: str) -> None:
        try:
            json.loads(sample, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            where = f"{exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}"
            self.error("params.body", f"is not valid JSON: {where}; fix the JSON ({_JSON_HINT})")
        except ValueError as exc:
            self.error("params.body", f"is not valid JSON: {exc}")


def _ends_in_string(literal: str, in_string: bool) -> bool:
    """Whether JSON text that starts inside a string (or not) ends inside one."""
    escaped = False
    for char in literal:
        if escaped:
            escaped = False
        elif in_string and char == "\\":
            escaped = True
        elif char == '"':
            in_string = not in_string
    return in_string


def _refuse_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value: write a number, or null")


_NO_FTL = (
    "FreeMarker defaults, built-ins and expressions are not evaluated; compute the value in the bindings"
)
_NO_GUEST = "the guest data object cannot be used in a connection"
_FIXED_HOST = "the host must be fixed to be checked against the outbound policy; use variables in the path"
_JSON_HINT = 'a placeholder for text goes inside quotes: "${email}", one for a number stands bare'
