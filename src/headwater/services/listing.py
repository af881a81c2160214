"""List queries shared by every collection: ``property=`` filters, ``orderby``, ``limit``, ``count`` and
``continuationToken``, as the Flow Service documents them.

Filters: ``property=PATH OP VALUE`` with OP one of ``== != > < >= <=``; PATH is dotted and may step into
arrays with ``[]`` (``sourceConnectionIds[]==a``); a comma list of values means any of them; repeated
``property`` parameters must all hold; ``property=PATH`` alone means the field exists. Values may be
quoted (``name=="CRMToAEP"``). Unquoted values compare as numbers or booleans when the field is one.

Unfiltered lists ordered by a stored column page in SQL; anything else is filtered and ordered in Python
over the scope's resources (a sandbox holds thousands of flows, not millions).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from headwater.errors import BadRequest
from headwater.stores.metadata import MetadataStore, Resource, Scope
from headwater.stores.metadata.base import OrderColumn

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_FILTER = re.compile(r"^\s*(?P<path>[^=!<>]+?)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<value>.*?)\s*$")
_SQL_ORDER: dict[str, OrderColumn] = {
    "createdAt": "createdAt",
    "updatedAt": "updatedAt",
    "name": "name",
    "id": "id",
}


@dataclass(frozen=True)
class Filter:
    path: tuple[str, ...]
    op: str | None
    values: tuple[str, ...]
    quoted: tuple[bool, ...]

    def matches(self, doc: Any) -> bool:
        found = list(_resolve(doc, self.path))
        if self.op is None:
            return any(v is not None for v in found)
        if self.op == "!=":
            return not any(
                _equal(v, w, q) for v in found for w, q in zip(self.values, self.quoted, strict=True)
            )
        if self.op == "==":
            return any(_equal(v, w, q) for v in found for w, q in zip(self.values, self.quoted, strict=True))
        return any(
            _compare(v, w, q, self.op) for v in found for w, q in zip(self.values, self.quoted, strict=True)
        )


@dataclass(frozen=True)
class ListQuery:
    filters: tuple[Filter, ...] = ()
    order_path: tuple[str, ...] = ("createdAt",)
    descending: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    count: bool = False
    passthrough: dict[str, list[str]] = field(default_factory=dict)

    @property
    def order_key(self) -> str:
        return ".".join(self.order_path)


def parse_query(
    params: Iterable[tuple[str, str]], default_order: str = "createdAt", service: str = "FLOW"
) -> ListQuery:
    """Parse list parameters; errors carry codes of ``service`` (FLOW, SCHEMA, CAT, CONV).

    A ``continuationToken`` (or a ``start`` that is one: the Schema Registry's ``_page.next``) carries the
    offset and the query it continues (filters, order, limit), so that ``?continuationToken=T`` alone
    is the next page, as a client reading only the token after ``=`` (aepp) asks for it. Parameters
    given beside the token win over the token's."""
    given = list(params)
    offset = 0
    inherited: list[tuple[str, str]] = []
    for key, value in given:
        if key == "continuationToken":
            offset, inherited = decode_query_token(value, service)
        elif key == "start":
            if value.strip().isdigit():
                offset = int_param("start", value, 0, 10**9, service)
            else:
                offset, inherited = decode_query_token(value, service, "start")
    present = {key.lower() for key, _ in given}
    given += [(k, v) for k, v in inherited if k.lower() not in present]
    filters: list[Filter] = []
    order = default_order
    limit, count = DEFAULT_LIMIT, False
    passthrough: dict[str, list[str]] = {}
    for key, value in given:
        if key == "property":
            filters.append(parse_filter(value, service))
            passthrough.setdefault(key, []).append(value)
        elif key.lower() == "orderby":
            order = value
            passthrough.setdefault(key, []).append(value)
        elif key == "limit":
            limit = int_param("limit", value, 1, MAX_LIMIT, service)
            passthrough.setdefault(key, []).append(value)
        elif key == "count":
            count = value.lower() in ("true", "1", "yes")
    order = order.strip()
    descending = order.startswith("-")
    if not order.lstrip("+-").strip():  # an empty orderby: the default, in its direction
        order, descending = default_order, default_order.startswith("-")
    order = order.lstrip("+-").strip()
    return ListQuery(tuple(filters), _split_path(order), descending, limit, offset, count, passthrough)


def parse_filter(text: str, service: str = "FLOW") -> Filter:
    match = _FILTER.match(text)
    if match is None:
        path = text.strip()
        if not path or any(c in path for c in "=<>!"):
            raise BadRequest(
                f"property filter {text!r} is not PATH, or PATH OP VALUE with OP one of == != > < >= <=.",
                code=f"{service}-1400-400",
                report={"parameter": "property"},
            )
        return Filter(_split_path(path), None, (), ())
    values, quoted = [], []
    for raw in _split_values(match["value"]):
        is_quoted = len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'"
        values.append(raw[1:-1] if is_quoted else raw)
        quoted.append(is_quoted)
    return Filter(_split_path(match["path"]), match["op"], tuple(values), tuple(quoted))


def pages_in_sql(query: ListQuery) -> bool:
    """True when the page comes straight from SQL (no filter, ordered by a stored column): cheap."""
    return not query.filters and query.order_key in _SQL_ORDER


def run(
    store: MetadataStore,
    kind: str,
    scope: Scope,
    query: ListQuery,
    render: Callable[[Resource], dict[str, Any]],
    prefilter: Callable[[dict[str, Any]], bool] | None = None,
) -> tuple[list[dict[str, Any]], int | None, int | None]:
    """Return (rendered page, next offset or None, total when counted)."""
    sql_order = _SQL_ORDER.get(query.order_key)
    if prefilter is None and sql_order is not None and pages_in_sql(query):
        page = store.list(
            kind,
            scope,
            order=sql_order,
            descending=query.descending,
            offset=query.offset,
            limit=query.limit + 1,
            count=query.count,
        )
        docs = [render(r) for r in page.items]
        more = len(docs) > query.limit
        return docs[: query.limit], (query.offset + query.limit if more else None), page.total
    docs = [render(r) for r in store.list(kind, scope).items]
    return apply(docs, query, prefilter)


def apply(
    docs: list[dict[str, Any]], query: ListQuery, prefilter: Callable[[dict[str, Any]], bool] | None = None
) -> tuple[list[dict[str, Any]], int | None, int | None]:
    """Filter, order and page documents already in memory (used for static catalogs too)."""
    selected = [
        d for d in docs if (prefilter is None or prefilter(d)) and all(f.matches(d) for f in query.filters)
    ]
    if query.order_key != "createdAt" or query.descending:
        selected.sort(key=lambda d: _sort_key(d, query.order_path), reverse=query.descending)
    total = len(selected)
    page = selected[query.offset : query.offset + query.limit]
    more = query.offset + query.limit < total
    return page, (query.offset + query.limit if more else None), total


def next_href(base_path: str, query: ListQuery, next_offset: int | None) -> dict[str, Any]:
    """``{"next": {"href": "<base_path>?continuationToken=T"}}``: the token is the only parameter (it
    carries the query), has no ``=`` and needs no escaping; ``{}`` on the last page."""
    if next_offset is None:
        return {}
    return {"next": {"href": f"{base_path}?continuationToken={encode_token(next_offset, query)}"}}


def encode_token(offset: int, query: ListQuery | None = None) -> str:
    data: dict[str, Any] = {"o": offset}
    if query is not None and query.passthrough:
        data["q"] = [[k, v] for k, vs in query.passthrough.items() for v in vs]
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def decode_token(token: str, service: str = "FLOW") -> int:
    return decode_query_token(token, service)[0]


def decode_query_token(
    token: str, service: str = "FLOW", parameter: str = "continuationToken"
) -> tuple[int, list[tuple[str, str]]]:
    """(offset, the parameters of the query the token continues); BadRequest if this server did not
    issue it."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = data["o"]
        pairs = data.get("q", [])
        if (
            isinstance(offset, int)
            and offset >= 0
            and isinstance(pairs, list)
            and all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs)
        ):
            return offset, [(k, v) for k, v in pairs]
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    raise BadRequest(
        f"{parameter} is not one this server issued; start again without it.",
        code=f"{service}-1401-400",
        report={"parameter": parameter},
    )


def int_param(name: str, value: str, low: int, high: int, service: str = "FLOW") -> int:
    """An integer query parameter in [low, high], else a 400 naming it."""
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise BadRequest(
            f"{name} must be an integer from {low} to {high}.",
            code=f"{service}-1402-400",
            report={"parameter": name},
        )
    return number


def _split_path(path: str) -> tuple[str, ...]:
    parts: list[str] = []
    for part in re.split(r"(?<!\\)\.", path.strip()):
        part = part.replace("\\.", ".")
        if part.endswith("[]"):
            parts.extend([part[:-2], "[]"])
        else:
            parts.append(part)
    return tuple(p for p in parts if p)


def _split_values(text: str) -> list[str]:
    values, current, quote = [], "", ""
    for ch in text:
        if quote:
            current += ch
            if ch == quote:
                quote = ""
        elif ch in "\"'" and not current.strip():
            quote = ch
            current += ch
        elif ch == ",":
            values.append(current.strip())
            current = ""
        else:
            current += ch
    values.append(current.strip())
    return values


def _resolve(doc: Any, path: tuple[str, ...]) -> Iterable[Any]:
    if not path:
        if isinstance(doc, list):
            yield from doc
        else:
            yield doc
        return
    head, rest = path[0], path[1:]
    if head == "[]":
        if isinstance(doc, list):
            for item in doc:
                yield from _resolve(item, rest)
        return
    if isinstance(doc, Mapping) and head in doc:
        yield from _resolve(doc[head], rest)
    elif isinstance(doc, list):
        for item in doc:
            yield from _resolve(item, path)


def _typed(field_value: Any, raw: str, quoted: bool) -> Any:
    if quoted or isinstance(field_value, str):
        return raw
    if isinstance(field_value, bool):
        return raw.lower() == "true" if raw.lower() in ("true", "false") else raw
    if isinstance(field_value, int | float):
        try:
            return float(raw)
        except ValueError:
            return raw
    if field_value is None and raw == "null":
        return None
    return raw


def _equal(field_value: Any, raw: str, quoted: bool) -> bool:
    typed = _typed(field_value, raw, quoted)
    if (
        isinstance(field_value, int | float)
        and not isinstance(field_value, bool)
        and isinstance(typed, float)
    ):
        return float(field_value) == typed
    return bool(field_value == typed)


def _compare(field_value: Any, raw: str, quoted: bool, op: str) -> bool:
    typed = _typed(field_value, raw, quoted)
    if field_value is None or (type(typed) is str and not isinstance(field_value, str)):
        return False
    try:
        if op == ">":
            return bool(field_value > typed)
        if op == "<":
            return bool(field_value < typed)
        if op == ">=":
            return bool(field_value >= typed)
        return bool(field_value <= typed)
    except TypeError:
        return False


def _sort_key(doc: Any, path: tuple[str, ...]) -> tuple[int, Any]:
    values = list(_resolve(doc, path))
    value = values[0] if values else None
    if value is None:
        return (2, "")
    if isinstance(value, bool | int | float):
        return (0, float(value))
    return (1, str(value).lower())
