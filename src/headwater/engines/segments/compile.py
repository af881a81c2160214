"""Segment definitions compiled to ONE vectorized DuckDB query over two relations the caller registers:

    fragments(cluster_id BIGINT, dataset_id VARCHAR, ts_ms BIGINT, attributes VARCHAR)  -- JSON objects
    events(cluster_id BIGINT, ts_ms BIGINT, body VARCHAR)                                -- JSON objects

The query returns ``cluster_id`` and one BOOLEAN column per definition, named by its id, for every
cluster of ``fragments`` (``events`` is read only when a definition counts events). Its stages:

1. ``frag``: each fragment's JSON is parsed once, extracting every profile path any definition reads
   (``json_extract(attributes, [paths])``), with the fragment's merge key;
2. ``merged``: per cluster and path, the value of the fragment that wins under the merge policy
   (``arg_max(value, key) FILTER (value present)``): newest first for ``timestampOrdered`` (a tie of time
   to the greater dataset id), the dataset's place in ``order`` then newest for ``dataSetPrecedence``,
   whose unlisted datasets are not merged;
3. ``typed``: the merged values read as the types the definitions compare them with;
4. ``ev``/``counts``: each event's JSON parsed once, its values typed, and every distinct ``xEvent[..]``
   condition becomes ``count(*) FILTER (WHERE ..)`` grouped by cluster;
5. the definitions as boolean expressions over ``typed`` left-joined with ``counts``.

Every literal of the PQL, every dataset id and ``now`` are bound parameters; identifiers (paths) come
from the parser's identifier token (letters, digits, ``_``, ``$``) and are checked again here; output
column names are quoted. The rules of values (types, missing values, ``not``) are brute.py's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from headwater.engines.segments.nodes import (
    DAY_MS,
    Anchor,
    And,
    Compare,
    Const,
    EventCount,
    Expr,
    In,
    Instant,
    IsNull,
    Not,
    Occurs,
    OccursBetween,
    Or,
    Path,
    RelativeTime,
    StringTest,
    Value,
)

_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NUMBER_TYPES = "('BIGINT', 'UBIGINT', 'DOUBLE')"
_OFFSET = r"'\d:\d\d(\.\d+)?([zZ]|[+-]\d\d(:?\d\d)?)$'"
_LEAF = r"""':(?:"|[-0-9tf\[])'"""
_ANCHOR = {"today": 0, "yesterday": -DAY_MS, "tomorrow": DAY_MS}


@dataclass(frozen=True)
class CompiledQuery:
    """The SQL and its parameters but ``now``; ``parameters(now_ms)`` completes them."""

    sql: str
    bound: Mapping[str, Any]
    columns: tuple[str, ...]

    def parameters(self, now_ms: int) -> dict[str, Any]:
        return {**self.bound, "now": int(now_ms)} if "$now" in self.sql else dict(self.bound)


def evaluate(
    con: duckdb.DuckDBPyConnection,
    definitions: Mapping[str, Expr],
    merge_policy: Mapping[str, Any],
    now_ms: int,
) -> pa.Table:
    """Every cluster of the registered ``fragments`` with one BOOLEAN column per definition (True:
    qualifies) at ``now_ms``. ``events`` must be registered too when a definition counts events."""
    compiled = compile_segments(definitions, merge_policy)
    return con.sql(compiled.sql, params=compiled.parameters(now_ms)).to_arrow_table()


def compile_segments(definitions: Mapping[str, Expr], merge_policy: Mapping[str, Any]) -> CompiledQuery:
    """One query for all ``definitions`` (id -> AST). ValueError for an unknown merge type or an
    id that would shadow ``cluster_id``."""
    builder = _Builder(merge_policy)
    selects = []
    for name, expr in definitions.items():
        if name == "cluster_id":
            raise ValueError("a segment id cannot be 'cluster_id'")
        selects.append(f"COALESCE({builder.expr(expr, builder.profile)}, false) AS {quote(name)}")
    sql = builder.query(selects)
    return CompiledQuery(sql, dict(builder.params), tuple(definitions))


def quote(name: str) -> str:
    """A SQL identifier for any string."""
    return '"' + name.replace('"', '""') + '"'


def _json_path(path: Path) -> str:
    for part in path.parts:
        if not _IDENT.fullmatch(part):
            raise ValueError(f"not a path segment: {part!r}")
    return "'$." + ".".join(f'"{p}"' for p in path.parts) + "'"


@dataclass
class _Scope:
    """One world of paths: the merged profile (``p``) or one event (``x``)."""

    prefix: str
    paths: dict[Path, int] = field(default_factory=dict)
    typed: dict[tuple[int, str], str] = field(default_factory=dict)  # (path index, type) -> column

    def column(self, path: Path, kind: str) -> str:
        index = self.paths.setdefault(path, len(self.paths))
        return self.typed.setdefault((index, kind), f"{self.prefix}{index}_{kind}")


class _Builder:
    def __init__(self, merge_policy: Mapping[str, Any]) -> None:
        self.params: dict[str, Any] = {}
        self.profile = _Scope("p")
        self.event = _Scope("x")
        self.counts: dict[EventCount, str] = {}
        self.count_filters: dict[str, str] = {}
        self.key, self.keep = self._merge_key(merge_policy.get("attributeMerge") or {})

    def param(self, value: Any) -> str:
        name = f"v{len(self.params)}"
        self.params[name] = value
        return f"${name}"

    # -- the merge ----------------------------------------------------------------------------------

    def _merge_key(self, attribute_merge: Mapping[str, Any]) -> tuple[str, str]:
        merge_type = attribute_merge.get("type", "timestampOrdered")
        if merge_type == "timestampOrdered":
            return "{'t': ts_ms, 'd': dataset_id}", "true"
        if merge_type == "dataSetPrecedence":
            order = [str(d) for d in attribute_merge.get("order") or []]
            rank = f"list_position({self.param(order)}::VARCHAR[], dataset_id)"
            return f"{{'r': -{rank}, 't': ts_ms}}", f"{rank} IS NOT NULL"
        raise ValueError(f"unknown attributeMerge.type {merge_type!r}")

    # -- expressions --------------------------------------------------------------------------------

    def expr(self, node: Expr, scope: _Scope) -> str:
        if isinstance(node, And | Or):
            joiner = " AND " if isinstance(node, And) else " OR "
            return "(" + joiner.join(self.expr(item, scope) for item in node.items) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.expr(node.item, scope)})"
        if isinstance(node, Const):
            return "true" if node.value else "false"
        if isinstance(node, EventCount):
            return f"(COALESCE(counts.{self.count_column(node)}, 0) {node.op} {int(node.count)})"
        return f"COALESCE({self.leaf(node, scope)}, false)"

    def count_column(self, node: EventCount) -> str:
        if node not in self.counts:
            column = f"c{len(self.counts)}"
            self.counts[node] = column
            where = "true" if node.where is None else self.expr(node.where, self.event)
            self.count_filters[column] = where
        return self.counts[node]

    def read(self, path: Path, value: Value, scope: _Scope) -> str:
        """The column of ``path`` read as the type of ``value``."""
        if scope is self.event and path.parts == ("timestamp",):
            return "CAST(ev.ts_ms AS DOUBLE)"
        kind = "b" if isinstance(value, bool) else "n" if isinstance(value, float) else "s"
        if isinstance(value, Instant):
            kind = "t"
        return self.column(path, kind, scope)

    def column(self, path: Path, kind: str, scope: _Scope) -> str:
        table = "ev" if scope is self.event else "typed"
        return f"{table}.{scope.column(path, kind)}"

    def literal(self, value: Value) -> str:
        if isinstance(value, Instant):
            return f"CAST({self.param(value.ms)} AS DOUBLE)"
        if isinstance(value, bool):
            return f"CAST({self.param(value)} AS BOOLEAN)"
        if isinstance(value, float):
            return f"CAST({self.param(value)} AS DOUBLE)"
        return f"CAST({self.param(value)} AS VARCHAR)"

    def leaf(self, node: Expr, scope: _Scope) -> str:
        if isinstance(node, IsNull):
            return self.is_null(node, scope)
        if isinstance(node, Compare):
            return f"({self.read(node.path, node.value, scope)} {node.op} {self.literal(node.value)})"
        if isinstance(node, In):
            return self.in_(node, scope)
        if isinstance(node, StringTest):
            return self.string_test(node, scope)
        if isinstance(node, Occurs):
            return self.occurs(node, scope)
        if isinstance(node, OccursBetween):
            t = self.read(node.path, Instant(0), scope)
            return f"({t} BETWEEN {self.anchor(node.start)} AND {self.anchor(node.end)})"
        raise TypeError(f"not a condition: {node!r}")

    def is_null(self, node: IsNull, scope: _Scope) -> str:
        if scope is self.event and node.path.parts == ("timestamp",):
            return "true" if node.negated else "false"
        present = f"({self.column(node.path, 'j', scope)} IS NOT NULL)"
        return present if node.negated else f"(NOT {present})"

    def in_(self, node: In, scope: _Scope) -> str:
        value = self.read(node.path, node.values[0], scope)
        items = [v.ms if isinstance(v, Instant) else v for v in node.values]
        sql_type = {"b": "BOOLEAN", "n": "DOUBLE", "s": "VARCHAR", "t": "DOUBLE"}[_kind(node.values[0])]
        test = f"list_contains(CAST({self.param(items)} AS {sql_type}[]), {value})"
        return f"({value} IS NOT NULL AND NOT {test})" if node.negated else test

    def string_test(self, node: StringTest, scope: _Scope) -> str:
        text = self.read(node.path, "", scope)
        argument = node.argument if node.case_sensitive else node.argument.lower()
        subject = text if node.case_sensitive else f"lower({text})"
        arg = self.literal(argument)
        test = {
            "startsWith": f"starts_with({subject}, {arg})",
            "endsWith": f"ends_with({subject}, {arg})",
            "contains": f"contains({subject}, {arg})",
            "equals": f"({subject} = {arg})",
            "like": f"({subject} LIKE {arg})",
            "matches": f"regexp_matches({subject}, {arg})",
        }[node.function]
        return f"({text} IS NOT NULL AND NOT {test})" if node.negated else test

    def occurs(self, node: Occurs, scope: _Scope) -> str:
        t = self.read(node.path, Instant(0), scope)
        anchor = self.anchor(node.anchor)
        if node.op is None:
            return f"({t} < {anchor})" if node.direction == "before" else f"({t} > {anchor})"
        amount = self.literal(Instant(node.amount_ms))
        if node.direction == "before":
            return f"({t} <= {anchor} AND ({anchor} - {t}) {node.op} {amount})"
        return f"({t} >= {anchor} AND ({t} - {anchor}) {node.op} {amount})"

    def anchor(self, anchor: Anchor) -> str:
        if isinstance(anchor, Instant):
            return self.literal(anchor)
        assert isinstance(anchor, RelativeTime)
        if anchor.name == "now":
            return "CAST($now AS DOUBLE)"
        return f"CAST($now - $now % {DAY_MS} + ({_ANCHOR[anchor.name]}) AS DOUBLE)"

    # -- the query ----------------------------------------------------------------------------------

    def query(self, selects: list[str]) -> str:
        ctes = [*self.profile_ctes()]
        join = ""
        if self.counts:
            ctes.extend(self.event_ctes())
            join = " LEFT JOIN counts ON counts.cluster_id = typed.cluster_id"
        columns = ", ".join(["typed.cluster_id", *selects])
        return "WITH " + ",\n".join(ctes) + f"\nSELECT {columns} FROM typed{join}"

    def profile_ctes(self) -> list[str]:
        paths = list(self.profile.paths)
        extract = (
            f", json_extract(attributes, [{', '.join(_json_path(p) for p in paths)}]) AS v" if paths else ""
        )
        frag = f"frag AS (SELECT cluster_id, {self.key} AS k, {self.keep} AS keep{extract} FROM fragments)"
        picks = [
            f"arg_max(v[{i + 1}], k) FILTER (WHERE keep AND {_present(f'v[{i + 1}]')}) AS p{i}"
            for i in range(len(paths))
        ]
        merged = f"merged AS (SELECT {', '.join(['cluster_id', *picks])} FROM frag GROUP BY cluster_id)"
        typed = [f"{_typed(f'p{i}', kind)} AS {column}" for (i, kind), column in self.profile.typed.items()]
        return [frag, merged, f"typed AS (SELECT {', '.join(['cluster_id', *typed])} FROM merged)"]

    def event_ctes(self) -> list[str]:
        paths = list(self.event.paths)
        extract = f", json_extract(body, [{', '.join(_json_path(p) for p in paths)}]) AS v" if paths else ""
        raw = f"evraw AS (SELECT cluster_id, ts_ms{extract} FROM events)"
        typed = [
            f"{_typed(f'v[{i + 1}]', kind, event=True)} AS {column}"
            for (i, kind), column in self.event.typed.items()
        ]
        ev = f"ev AS (SELECT {', '.join(['cluster_id', 'ts_ms', *typed])} FROM evraw)"
        counts = [
            f"count(*) FILTER (WHERE {where}) AS {column}" for column, where in self.count_filters.items()
        ]
        grouped = f"counts AS (SELECT {', '.join(['ev.cluster_id', *counts])} FROM ev GROUP BY ev.cluster_id)"
        return [raw, ev, grouped]


def _kind(value: Value) -> str:
    if isinstance(value, bool):
        return "b"
    if isinstance(value, float):
        return "n"
    return "s" if isinstance(value, str) else "t"


def _present(json: str) -> str:
    """Whether a fragment's value counts for the merge, as profile_merge's leaves do: not JSON null, and
    an object only when it holds a leaf (a key whose value is a string, number, boolean or array; the
    extracted JSON is minified, so a leaf follows a ':' directly)."""
    return (
        f"({json} IS NOT NULL AND json_type({json}) <> 'NULL'"
        f" AND (json_type({json}) <> 'OBJECT' OR regexp_matches({json}, {_LEAF})))"
    )


def _typed(json: str, kind: str, *, event: bool = False) -> str:
    """``json`` (a JSON value or NULL) read as ``kind``: s string, n number, b boolean, t time (epoch ms),
    j present (JSON null is absent; merged values have had it filtered already)."""
    type_of = f"json_type({json})"
    if kind == "j":
        return f"CASE WHEN {type_of} <> 'NULL' THEN {json} END" if event else json
    if kind == "s":
        return f"CASE WHEN {type_of} = 'VARCHAR' THEN {json} ->> '$' END"
    if kind == "n":
        return f"CASE WHEN {type_of} IN {_NUMBER_TYPES} THEN CAST({json} AS DOUBLE) END"
    if kind == "b":
        return f"CASE WHEN {type_of} = 'BOOLEAN' THEN CAST({json} AS BOOLEAN) END"
    text = f"({json} ->> '$')"
    iso = (
        f"CAST(CASE WHEN regexp_matches({text}, {_OFFSET}) THEN epoch_ms(TRY_CAST({text} AS TIMESTAMPTZ))"
        f" ELSE epoch_ms(TRY_CAST({text} AS TIMESTAMP)) END AS DOUBLE)"
    )
    return f"CASE {type_of} WHEN 'VARCHAR' THEN {iso} WHEN 'BIGINT' THEN CAST({json} AS DOUBLE)" + (
        f" WHEN 'UBIGINT' THEN CAST({json} AS DOUBLE) WHEN 'DOUBLE' THEN CAST({json} AS DOUBLE) END"
    )
