"""Partitioned batch runs on Ray (HEADWATER_PARTITION_ENGINE=ray, runtime/rayengine.py): a real local Ray
cluster (`ray start --head`, on loopback) executes the partitions of a run a `headwater worker` owns; the
rows land once in one commit; a Ray worker process killed with SIGKILL inside a partition is redone."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.lake.iceberg import Lake
from headwater.stores.metadata import MetadataStore, RunPartition, Scope, open_store
from tests.conftest import make_settings
from tests.rayhead import ray_env, start_head
from tests.support import free_port, wait_until
from tests.test_batch_runs import files_flow
from tests.test_crash_recovery import Deployment, _deploy, _finished, _start_run
from tests.test_partitioned_runs import _folder, _run_snapshots


@pytest.fixture
def on_ray(tmp_path: Path) -> Iterator[tuple[Deployment, MetadataStore]]:
    """A server, a Ray cluster of 2 CPUs started with the workers' environment, and the deployment's
    metadata store; every file of more than one is a partition, executed on Ray."""
    with _deploy(tmp_path) as deployment:
        deployment.env.update({**ray_env(free_port()), "HEADWATER_RUN_PARTITION_BYTES": "1"})
        head = start_head(deployment.env, cpus=2)
        store = open_store(make_settings(deployment.home).resolved_database_url)
        try:
            yield deployment, store
        finally:
            store.close()
            head.stop()


def _landed_once(deployment: Deployment, store: MetadataStore, dataset_id: str, run_id: str) -> list[object]:
    """The run's rows in the lake, after asserting one snapshot carries its checkpoint."""
    sandbox = store.get_sandbox(deployment.api.org_id, "prod")
    assert sandbox is not None
    scope = Scope(sandbox.org_id, sandbox.id)
    commits, row_ids = _run_snapshots(Lake(make_settings(deployment.home)), scope, dataset_id, run_id)
    assert commits == 1
    return row_ids


def test_ray_workers_execute_the_partitions_and_the_run_commits_each_row_once(
    on_ray: tuple[Deployment, MetadataStore], tmp_path: Path
) -> None:
    deployment, store = on_ray
    files, rows, bad_every = 4, 300, 50
    ids = files_flow(deployment.api, _folder(tmp_path / "source", files, rows, bad_every), path="*.csv")
    deployment.worker()  # the run's owner: it submits the partitions to Ray and commits
    run = _finished(deployment, _start_run(deployment, ids["flow"]))
    total, failed = files * rows, files * rows // bad_every
    assert run["state"] == "partialSuccess", f"{run['metrics']['statusSummary']}\n{deployment.worker_logs()}"
    assert run["metrics"]["recordSummary"] == {
        "inputRecordCount": total,
        "outputRecordCount": total - failed,
        "failedRecordCount": failed,
    }
    parts = store.partitions(run["id"])
    assert len(parts) == files and {p.state for p in parts} == {"done"}
    assert all((p.lease_owner or "").startswith("ray:") for p in parts), [p.lease_owner for p in parts]
    row_ids = _landed_once(deployment, store, ids["dataset"], run["id"])
    assert len(row_ids) == len(set(row_ids)) == total - failed


def _kill_inside_a_partition(store: MetadataStore, run_id: str) -> RunPartition | None:
    """SIGKILL the Ray worker process of a partition it is executing (frozen first, and killed only if
    the partition is still its own and unfinished); the partition, or None to try again."""
    running = [p for p in store.partitions(run_id) if p.state == "running"]
    held = next((p for p in running if (p.lease_owner or "").startswith("ray:")), None)
    if held is None or held.lease_owner is None:
        return None
    pid = int(held.lease_owner.split(":")[2])
    os.kill(pid, signal.SIGSTOP)
    now = next(p for p in store.partitions(run_id) if p.part == held.part)
    if now.state == "running" and now.lease_owner == held.lease_owner:
        os.kill(pid, signal.SIGKILL)
        return now
    os.kill(pid, signal.SIGCONT)
    return None


def test_a_ray_worker_killed_inside_a_partition_is_redone_and_the_run_lands_once(
    on_ray: tuple[Deployment, MetadataStore], tmp_path: Path
) -> None:
    deployment, store = on_ray
    files, rows = 4, 100_000  # about a second of reading and mapping per partition
    ids = files_flow(deployment.api, _folder(tmp_path / "source", files, rows), path="*.csv")
    deployment.worker()
    run_id = _start_run(deployment, ids["flow"])
    killed = wait_until(lambda: _kill_inside_a_partition(store, run_id), timeout=90, interval=0.01)
    run = _finished(deployment, run_id)
    assert run["state"] == "success", f"{run['metrics']['statusSummary']}\n{deployment.worker_logs()}"
    assert run["metrics"]["recordSummary"]["outputRecordCount"] == files * rows
    parts = store.partitions(run_id)
    redone = parts[killed.part]
    assert redone.state == "done" and redone.attempts == 2 and redone.lease_owner != killed.lease_owner
    row_ids = _landed_once(deployment, store, ids["dataset"], run_id)
    assert len(row_ids) == len(set(row_ids)) == files * rows
