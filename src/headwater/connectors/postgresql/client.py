"""One connection to a source PostgreSQL database: the outbound check, the session Headwater reads in,
the catalog queries, and COPY streamed into Arrow.

Outbound policy: a database is not reached over HTTP, but the same internal-address rule applies. Each
host goes through :meth:`OutboundPolicy.check_url` as ``https://host:port/`` (so only the private/loopback
rule bites, never the plain-HTTP one), then is resolved once more and libpq is pinned to the checked
address with ``hostaddr``: a DNS answer that changes between the check and the connect cannot redirect
the connection to an internal address. The host name stays set, so ``verify-full`` still checks it.

Session: autocommit, read-only (``default_transaction_read_only``), UTF-8, ``TimeZone`` UTC and ISO
date styles, so that COPY's text output is what the Arrow CSV reader parses. libpq's own password file
is switched off: a connection only ever uses the password its params give.
"""

from __future__ import annotations

import io
import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql
from psycopg.conninfo import make_conninfo

from headwater.connectors.errors import InvalidSourceParams, OutboundRefused
from headwater.connectors.postgresql.config import ConnectionParams
from headwater.connectors.postgresql.errors import translate

if TYPE_CHECKING:
    from headwater.connectors.outbound import OutboundPolicy

SESSION_SETUP = (
    "SET TimeZone TO 'UTC'; SET DateStyle TO 'ISO, YMD'; SET IntervalStyle TO 'iso_8601'; "
    "SET extra_float_digits TO 3; SET bytea_output TO 'hex'; SET client_encoding TO 'UTF8'; "
    "SET default_transaction_read_only TO on"
)
CONNECT_TIMEOUT_SECONDS = "10"

_RELATIONS = """
SELECT c.oid, n.nspname, c.relname, c.relkind
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%'
  AND (has_table_privilege(c.oid, 'SELECT') OR has_any_column_privilege(c.oid, 'SELECT'))
ORDER BY n.nspname, c.relname
"""
_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), bt.typname,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       et.typname, bt.typtype
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_catalog.pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str
    kind: str  # "table" | "view"

    @property
    def full_name(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


@dataclass(frozen=True)
class Column:
    name: str
    declared: str  # as PostgreSQL shows it, e.g. "numeric(12,2)", "timestamp with time zone"
    base: str  # pg_type.typname after resolving domains, e.g. "numeric", "_int4" for int4[]
    typmod: int
    element: str | None  # typname of an array's elements
    typtype: str  # "b" base, "e" enum, "c" composite, "r" range, ...


class PostgresClient:
    """Opens its connection on first use and keeps it until :meth:`close`. Not thread-safe."""

    def __init__(self, params: ConnectionParams, outbound: OutboundPolicy, home: Path) -> None:
        self.params = params
        self.outbound = outbound
        self.home = home
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def secrets(self) -> list[str]:
        return self.params.secrets

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> psycopg.Connection[Any]:
        keywords = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": "headwater",
            **self.params.keywords,
            "hostaddr": ",".join(self._checked_addresses()),
            "passfile": str(self.home / ".no-pgpass"),  # never the server's own ~/.pgpass
        }
        keywords.setdefault("password", "")  # "" keeps libpq from taking PGPASSWORD
        try:
            conn = psycopg.connect(make_conninfo("", **keywords), autocommit=True)
        except psycopg.Error as exc:
            raise translate(exc, self.secrets) from None
        try:
            conn.execute(SESSION_SETUP)
        except psycopg.Error as exc:
            conn.close()
            raise translate(exc, self.secrets) from None
        return conn

    def _checked_addresses(self) -> list[str]:
        given = [a.strip() for a in self.params.keywords.get("hostaddr", "").split(",") if a.strip()]
        endpoints = self.params.endpoints()
        if given and len(given) != len(endpoints):
            raise InvalidSourceParams("hostaddr must list one address per host.")
        out = []
        for i, (host, port) in enumerate(endpoints):
            if given:
                self.outbound.check_url(_url(given[i], port))
                out.append(given[i])
            else:
                out.append(_pinned_address(host, port, self.outbound))
        return out

    # --- catalog -----------------------------------------------------------------------------------

    def relations(self) -> list[Relation]:
        """Tables and views the user may read, outside the system schemas; partitions show as their
        parent table."""
        rows = self._fetch(_RELATIONS, ())
        return [
            Relation(oid, schema, name, "view" if kind in "vm" else "table")
            for oid, schema, name, kind in rows
        ]

    def columns(self, relation: Relation) -> list[Column]:
        return [Column(*row) for row in self._fetch(_COLUMNS, (relation.oid,))]

    def _fetch(self, query: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            with self.connection().cursor() as cursor:
                cursor.execute(query, args)
                return cursor.fetchall()
        except psycopg.Error as exc:
            raise translate(exc, self.secrets) from None

    # --- data --------------------------------------------------------------------------------------

    def copy_csv(
        self,
        query: sql.Composable,
        args: dict[str, Any],
        read_options: pacsv.ReadOptions,
        convert_options: pacsv.ConvertOptions,
        relation: str,
    ) -> Iterator[pa.RecordBatch]:
        """Run ``COPY (query) TO STDOUT (FORMAT csv)`` and parse its output as it arrives. psycopg merges
        ``args`` client-side (COPY takes no server-side parameters), quoting them as literals. Closing
        the iterator early cancels the COPY."""
        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)
        parse = pacsv.ParseOptions(newlines_in_values=True)
        try:
            with self.connection().cursor() as cursor, cursor.copy(statement, args) as copy:
                stream = _CopyStream(copy)
                if stream.exhausted():  # no rows: Arrow's reader refuses empty input
                    return
                yield from pacsv.open_csv(
                    stream, read_options=read_options, parse_options=parse, convert_options=convert_options
                )
        except psycopg.Error as exc:
            raise translate(exc, self.secrets, relation) from None
        except pa.ArrowInvalid as exc:
            raise InvalidSourceParams(f"{relation} holds a value Headwater cannot convert: {exc}") from None


class _CopyStream(io.RawIOBase):
    """COPY's data messages as a readable byte stream (each message is about one row)."""

    def __init__(self, copy: psycopg.Copy) -> None:
        self._copy = copy
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def exhausted(self) -> bool:
        if not self._rest:
            self._rest = memoryview(self._copy.read())
        return not self._rest

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            if not self._rest:
                chunk = self._copy.read()
                if not chunk:
                    break
                self._rest = memoryview(chunk)
            n = min(len(self._rest), len(view) - filled)
            view[filled : filled + n] = self._rest[:n]
            self._rest = self._rest[n:]
            filled += n
        return filled


def _pinned_address(host: str, port: int, outbound: OutboundPolicy) -> str:
    outbound.check_url(_url(host, port))
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise OutboundRefused(f"Cannot resolve {host}: {exc.strerror or exc}.") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if host.lower() not in outbound.hosts:  # a host listed by name may resolve anywhere
        for address in addresses:
            outbound.check_url(_url(address, port))
    return addresses[0]


def _url(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"https://[{host}]:{port}/" if ":" in host else f"https://{host}:{port}/"
