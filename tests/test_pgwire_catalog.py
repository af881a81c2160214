"""The wire endpoint's PostgreSQL catalog (pgwire/catalog.py): the real ``psql`` runs the ``\\d`` commands
AEP's Query Service documents, and psycopg reads ``information_schema`` and ``pg_catalog`` as drivers and
BI tools do, over the tables of the login's sandbox only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pyarrow as pa
import pytest

from headwater.pgwire.catalog import is_catalog_query, rewrite
from headwater.stores.metadata import Scope
from tests.flows_helpers import profile_schema
from tests.support import ApiClient, LiveServer, token_for
from tests.test_pgwire import SCHEMA, SEEN, _connect, _psql, _sandbox, live, token

__all__ = ["live", "token"]  # the module's fixtures, shared with test_pgwire.py's definitions


@pytest.fixture(scope="module")
def tables(live: LiveServer, token: str) -> Iterator[tuple[ApiClient, str, str]]:
    """A sandbox with a dataset of one row and a dataset with no data yet: (client, table, empty table)."""
    with _sandbox(live, token) as api:
        names = []
        for title in ("Catalog people", "Catalog empty"):
            created = api.post(
                "/data/foundation/catalog/dataSets",
                json={"name": title, "schemaRef": {"id": profile_schema(api)}},
            )
            assert created.status_code == 201, created.text
            dataset_id = str(created.json()[0].split("/")[-1])
            doc = api.get(f"/data/foundation/catalog/dataSets/{dataset_id}").json()[dataset_id]
            names.append((dataset_id, str(doc["tags"]["adobe/pqs/table"][0])))
        record = live.services.store.get_sandbox(api.org_id, api.sandbox_name)
        assert record is not None
        lake, (dataset_id, table) = live.services.lake, names[0]
        row = {"_id": "p0", "n": 1, "score": 0.5, "active": True, "seen": SEEN, "day": SEEN.date()}
        rows = pa.Table.from_pylist([row | {"person": {"name": "Ada"}}], schema=SCHEMA)
        iceberg = lake.ensure_table(Scope(api.org_id, record.id), dataset_id, SCHEMA)
        lake.commit(iceberg, lake.write_files(iceberg, rows.to_batches(), SCHEMA), {"runId": "r-cat"})
        yield api, table, names[1][1]


def _lines(live: LiveServer, token: str, database: str, command: str) -> list[str]:
    done = _psql(live, token, database, "-v", "ON_ERROR_STOP=1", "-A", "-c", command)
    assert done.returncode == 0 and not done.stderr, (command, done.stderr)
    return done.stdout.splitlines()


def test_psql_describes_a_table_and_lists_what_the_sandbox_has(
    live: LiveServer, token: str, tables: tuple[ApiClient, str, str]
) -> None:
    api, table, empty = tables
    database, user = f"{api.sandbox_name}:all", live.creds["orgId"]
    described = _lines(live, token, database, f"\\d {table}")
    assert described[:2] == [f'Table "public.{table}"', "Column|Type|Collation|Nullable|Default"]
    assert described[2:9] == [
        "_id|text|||",
        "n|bigint|||",
        "score|double precision|||",
        "active|boolean|||",
        "seen|timestamp with time zone|||",
        "day|date|||",
        "person|json|||",
    ]
    assert _lines(live, token, database, f"\\d+ {table}")[1].startswith("Column|Type|Collation|Nullable")
    assert _lines(live, token, database, f"\\d {empty}")[0] == f'Table "public.{empty}"'

    listed = [f"public|{name}|table|{user}" for name in sorted([table, empty])]
    for command in ("\\d", "\\dt", "\\dS"):
        assert _lines(live, token, database, command)[2:4] == listed, command
    assert _lines(live, token, database, "\\dt+")[1].startswith("Schema|Name|Type|Owner|Persistence")
    # \dn filters with !~ '^pg_': PostgreSQL's regular expressions search, they do not match whole.
    assert _lines(live, token, database, "\\dn") == [
        "List of schemas",
        "Name|Owner",
        f"public|{user}",
        "(1 row)",
    ]
    assert _lines(live, token, database, "\\l")[2].split("|")[:3] == [database, user, "UTF8"]
    assert _lines(live, token, database, "\\l+")[2].split("|")[:3] == [database, user, "UTF8"]
    assert _lines(live, token, database, "\\du")[2].split("|")[0] == user
    for command in ("\\dv", "\\dm", "\\di", "\\ds", "\\dE"):  # psql says so on stderr
        done = _psql(live, token, database, "-v", "ON_ERROR_STOP=1", "-c", command)
        assert (done.returncode, done.stderr) == (0, "Did not find any relations.\n"), command
    assert _lines(live, token, database, "\\dT")[-1] == "(0 rows)"
    assert _lines(live, token, database, "\\df")[-1] == "(0 rows)"
    missing = _psql(live, token, database, "-c", "\\d nosuch")
    assert missing.stderr == 'Did not find any relation named "nosuch".\n'  # psql exits 1, as on PostgreSQL


def test_drivers_read_information_schema_and_pg_catalog(
    live: LiveServer, token: str, tables: tuple[ApiClient, str, str]
) -> None:
    api, table, empty = tables
    with _connect(live, token, f"{api.sandbox_name}:all", autocommit=True) as conn:
        found = conn.execute(
            "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = %s "
            "ORDER BY table_name",
            ["public"],
        ).fetchall()
        assert found == sorted([(table, "BASE TABLE"), (empty, "BASE TABLE")])
        columns = conn.execute(
            "SELECT column_name, data_type, ordinal_position FROM information_schema.columns "
            "WHERE table_name = %s ORDER BY ordinal_position",
            [table],
        ).fetchall()
        assert columns[:3] == [("_id", "text", 1), ("n", "bigint", 2), ("score", "double precision", 3)]
        assert columns[-1] == ("person", "json", 7)
        # Type oids are PostgreSQL's own: a driver maps them to its types.
        oids = conn.execute(
            "SELECT a.attname, a.atttypid FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relname = %s AND a.attnum > 0 ORDER BY a.attnum",
            [table],
        ).fetchall()
        assert oids[:2] == [("_id", 25), ("n", 20)]
        schemas = conn.execute("SELECT nspname FROM pg_catalog.pg_namespace ORDER BY 1").fetchall()
        assert schemas == [("information_schema",), ("pg_catalog",), ("public",)]
        # A catalog query joined with the sandbox's own table: both are visible to it.
        joined = conn.execute(
            f"SELECT count(*) FROM {table} t, pg_catalog.pg_class c WHERE c.relname = %s", [table]
        ).fetchone()
        assert joined == (1,)

        # What the emulated catalog does not have is an error that names it, as the caller wrote it.
        with pytest.raises(psycopg.errors.UndefinedTable, match=r"information_schema\.nosuch"):
            conn.execute("SELECT * FROM information_schema.nosuch")
        with pytest.raises(psycopg.errors.UndefinedTable, match=r"pg_catalog\.pg_nosuch: not in"):
            conn.execute("SELECT * FROM pg_catalog.pg_nosuch")
        with pytest.raises(psycopg.Error, match="pg_read_file"):
            conn.execute("SELECT pg_catalog.pg_read_file('/etc/passwd')")
        # Still one SELECT, checked as any other.
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="not allowed"):
            conn.execute("CREATE TABLE pg_catalog.kept AS SELECT 1")
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_class").fetchone() == (2,)


def test_another_sandbox_or_organization_sees_none_of_the_catalog(
    live: LiveServer, token: str, tables: tuple[ApiClient, str, str]
) -> None:
    api, table, _ = tables
    with (
        _sandbox(live, token) as other,
        _connect(live, token, f"{other.sandbox_name}:all", autocommit=True) as conn,
    ):
        assert conn.execute("SELECT table_name FROM information_schema.tables").fetchall() == []
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_attribute").fetchone() == (0,)
        listed = _psql(live, token, other.sandbox_name, "-c", "\\dt")
        assert listed.returncode == 0 and "Did not find any relations." in listed.stderr
        described = _psql(live, token, other.sandbox_name, "-c", f"\\d {table}")
        assert f'Did not find any relation named "{table}"' in described.stderr

    tenancy = live.services.tenancy
    org = tenancy.create_org("Catalog other org", "cat" + uuid.uuid4().hex[:8])
    tenancy.create_sandbox(org.id, api.sandbox_name)  # the same sandbox name, in their organization
    client_id, secret = tenancy.create_client(org.id, "catalog other")
    theirs = token_for(live.base_url, client_id, secret)
    login = {"user": org.id, "password": theirs, "host": "127.0.0.1", "port": live.settings.pgwire_port}
    with psycopg.connect(dbname=api.sandbox_name, autocommit=True, **login) as conn:
        assert conn.execute("SELECT relname FROM pg_catalog.pg_class").fetchall() == []


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT 'pg_catalog.pg_class', \"pg_class\" FROM t",
            "SELECT 'pg_catalog.pg_class', \"pg_class\" FROM t",
        ),
        ("SELECT 1 FROM pg_catalog.pg_class c", "SELECT 1 FROM hw_pg.pg_class c"),
        ("SELECT 1 FROM pg_class, information_schema.tables", "SELECT 1 FROM hw_pg.pg_class, hw_is.tables"),
        ("WHERE n.nspname !~ '^pg_'", "WHERE NOT regexp_matches(n.nspname, '^pg_')"),
        ("WHERE x ~* 'A'", "WHERE regexp_matches(x, 'A', 'i')"),
        (
            "WHERE c.relname OPERATOR(pg_catalog.~) '^(x)$' COLLATE pg_catalog.default AND true",
            "WHERE regexp_matches(c.relname, '^(x)$') AND true",
        ),
        ("SELECT c.oid::pg_catalog.regclass::pg_catalog.text", "SELECT c.oid::VARCHAR::VARCHAR"),
        ("SELECT x::pg_catalog.int2[]", "SELECT x::SMALLINT[]"),
        (
            "SELECT pg_catalog.unnest(a), pg_catalog.format_type(1, 2)",
            "SELECT unnest(a), hw_pg.format_type(1, 2)",
        ),
        ("WHERE r = '{0}' AND s = E'it\\'s ~ pg_class'", "WHERE r = '[0]' AND s = E'it\\'s ~ pg_class'"),
        ("SELECT 'a''pg_class'''", "SELECT 'a''pg_class'''"),
    ],
)
def test_the_rewrite_touches_code_and_never_literals(sql: str, expected: str) -> None:
    assert rewrite(sql) == expected


def test_only_code_makes_a_catalog_query() -> None:
    assert is_catalog_query("SELECT * FROM pg_catalog.pg_class")
    assert is_catalog_query("select relname from PG_CLASS")
    assert not is_catalog_query("-- pg_catalog.pg_class\nSELECT 'information_schema.tables' FROM people")
    assert not is_catalog_query('SELECT "pg_class" FROM people')
