"""Issue 12 item 7: rows committed late at the source land exactly once.

A CRM (or a database's ``now()``) stamps a row when its transaction starts; the row becomes visible when
it commits. A row stamped before a run's window end but visible only after that run used to be lost:
the next window started after it. Each test drives flows through the real server against a source
that speaks the real protocol (the Salesforce-compatible and Dynamics-compatible servers, a real
PostgreSQL database), inserting rows with a past stamp right after a run, then running again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from headwater.runtime.worker import Worker
from tests.fakes.dynamics import DynamicsFake
from tests.fakes.salesforce import SalesforceFake
from tests.flows_helpers import CONV, FS, created_id, dataset, profile_schema, target_connection
from tests.support import ApiClient, LiveServer
from tests.test_batch_runs import rows, run_and_wait
from tests.test_tutorials import DOC_002_FLOW

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)  # the first run's window end
T2 = T1 + timedelta(minutes=30)
T3 = T2 + timedelta(minutes=30)
CRM_TO_AEP = "9753525b-82c7-4dce-8a9b-5ccfce2b9876"
DATABASE_TO_AEP = "36f6fd49-fd11-49d8-8350-1a1e43917b67"
SALESFORCE = "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5"
DYNAMICS = "38ad80fe-8b06-4938-94f4-d4ee80266b07"
POSTGRESQL = "deb251f1-86be-44d2-ae93-634cd683b572"


def build_flow(
    api: ApiClient,
    connection: dict[str, Any],
    table: str,
    names: tuple[str, str, str],
    delta: str,
    flow_spec: str = CRM_TO_AEP,
    options: dict[str, Any] | None = None,
) -> dict[str, str]:
    """A flow from ``table`` (first name, last name, email columns ``names``) into a profile dataset,
    incremental on ``delta``; the source connection reads only those three columns (never the key)."""
    base = created_id(api.post(f"{FS}/connections", json={"name": "Source", **connection}))
    source = created_id(
        api.post(
            f"{FS}/sourceConnections",
            json={
                "name": table,
                "baseConnectionId": base,
                "data": {"format": "tabular"},
                "params": {"tableName": table, "columns": [{"name": n} for n in names]},
            },
        )
    )
    schema = profile_schema(api)
    ds = dataset(api, schema)
    target = target_connection(api, schema, ds)
    paths = ("person.name.firstName", "person.name.lastName", "personalEmail.address")
    mappings = [{"destinationXdmPath": p, "sourceAttribute": n} for p, n in zip(paths, names, strict=True)]
    mapping = created_id(api.post(f"{CONV}/mappingSets", json={"xdmSchema": schema, "mappings": mappings}))
    flow = json.loads(DOC_002_FLOW)
    flow.update(
        flowSpec={"id": flow_spec, "version": "1.0"},
        sourceConnectionIds=[source],
        targetConnectionIds=[target],
        options=options or {},
    )
    flow["transformations"][0]["params"]["deltaColumn"]["name"] = delta
    flow["transformations"][1]["params"]["mappingId"] = mapping
    return {"flow": created_id(api.post(f"{FS}/flows", json=flow)), "dataset": ds}


def first_names(api: ApiClient, dataset_id: str) -> Counter[str]:
    return Counter(r["person"]["name"]["firstName"] for r in rows(api, dataset_id))


def run(api: ApiClient, flow: str, end: datetime) -> dict[str, Any]:
    result = run_and_wait(api, flow, end.isoformat())
    assert result["state"] == "success", result["metrics"]["statusSummary"]
    return result


def records(result: dict[str, Any]) -> tuple[int, int]:
    """(rows landed, rows re-read in the overlap and dropped because they had landed already)."""
    landed = result["metrics"]["recordSummary"]["outputRecordCount"]
    return landed, result["metrics"]["durationSummary"]["extensions"]["skippedRecordCount"]


def window(result: dict[str, Any]) -> tuple[str, str]:
    extensions = result["metrics"]["durationSummary"]["extensions"]
    return extensions["windowStart"], extensions["windowEnd"]


# -- Salesforce ------------------------------------------------------------------------------------------


@pytest.fixture
def salesforce() -> Iterator[SalesforceFake]:
    fake = SalesforceFake().start()
    fake.add_object("Person", {"first_name": "string", "last_name": "string", "email": "email"})
    yield fake
    fake.stop()


def people(prefix: str, count: int) -> list[dict[str, str]]:
    return [
        {"first_name": f"{prefix}{i}", "last_name": "Late", "email": f"{prefix.lower()}{i}@example.com"}
        for i in range(count)
    ]


def test_salesforce_rows_committed_late_land_exactly_once(
    api: ApiClient, worker: Worker, salesforce: SalesforceFake
) -> None:
    connection = {
        "auth": {"specName": "Basic Authentication", "params": salesforce.soap_auth()},
        "connectionSpec": {"id": SALESFORCE, "version": "1.0"},
    }
    ids = build_flow(api, connection, "Person", ("first_name", "last_name", "email"), "LastModifiedDate")
    salesforce.insert("Person", people("Early", 20), modified=T0)
    salesforce.insert("Person", people("TieEarly", 2), modified=T1)  # exactly at the first window's end
    first = run(api, ids["flow"], T1)
    assert records(first) == (22, 0)

    # Visible only now, stamped before the first run's end: 100 contacts touched 5 s before it, one at
    # the boundary itself, three older contacts changed by a transaction that started 5 minutes before.
    salesforce.insert("Person", people("Late", 100), modified=T1 - timedelta(seconds=5))
    salesforce.insert("Person", people("TieLate", 1), modified=T1)
    changed = [
        r["Id"] for r in salesforce.records("Person") if r["first_name"] in ("Early0", "Early1", "Early2")
    ]
    salesforce.update("Person", changed, {"email": "changed@example.com"}, modified=T1 - timedelta(minutes=5))
    salesforce.insert("Person", people("Recent", 1), modified=T2 - timedelta(minutes=1))
    second = run(api, ids["flow"], T2)
    # The two boundary rows of the first run are re-read in the overlap and dropped, not doubled.
    assert records(second) == (105, 2)
    landed = first_names(api, ids["dataset"])
    expected = Counter(
        {**{f"Early{i}": 1 for i in range(20)}, **{f"Late{i}": 1 for i in range(100)}}
    ) + Counter(
        {"TieEarly0": 1, "TieEarly1": 1, "TieLate0": 1, "Recent0": 1, "Early0": 1, "Early1": 1, "Early2": 1}
    )
    assert landed == expected
    assert sum(r["personalEmail"]["address"] == "changed@example.com" for r in rows(api, ids["dataset"])) == 3

    # Nothing changed: the run lands nothing (Recent0, in its overlap, is dropped) and still moves the
    # checkpoint, so the run after it starts at its end.
    third = run(api, ids["flow"], T3)
    assert records(third) == (0, 1)
    assert window(third) == (T2.isoformat(), T3.isoformat())
    salesforce.insert("Person", people("After", 1), modified=T3 - timedelta(seconds=1))
    fourth = run(api, ids["flow"], T3 + timedelta(minutes=30))
    assert window(fourth)[0] == T3.isoformat()
    assert records(fourth) == (1, 0)
    assert sum(first_names(api, ids["dataset"]).values()) == sum(expected.values()) + 1


def test_lookback_is_a_flow_option_and_zero_turns_it_off(
    api: ApiClient, worker: Worker, salesforce: SalesforceFake
) -> None:
    connection = {
        "auth": {"specName": "Basic Authentication", "params": salesforce.soap_auth()},
        "connectionSpec": {"id": SALESFORCE, "version": "1.0"},
    }
    names = ("first_name", "last_name", "email")
    refused = api.post(
        f"{FS}/flows",
        json={
            "name": "x",
            "flowSpec": {"id": CRM_TO_AEP, "version": "1.0"},
            "options": {"lookbackSeconds": -1},
        },
    )
    assert refused.status_code == 400
    assert "options.lookbackSeconds" in refused.text
    ids = build_flow(api, connection, "Person", names, "LastModifiedDate", options={"lookbackSeconds": 3600})
    off = build_flow(api, connection, "Person", names, "LastModifiedDate", options={"lookbackSeconds": 0})
    assert records(run(api, ids["flow"], T1)) == (0, 0)
    assert records(run(api, off["flow"], T1)) == (0, 0)
    salesforce.insert("Person", people("HourLate", 2), modified=T1 - timedelta(minutes=50))
    assert records(run(api, ids["flow"], T2)) == (2, 0)  # 50 minutes late: inside a 1-hour lookback
    assert records(run(api, off["flow"], T2)) == (0, 0)  # the documented cost of turning it off


# -- Dynamics --------------------------------------------------------------------------------------------


def test_dynamics_rows_committed_late_land_exactly_once(api: ApiClient, worker: Worker) -> None:
    with DynamicsFake() as fake:
        connection = {
            "auth": {
                "specName": "Service Principal Based Authentication",
                "params": fake.service_principal_auth(),
            },
            "connectionSpec": {"id": DYNAMICS, "version": "1.0"},
        }
        ids = build_flow(api, connection, "contact", ("firstname", "lastname", "emailaddress1"), "modifiedon")
        fake.insert("contact", [{"firstname": "Tie", "lastname": "A"}], modified=T1)
        assert records(run(api, ids["flow"], T1)) == (1, 0)
        fake.insert("contact", [{"firstname": f"Late{i}", "lastname": "B"} for i in range(5)], modified=T1)
        assert records(run(api, ids["flow"], T2)) == (5, 1)
        assert first_names(api, ids["dataset"]) == Counter({"Tie": 1, **{f"Late{i}": 1 for i in range(5)}})


# -- PostgreSQL ------------------------------------------------------------------------------------------


@pytest.fixture
def source_db(postgres_url: str) -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    """A PostgreSQL database holding the source table, and the connection string a flow reads it with."""
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE contacts (id int PRIMARY KEY, first_name text, last_name text, email text, "
            "updated_at timestamptz)"
        )
        db.execute(
            "CREATE TABLE keyless (first_name text, last_name text, email text, updated_at timestamptz)"
        )
        yield url, db


def add(db: psycopg.Connection[Any], table: str, rows_: list[tuple[Any, ...]]) -> None:
    marks = ", ".join(["%s"] * len(rows_[0]))
    with db.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} VALUES ({marks})", rows_)


def pg_flow(api: ApiClient, url: str, table: str) -> dict[str, str]:
    connection = {
        "auth": {"specName": "Connection String Based Authentication", "params": {"connectionString": url}},
        "connectionSpec": {"id": POSTGRESQL, "version": "1.0"},
    }
    names = ("first_name", "last_name", "email")
    return build_flow(api, connection, table, names, "updated_at", flow_spec=DATABASE_TO_AEP)


def test_postgresql_rows_committed_late_land_exactly_once(
    api: ApiClient, worker: Worker, source_db: tuple[str, psycopg.Connection[Any]]
) -> None:
    url, db = source_db
    ids = pg_flow(api, url, "public.contacts")
    add(db, "contacts", [(i, f"Early{i}", "P", f"e{i}@example.com", T0) for i in range(10)])
    add(db, "contacts", [(100, "Tie", "P", "tie@example.com", T1)])
    assert records(run(api, ids["flow"], T1)) == (11, 0)
    # A transaction that began 30 s before the first run's end commits after it.
    add(
        db,
        "contacts",
        [(200 + i, f"Late{i}", "P", f"l{i}@example.com", T1 - timedelta(seconds=30)) for i in range(50)],
    )
    add(db, "contacts", [(300, "TieLate", "P", "tl@example.com", T1)])
    assert records(run(api, ids["flow"], T2)) == (51, 1)
    third = run(api, ids["flow"], T3)
    assert records(third) == (0, 0)
    assert window(third) == (T2.isoformat(), T3.isoformat())
    expected = Counter({**{f"Early{i}": 1 for i in range(10)}, **{f"Late{i}": 1 for i in range(50)}})
    assert first_names(api, ids["dataset"]) == expected + Counter({"Tie": 1, "TieLate": 1})


def test_postgresql_table_without_a_key_keeps_identical_rows_apart(
    api: ApiClient, worker: Worker, source_db: tuple[str, psycopg.Connection[Any]]
) -> None:
    url, db = source_db
    ids = pg_flow(api, url, "keyless")
    same = ("Twin", "P", "twin@example.com", T1 - timedelta(seconds=10))
    add(db, "keyless", [same, same])  # no key: rows are told apart by their values, counted
    assert records(run(api, ids["flow"], T1)) == (2, 0)
    add(db, "keyless", [same])  # a third identical row, committed late
    assert records(run(api, ids["flow"], T2)) == (1, 2)
    assert first_names(api, ids["dataset"]) == Counter({"Twin": 3})


def test_a_window_never_moves_back_and_a_lost_keys_file_never_doubles_rows(
    api: ApiClient, worker: Worker, server: LiveServer, salesforce: SalesforceFake
) -> None:
    connection = {
        "auth": {"specName": "Basic Authentication", "params": salesforce.soap_auth()},
        "connectionSpec": {"id": SALESFORCE, "version": "1.0"},
    }
    ids = build_flow(api, connection, "Person", ("first_name", "last_name", "email"), "LastModifiedDate")
    salesforce.insert("Person", people("Ada", 3), modified=T2 - timedelta(minutes=2))
    assert records(run(api, ids["flow"], T2)) == (3, 0)
    # A run whose end is before the previous end (an older slot run late) covers the empty window at
    # the previous end: it used to move the checkpoint back, and the next run doubled Ada0..2.
    back = run(api, ids["flow"], T1)
    assert window(back) == (T2.isoformat(), T2.isoformat())
    assert records(back) == (0, 3)
    # Without the keys of what landed (the file deleted by hand), a run reads no overlap rather than
    # landing those rows twice.
    for path in (server.settings.warehouse_dir / "_lookback" / ids["flow"]).iterdir():
        path.unlink()
    assert records(run(api, ids["flow"], T3)) == (0, 0)
    assert first_names(api, ids["dataset"]) == Counter({"Ada0": 1, "Ada1": 1, "Ada2": 1})
