"""Batch dataflows end to end: a files source, a mapping, runs on demand, incremental windows, row errors,
error thresholds, batches, dataset previews, and recovery of a run whose bookkeeping was lost."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from headwater.runtime.worker import Worker
from tests.flows_helpers import CAT, CONV, FS, created_id, dataset, profile_schema, target_connection
from tests.support import ApiClient, LiveServer, wait_until

LOCAL_FILES = "c79513cd-ceb9-437a-812d-a5b148aceb4c"
FILES_TO_AEP = "52b72b28-2b0c-4932-b239-a3ed85e219bc"
FIELDS = ["id", "first_name", "last_name", "email", "updatedAt"]


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def contact(i: int, updated: str, email: str | None = None) -> dict[str, str]:
    return {
        "id": str(i),
        "first_name": f"First{i}",
        "last_name": f"Last{i}",
        "email": email or f"person{i}@example.com",
        "updatedAt": updated,
    }


def files_flow(
    api: ApiClient,
    root: Path,
    options: dict[str, Any] | None = None,
    extra_mappings: list[dict[str, Any]] | None = None,
    date_format: str = "yyyy-MM-dd HH:mm:ss",
    path: str = "contacts.csv",
) -> dict[str, str]:
    conn = created_id(
        api.post(
            f"{FS}/connections",
            json={
                "name": "Local contacts",
                "auth": {"specName": "Local Folder", "params": {"rootPath": str(root)}},
                "connectionSpec": {"id": LOCAL_FILES, "version": "1.0"},
            },
        )
    )
    source = created_id(
        api.post(
            f"{FS}/sourceConnections",
            json={
                "name": "contacts.csv",
                "baseConnectionId": conn,
                "data": {"format": "delimited"},
                "params": {"path": path},
            },
        )
    )
    schema = profile_schema(api)
    ds = dataset(api, schema)
    target = target_connection(api, schema, ds)
    mappings = [
        {"destinationXdmPath": "_id", "sourceAttribute": "id"},
        {"destinationXdmPath": "person.name.firstName", "sourceAttribute": "first_name"},
        {"destinationXdmPath": "person.name.lastName", "sourceAttribute": "last_name"},
        {"destinationXdmPath": "personalEmail.address", "sourceAttribute": "email"},
        *(extra_mappings or []),
    ]
    mapping = created_id(api.post(f"{CONV}/mappingSets", json={"xdmSchema": schema, "mappings": mappings}))
    flow = created_id(
        api.post(
            f"{FS}/flows",
            json={
                "name": "Contacts",
                "flowSpec": {"id": FILES_TO_AEP, "version": "1.0"},
                "sourceConnectionIds": [source],
                "targetConnectionIds": [target],
                "transformations": [
                    {
                        "name": "Copy",
                        "params": {
                            "deltaColumn": {
                                "name": "updatedAt",
                                "dateFormat": date_format,
                                "timezone": "UTC",
                            }
                        },
                    },
                    {"name": "Mapping", "params": {"mappingId": mapping}},
                ],
                "options": options or {},
            },
        )
    )
    return {"flow": flow, "dataset": ds, "schema": schema}


def run_and_wait(api: ApiClient, flow: str, window_end: str) -> dict[str, Any]:
    created = api.post(f"{FS}/runs", json={"flowId": flow, "params": {"windowEndTime": window_end}})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    assert created.json()["metrics"]["statusSummary"]["status"] == "scheduled"

    def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = api.get(f"{FS}/runs/{run_id}").json()["items"][0]
        return run if run["state"] in ("success", "partialSuccess", "failed") else None

    result: dict[str, Any] = wait_until(finished, timeout=60, interval=0.1)
    return result


def rows(api: ApiClient, dataset_id: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = api.get(f"{CAT}/dataSets/{dataset_id}/preview?limit=1000").json()["data"]
    return data


def test_a_file_flow_lands_mapped_rows_and_then_only_new_ones(
    api: ApiClient, worker: Worker, tmp_path: Path
) -> None:
    write_csv(tmp_path / "contacts.csv", [contact(i, "2024-01-01 10:00:00") for i in range(5)])
    ids = files_flow(api, tmp_path)
    first = run_and_wait(api, ids["flow"], "2024-01-01T10:00:00Z")
    assert first["state"] == "success", first["metrics"]["statusSummary"]
    assert first["metrics"]["recordSummary"] == {
        "inputRecordCount": 5,
        "outputRecordCount": 5,
        "failedRecordCount": 0,
    }
    landed = rows(api, ids["dataset"])
    assert sorted(r["person"]["name"]["firstName"] for r in landed) == [f"First{i}" for i in range(5)]
    assert {r["personalEmail"]["address"] for r in landed} == {f"person{i}@example.com" for i in range(5)}

    # Rows at the old window end were read once; a row changed later and a new row are read next time.
    write_csv(
        tmp_path / "contacts.csv",
        [contact(i, "2024-01-01 10:00:00") for i in range(5)]
        + [contact(1, "2024-01-02 09:00:00", "changed@example.com"), contact(9, "2024-01-02 09:00:00")],
    )
    second = run_and_wait(api, ids["flow"], "2024-01-02T09:00:00Z")
    assert second["metrics"]["recordSummary"]["inputRecordCount"] == 2, second["metrics"]
    window = second["metrics"]["durationSummary"]["extensions"]
    assert window["windowStart"].startswith("2024-01-01T10:00:00")
    landed = rows(api, ids["dataset"])
    assert len(landed) == 7
    assert "changed@example.com" in {r["personalEmail"]["address"] for r in landed}

    third = run_and_wait(api, ids["flow"], "2024-01-03T00:00:00Z")
    assert third["metrics"]["recordSummary"]["inputRecordCount"] == 0
    assert len(rows(api, ids["dataset"])) == 7

    batches = api.get(f"{CAT}/batches", params={"dataSet": ids["dataset"]}).json()
    assert len(batches) == 3 and {b["status"] for b in batches.values()} == {"success"}
    runs = api.get(f"{FS}/runs", params={"property": f"flowId=={ids['flow']}"}).json()["items"]
    assert len(runs) == 3


def test_bulk_update_with_one_timestamp_loads_once(api: ApiClient, worker: Worker, tmp_path: Path) -> None:
    stamp = "2024-03-01 00:00:00"
    write_csv(tmp_path / "contacts.csv", [contact(i, stamp) for i in range(500)])
    ids = files_flow(api, tmp_path)
    assert (
        run_and_wait(api, ids["flow"], "2024-03-01T00:00:00Z")["metrics"]["recordSummary"][
            "outputRecordCount"
        ]
        == 500
    )
    assert (
        run_and_wait(api, ids["flow"], "2024-03-02T00:00:00Z")["metrics"]["recordSummary"]["inputRecordCount"]
        == 0
    )
    assert len(rows(api, ids["dataset"])) == 500


def test_failed_rows_are_kept_with_their_reason(api: ApiClient, worker: Worker, tmp_path: Path) -> None:
    write_csv(
        tmp_path / "contacts.csv",
        [
            contact(1, "2024-01-01 00:00:00"),
            contact(2, "2024-01-01 00:00:00", email="not-an-email"),
            contact(3, "2024-01-01 00:00:00"),
        ],
    )
    ids = files_flow(api, tmp_path)
    run = run_and_wait(api, ids["flow"], "2024-01-01T00:00:00Z")
    assert run["state"] == "partialSuccess"
    assert run["metrics"]["recordSummary"] == {
        "inputRecordCount": 3,
        "outputRecordCount": 2,
        "failedRecordCount": 1,
    }
    batch_id = run["activities"][0]["targetInfo"][0]["reference"]["ids"][0]
    listing = api.get(f"/data/foundation/export/batches/{batch_id}/meta?path=row_errors").json()
    assert listing["data"][0]["name"] == "row_errors.json"
    content = api.get(listing["data"][0]["_links"]["self"]["href"])
    errors = [json.loads(line) for line in content.text.splitlines()]
    assert len(errors) == 1
    assert errors[0]["_corrupt_record"]["email"] == "not-an-email"
    assert "personalEmail.address" in errors[0]["_errors"][0]["message"]
    assert len(rows(api, ids["dataset"])) == 2


def test_a_run_above_its_error_threshold_commits_nothing(
    api: ApiClient, worker: Worker, tmp_path: Path
) -> None:
    write_csv(
        tmp_path / "contacts.csv",
        [contact(i, "2024-01-01 00:00:00", email="bad" if i % 2 else None) for i in range(10)],
    )
    ids = files_flow(api, tmp_path, options={"partialIngestionPercent": 10})
    run = run_and_wait(api, ids["flow"], "2024-01-01T00:00:00Z")
    assert run["state"] == "failed"
    assert run["metrics"]["statusSummary"]["errors"][0]["code"] == "INGEST-1212-400"
    assert rows(api, ids["dataset"]) == []
    batches = api.get(f"{CAT}/batches", params={"dataSet": ids["dataset"]}).json()
    assert [b["status"] for b in batches.values()] == ["failed"]


def test_late_commits_are_caught_with_a_settle_time(api: ApiClient, worker: Worker, tmp_path: Path) -> None:
    write_csv(tmp_path / "contacts.csv", [contact(1, "2024-01-01 11:59:00")])
    ids = files_flow(api, tmp_path, options={"lateArrivalSeconds": 300})
    first = run_and_wait(api, ids["flow"], "2024-01-01T12:00:00Z")
    assert first["metrics"]["durationSummary"]["extensions"]["windowEnd"].startswith("2024-01-01T11:55:00")
    assert first["metrics"]["recordSummary"]["inputRecordCount"] == 0  # 11:59 is still settling
    # A row stamped 11:57 commits at the source after the first run: the settle time still catches it.
    write_csv(
        tmp_path / "contacts.csv", [contact(1, "2024-01-01 11:59:00"), contact(2, "2024-01-01 11:57:00")]
    )
    second = run_and_wait(api, ids["flow"], "2024-01-01T13:00:00Z")
    assert second["metrics"]["recordSummary"]["inputRecordCount"] == 2
    assert sorted(r["_id"] for r in rows(api, ids["dataset"])) == ["1", "2"]


def test_cli_queries_a_dataset(server: LiveServer, api: ApiClient, worker: Worker, tmp_path: Path) -> None:
    if api.org_id != server.creds["orgId"]:
        pytest.skip("the CLI works on the default organization")
    write_csv(tmp_path / "contacts.csv", [contact(i, "2024-01-01 00:00:00") for i in range(3)])
    ids = files_flow(api, tmp_path)
    run_and_wait(api, ids["flow"], "2024-01-01T00:00:00Z")
    env = {
        "HEADWATER_HOME": str(server.settings.home),
        "HEADWATER_ENVIRONMENT": "development",
        "HEADWATER_OUTBOUND_ALLOW": "127.0.0.1",
        "PATH": "/usr/bin:/bin",
    }
    if server.settings.database_url:
        env["HEADWATER_DATABASE_URL"] = server.settings.database_url
    exe = str(Path(sys.executable).with_name("headwater"))
    out = subprocess.run(
        [
            exe,
            "datasets",
            "query",
            ids["dataset"],
            "--sandbox",
            api.sandbox_name,
            "--json",
            "SELECT person.name.firstName AS first FROM dataset ORDER BY first",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["first"] for line in out.stdout.splitlines()] == ["First0", "First1", "First2"]


def test_a_flow_without_a_delta_column_refreshes_instead_of_doubling(
    api: ApiClient, worker: Worker, tmp_path: Path
) -> None:
    write_csv(tmp_path / "contacts.csv", [contact(i, "2024-01-01 00:00:00") for i in range(4)])
    ids = files_flow(api, tmp_path)
    flow_url = f"{FS}/flows/{ids['flow']}"
    etag = api.get(flow_url).json()["items"][0]["etag"]
    dropped = api.patch(
        flow_url, headers={"If-Match": etag}, json=[{"op": "remove", "path": "/transformations/0"}]
    )
    assert dropped.status_code == 200, dropped.text
    assert run_and_wait(api, ids["flow"], "2024-01-01T00:00:00Z")["state"] == "success"
    assert len(rows(api, ids["dataset"])) == 4
    write_csv(tmp_path / "contacts.csv", [contact(i, "2024-01-01 00:00:00") for i in range(5)])
    assert run_and_wait(api, ids["flow"], "2024-01-02T00:00:00Z")["state"] == "success"
    assert sorted(r["_id"] for r in rows(api, ids["dataset"])) == ["0", "1", "2", "3", "4"]


def test_a_delta_column_in_another_date_format_is_read_with_its_date_format(
    api: ApiClient, worker: Worker, tmp_path: Path
) -> None:
    """Document 002's deltaColumn.dateFormat (a Java pattern) is how a text delta column is read: with
    dd/MM/yyyy HH:mm:ss, two runs read each row once (as text, 02/01 would sort before 31/12)."""
    write_csv(
        tmp_path / "contacts.csv",
        [contact(1, "31/12/2023 23:00:00"), contact(2, "01/01/2024 08:00:00")],
    )
    ids = files_flow(api, tmp_path, date_format="dd/MM/yyyy HH:mm:ss")
    first = run_and_wait(api, ids["flow"], "2024-01-01T00:00:00Z")
    assert first["state"] == "success", first["metrics"]["statusSummary"]
    assert first["metrics"]["recordSummary"]["inputRecordCount"] == 1
    assert [r["_id"] for r in rows(api, ids["dataset"])] == ["1"]
    write_csv(
        tmp_path / "contacts.csv",
        [
            contact(1, "31/12/2023 23:00:00"),
            contact(2, "01/01/2024 08:00:00"),
            contact(3, "02/01/2024 07:30:00"),
        ],
    )
    second = run_and_wait(api, ids["flow"], "2024-01-02T00:00:00Z")
    assert second["metrics"]["recordSummary"]["inputRecordCount"] == 1, second["metrics"]
    assert sorted(r["_id"] for r in rows(api, ids["dataset"])) == ["1", "2"]
    third = run_and_wait(api, ids["flow"], "2024-01-03T00:00:00Z")
    assert third["metrics"]["recordSummary"]["inputRecordCount"] == 1
    assert sorted(r["_id"] for r in rows(api, ids["dataset"])) == ["1", "2", "3"]


def test_a_date_format_that_cannot_be_parsed_is_refused_naming_the_field(api: ApiClient) -> None:
    schema = profile_schema(api)
    target = target_connection(api, schema, dataset(api, schema))
    for pattern in ("yyyy-ww", "HH:mm:ss", "GGGG"):
        response = api.post(
            f"{FS}/flows",
            json={
                "name": "Bad pattern",
                "flowSpec": {"id": FILES_TO_AEP, "version": "1.0"},
                "sourceConnectionIds": [],
                "targetConnectionIds": [target],
                "transformations": [
                    {"name": "Copy", "params": {"deltaColumn": {"name": "u", "dateFormat": pattern}}}
                ],
            },
        )
        assert response.status_code == 400, response.text
        assert "transformations[0].params.deltaColumn.dateFormat" in response.text, response.text
