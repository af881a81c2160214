"""Partitioned batch runs (runtime/partitions.py): a folder of files is read and mapped by several
workers and lands each row exactly once in one Iceberg commit, with the run's metrics and row errors
those of an unsplit run; a worker killed mid-partition (the run's owner, or a helper) is taken over;
small sources are not split."""

from __future__ import annotations

import fcntl
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater.lake.iceberg import Lake
from headwater.runtime.worker import Worker
from headwater.stores.metadata import Scope, open_store
from tests.conftest import make_settings
from tests.support import ApiClient, LiveServer, wait_until
from tests.test_batch_runs import contact, files_flow, run_and_wait, write_csv
from tests.test_crash_recovery import Deployment, _finished, _start_run, deployment  # noqa: F401

FILES = 4
ROWS_PER_FILE = 300
BAD_EVERY = 50  # one row in 50 has an email the schema refuses


def _folder(root: Path, files: int = FILES, rows: int = ROWS_PER_FILE, bad_every: int = 0) -> Path:
    root.mkdir(exist_ok=True)
    for f in range(files):
        people = [
            contact(
                f * rows + i,
                "2024-01-15 00:00:00",
                email="not-an-email" if bad_every and i % bad_every == 0 else None,
            )
            for i in range(rows)
        ]
        write_csv(root / f"part-{f}.csv", people)
    return root


def _run_snapshots(lake: Lake, scope: Scope, dataset_id: str, run_id: str) -> tuple[int, list[Any]]:
    """How many snapshots carry the run's checkpoint, and the table's ``_id`` values."""
    table = lake.load(scope, dataset_id)
    assert table is not None
    snapshots = list(lake.checkpoints(table, runId=run_id))
    ids = lake.scan(table).read_all().column("_id")
    return len(snapshots), ids.to_pylist()


@pytest.fixture
def helper(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Worker]:
    """A second worker beside the session's; every file of more than one is a partition meanwhile."""
    monkeypatch.setattr(server.services.settings, "run_partition_bytes", 1)
    second = Worker(server.services, name="helper-worker", schedule=False, streaming=False)
    import threading

    thread = threading.Thread(target=second.run_forever, daemon=True)
    thread.start()
    yield second
    second.stop()
    thread.join(timeout=30)


def _scope(server: LiveServer, api: ApiClient) -> Scope:
    sandbox = server.services.store.get_sandbox(api.org_id, api.sandbox_name)
    assert sandbox is not None
    return Scope(api.org_id, sandbox.id)


def test_a_folder_run_by_two_workers_lands_each_row_once_in_one_commit(
    server: LiveServer, api: ApiClient, worker: Worker, helper: Worker, tmp_path: Path
) -> None:
    ids = files_flow(api, _folder(tmp_path / "source", bad_every=BAD_EVERY), path="*.csv")
    run = run_and_wait(api, ids["flow"], "2024-02-01T00:00:00Z")
    total, failed = FILES * ROWS_PER_FILE, FILES * ROWS_PER_FILE // BAD_EVERY
    assert run["state"] == "partialSuccess", run["metrics"]["statusSummary"]
    assert run["metrics"]["recordSummary"] == {
        "inputRecordCount": total,
        "outputRecordCount": total - failed,
        "failedRecordCount": failed,
    }
    parts = server.services.store.partitions(run["id"])
    assert len(parts) == FILES and all(p.state == "done" for p in parts)
    commits, row_ids = _run_snapshots(server.services.lake, _scope(server, api), ids["dataset"], run["id"])
    assert commits == 1
    assert len(row_ids) == len(set(row_ids)) == total - failed
    batch_id = run["activities"][0]["targetInfo"][0]["reference"]["ids"][0]
    listing = api.get(f"/data/foundation/export/batches/{batch_id}/meta?path=row_errors").json()
    content = api.get(listing["data"][0]["_links"]["self"]["href"])
    errors = [json.loads(line) for line in content.text.splitlines()]
    assert sorted(int(e["_corrupt_record"]["id"]) for e in errors) == list(range(0, total, BAD_EVERY))


def test_a_run_over_one_file_is_not_split(
    server: LiveServer, api: ApiClient, worker: Worker, helper: Worker, tmp_path: Path
) -> None:
    ids = files_flow(api, _folder(tmp_path / "source", files=1), path="*.csv")
    run = run_and_wait(api, ids["flow"], "2024-02-01T00:00:00Z")
    assert run["state"] == "success"
    assert run["metrics"]["recordSummary"]["outputRecordCount"] == ROWS_PER_FILE
    assert server.services.store.partitions(run["id"]) == []


def test_a_worker_killed_mid_partition_is_taken_over_and_commits_once(
    deployment: Deployment,  # noqa: F811
    tmp_path: Path,
) -> None:
    files, rows = 4, 40_000  # a partition reads its file in batches of 65,536 rows: one batch per file
    deployment.env["HEADWATER_RUN_PARTITION_BYTES"] = "1"
    ids = files_flow(deployment.api, _folder(tmp_path / "source", files, rows), path="*.csv")
    run_id = _start_run(deployment, ids["flow"])
    # The only worker owns the run and works its partitions; it dies inside its second one.
    doomed = deployment.worker("mid_partition:2")
    assert doomed.wait(timeout=120) == -signal.SIGKILL, deployment.worker_logs()
    survivors = [deployment.worker(), deployment.worker()]
    try:
        run = _finished(deployment, run_id)
    finally:
        for survivor in survivors:
            survivor.terminate()
            survivor.wait(timeout=30)
    assert run["state"] == "success", f"{run['metrics']['statusSummary']}\n{deployment.worker_logs()}"
    assert run["metrics"]["recordSummary"]["outputRecordCount"] == files * rows
    settings = make_settings(deployment.home)
    store = open_store(settings.resolved_database_url)
    try:
        parts = store.partitions(run_id)
        sandbox = store.get_sandbox(deployment.api.org_id, "prod")
    finally:
        store.close()
    assert [p.state for p in parts] == ["done"] * files
    assert max(p.attempts for p in parts) == 2  # the partition the doomed worker held was redone
    assert sandbox is not None
    commits, row_ids = _run_snapshots(
        Lake(settings), Scope(sandbox.org_id, sandbox.id), ids["dataset"], run_id
    )
    assert commits == 1
    assert len(row_ids) == len(set(row_ids)) == files * rows


def _frozen_between_writes(pid: int, store: Any) -> bool:
    """Stop ``pid`` (SIGSTOP); True if it holds no write lock of the SQLite ``store``, else let it go on
    (SIGCONT) and False, for the caller to try again."""
    os.kill(pid, signal.SIGSTOP)
    with open(store.path.with_name(store.path.name + ".write-lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.kill(pid, signal.SIGCONT)
            return False
        fcntl.flock(lock, fcntl.LOCK_UN)
    return True


def test_a_helper_killed_mid_partition_is_redone_by_the_run_owner(
    deployment: Deployment,  # noqa: F811
    tmp_path: Path,
) -> None:
    files, rows = 4, 40_000
    deployment.env["HEADWATER_RUN_PARTITION_BYTES"] = "1"
    deployment.env["HEADWATER_RUN_LEASE_SECONDS"] = "6"  # the owner's run lease outlives its pause
    ids = files_flow(deployment.api, _folder(tmp_path / "source", files, rows), path="*.csv")
    settings = make_settings(deployment.home)
    store = open_store(settings.resolved_database_url)
    try:
        owner = deployment.worker()
        run_id = _start_run(deployment, ids["flow"])
        wait_until(lambda: store.partitions(run_id), timeout=60, interval=0.01)
        # The owner holds the run and one partition, frozen; never inside a write transaction, whose
        # lock beside the SQLite file would stop every other process's writes until it went on.
        wait_until(lambda: _frozen_between_writes(owner.pid, store), timeout=60, interval=0.01)
        try:
            helper = deployment.worker("mid_partition:1")  # claims a queued partition, dies in it
            assert helper.wait(timeout=60) == -signal.SIGKILL, deployment.worker_logs()
        finally:
            os.kill(owner.pid, signal.SIGCONT)
        try:
            run = _finished(deployment, run_id)
        finally:
            owner.terminate()
            owner.wait(timeout=30)
        parts = store.partitions(run_id)
        sandbox = store.get_sandbox(deployment.api.org_id, "prod")
    finally:
        store.close()
    assert run["state"] == "success", f"{run['metrics']['statusSummary']}\n{deployment.worker_logs()}"
    assert run["metrics"]["recordSummary"]["outputRecordCount"] == files * rows
    assert max(p.attempts for p in parts) == 2 and {p.state for p in parts} == {"done"}
    assert sandbox is not None
    scope = Scope(sandbox.org_id, sandbox.id)
    commits, row_ids = _run_snapshots(Lake(settings), scope, ids["dataset"], run_id)
    assert commits == 1
    assert len(row_ids) == len(set(row_ids)) == files * rows


def test_a_partition_whose_workers_died_max_attempts_times_fails_the_run() -> None:
    from headwater.errors import HeadwaterError
    from headwater.runtime.partitions import MAX_ATTEMPTS, finished
    from headwater.services.ids import now_ms
    from headwater.stores.metadata import RunPartition

    def part(n: int, attempts: int, expired: bool) -> RunPartition:
        lease = now_ms() + (-1_000 if expired else 60_000)
        spec = {"files": [f"/data/part-{n}.csv"]}
        return RunPartition("r1", n, Scope("o", "s"), spec, "running", "w", lease, attempts, None)

    assert finished([part(0, MAX_ATTEMPTS - 1, True), part(1, MAX_ATTEMPTS, False)]) == []
    with pytest.raises(HeadwaterError) as caught:
        finished([part(0, 1, False), part(1, MAX_ATTEMPTS, True)])
    assert f"started {MAX_ATTEMPTS} times" in caught.value.detail and "part-1.csv" in caught.value.detail
