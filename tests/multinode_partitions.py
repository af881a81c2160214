"""The partitioned batch run of the multi-node scenario (tests/multinode_scenario.py): a folder of CSV
files put in the lake's bucket (the sandbox's files folder, ``_files/<org>/prod/``, as an operator puts
them there with any S3 tool), read by a Local Folder connection, and run while the other loads go on,
with every file its own partition (HEADWATER_RUN_PARTITION_BYTES=1 on every node: the cluster's
``PARTITIONED`` environment). Its workers share the partitions; the kill -9 of a worker may catch one
mid-partition. Afterwards the run must have succeeded with every row in its dataset exactly once."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.multinode_harness import Balancer, Cluster
from tests.support import ApiClient, wait_until
from tests.test_batch_runs import FIELDS, contact, files_flow

FS = "/data/foundation/flowservice"
FOLDER = "parts"  # the connection's rootPath: relative, so inside the sandbox's folder of the bucket
WINDOW_END = "2024-02-01T00:00:00Z"
PARTITIONED = {"HEADWATER_RUN_PARTITION_BYTES": "1"}  # every file of a folder is a partition


@dataclass
class PartitionedRun:
    flow: str
    dataset_id: str
    files: int
    rows_per_file: int
    run_id: str = ""

    @property
    def expected(self) -> set[str]:
        return {str(i) for i in range(self.files * self.rows_per_file)}


def prepare(cluster: Cluster, api: ApiClient, files: int, rows_per_file: int) -> PartitionedRun:
    """The files in the bucket, and the flow reading them (made through ``api``)."""
    filesystem = cluster.s3.filesystem()
    prefix = f"{cluster.bucket}/lake/_files/{cluster.creds['orgId']}/prod/{FOLDER}"
    for f in range(files):
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(contact(f * rows_per_file + i, "2024-01-15 00:00:00") for i in range(rows_per_file))
        with filesystem.open_output_stream(f"{prefix}/part-{f:02d}.csv") as out:
            out.write(text.getvalue().encode())
    ids = files_flow(api, Path(FOLDER), path="*.csv")
    return PartitionedRun(ids["flow"], ids["dataset"], files, rows_per_file)


def start(lb: Balancer, run: PartitionedRun) -> None:
    created = lb.request(
        "POST", f"{FS}/runs", json={"flowId": run.flow, "params": {"windowEndTime": WINDOW_END}}
    )
    assert created.status_code == 201, created.text
    run.run_id = created.json()["id"]


def check(
    cluster: Cluster, api: ApiClient, run: PartitionedRun, settle: float
) -> tuple[list[str], list[str]]:
    """The run succeeded, each of its rows is in the dataset once, and its partitions were all done."""

    def ended() -> dict[str, Any] | None:
        doc: dict[str, Any] = api.get(f"{FS}/runs/{run.run_id}").json()["items"][0]
        return doc if doc["state"] in ("success", "partialSuccess", "failed") else None

    try:
        doc = wait_until(ended, timeout=settle, interval=0.3)
    except AssertionError:
        return [f"partitioned run {run.run_id} did not end within {settle}s"], []
    problems = (
        [] if doc["state"] == "success" else [f"partitioned run ended {doc['state']}: {doc['metrics']}"]
    )
    ids = cluster.ids("prod", run.dataset_id)
    twice = [i for i, k in Counter(ids).items() if k > 1]
    if twice:
        problems.append(f"partitioned run: {len(twice)} rows landed more than once, e.g. {twice[:3]}")
    if set(ids) != run.expected:
        missing = sorted(run.expected - set(ids), key=int)
        files = sorted({int(i) // run.rows_per_file for i in missing})
        problems.append(
            f"partitioned run: {len(missing)} of {len(run.expected)} rows missing, of the files {files}; "
            f"partitions {partition_rows(cluster, run.run_id)}; the run {doc}"
        )
    done = partitions(cluster, run.run_id)
    notes = [f"partitioned run: {len(done)} partitions, attempts and last holders {sorted(done.values())}"]
    if len(done) != run.files:
        problems.append(f"partitioned run: {len(done)} partitions for {run.files} files")
    return problems, notes


def progress(cluster: Cluster, run: PartitionedRun, notes: list[str]) -> None:
    """How far the run's partitions were, in ``notes`` (called at the kill)."""
    states = partition_states(cluster, run.run_id)
    notes.append(f"partitioned run at the kill: partitions by state {dict(Counter(states))}")


def partition_states(cluster: Cluster, run_id: str) -> list[str]:
    return [
        state for (state,) in _select(cluster, "SELECT state FROM run_partitions WHERE run_id = %s", run_id)
    ]


def partition_rows(cluster: Cluster, run_id: str) -> list[tuple[Any, ...]]:
    sql = "SELECT part, state, attempts, lease_owner, spec, output FROM run_partitions WHERE run_id = %s"
    return _select(cluster, sql, run_id)


def _select(cluster: Cluster, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    url = cluster.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql, params).fetchall())


def partitions(cluster: Cluster, run_id: str) -> dict[int, tuple[int, str]]:
    """The run's partitions in the shared database: part -> (attempts, the worker that last held it)."""
    found = _select(
        cluster,
        "SELECT part, attempts, coalesce(lease_owner, '') FROM run_partitions WHERE run_id = %s",
        run_id,
    )
    return {int(part): (int(attempts), str(owner)) for part, attempts, owner in found}
