"""The PostgreSQL connector: tables and views of one database, read with ``COPY ... TO STDOUT``.

A read runs one ``COPY (SELECT columns FROM table WHERE window) TO STDOUT (FORMAT csv)`` and parses the
stream with Arrow's CSV reader, typed column by column, so rows never become Python objects: the
server's text output is the wire format, and memory stays bounded by the parser's block size.

Column types (``describe`` and every batch agree; each field's metadata keeps ``originalType``):

    int2, int4, int8                  int16, int32, int64 (exact widths)
    float4, float8                    float32, float64
    numeric(p, s), p <= 38 / <= 76    decimal128(p, s) / decimal256(p, s); NaN reads as null
    numeric (no precision)            float64: exactness beyond ~15 digits needs a declared numeric(p, s)
    bool                              bool
    date, time                        date32, time64[us]
    timestamptz, timestamp            timestamp[us, UTC]; naive timestamps are read as UTC
                                      (+-infinity dates and timestamps read as null)
    arrays of numbers, bool, text     list<...>; arrays of other types: list<string>
    text, varchar, char, uuid, enum,  string (json/jsonb as JSON text, bytea as \\x hex, interval as
    json, jsonb, bytea, interval, ... ISO 8601), anything else string through its text output

Windows are SQL: ``delta > %(start)s AND delta <= %(end)s`` with the bounds bound by psycopg, the delta
column a timestamp, timestamptz or date (or text cast to timestamptz). Table names are resolved against
the catalog (:meth:`PostgresConnector.relation`) and only ever reach SQL as quoted identifiers.
Row keys: the table's primary key (none for views and keyless tables); incremental runs re-read 10
minutes before their window by default (runtime/lookback.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
from psycopg import sql

from headwater.connectors.base import ExploreItem, ReadRequest, SourceConnector
from headwater.connectors.batches import rebatch
from headwater.connectors.errors import InvalidSourceParams, SourceNotFound
from headwater.connectors.postgresql.client import Column, MetadataDatabase, PostgresClient, Relation
from headwater.connectors.postgresql.config import connection_params, table_name_parts

if TYPE_CHECKING:
    from headwater.connectors.outbound import OutboundPolicy
    from headwater.settings import Settings

UTC_US = pa.timestamp("us", "UTC")
_INTEGERS = {"int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(), "oid": pa.int64()}
_FLOATS = {"float4": pa.float32(), "float8": pa.float64()}
_SCALARS: dict[str, pa.DataType] = {
    **_INTEGERS,
    **_FLOATS,
    "bool": pa.bool_(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": UTC_US,
    "timestamptz": UTC_US,
}
_FINITE_CHECKED = {"date", "timestamp", "timestamptz"}
_TEXT_LIKE = {"text", "varchar", "bpchar", "name", "citext"}
_ARRAY_ELEMENTS = {**_INTEGERS, **_FLOATS, "bool": pa.bool_(), "numeric": pa.float64()}
_STRING_ELEMENTS = _TEXT_LIKE | {"uuid", "date", "timestamp", "timestamptz", "time", "interval", "char"}


@dataclass(frozen=True)
class ColumnPlan:
    """How one column travels: the SQL that selects it, the type Arrow's CSV reader parses it as, and
    the field it ends as."""

    field: pa.Field
    select: sql.Composable
    wire_type: pa.DataType

    def finish(self, values: pa.Array) -> pa.Array:
        if values.type == self.field.type:
            return values
        if pa.types.is_list(self.field.type):
            return _json_lists(values, self.field.type)
        return values.cast(self.field.type)  # naive timestamp -> UTC, text -> decimal256


class PostgresConnector(SourceConnector):
    """Tables and views of the database the connection names."""

    # now() and CURRENT_TIMESTAMP are the transaction's start, so a row stamped by them becomes visible
    # when its transaction commits: batch jobs and long transactions commit minutes later, and a read
    # replica adds its replay lag. Re-reading 10 minutes is one indexed range scan of the delta column.
    default_lookback_seconds = 600.0

    def __init__(self, auth: dict[str, Any], outbound: OutboundPolicy, settings: Settings) -> None:
        super().__init__(auth, outbound, settings)
        metadata = MetadataDatabase.from_settings(settings)
        self.client = PostgresClient(connection_params(auth), outbound, settings.home, metadata)

    def close(self) -> None:
        self.client.close()

    def explore(self) -> list[ExploreItem]:
        return [ExploreItem(name=r.full_name, type=r.kind, path=r.full_name) for r in self.client.relations()]

    def relation(self, table_name: str) -> Relation:
        """The table or view ``table_name`` names (``schema.table``, ``table`` for public, or quoted
        identifiers); :class:`SourceNotFound` unless the user may read it."""
        if not isinstance(table_name, str) or not table_name.strip():
            raise InvalidSourceParams("The source connection has no tableName: set params.tableName.")
        relations = self.client.relations()
        for relation in relations:
            if relation.full_name == table_name:
                return relation
        wanted = table_name_parts(table_name)
        for relation in relations:
            if (relation.schema, relation.name) == wanted:
                return relation
        raise SourceNotFound(
            f"No readable table or view {table_name!r} in the database; pick one from the connection's "
            "explore."
        )

    def primary_key(self, params: dict[str, Any]) -> tuple[str, ...]:
        relation = self.relation(params.get("tableName", ""))
        return tuple(str(row[0]) for row in self.client._fetch(_PRIMARY_KEY, (relation.oid,)))

    def describe(self, name: str) -> pa.Schema:
        return pa.schema([plan.field for plan in self._plans(self.relation(name), None)])

    def preview(self, name: str, limit: int = 10) -> pa.Table:
        relation = self.relation(name)
        plans = self._plans(relation, None)
        query = self._select(relation, plans, sql.SQL(""), limit)
        batches = list(self._stream(relation, plans, query, {}, max(limit, 1)))
        return pa.Table.from_batches(batches, schema=pa.schema([p.field for p in plans]))

    def read(self, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        if request.batch_size < 1:
            raise InvalidSourceParams("batch_size must be at least 1.")
        relation = self.relation(request.params.get("tableName", ""))
        columns = self.client.columns(relation)
        plans = self._plans(relation, request.params.get("columns"), columns)
        if request.key_columns is not None:  # row keys, then the delta (connectors/base.py)
            plans += self._plans(relation, list(request.key_columns), columns)
            plans.append(_delta_plan(columns, request.delta_column or ""))
        where, args = _window(columns, request)
        query = self._select(relation, plans, where, None)
        return self._stream(relation, plans, query, args, request.batch_size)

    def _plans(
        self, relation: Relation, wanted: Any, columns: list[Column] | None = None
    ) -> list[ColumnPlan]:
        columns = columns if columns is not None else self.client.columns(relation)
        if wanted:
            names = _column_names(wanted)
            by_name = {c.name: c for c in columns}
            missing = [n for n in names if n not in by_name]
            if missing:
                raise InvalidSourceParams(
                    f"{relation.full_name} has no column {', '.join(map(repr, missing))}."
                )
            columns = [by_name[n] for n in names]
        return [plan(column) for column in columns]

    @staticmethod
    def _select(
        relation: Relation, plans: list[ColumnPlan], where: sql.Composable, limit: int | None
    ) -> sql.Composed:
        query = sql.SQL("SELECT {} FROM {}{}").format(
            sql.SQL(", ").join(p.select for p in plans), relation.identifier, where
        )
        return query + sql.SQL(" LIMIT {}").format(sql.Literal(limit)) if limit is not None else query

    def _stream(
        self,
        relation: Relation,
        plans: list[ColumnPlan],
        query: sql.Composable,
        args: dict[str, Any],
        batch_size: int,
    ) -> Iterator[pa.RecordBatch]:
        wire = [f"c{i}" for i in range(len(plans))]
        read_options = pacsv.ReadOptions(column_names=wire, block_size=4 << 20)
        convert_options = pacsv.ConvertOptions(
            column_types={name: p.wire_type for name, p in zip(wire, plans, strict=True)},
            true_values=["t"],
            false_values=["f"],
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # COPY writes NULL unquoted, '' quoted
        )
        schema = pa.schema([p.field for p in plans])
        batches = self.client.copy_csv(query, args, read_options, convert_options, relation.full_name)
        finished = (
            pa.RecordBatch.from_arrays(
                [p.finish(batch.column(i)) for i, p in enumerate(plans)], schema=schema
            )
            for batch in batches
        )
        return rebatch(finished, batch_size)


def plan(column: Column) -> ColumnPlan:
    """The :class:`ColumnPlan` for ``column`` (the type table is in the module docstring)."""
    name = sql.Identifier(column.name)
    kind = arrow_type(column)
    field = pa.field(column.name, kind, metadata={"originalType": column.declared})
    if column.base in _FINITE_CHECKED:
        select: sql.Composable = sql.SQL("CASE WHEN isfinite({0}) THEN {0} END").format(name)
    elif column.base == "numeric" and pa.types.is_decimal(kind):
        select = sql.SQL("NULLIF({}, 'NaN')").format(name)
    elif column.element is not None:
        select = sql.SQL("to_json({})").format(name)
    else:
        select = name
    if column.base == "timestamp":
        wire = pa.timestamp("us")
    elif pa.types.is_list(kind) or isinstance(kind, pa.Decimal256Type):  # the CSV reader parses neither
        wire = pa.string()
    else:
        wire = kind
    return ColumnPlan(field=field, select=select, wire_type=wire)


def arrow_type(column: Column) -> pa.DataType:
    if column.element is not None:
        element = column.element
        if element in _ARRAY_ELEMENTS:
            return pa.list_(_ARRAY_ELEMENTS[element])
        return pa.list_(pa.string()) if element in _STRING_ELEMENTS else pa.string()
    if column.base == "numeric":
        return _numeric(column.typmod)
    return _SCALARS.get(column.base, pa.string())


def _numeric(typmod: int) -> pa.DataType:
    if typmod < 4:  # no declared precision
        return pa.float64()
    precision = ((typmod - 4) >> 16) & 0xFFFF
    scale = (typmod - 4) & 0x7FF
    scale = scale - 0x800 if scale & 0x400 else scale  # PostgreSQL 15 allows negative scales
    if not 0 <= scale <= precision:
        return pa.float64()
    return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)


def _json_lists(texts: pa.Array, kind: pa.DataType) -> pa.Array:
    """JSON array texts (``to_json`` output, one per row) parsed into a list column, vectorized: the
    texts become ``{"v": ...}`` lines that Arrow's JSON reader parses with ``kind`` as the schema."""
    lines = pc.binary_join_element_wise('{"v":', pc.fill_null(texts, "null"), "}\n", "")
    end = pc.sum(pc.binary_length(lines)).as_py() or 0  # a fresh array: its values start at byte 0
    data = lines.buffers()[2].slice(0, end)
    options = pajson.ParseOptions(explicit_schema=pa.schema([("v", kind)]))
    table = pajson.read_json(pa.BufferReader(data), parse_options=options)
    return table.column("v").combine_chunks()


def _window(columns: list[Column], request: ReadRequest) -> tuple[sql.Composable, dict[str, Any]]:
    start, end = _utc(request.window_start), _utc(request.window_end)
    if request.delta_column is None or (start is None and end is None):
        return sql.SQL(""), {}
    delta = _delta_expression(columns, request.delta_column)
    conditions = []
    args: dict[str, Any] = {}
    if start is not None:
        conditions.append(sql.SQL("{} > %(window_start)s").format(delta))
        args["window_start"] = start
    if end is not None:
        upper = sql.SQL("{} <= %(window_end)s").format(delta)
        if start is None:  # nulls belong to reads with no lower bound
            upper = sql.SQL("({} OR {} IS NULL)").format(upper, delta)
        conditions.append(upper)
        args["window_end"] = end
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions), args


_PRIMARY_KEY = """
SELECT a.attname FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = %s AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)
"""


def _delta_plan(columns: list[Column], name: str) -> ColumnPlan:
    """The delta column as the window compares it: a timestamp (UTC) or a date."""
    expression = _delta_expression(columns, name)
    delta = sql.SQL("CASE WHEN isfinite({0}) THEN {0} END").format(expression)  # +-infinity: null
    column = next(c for c in columns if c.name == name)
    if column.base == "date":
        kind: pa.DataType = pa.date32()
    elif column.base == "timestamp":
        return ColumnPlan(pa.field(name, UTC_US), delta, pa.timestamp("us"))
    else:
        kind = UTC_US
    return ColumnPlan(pa.field(name, kind), delta, kind)


def _delta_expression(columns: list[Column], name: str) -> sql.Composable:
    column = next((c for c in columns if c.name == name), None)
    if column is None:
        raise InvalidSourceParams(
            f"The delta column {name!r} is not in the table; check the flow's deltaColumn."
        )
    if column.base in _FINITE_CHECKED:
        return sql.Identifier(name)
    if column.base in _TEXT_LIKE:
        return sql.SQL("CAST({} AS timestamptz)").format(sql.Identifier(name))
    raise InvalidSourceParams(
        f"The delta column {name!r} is {column.declared}; it must be a timestamp, timestamptz or date."
    )


def _column_names(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise InvalidSourceParams("params.columns must be a list of column names.")
    names = [c.get("name") if isinstance(c, dict) else c for c in value]
    if not all(isinstance(n, str) and n for n in names):
        raise InvalidSourceParams('Each entry of params.columns must be a name or {"name": ...}.')
    return [str(n) for n in names]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
