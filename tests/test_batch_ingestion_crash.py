"""Exactly once across `kill -9` for the Batch Ingestion API: a CSV uploaded in chunks (out of order, one
sent twice) and completed lands once, with the batch's right metrics, when the server dies right after
COMPLETE answered and the processes promoting it die right after claiming it, before the commit, and
after the commit but before the batch was saved; a worker started afterwards finishes it without any
client call.

Real processes: `headwater serve --no-worker` takes the upload and COMPLETE; `headwater worker` (its
promotion runner) promotes, first with a crash point armed, then again without."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.flows_helpers import dataset, profile_schema
from tests.support import wait_until
from tests.test_batch_ingestion import IMPORT, OCTETS, catalog_batch
from tests.test_crash_recovery import EXE, Deployment, _deploy

ROWS = 20_000
CHUNK = 256 * 1024


def people_csv() -> bytes:
    lines = ["_id,person.name.firstName,person.name.lastName,personalEmail.address"]
    lines += [f"p{i},First{i},Last{i},person{i}@example.com" for i in range(ROWS)]
    lines.append("bad-1,Bad,Row,not-an-email")  # a row error: the failed count must survive the crash
    return ("\n".join(lines) + "\n").encode()


def upload_in_chunks(d: Deployment, batch_id: str, dataset_id: str, data: bytes) -> None:
    url = f"{IMPORT}/{batch_id}/datasets/{dataset_id}/files/people.csv"
    assert d.api.post(f"{url}?action=INITIALIZE").status_code == 201
    spans = [(s, min(s + CHUNK, len(data)) - 1) for s in range(0, len(data), CHUNK)]
    assert len(spans) >= 4
    for start, end in [*spans[::-1], spans[1]]:  # out of order, the second chunk twice
        headers = {**OCTETS, "Content-Range": f"bytes {start}-{end}/{len(data)}"}
        response = d.api.patch(url, content=data[start : end + 1], headers=headers)
        assert response.status_code == 200, response.text
    done = d.api.post(f"{url}?action=COMPLETE")
    assert done.status_code == 201 and done.json()["size"] == len(data), done.text


def counts(d: Deployment, dataset_id: str) -> tuple[int, int]:
    """count(*) and count(DISTINCT _id) of the dataset, read in this process from the deployment's lake
    (quicker than a `headwater datasets query` process)."""
    from headwater.lake.iceberg import Lake
    from headwater.settings import Settings
    from headwater.stores.metadata import Scope, open_store

    store = open_store(f"sqlite:///{d.home / 'metadata.db'}")
    try:
        sandbox = store.get_sandbox(d.api.org_id, "prod")
    finally:
        store.close()
    assert sandbox is not None
    lake = Lake(Settings(home=d.home, environment="development"))
    table = lake.load(Scope(sandbox.org_id, sandbox.id), dataset_id)
    if table is None:
        return 0, 0
    row = lake.query(table, "SELECT count(*) AS n, count(DISTINCT _id) AS d FROM dataset").to_pylist()[0]
    return int(row["n"]), int(row["d"])


def restart_server(d: Deployment) -> None:
    """`kill -9` of the server, and a new one on the same home and port."""
    os.kill(d.server.pid, signal.SIGKILL)
    d.server.wait(timeout=30)
    d.server = subprocess.Popen(
        [EXE, "serve", "--no-worker"], env=d.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    d.processes.append(d.server)

    def up() -> bool:
        try:
            return (
                httpx.get(f"http://127.0.0.1:{d.env['HEADWATER_PORT']}/health", timeout=1).status_code == 200
            )
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=60)


def test_kill_9_at_each_point_of_promotion_then_a_worker_lands_the_batch_once(tmp_path: Path) -> None:
    """One batch through every crash in turn: the server right after COMPLETE answered, then a worker
    right after claiming it, one before the commit, one after the commit; a fifth worker finishes it."""
    with _deploy(tmp_path) as d:
        dataset_id = dataset(d.api, profile_schema(d.api))
        created = d.api.post(IMPORT, json={"datasetId": dataset_id, "inputFormat": {"format": "csv"}})
        assert created.status_code == 201, created.text
        batch_id = created.json()["id"]
        data = people_csv()
        upload_in_chunks(d, batch_id, dataset_id, data)

        accepted = d.api.post(f"{IMPORT}/{batch_id}?action=COMPLETE")
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()[batch_id]["status"] == "processing"  # answered before any promotion
        restart_server(d)  # the process that accepted COMPLETE is gone: the queue is durable

        for point, committed in [
            ("batch_before_promotion", 0),
            ("batch_before_commit", 0),
            ("batch_after_commit", ROWS),
        ]:
            doomed = d.worker(fault=point)  # takes the batch over once the dead runner's lease expired
            assert doomed.wait(timeout=120) == -signal.SIGKILL, (point, d.worker_logs())
            assert catalog_batch(d.api, batch_id)["status"] == "processing", point
            assert counts(d, dataset_id) == (committed, committed), point

        d.worker()  # no client call: the sweep at its start finds the batch

        def final() -> dict[str, Any] | None:
            batch = catalog_batch(d.api, batch_id)
            return batch if batch["status"] != "processing" else None

        batch = wait_until(final, timeout=90, interval=0.1)
        assert batch["status"] == "success", (batch, d.worker_logs())
        assert batch["metrics"] == {
            "inputRecordCount": ROWS + 1,
            "outputRecordCount": ROWS,
            "failedRecordCount": 1,
            "inputByteSize": len(data),
            "inputFileCount": 1,
        }
        assert [e["recordCount"] for e in batch["errors"]] == [1]
        assert counts(d, dataset_id) == (ROWS, ROWS)
        assert not (d.home / "warehouse" / "_ingest" / batch_id).exists()
        again = d.api.post(f"{IMPORT}/{batch_id}?action=COMPLETE")  # a client's late retry: no change
        assert again.status_code == 200 and again.json()[batch_id]["status"] == "success"
        assert counts(d, dataset_id) == (ROWS, ROWS)
