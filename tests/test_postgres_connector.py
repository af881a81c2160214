"""The PostgreSQL connector against the real server on 127.0.0.1, one fresh database per test.

The local server trusts every connection from 127.0.0.1, so a wrong password is accepted there: the
password test runs against tests/fakes/postgres.py's :class:`RefusingServer`, a few lines that speak
PostgreSQL's startup protocol and refuse the password the way a real server does (SQLSTATE 28P01).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from headwater.catalog import ids
from headwater.connectors import registry
from headwater.connectors.base import ReadRequest
from headwater.connectors.errors import (
    AuthenticationFailed,
    ConnectorError,
    InvalidSourceParams,
    OutboundRefused,
    SourceNotFound,
    SourceUnavailable,
)
from headwater.connectors.outbound import OutboundPolicy
from headwater.connectors.postgresql.config import table_name_parts
from headwater.connectors.postgresql.reader import PostgresConnector
from headwater.settings import Settings
from tests.conftest import POSTGRES_ADMIN_URL
from tests.fakes.postgres import RefusingServer
from tests.support import free_port

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", environment="development", outbound_allow="127.0.0.1")


@pytest.fixture
def dsn(postgres_url: str) -> str:
    return postgres_url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def pg(dsn: str, settings: Settings) -> Iterator[PostgresConnector]:
    auth = {"connectionString": dsn}
    connector = registry.connector_for(ids.POSTGRESQL, auth, OutboundPolicy.from_settings(settings), settings)
    assert isinstance(connector, PostgresConnector)
    yield connector
    connector.close()


def read(connector: PostgresConnector, **kwargs: Any) -> pa.Table:
    params = {"tableName": kwargs.pop("table", "public.contacts")}
    if "columns" in kwargs:
        params["columns"] = kwargs.pop("columns")
    batches = list(connector.read(ReadRequest(params=params, data_format="tabular", **kwargs)))
    return pa.Table.from_batches(
        batches, schema=connector.describe(params["tableName"]) if not batches else None
    )


ALL_TYPES = """
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN email AS varchar(320);
CREATE TABLE typed (
    id int8 PRIMARY KEY, small int2, regular int4, real4 float4, real8 float8,
    exact numeric(12, 2), loose numeric, huge numeric(50, 4),
    flag bool, label text, code char(3), address email, feeling mood, uid uuid,
    doc jsonb, raw json, blob bytea, span interval,
    born date, wake time, seen timestamp, changed timestamptz,
    counts int4[], names text[], stamps timestamptz[], docs jsonb[]
);
"""


def test_explore_lists_readable_tables_and_views(pg: PostgresConnector, db: psycopg.Connection[Any]) -> None:
    db.execute("CREATE TABLE contacts (id int); CREATE VIEW active AS SELECT * FROM contacts")
    db.execute(
        "CREATE SCHEMA crm; CREATE TABLE crm.leads (id int); CREATE MATERIALIZED VIEW crm.m AS SELECT 1"
    )
    db.execute("CREATE TABLE events (at date) PARTITION BY RANGE (at)")
    db.execute(
        "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')"
    )
    assert [i.as_json() for i in pg.explore()] == [
        {"type": "table", "name": "crm.leads", "path": "crm.leads"},
        {"type": "view", "name": "crm.m", "path": "crm.m"},
        {"type": "view", "name": "public.active", "path": "public.active"},
        {"type": "table", "name": "public.contacts", "path": "public.contacts"},
        {"type": "table", "name": "public.events", "path": "public.events"},
    ]


def test_describe_maps_types(pg: PostgresConnector, db: psycopg.Connection[Any]) -> None:
    db.execute(ALL_TYPES)
    schema = pg.describe("typed")
    expected = {
        "id": pa.int64(),
        "small": pa.int16(),
        "regular": pa.int32(),
        "real4": pa.float32(),
        "real8": pa.float64(),
        "exact": pa.decimal128(12, 2),
        "loose": pa.float64(),
        "huge": pa.decimal256(50, 4),
        "flag": pa.bool_(),
        "born": pa.date32(),
        "wake": pa.time64("us"),
        "seen": pa.timestamp("us", "UTC"),
        "changed": pa.timestamp("us", "UTC"),
        "counts": pa.list_(pa.int32()),
        "names": pa.list_(pa.string()),
        "stamps": pa.list_(pa.string()),
    }
    strings = ["label", "code", "address", "feeling", "uid", "doc", "raw", "blob", "span", "docs"]
    expected.update(dict.fromkeys(strings, pa.string()))
    assert {f.name: f.type for f in schema} == expected
    assert schema.names == list(pg.describe("public.typed").names)
    assert schema.field("exact").metadata == {b"originalType": b"numeric(12,2)"}
    assert schema.field("address").metadata == {b"originalType": b"email"}


def test_full_read_converts_values(pg: PostgresConnector, db: psycopg.Connection[Any]) -> None:
    db.execute(ALL_TYPES)
    db.execute(
        """INSERT INTO typed VALUES
        (1, 2, 3, 1.5, 2.25, 12.50, 0.1, 123456789012345678901234567890.1234,
         true, 'Doe, "Jane"' || chr(10) || 'line 2', 'ab', 'a@x.org', 'happy',
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": [1, 2]}', '{"a":1}', '\\x00ff', '1 day 2 hours',
         '2024-02-29', '10:00:01.5', '2024-01-01 10:00:00', '2024-01-01 10:00:00.123456+02',
         '{1,NULL,3}', '{"x,y",""}', '{"2024-01-01 00:00:00+00"}', ARRAY['{"a":1}'::jsonb]),
        (2, NULL, NULL, 'NaN', '-Infinity', 'NaN', 'NaN', NULL,
         false, '', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         'infinity', NULL, '-infinity', 'infinity', NULL, '{}', NULL, NULL)"""
    )
    first, second = sorted(read(pg, table="typed").to_pylist(), key=lambda r: r["id"])
    assert first == {
        "id": 1,
        "small": 2,
        "regular": 3,
        "real4": 1.5,
        "real8": 2.25,
        "exact": Decimal("12.50"),
        "loose": 0.1,
        "huge": Decimal("123456789012345678901234567890.1234"),
        "flag": True,
        "label": 'Doe, "Jane"\nline 2',
        "code": "ab ",
        "address": "a@x.org",
        "feeling": "happy",
        "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "doc": '{"k": [1, 2]}',
        "raw": '{"a":1}',
        "blob": "\\x00ff",
        "span": "P1DT2H",
        "born": date(2024, 2, 29),
        "wake": datetime(2000, 1, 1, 10, 0, 1, 500000).time(),
        "seen": datetime(2024, 1, 1, 10, tzinfo=UTC),
        "changed": datetime(2024, 1, 1, 8, 0, 0, 123456, tzinfo=UTC),
        "counts": [1, None, 3],
        "names": ["x,y", ""],
        "stamps": ["2024-01-01T00:00:00+00:00"],
        "docs": '[{"a": 1}]',
    }
    assert second["label"] == "" and second["code"] is None  # '' and NULL stay apart
    assert (
        second["exact"] is None and second["loose"] != second["loose"]
    )  # NaN: null as decimal, nan as float
    assert second["real8"] == float("-inf")
    assert second["born"] is None and second["seen"] is None and second["changed"] is None  # infinities
    assert second["counts"] is None and second["names"] == []


def test_columns_and_preview(pg: PostgresConnector, db: psycopg.Connection[Any]) -> None:
    db.execute("CREATE TABLE contacts (id int, email text, secret text)")
    db.execute("INSERT INTO contacts SELECT g, 'u' || g || '@x.org', 's' FROM generate_series(1, 50) g")
    table = read(pg, columns=[{"name": "email"}, "id"])
    assert table.column_names == ["email", "id"]
    assert table.num_rows == 50
    assert pg.preview("contacts", limit=3).num_rows == 3
    assert pg.preview("contacts", limit=3).schema == pg.describe("contacts")
    with pytest.raises(InvalidSourceParams, match="no column"):
        read(pg, columns=['id", secret, "id'])


def window_table(db: psycopg.Connection[Any]) -> None:
    db.execute("CREATE TABLE contacts (id int, updated timestamptz, seen timestamp, day date, text_at text)")
    rows = [
        (1, T0),  # == start: excluded
        (2, T0 + timedelta(microseconds=1)),
        (3, T0 + timedelta(hours=1)),  # three rows tie at the end: all included
        (4, T0 + timedelta(hours=1)),
        (5, T0 + timedelta(hours=1)),
        (6, T0 + timedelta(hours=1, microseconds=1)),  # after the end
        (7, None),
    ]
    with db.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO contacts VALUES (%s, %s, %s AT TIME ZONE 'UTC', %s::date, %s::text)",
            [(i, at, at, at, at.isoformat() if at else None) for i, at in rows],
        )


def window_ids(pg: PostgresConnector, column: str, start: datetime | None, end: datetime | None) -> list[int]:
    table = read(pg, delta_column=column, window_start=start, window_end=end)
    return sorted(table.column("id").to_pylist())


@pytest.mark.parametrize("column", ["updated", "seen", "text_at"])
def test_windows_include_the_end_and_ties_exclude_the_start(
    pg: PostgresConnector, db: psycopg.Connection[Any], column: str
) -> None:
    window_table(db)
    end = T0 + timedelta(hours=1)
    assert window_ids(pg, column, T0, end) == [2, 3, 4, 5]
    assert window_ids(pg, column, end, None) == [6]  # the next run: ties at the watermark are not read again
    assert window_ids(pg, column, None, end) == [1, 2, 3, 4, 5, 7]  # nulls only without a lower bound
    assert window_ids(pg, column, None, None) == [1, 2, 3, 4, 5, 6, 7]
    assert window_ids(pg, column, end + timedelta(days=1), None) == []


def test_window_on_a_date_column_and_bad_delta_columns(
    pg: PostgresConnector, db: psycopg.Connection[Any]
) -> None:
    window_table(db)
    assert window_ids(pg, "day", T0 - timedelta(days=1), T0) == [1, 2, 3, 4, 5, 6]
    with pytest.raises(InvalidSourceParams, match="must be a timestamp"):
        window_ids(pg, "id", T0, None)
    with pytest.raises(InvalidSourceParams, match="not in the table"):
        window_ids(pg, "nope", T0, None)


def test_hundred_thousand_rows_in_batches(pg: PostgresConnector, db: psycopg.Connection[Any]) -> None:
    db.execute("CREATE TABLE contacts (id int8, first text, email text, score float8, updated timestamptz)")
    db.execute(
        """INSERT INTO contacts SELECT g, 'name ' || g, 'user' || g || '@example.com', g / 7.0,
           timestamptz '2024-01-01' + g * interval '1 second' FROM generate_series(1, 100000) g"""
    )
    db.execute("ANALYZE contacts")
    started = time.perf_counter()
    request = ReadRequest(params={"tableName": "contacts"}, data_format="tabular", batch_size=10_000)
    sizes = [batch.num_rows for batch in pg.read(request)]
    elapsed = time.perf_counter() - started
    assert sizes == [10_000] * 10
    abandoned = pg.read(ReadRequest(params={"tableName": "contacts"}, data_format="tabular", batch_size=10))
    assert next(iter(abandoned)).num_rows == 10
    abandoned.close()  # type: ignore[attr-defined]  # a generator: closing it cancels the COPY
    assert pg.preview("contacts", limit=1).num_rows == 1  # the connection is usable again
    print(f"\nPostgreSQL 100k rows x 5 columns: {100_000 / elapsed:,.0f} rows/s")


def test_table_names_cannot_inject_sql(pg: PostgresConnector, db: psycopg.Connection[Any]) -> None:
    db.execute("CREATE TABLE contacts (id int); INSERT INTO contacts VALUES (1)")
    db.execute('CREATE TABLE "we""ird; name" (id int); INSERT INTO "we""ird; name" VALUES (2)')
    for name in (
        "contacts; DROP TABLE contacts; --",
        'public."contacts"; DROP TABLE contacts',
        "pg_catalog.pg_authid",
    ):
        with pytest.raises(SourceNotFound):
            read(pg, table=name)
    assert db.execute("SELECT count(*) FROM contacts").fetchone() == (1,)
    assert read(pg, table='public.we"ird; name').column("id").to_pylist() == [2]
    assert read(pg, table='"we""ird; name"').column("id").to_pylist() == [2]
    assert read(pg, table="PUBLIC.Contacts").column("id").to_pylist() == [1]  # unquoted names fold


def test_table_name_parts() -> None:
    assert table_name_parts("Contacts") == ("public", "contacts")
    assert table_name_parts('crm."Lead.s"') == ("crm", "Lead.s")
    for bad in ("a.b.c", '"open', "a..b", ""):
        with pytest.raises(SourceNotFound):
            table_name_parts(bad)


def test_the_session_is_read_only(pg: PostgresConnector) -> None:
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        pg.client.connection().execute("CREATE TABLE sneaky (id int)")


def test_unknown_table_role_database_and_host(dsn: str, settings: Settings, pg: PostgresConnector) -> None:
    with pytest.raises(SourceNotFound, match="pick one"):
        read(pg, table="missing")
    policy = OutboundPolicy.from_settings(settings)
    base = dsn.rsplit("/", 1)[0]
    cases: list[tuple[str, type[ConnectorError]]] = [
        (dsn.replace("postgres@", "nobody@"), AuthenticationFailed),
        (f"{base}/no_such_database", SourceNotFound),
        (f"postgresql://postgres:pw@127.0.0.1:{free_port()}/x", SourceUnavailable),
    ]
    for url, error in cases:
        connector = PostgresConnector({"connectionString": url}, policy, settings)
        with pytest.raises(error) as caught:
            connector.explore()
        assert caught.value.transient is (error is SourceUnavailable)
        assert ":pw@" not in caught.value.message


def test_missing_privilege_is_terminal(dsn: str, settings: Settings, db: psycopg.Connection[Any]) -> None:
    role = "hw_reader_" + dsn.rsplit("_", 1)[1]
    db.execute("CREATE TABLE contacts (id int, secret text)")
    db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        db.execute(f"GRANT SELECT (id) ON contacts TO {role}")
        connector = PostgresConnector(
            {"connectionString": dsn.replace("postgres@", f"{role}@")},
            OutboundPolicy.from_settings(settings),
            settings,
        )
        try:
            assert read(connector, columns=["id"]).num_rows == 0
            with pytest.raises(AuthenticationFailed, match="grant it SELECT"):
                read(connector)
        finally:
            connector.close()
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def test_outbound_policy_and_unsafe_parameters(dsn: str, settings: Settings) -> None:
    with pytest.raises(OutboundRefused, match="HEADWATER_OUTBOUND_ALLOW"):
        PostgresConnector({"connectionString": dsn}, OutboundPolicy([]), settings).explore()
    with pytest.raises(OutboundRefused):
        auth = {"server": "localhost", "database": "x", "username": "postgres"}
        PostgresConnector(auth, OutboundPolicy(["127.0.0.2"]), settings).explore()
    policy = OutboundPolicy.from_settings(settings)
    for auth in (
        {"connectionString": "host=/var/run/postgresql dbname=x user=postgres"},
        {"connectionString": f"{dsn}?passfile=/etc/passwd"},
        {"connectionString": f"{dsn}?sslkey=/etc/ssl/private/key.pem"},
        {"connectionString": "postgresql://u:pw@[broken"},
        {"server": "127.0.0.1", "database": "x"},
    ):
        with pytest.raises(InvalidSourceParams) as caught:
            PostgresConnector(auth, policy, settings)
        assert "pw" not in caught.value.message


def test_basic_authentication_fields(dsn: str, settings: Settings, db: psycopg.Connection[Any]) -> None:
    db.execute("CREATE TABLE contacts (id int); INSERT INTO contacts VALUES (7)")
    auth = {
        "server": "127.0.0.1",
        "port": 5432,
        "database": dsn.rsplit("/", 1)[1],
        "username": "postgres",
        "password": "ignored-by-trust",
        "sslMode": "disable",
    }
    connector = PostgresConnector(auth, OutboundPolicy.from_settings(settings), settings)
    try:
        assert read(connector).column("id").to_pylist() == [7]
    finally:
        connector.close()


def test_bad_password_is_authentication_failed_without_the_password(settings: Settings) -> None:
    server = RefusingServer()
    try:
        auth = {
            "server": "127.0.0.1",
            "port": server.port,
            "database": "crm",
            "username": "hwtest",
            "password": "s3cret-pw",
            "sslMode": "disable",
        }
        connector = PostgresConnector(auth, OutboundPolicy.from_settings(settings), settings)
        with pytest.raises(AuthenticationFailed) as caught:
            connector.explore()
        assert "s3cret-pw" not in caught.value.message
        assert "hwtest" in caught.value.message
        assert not caught.value.transient
        assert server.passwords == [b"s3cret-pw"]
    finally:
        server.close()


# -- the outbound policy and Headwater's own metadata database (issue 12, sections 1 and 4) ------------


def test_hosts_are_judged_like_http_hosts(dsn: str, settings: Settings) -> None:
    database = dsn.rsplit("/", 1)[1]
    policy = OutboundPolicy.from_settings(settings)  # lists 127.0.0.1 only
    for server in ("0177.0.0.1", "2130706433", "127.1"):
        auth = {"server": server, "database": database, "username": "postgres", "sslMode": "disable"}
        with pytest.raises(OutboundRefused, match="standard way"):
            PostgresConnector(auth, policy, settings).explore()
    for server in ("100.64.0.1", "::ffff:10.0.0.1", "169.254.169.254"):
        auth = {"server": server, "database": database, "username": "postgres", "sslMode": "disable"}
        with pytest.raises(OutboundRefused, match=r"internal address|never connects"):
            PostgresConnector(auth, policy, settings).explore()


def metadata_settings(tmp_path: Path, url: str, **extra: Any) -> Settings:
    return Settings(
        home=tmp_path / "meta-home",
        environment="development",
        outbound_allow="127.0.0.1",
        database_url=url,
        **extra,
    )


def test_the_metadata_database_is_never_a_source(postgres_url: str, tmp_path: Path) -> None:
    # ``postgres_url`` plays Headwater's metadata database; the admin database is another one on the
    # same server, which stays readable (the other tests of this file read such databases).
    metadata = metadata_settings(tmp_path, postgres_url)
    policy = OutboundPolicy.from_settings(metadata)
    name = postgres_url.rsplit("/", 1)[1]
    for auth in (
        {"connectionString": postgres_url.replace("postgresql+psycopg://", "postgresql://")},
        {"server": "localhost", "database": name, "username": "postgres", "sslMode": "disable"},
    ):
        connector = PostgresConnector(auth, PinnedLocalhost(policy), metadata)
        with pytest.raises(OutboundRefused, match="HEADWATER_OUTBOUND_ALLOW_METADATA_DATABASE"):
            connector.explore()
        connector.close()

    other = PostgresConnector({"connectionString": POSTGRES_ADMIN_URL}, policy, metadata)
    try:
        other.explore()
    finally:
        other.close()
    allowed = metadata_settings(tmp_path, postgres_url, outbound_allow_metadata_database=True)
    connector = PostgresConnector({"connectionString": postgres_url.replace("+psycopg", "")}, policy, allowed)
    try:
        connector.explore()
    finally:
        connector.close()


def test_the_metadata_database_reached_another_way_is_refused_after_connecting(postgres_url: str) -> None:
    # Through a proxy, a replica or an alias the address check cannot recognise: the server's system
    # identifier and database name still match, and the session is closed before anything is read.
    from headwater.connectors.postgresql.client import MetadataDatabase, PostgresClient
    from headwater.connectors.postgresql.config import connection_params

    libpq = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    unknown_route = MetadataDatabase(libpq, host=None, port=5432, database=libpq.rsplit("/", 1)[1])
    client = PostgresClient(
        connection_params({"connectionString": libpq}),
        OutboundPolicy(["127.0.0.1"]),
        Path("/nonexistent"),
        unknown_route,
    )
    with pytest.raises(OutboundRefused, match="same server"):
        client.relations()
    assert client._conn is None


class PinnedLocalhost(OutboundPolicy):
    """The policy of ``base`` with ``localhost`` answered as 127.0.0.1 (the test host may list ::1 first)."""

    def __init__(self, base: OutboundPolicy) -> None:
        super().__init__([*base.hosts, *(str(n) for n in base.networks)])

    def resolve(self, url: str) -> list[Any]:
        import ipaddress

        _, host, _ = self.target(url)
        return [ipaddress.ip_address("127.0.0.1")] if host == "localhost" else super().resolve(url)
