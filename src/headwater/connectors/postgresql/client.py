"""One connection to a source PostgreSQL database: the outbound check, the session Headwater reads in,
the catalog queries, and COPY streamed into Arrow.

Outbound policy: a database is not reached over HTTP, but the same address rules apply. Each host goes
through :meth:`OutboundPolicy.resolve` as ``https://host:port/`` (so only the address rules bite, never
the plain-HTTP one: a private or loopback server must be listed in HEADWATER_OUTBOUND_ALLOW), and libpq
is pinned to the checked address with ``hostaddr``: a DNS answer that changes between the check and the
connect cannot redirect the connection. The host name stays set, so ``verify-full`` still checks it.

Headwater's own metadata database (HEADWATER_DATABASE_URL, when it is PostgreSQL) is never a source
unless HEADWATER_OUTBOUND_ALLOW_METADATA_DATABASE is set (:class:`MetadataDatabase`): it holds password
hashes, sealed secrets and every organization's configuration, and a server that trusts connections
from Headwater's host would hand it to anyone who names it. Checked twice: before connecting, by
address, port and database name (nothing is sent to it); after connecting, by the server's
``system_identifier`` and ``current_database()``, which also catches another name, address or port
for the same server (a proxy, a replica).

Session: autocommit, read-only (``default_transaction_read_only``), UTF-8, ``TimeZone`` UTC and ISO
date styles, so that COPY's text output is what the Arrow CSV reader parses. libpq's own password file
is switched off: a connection only ever uses the password its params give.
"""

from __future__ import annotations

import io
import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    from headwater.settings import Settings

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

    def __init__(
        self,
        params: ConnectionParams,
        outbound: OutboundPolicy,
        home: Path,
        metadata: MetadataDatabase | None = None,
    ) -> None:
        """``metadata``: the database this client must never read (:meth:`MetadataDatabase.from_settings`)."""
        self.params = params
        self.outbound = outbound
        self.home = home
        self.metadata = metadata
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
            if self.metadata is not None:
                self.metadata.refuse_session(conn)
        except psycopg.Error as exc:
            conn.close()
            raise translate(exc, self.secrets) from None
        except InvalidSourceParams:
            conn.close()
            raise
        return conn

    def _checked_addresses(self) -> list[str]:
        """One checked address per host, for libpq's ``hostaddr``: the given one, else the first the
        policy resolved; :class:`OutboundRefused` when the policy refuses one, or it is the metadata
        database."""
        given = [a.strip() for a in self.params.keywords.get("hostaddr", "").split(",") if a.strip()]
        endpoints = self.params.endpoints()
        if given and len(given) != len(endpoints):
            raise InvalidSourceParams("hostaddr must list one address per host.")
        out = []
        for i, (host, port) in enumerate(endpoints):
            address = self.outbound.resolve(_url(given[i] if given else host, port))[0]
            if self.metadata is not None:
                self.metadata.refuse_endpoint(address, port, self.params.keywords.get("dbname", ""))
            out.append(str(address))
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


_METADATA_REFUSED = (
    "The connection names Headwater's own metadata database ({where}): it is never read as a source "
    "(set HEADWATER_OUTBOUND_ALLOW_METADATA_DATABASE=true to allow it)."
)


@dataclass
class MetadataDatabase:
    """Where Headwater's metadata lives (HEADWATER_DATABASE_URL), to refuse it as a source. ``url`` is a
    libpq URI; ``host`` None means a Unix socket (then only the after-connect check can match)."""

    url: str = field(repr=False)
    host: str | None
    port: int
    database: str

    @classmethod
    def from_settings(cls, settings: Settings) -> MetadataDatabase | None:
        """None when the metadata store is not PostgreSQL, or the operator allows reading it."""
        from sqlalchemy.engine import make_url

        if settings.outbound_allow_metadata_database:
            return None
        url = make_url(settings.resolved_database_url)
        if url.get_backend_name() != "postgresql":
            return None
        query_host = url.query.get("host")
        host = url.host or (query_host if isinstance(query_host, str) else None)
        if host is not None and host.startswith("/"):
            host = None
        libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return cls(libpq, host, url.port or 5432, url.database or url.username or "")

    def refuse_endpoint(
        self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, db: str
    ) -> None:
        """Refuse, before connecting, ``db`` at ``address:port`` when it is the metadata database (any
        loopback address is the same host as a loopback metadata server)."""
        if self.host is None or port != self.port or db != self.database:
            return
        if any(_same_host(address, mine) for mine in _addresses_of(self.host, self.port)):
            raise OutboundRefused(_METADATA_REFUSED.format(where=f"{self.database} on port {port}"))

    def refuse_session(self, conn: psycopg.Connection[Any]) -> None:
        """Refuse an open source session that reached the metadata database by another route."""
        mine = _identity(self.url)
        if mine is not None and _session_identity(conn) == mine:
            raise OutboundRefused(_METADATA_REFUSED.format(where=f"database {mine[1]}, same server"))


def _same_host(
    a: ipaddress.IPv4Address | ipaddress.IPv6Address, b: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> bool:
    return a == b or (a.is_loopback and b.is_loopback)


def _addresses_of(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


_IDENTITY = "SELECT (SELECT system_identifier FROM pg_control_system())::text, current_database()"


def _session_identity(conn: psycopg.Connection[Any]) -> tuple[str, str] | None:
    """(system identifier, database) of a session; None when the server does not let this user see it
    (pg_control_system is executable by everyone unless an administrator revoked it)."""
    try:
        row = conn.execute(_IDENTITY).fetchone()
    except psycopg.Error:  # revoked, or a PostgreSQL-compatible server without the function
        return None
    return (str(row[0]), str(row[1])) if row is not None and row[0] is not None else None


_IDENTITIES: dict[str, tuple[str, str]] = {}


def _identity(url: str) -> tuple[str, str] | None:
    """The metadata database's identity, asked once per process (it does not change while it runs);
    None, and asked again next time, while it cannot be read."""
    if url not in _IDENTITIES:
        try:
            with psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT_SECONDS), autocommit=True) as conn:
                found = _session_identity(conn)
        except psycopg.Error:
            return None
        if found is None:
            return None
        _IDENTITIES[url] = found
    return _IDENTITIES[url]


def _url(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"https://[{host}]:{port}/" if ":" in host else f"https://{host}:{port}/"
