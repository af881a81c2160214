"""The Data Cloud Query API (Salesforce Data 360) over the datasets of a Data 360 token's data space:

    POST /api/v2/query                  {"sql": "..."} -> the first batch of rows (``DataCloudQueries.query``)
    GET  /api/v2/query/{nextBatchId}    a further batch (``DataCloudQueries.batch``)
    GET  /api/v1/metadata               the tables and their fields (``DataCloudQueries.metadata``)

CONTRACT: every call takes the :class:`~headwater.services.tenancy.Actor` that :meth:`actor` makes of a
verified Data 360 token (POST /services/a360/token) with the ``cdp_query_api`` scope: the token's user
in the token's data space (a sandbox), with the role the user has there, which must include
``view-profiles`` (dataset rows are personal data). The SQL runs through
:meth:`Queries.run <headwater.services.queries.Queries.run>`, the safe engine (one SELECT, only this
sandbox's datasets, time and memory bounds); its refusals are QueryError (400s).

Tables: every dataset of the sandbox is a Data Lake Object named ``<table>__dll``, where ``<table>`` is its
``adobe/pqs/table`` tag (as in Query Service); the bare tag works in SQL too. A Data 360 data stream's
dataset is the stream's DLO (``dataLakeObjectInfo.name`` is the same tag), categorised Engagement or
Profile as the stream is; other datasets are "Related". Columns are the dataset's XDM fields as the lake
stores them: nested objects are structs (``SELECT _tenant.field FROM x__dll``); metadata lists the leaf
fields by their dotted paths.

Batches: a result is written once, as an Arrow IPC file under ``HOME/dcquery`` (every worker process of
the server reads the same folder) or, with the lake on object storage, under
``<HEADWATER_LAKE_URL>/_dcquery/`` (every node reads the same prefix), and served
``data360_query_batch_rows`` rows at a time. A batch id is ``<queryId>-<offset>``; the file carries its
owner (organization, sandbox, user), so another caller's batch id is a 404. Results are removed
RESULT_SECONDS after they were made (each new query sweeps). A result is the engine's: at most
HEADWATER_QUERY_MAX_ROWS rows (``done`` is then true on the last batch kept). With the request header
``enable-arrow-stream: true`` (the connector's ``get_pandas_dataframe``) a batch carries its rows as
``arrowStream`` (base64 of an Arrow IPC stream) instead of ``data``.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.ipc

from headwater.engines.xdm_arrow import type_name
from headwater.errors import BadRequest, Forbidden, NotFound, Unauthenticated
from headwater.services import access
from headwater.services.catalogsvc import TABLE_TAG, DataSets
from headwater.services.data360 import apppolicy
from headwater.services.data360.apps import QUERY_SCOPE, version_of
from headwater.services.data360.datastreams import KIND as STREAM_KIND
from headwater.services.ids import new_hex
from headwater.services.tenancy import Actor
from headwater.stores.objectfiles import object_files, unavailable

if TYPE_CHECKING:
    from headwater.services.data360.identity import Data360Identity, IngestPrincipal
    from headwater.services.queries import Queries
    from headwater.services.schemas import SchemaRegistry
    from headwater.settings import Settings
    from headwater.stores.metadata import MetadataStore

DLO_SUFFIX = "__dll"
RESULT_SECONDS = 3600
MAX_SQL_CHARS = 100_000
_BATCH_ID = re.compile(r"^([0-9a-f]{32})-(\d{1,12})$")
_OWNER = b"headwater.owner"
# Arrow type -> (the Query API's type name, its JDBC type code), as Salesforce's query results name them
_SCALAR_TYPES: list[tuple[Any, str, int]] = [
    (pa.types.is_boolean, "BOOLEAN", 16),
    (pa.types.is_int8, "TINYINT", -6),
    (pa.types.is_int16, "SMALLINT", 5),
    (pa.types.is_int32, "INTEGER", 4),
    (pa.types.is_integer, "BIGINT", -5),
    (pa.types.is_float64, "DOUBLE", 8),
    (pa.types.is_floating, "FLOAT", 6),
    (pa.types.is_decimal, "DECIMAL", 3),
    (pa.types.is_date, "DATE", 91),
    (pa.types.is_time, "TIME", 92),
    (pa.types.is_binary, "VARBINARY", -3),
    (pa.types.is_large_binary, "VARBINARY", -3),
    (pa.types.is_nested, "JSON", 1111),
]


@dataclass(frozen=True)
class Entity:
    """One table of the data space: a dataset as a Data Lake Object."""

    name: str  # <table>__dll
    table: str  # the adobe/pqs/table tag
    dataset_id: str
    display_name: str
    category: str  # Engagement, Profile (a data stream's) or Related
    schema_id: str | None
    primary_key: tuple[str, str] | None  # (column path, display name) of a data stream's key


class DataCloudQueries:
    def __init__(
        self,
        settings: Settings,
        store: MetadataStore,
        schemas: SchemaRegistry,
        queries: Queries,
        identity: Data360Identity,
    ) -> None:
        self.settings = settings
        self.store = store
        self.schemas = schemas
        self.queries = queries
        self.identity = identity
        self.files = object_files(settings, "_dcquery", settings.home / "dcquery")

    # --- who asks ---
    def actor(self, principal: IngestPrincipal, client: str | None) -> Actor:
        """The token's user acting in the token's data space; 403 when the user's role there lacks
        view-profiles or the token's app refuses (gone, changed, IP policy), 401 when the user is gone."""
        org = self.store.get_org(principal.org_id)
        sandbox = next(
            (s for s in self.store.list_sandboxes(principal.org_id) if s.id == principal.sandbox_id), None
        )
        user = self.identity.users.recent(principal.org_id, principal.username)
        if org is None or sandbox is None or user is None:
            raise Unauthenticated(
                "Session expired or invalid: the token's user or data space no longer exists.",
                code="INVALID_SESSION_ID",
            )
        if QUERY_SCOPE not in principal.scopes:
            raise Forbidden(
                "This Data 360 token lacks the cdp_query_api scope: add it to the external client app's "
                "scopes and get a new token.",
                code="INSUFFICIENT_ACCESS",
            )
        self._check_app(principal, client)
        role = self.identity.users.role(user, sandbox.name)
        actor = Actor(
            org,
            sandbox,
            principal.consumer_key or "data360",
            username=principal.username,
            role=role,
            permissions=access.permissions_of(role, user.doc.get("admin") is True),
        )
        actor.require(access.VIEW_PROFILES, "Data Cloud queries")
        return actor

    def _check_app(self, principal: IngestPrincipal, client: str | None) -> None:
        if not principal.consumer_key:
            return
        app = self.identity.apps.by_consumer_key(principal.consumer_key)
        if app is None or principal.version != version_of(app.doc):
            raise Forbidden(
                "The external client app this token was issued through no longer exists or changed its "
                "callback URL, certificate or scopes: get a new token.",
                code="INSUFFICIENT_ACCESS",
            )
        if not apppolicy.address_allowed(app.doc, client, principal.flow):
            raise Forbidden(
                f"{apppolicy.IP_RESTRICTED}: {client} is outside the trusted IP ranges of "
                f"{app.doc['name']!r}",
                code="INSUFFICIENT_ACCESS",
            )

    # --- GET /api/v1/metadata ---
    def entities(self, actor: Actor) -> list[Entity]:
        """The data space's tables, by name."""
        streams = {
            r.doc["resources"]["dataSetId"]: r.doc for r in self.store.list(STREAM_KIND, actor.scope).items
        }
        out: list[Entity] = []
        for dataset in self.store.list(DataSets.kind, actor.scope).items:
            tags = dataset.doc.get("tags", {}).get(TABLE_TAG) or []
            if not tags:
                continue
            stream = streams.get(dataset.id)
            key = None
            if stream is not None and stream.get("events"):
                key = (str(stream["keyPath"]), str(stream["events"][0]["primaryKey"]))
            out.append(
                Entity(
                    name=f"{tags[0]}{DLO_SUFFIX}",
                    table=str(tags[0]),
                    dataset_id=dataset.id,
                    display_name=str(stream["label"] if stream else dataset.doc.get("name") or tags[0]),
                    category=str(stream["category"]) if stream else "Related",
                    schema_id=(dataset.doc.get("schemaRef") or {}).get("id"),
                    primary_key=key,
                )
            )
        return sorted(out, key=lambda e: e.name)

    def metadata(self, actor: Actor, params: dict[str, str]) -> dict[str, Any]:
        """``{"metadata": [entity, ...]}``, filtered by entityName, entityCategory and entityType as
        Salesforce's metadata API is (every table here is a DataLakeObject)."""
        wanted_type = params.get("entityType")
        if wanted_type and wanted_type not in ("DataLakeObject", "DataModelObject", "CalculatedInsight"):
            raise BadRequest(
                "entityType must be DataLakeObject, DataModelObject or CalculatedInsight",
                code="BAD_REQUEST",
                report={"parameter": "entityType"},
            )
        name, category = params.get("entityName"), params.get("entityCategory")
        chosen = [
            e
            for e in self.entities(actor)
            if wanted_type in (None, "", "DataLakeObject")
            and (not name or name.lower() in (e.name.lower(), e.table.lower()))
            and (not category or category.lower() == e.category.lower())
        ]
        return {"metadata": [self._describe(actor, e) for e in chosen]}

    def _describe(self, actor: Actor, entity: Entity) -> dict[str, Any]:
        fields = [
            {"name": path, "displayName": path.rsplit(".", 1)[-1], "type": kind}
            for path, kind in _leaf_fields(self._schema(actor, entity))
        ]
        keys = (
            [{"name": entity.primary_key[0], "displayName": entity.primary_key[1], "indexOrder": "1"}]
            if entity.primary_key
            else []
        )
        return {
            "name": entity.name,
            "displayName": entity.display_name,
            "category": entity.category,
            "entityType": "DataLakeObject",
            "fields": fields,
            "primaryKeys": keys,
            "indexes": [],
            "relationships": [],
        }

    def _schema(self, actor: Actor, entity: Entity) -> pa.Schema:
        from headwater.engines.xdm_arrow import arrow_schema

        if entity.schema_id is None:
            return pa.schema([])
        try:
            return arrow_schema(self.schemas.resolve(actor, entity.schema_id))
        except NotFound:  # the schema went away: the table is still listed, without fields
            return pa.schema([])

    # --- POST /api/v2/query ---
    def query(self, actor: Actor, body: Any, arrow: bool = False) -> dict[str, Any]:
        """Run ``body["sql"]`` and answer its first batch (its rows as ``arrowStream`` when ``arrow``)."""
        sql = body.get("sql") if isinstance(body, dict) else None
        if not isinstance(sql, str) or not sql.strip():
            raise BadRequest(
                "sql is required: the SELECT to run", code="BAD_REQUEST", report={"field": "sql"}
            )
        if len(sql) > MAX_SQL_CHARS:
            raise BadRequest(f"sql is longer than {MAX_SQL_CHARS} characters", code="BAD_REQUEST")
        started = _now()
        aliases = {e.name: e.dataset_id for e in self.entities(actor)}
        result = self.queries.run(actor, sql, aliases=aliases).table
        ended = _now()
        query_id = new_hex(16)
        with unavailable("sweeping query results"):
            self.files.sweep(int((time.time() - RESULT_SECONDS) * 1000), ".arrow")
        meta = {_OWNER: _owner(actor).encode(), b"startTime": started.encode(), b"endTime": ended.encode()}
        result = result.replace_schema_metadata(meta)
        with (
            unavailable("writing query results"),
            self.files.writer(_key(query_id)) as sink,
            pa.ipc.new_file(sink, result.schema) as writer,
        ):
            writer.write_table(result)
        return self._batch(result, query_id, 0, arrow)

    # --- GET /api/v2/query/{nextBatchId} ---
    def batch(self, actor: Actor, batch_id: str, arrow: bool = False) -> dict[str, Any]:
        match = _BATCH_ID.match(batch_id)
        if match is None:
            raise _no_batch(batch_id)
        try:
            with unavailable("reading query results"), self.files.open(_key(match.group(1))) as source:
                table = pa.ipc.open_file(source).read_all()
        except FileNotFoundError:
            raise _no_batch(batch_id) from None
        if (table.schema.metadata or {}).get(_OWNER) != _owner(actor).encode():
            raise _no_batch(batch_id)
        offset = int(match.group(2))
        if offset >= max(table.num_rows, 1):
            raise _no_batch(batch_id)
        return self._batch(table, match.group(1), offset, arrow)

    def _batch(self, table: pa.Table, query_id: str, offset: int, arrow: bool) -> dict[str, Any]:
        size = self.settings.data360_query_batch_rows
        rows = table.slice(offset, size)
        meta = table.schema.metadata or {}
        done = offset + rows.num_rows >= table.num_rows
        answer: dict[str, Any] = {
            **({"arrowStream": _arrow_stream(rows)} if arrow else {"data": _rows(rows)}),
            "startTime": meta.get(b"startTime", b"").decode(),
            "endTime": meta.get(b"endTime", b"").decode(),
            "rowCount": rows.num_rows,
            "queryId": query_id,
            "done": done,
            "metadata": {
                f.name: {"type": t, "placeInOrder": i, "typeCode": code}
                for i, f in enumerate(table.schema)
                for t, code in [_column_type(f.type)]
            },
        }
        if not done:
            answer["nextBatchId"] = f"{query_id}-{offset + rows.num_rows}"
        return answer


def _key(query_id: str) -> str:
    return f"{query_id}.arrow"


# --- shapes ---
def _owner(actor: Actor) -> str:
    return f"{actor.org.id}/{actor.sandbox.id}/{actor.user}"


def _no_batch(batch_id: str) -> NotFound:
    return NotFound(
        f"No batch {batch_id!r}: batch ids are the nextBatchId of a query of yours, kept for "
        f"{RESULT_SECONDS // 60} minutes.",
        code="NOT_FOUND",
        report={"nextBatchId": batch_id},
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def _column_type(kind: pa.DataType) -> tuple[str, int]:
    if pa.types.is_timestamp(kind):
        return ("TIMESTAMP WITH TIME ZONE", 2014) if kind.tz else ("TIMESTAMP", 93)
    for test, name, code in _SCALAR_TYPES:
        if test(kind):
            return name, code
    return "VARCHAR", 12


def _leaf_fields(schema: pa.Schema | pa.StructType, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, metadata type) of every leaf field; a struct's fields are listed under it."""
    out: list[tuple[str, str]] = []
    for field in schema:
        path = f"{prefix}{field.name}"
        if pa.types.is_struct(field.type):
            out += _leaf_fields(field.type, path + ".")
        else:
            out.append((path, _field_type(field.type)))
    return out


_METADATA_TYPES = {
    "date-time": "DATE_TIME",
    "date": "DATE",
    "boolean": "BOOLEAN",
    "integer": "NUMBER",
    "number": "NUMBER",
}


def _field_type(kind: pa.DataType) -> str:
    """Salesforce's metadata type of an Arrow type, by its XDM word (engines/xdm_arrow.py)."""
    return _METADATA_TYPES.get(type_name(kind), "STRING")


def _arrow_stream(table: pa.Table) -> str:
    """The rows as the Query API's ``arrowStream``: an Arrow IPC stream, base64."""
    sink = pa.BufferOutputStream()
    clean = table.replace_schema_metadata(None)
    with pa.ipc.new_stream(sink, clean.schema) as writer:
        writer.write_table(clean)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")


def _rows(table: pa.Table) -> list[list[Any]]:
    columns = [[_json(v) for v in column.to_pylist()] for column in table.columns]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def _json(value: Any) -> Any:
    """A value as the Query API's JSON carries it: times as ISO 8601 text, decimals as text (the
    connector reads them back as numbers), bytes as base64, nested values likewise."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value
