"""More of the data plane: files uploaded through the API, a table that evolves with its schema, explore,
and `headwater flows run --wait`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from headwater.runtime.worker import Worker
from tests.flows_helpers import CAT, CONV, FS, SR, created_id, dataset, profile_schema, target_connection
from tests.support import ApiClient, LiveServer
from tests.test_batch_runs import contact, files_flow, rows, run_and_wait, write_csv

UPLOADED_FILES = "f86cfe35-a63a-41ad-818c-7924dda79033"
FILES_TO_AEP = "52b72b28-2b0c-4932-b239-a3ed85e219bc"


def test_uploaded_json_lines_feed_a_flow(api: ApiClient, worker: Worker) -> None:
    conn = created_id(
        api.post(
            f"{FS}/connections",
            json={"name": "Uploads", "connectionSpec": {"id": UPLOADED_FILES, "version": "1.0"}},
        )
    )
    lines = "\n".join(
        json.dumps({"id": str(i), "first_name": f"U{i}", "updatedAt": "2024-01-01T00:00:00Z"})
        for i in range(4)
    )
    put = api.put(
        f"{FS}/connections/{conn}/files/batch/contacts.json",
        content=lines.encode(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 201 and put.json()["size"] == len(lines)
    assert api.get(f"{FS}/connections/{conn}/files").json()["items"] == [
        {"path": "batch/contacts.json", "size": len(lines)}
    ]
    bad = api.put(f"{FS}/connections/{conn}/files/../escape.json", content=b"{}")
    assert bad.status_code in (400, 404)
    source = created_id(
        api.post(
            f"{FS}/sourceConnections",
            json={
                "name": "uploaded",
                "baseConnectionId": conn,
                "data": {"format": "json"},
                "params": {"path": "batch/*.json"},
            },
        )
    )
    schema = profile_schema(api)
    ds = dataset(api, schema)
    target = target_connection(api, schema, ds)
    mapping = created_id(
        api.post(
            f"{CONV}/mappingSets",
            json={
                "xdmSchema": schema,
                "mappings": [
                    {"destinationXdmPath": "_id", "sourceAttribute": "id"},
                    {"destinationXdmPath": "person.name.firstName", "sourceAttribute": "first_name"},
                ],
            },
        )
    )
    flow = created_id(
        api.post(
            f"{FS}/flows",
            json={
                "name": "uploads",
                "flowSpec": {"id": FILES_TO_AEP},
                "sourceConnectionIds": [source],
                "targetConnectionIds": [target],
                "transformations": [{"name": "Mapping", "params": {"mappingId": mapping}}],
            },
        )
    )
    run = run_and_wait(api, flow, "2024-01-02T00:00:00Z")
    assert run["state"] == "success", run["metrics"]["statusSummary"]
    assert sorted(r["person"]["name"]["firstName"] for r in rows(api, ds)) == ["U0", "U1", "U2", "U3"]
    assert api.delete(f"{FS}/connections/{conn}/files/batch/contacts.json").status_code == 204


def test_the_table_evolves_when_the_schema_gains_a_field_group(
    api: ApiClient, worker: Worker, tmp_path: Path
) -> None:
    write_csv(tmp_path / "contacts.csv", [contact(i, "2024-01-01 00:00:00") for i in range(2)])
    ids = files_flow(api, tmp_path)
    run_and_wait(api, ids["flow"], "2024-01-01T00:00:00Z")
    before = rows(api, ids["dataset"])
    assert "workEmail" not in before[0]
    schema_url = f"{SR}/tenant/schemas/{ids['schema'].replace('/', '%2F').replace(':', '%3A')}"
    patched = api.patch(
        schema_url,
        json=[
            {
                "op": "add",
                "path": "/allOf/-",
                "value": {"$ref": "https://ns.adobe.com/xdm/context/profile-work-details"},
            }
        ],
    )
    assert patched.status_code == 200, patched.text
    mapping = created_id(
        api.post(
            f"{CONV}/mappingSets",
            json={
                "xdmSchema": ids["schema"],
                "mappings": [
                    {"destinationXdmPath": "_id", "sourceAttribute": "id"},
                    {"destinationXdmPath": "workEmail.address", "sourceAttribute": "email"},
                ],
            },
        )
    )
    flow_url = f"{FS}/flows/{ids['flow']}"
    etag = api.get(flow_url).json()["items"][0]["etag"]
    assert (
        api.patch(
            flow_url,
            headers={"If-Match": etag},
            json=[{"op": "replace", "path": "/transformations/1/params/mappingId", "value": mapping}],
        ).status_code
        == 200
    )
    write_csv(tmp_path / "contacts.csv", [contact(i, "2024-01-02 00:00:00") for i in range(2, 4)])
    second = run_and_wait(api, ids["flow"], "2024-01-02T00:00:00Z")
    assert second["state"] == "success", second["metrics"]["statusSummary"]
    after = rows(api, ids["dataset"])
    assert len(after) == 4
    work = {r["_id"]: (r.get("workEmail") or {}).get("address") for r in after}
    assert work["2"] == "person2@example.com" and work["0"] is None  # old rows read with the new column


def test_explore_a_folder_and_a_file(api: ApiClient, tmp_path: Path) -> None:
    write_csv(tmp_path / "contacts.csv", [contact(i, "2024-01-01 00:00:00") for i in range(3)])
    conn = created_id(
        api.post(
            f"{FS}/connections",
            json={
                "name": "Local",
                "auth": {"specName": "Local Folder", "params": {"rootPath": str(tmp_path)}},
                "connectionSpec": {"id": "c79513cd-ceb9-437a-812d-a5b148aceb4c"},
            },
        )
    )
    root = api.get(f"{FS}/connections/{conn}/explore", params={"objectType": "root"})
    assert {"type": "file", "name": "contacts.csv"}.items() <= next(
        i for i in root.json() if i["name"] == "contacts.csv"
    ).items()
    table = api.get(
        f"{FS}/connections/{conn}/explore", params={"objectType": "table", "object": "contacts.csv"}
    )
    assert table.status_code == 200, table.text
    assert [c["name"] for c in table.json()["schema"]["columns"]] == [
        "id",
        "first_name",
        "last_name",
        "email",
        "updatedAt",
    ]
    assert len(table.json()["data"]) == 3
    xdm = {"string", "integer", "number", "boolean", "date", "date-time", "object", "array", "map"}
    assert {c["type"] for c in table.json()["schema"]["columns"]} <= xdm  # not Arrow's "timestamp[us, ...]"
    assert all(c["meta"]["originalType"] for c in table.json()["schema"]["columns"])
    assert api.get(f"{FS}/connections/{conn}/explore", params={"objectType": "table"}).status_code == 400


def test_cli_asks_the_server_to_run_a_flow_and_waits(
    server: LiveServer, api: ApiClient, worker: Worker, tmp_path: Path
) -> None:
    """`headwater flows run --wait` runs the flow in the server (its files roots and outbound policy),
    not in the CLI process: the CLI has none of the server's settings but its home and its URL."""
    write_csv(tmp_path / "contacts.csv", [contact(i, "2024-01-01 00:00:00") for i in range(25)])
    ids = files_flow(api, tmp_path)
    env = {
        "HEADWATER_HOME": str(server.settings.home),
        "HEADWATER_URL": server.base_url,
        "PATH": "/usr/bin:/bin",
        "COLUMNS": "200",
    }
    if server.settings.database_url:
        env["HEADWATER_DATABASE_URL"] = server.settings.database_url
    exe = str(Path(sys.executable).with_name("headwater"))
    out = subprocess.run(
        [
            exe,
            "flows",
            "run",
            ids["flow"],
            "--wait",
            "--sandbox",
            api.sandbox_name,
            "--window-end",
            "2024-01-02T00:00:00Z",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "success" in out.stdout and "25" in out.stdout
    assert len(rows(api, ids["dataset"])) == 25
    batches = api.get(f"{CAT}/batches", params={"dataSet": ids["dataset"]}).json()
    assert [b["status"] for b in batches.values()] == ["success"]

    listed = subprocess.run(
        [exe, "flows", "list", "--sandbox", api.sandbox_name],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [ids["flow"]]
    datasets = subprocess.run(
        [exe, "datasets", "list", "--sandbox", api.sandbox_name],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ids["dataset"] in [json.loads(line)["id"] for line in datasets.stdout.splitlines()]

    nobody = subprocess.run(
        [exe, "flows", "run", ids["flow"], "--sandbox", api.sandbox_name, "--server", "http://127.0.0.1:9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nobody.returncode == 1 and "No Headwater server answers at http://127.0.0.1:9" in nobody.stderr
