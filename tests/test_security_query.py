"""Queries over datasets read those datasets and nothing else (issue 12, section 8).

`headwater datasets query` hands caller-written SQL to DuckDB, which by default reads any file of the
host, writes files, attaches databases, loads extensions and changes its own settings. Each escape is
tried here and must end in a clear error while a normal query over the sandbox's datasets works: most
on the query engine itself (cheap), the main ones through the installed CLI against a live server's home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from headwater.lake.iceberg import IcebergSource, Lake
from headwater.lake.query import QueryEngine, QueryError, QueryLimitExceeded, QueryLimits, QueryRefused
from headwater.settings import Settings
from headwater.stores.metadata import Scope
from tests.flows_helpers import profile_schema
from tests.support import ApiClient, LiveServer

EXE = str(Path(sys.executable).with_name("headwater"))
SCHEMA = pa.schema([("_id", pa.string()), ("person", pa.struct([("name", pa.string())])), ("n", pa.int64())])


def _rows(prefix: str, count: int) -> pa.Table:
    return pa.table(
        {
            "_id": [f"{prefix}{i}" for i in range(count)],
            "person": [{"name": f"{prefix}-name-{i}"} for i in range(count)],
            "n": list(range(count)),
        },
        schema=SCHEMA,
    )


def _land(lake: Lake, scope: Scope, dataset_id: str, rows: pa.Table) -> None:
    table = lake.ensure_table(scope, dataset_id, SCHEMA)
    lake.commit(table, lake.write_files(table, rows.to_batches(), SCHEMA), {"runId": "r-" + dataset_id})


# --- the engine ---


@pytest.fixture(scope="module")
def lake_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, Path]:
    home = tmp_path_factory.mktemp("query-home")
    lake = Lake(Settings(home=home, environment="development"))
    scope = Scope("org-a", "sandbox-a")
    _land(lake, scope, "contacts", _rows("c", 5))
    _land(lake, Scope("org-a", "sandbox-b"), "secret", _rows("s", 3))
    return lake, home


@pytest.fixture(scope="module")
def tables(lake_home: tuple[Lake, Path]) -> dict[str, IcebergSource]:
    lake, _ = lake_home
    table = lake.load(Scope("org-a", "sandbox-a"), "contacts")
    assert table is not None
    return {"dataset": IcebergSource(table), "contacts": IcebergSource(table)}


ENGINE = QueryEngine(QueryLimits(timeout_seconds=5, memory_mb=128, threads=1, max_rows=1000))


def test_a_normal_query_reads_the_current_snapshot(tables: dict[str, IcebergSource]) -> None:
    result = ENGINE.run("SELECT _id, person.name AS name FROM dataset WHERE n < 2 ORDER BY _id", tables)
    assert result.table.to_pylist() == [{"_id": "c0", "name": "c-name-0"}, {"_id": "c1", "name": "c-name-1"}]
    assert not result.truncated


def test_a_table_can_be_scanned_twice_in_one_query(tables: dict[str, IcebergSource]) -> None:
    result = ENGINE.run("SELECT count(*) AS n FROM dataset a JOIN contacts b USING (_id)", tables)
    assert result.table.to_pylist() == [{"n": 5}]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_blob('/proc/self/environ')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM 'https://example.com/data.csv'",
        "SELECT * FROM dataset UNION ALL SELECT * FROM read_json('/etc/hostname')",
    ],
)
def test_reading_files_is_refused(tables: dict[str, IcebergSource], sql: str) -> None:
    with pytest.raises(QueryRefused, match="only the datasets of this sandbox"):
        ENGINE.run(sql, tables)


def test_the_warehouse_cannot_be_read_as_loose_parquet(
    lake_home: tuple[Lake, Path], tables: dict[str, IcebergSource]
) -> None:
    _, home = lake_home
    assert list((home / "warehouse").rglob("*.parquet")), "the other sandbox's files exist"
    with pytest.raises(QueryRefused, match="only the datasets of this sandbox"):
        ENGINE.run(f"SELECT * FROM read_parquet('{home}/warehouse/**/*.parquet')", tables)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("COPY dataset TO '/tmp/headwater-query-escape.csv'", "COPY"),
        ("COPY (SELECT 1) TO '/tmp/headwater-query-escape.csv'", "COPY"),
        ("EXPORT DATABASE '/tmp/headwater-query-export'", "EXPORT"),
        ("ATTACH '/tmp/headwater-query-escape.db' AS other", "ATTACH"),
        ("ATTACH ':memory:' AS other", "ATTACH"),
        ("INSTALL httpfs", "LOAD"),
        ("LOAD httpfs", "LOAD"),
        ("SET enable_external_access = true", "SET"),
        ("RESET memory_limit", "SET"),
        ("PRAGMA memory_limit = '100GB'", "SET"),  # PRAGMA x = y is a SET
        ("PRAGMA database_list", "PRAGMA"),
        ("CREATE TABLE kept AS SELECT * FROM dataset", "CREATE"),
        ("CALL pragma_version()", "CALL"),
    ],
)
def test_statements_other_than_select_are_refused(
    tables: dict[str, IcebergSource], sql: str, kind: str
) -> None:
    with pytest.raises(QueryRefused, match=f"{kind} statements are not allowed"):
        ENGINE.run(sql, tables)
    assert not Path("/tmp/headwater-query-escape.csv").exists()
    assert not Path("/tmp/headwater-query-export").exists()


def test_several_statements_are_refused(tables: dict[str, IcebergSource]) -> None:
    with pytest.raises(QueryRefused, match="exactly one SELECT"):
        ENGINE.run("SELECT 1; COPY dataset TO '/tmp/headwater-query-escape.csv'", tables)


def test_settings_cannot_be_changed_from_inside_a_select(tables: dict[str, IcebergSource]) -> None:
    # query() runs a SELECT only; a function cannot reach the settings either, and environment reads
    # (getenv exists only in DuckDB's shell) are not there.
    with pytest.raises(QueryError):
        ENGINE.run("SELECT * FROM query('SET enable_external_access = true')", tables)
    with pytest.raises(QueryError, match="getenv"):
        ENGINE.run("SELECT getenv('HEADWATER_TOKEN_SIGNING_KEY')", tables)
    result = ENGINE.run("SELECT current_setting('enable_external_access') AS v", tables)
    assert result.table.to_pylist() == [{"v": False}]


def test_a_table_that_was_not_handed_in_is_not_visible(
    lake_home: tuple[Lake, Path], tables: dict[str, IcebergSource]
) -> None:
    for sql in (
        "SELECT * FROM secret",
        "SELECT * FROM query_table('secret')",
        "SELECT * FROM memory.main.dataset",
    ):
        with pytest.raises(QueryError, match="only the datasets of this sandbox"):
            ENGINE.run(sql, tables)


def test_a_huge_cross_join_is_stopped_by_the_time_bound(tables: dict[str, IcebergSource]) -> None:
    engine = QueryEngine(QueryLimits(timeout_seconds=1, memory_mb=128, threads=1))
    with pytest.raises(QueryLimitExceeded, match="HEADWATER_QUERY_TIMEOUT_SECONDS"):
        # 10^12 rows from four small inputs: compute-bound, nothing large to hold, so only time stops it.
        engine.run("SELECT count(*) FROM range(1000) a, range(1000) b, range(1000) c, range(1000) d", tables)


def test_a_query_past_the_memory_limit_is_stopped(tables: dict[str, IcebergSource]) -> None:
    with pytest.raises(QueryLimitExceeded, match="HEADWATER_QUERY_MEMORY_MB"):
        ENGINE.run("SELECT list(i) FROM range(100000000) t(i)", tables)


BIG_VALUES = """
import resource
from headwater.lake.query import QueryEngine, QueryLimits, QueryLimitExceeded, bound_address_space
bound_address_space(64)
try:
    QueryEngine(QueryLimits(memory_mb=64, threads=1)).run(
        "SELECT max(length(repeat('x', 100000000) || i::varchar)) AS n FROM range(30) t(i)", {}
    )
    print("ran")
except QueryLimitExceeded as exc:
    print("limited:", exc.detail)
print("peak", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_values_duckdb_does_not_count_are_bounded_in_a_one_shot_process() -> None:
    # 30 strings of 100 MB live outside DuckDB's buffer manager (3 GB unbounded); the CLI caps
    # its own address space, so the query ends in the memory error instead. A child process: the cap is
    # process-wide.
    out = subprocess.run([sys.executable, "-c", BIG_VALUES], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "limited: The query needs more than 64 MB" in out.stdout, out.stdout
    assert int(out.stdout.split("peak")[1]) < 1500


def test_results_are_cut_at_the_row_cap_and_say_so(tables: dict[str, IcebergSource]) -> None:
    result = ENGINE.run("SELECT i FROM range(5000) t(i)", tables)
    assert result.table.num_rows == 1000 and result.truncated
    exact = ENGINE.run("SELECT i FROM range(1000) t(i)", tables)
    assert exact.table.num_rows == 1000 and not exact.truncated


# --- through the CLI, against a live server's home ---


def _cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")},
        "HEADWATER_HOME": str(server.settings.home),
        "HEADWATER_ENVIRONMENT": "development",
        "COLUMNS": "200",
    }
    if server.settings.database_url:
        env["HEADWATER_DATABASE_URL"] = server.settings.database_url
    return subprocess.run(
        [EXE, "datasets", "query", *args], env=env, capture_output=True, text=True, timeout=120
    )


def _dataset_with_rows(server: LiveServer, api: ApiClient, prefix: str) -> str:
    created = api.post(
        "/data/foundation/catalog/dataSets",
        json={"name": f"{prefix} data", "schemaRef": {"id": profile_schema(api)}},
    )
    assert created.status_code == 201, created.text
    dataset_id = str(created.json()[0].split("/")[-1])
    sandbox = server.services.store.get_sandbox(api.org_id, api.sandbox_name)
    assert sandbox is not None
    _land(server.services.lake, Scope(api.org_id, sandbox.id), dataset_id, _rows(prefix, 3))
    return dataset_id


def test_the_cli_runs_a_normal_query_and_refuses_escapes(
    server: LiveServer, api: ApiClient, other_sandbox_api: ApiClient
) -> None:
    if api.org_id != server.creds["orgId"]:
        pytest.skip("the CLI works on the default organization")
    mine = _dataset_with_rows(server, api, "mine")
    theirs = _dataset_with_rows(server, other_sandbox_api, "theirs")
    theirs_doc = other_sandbox_api.get(f"/data/foundation/catalog/dataSets/{theirs}").json()[theirs]
    theirs_table = theirs_doc["tags"]["adobe/pqs/table"][0]  # its table name in its own sandbox
    sandbox = ("--sandbox", api.sandbox_name)

    ok = _cli(server, mine, *sandbox, "--json", "SELECT _id FROM dataset ORDER BY _id")
    assert ok.returncode == 0, ok.stderr
    assert [json.loads(line)["_id"] for line in ok.stdout.splitlines()] == ["mine0", "mine1", "mine2"]

    passwd = _cli(server, mine, *sandbox, "SELECT * FROM read_csv('/etc/passwd')")
    assert passwd.returncode == 1
    assert "root" not in passwd.stdout
    assert "only the datasets of this sandbox" in " ".join(passwd.stderr.split())
    assert "Traceback" not in passwd.stderr

    # Another sandbox's dataset, by its table name there (the CLI refuses its id: NotFound).
    by_name = _cli(server, mine, *sandbox, f'SELECT * FROM "{theirs_table}"')
    assert by_name.returncode == 1 and "theirs0" not in by_name.stdout
    assert "only the datasets of this sandbox" in " ".join(by_name.stderr.split())


def test_the_query_service_sees_the_sandbox_datasets_by_table_name_and_no_others(
    server: LiveServer, api: ApiClient, other_sandbox_api: ApiClient
) -> None:
    from headwater.errors import NotFound
    from headwater.services.tenancy import Actor

    mine = _dataset_with_rows(server, api, "mine")
    empty = api.post(
        "/data/foundation/catalog/dataSets",
        json={"name": "empty data", "schemaRef": {"id": profile_schema(api)}},
    )
    assert empty.status_code == 201, empty.text
    theirs = _dataset_with_rows(server, other_sandbox_api, "theirs")
    org = server.services.store.get_org(api.org_id)
    sandbox = server.services.store.get_sandbox(api.org_id, api.sandbox_name)
    assert org is not None and sandbox is not None
    actor = Actor(org=org, sandbox=sandbox, client_id="test")
    queries = server.services.queries

    joined = queries.run(actor, "SELECT count(*) AS n FROM dataset JOIN mine_data USING (_id)", mine)
    assert joined.table.to_pylist() == [{"n": 3}]
    with pytest.raises(QueryError, match="has no data yet"):
        queries.run(actor, "SELECT * FROM empty_data")
    with pytest.raises(QueryError, match="only the datasets of this sandbox"):
        queries.run(actor, "SELECT * FROM theirs_data")
    with pytest.raises(NotFound):
        queries.run(actor, "SELECT * FROM dataset", theirs)
