"""Partitioned batch runs, the run's side: a run over many files is split into partitions that any
worker reads and maps, and committed once by the run's owner.

A run whose files source lists at least ``run_partition_min_files`` files adding up to more than
``run_partition_bytes`` is split into groups of whole files, in path order, of about that size
(:func:`split`). The groups are stored beside the run in the metadata store (``run_partitions``), each
claimed under a lease like a run. A partition reads and maps its files and writes Parquet data files to
the table's location without committing, then records their paths and its counts in its row, a
compare-and-set on its lease (runtime/partitionwork.py). The run's owner works on its own partitions
beside the other workers, waits for the rest, and makes ONE Iceberg commit of every recorded file with
the run's checkpoint (runtime/executor.py), keyed on the run, so a retried commit is a no-op.

Exactly once across crashes:

- a partition whose worker died has an expired lease and is redone by another worker; the files the dead
  attempt wrote are referenced by no row and no snapshot (orphans, like an uncommitted run's files);
- of two attempts at one partition (a live worker that lost its lease), one records its output;
- an owner that died loses the run's lease; the worker that takes the run over finds the partitions the
  first attempt queued (:meth:`PartitionedCopy.queue` keeps them, with their window) and goes on with
  the undone ones; the commit's checkpoint tells it whether the first owner committed already.

Row errors: each partition writes ``row_errors.json.part-NNNNN`` of the run's batch (stores/rowerrors.py),
replaced whole when it is redone; the batch's row errors are all of them, in partition order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from headwater.errors import HeadwaterError
from headwater.runtime.context import Runtime
from headwater.runtime.window import Window
from headwater.services.ids import now_ms
from headwater.stores.metadata import Resource, RunPartition

if TYPE_CHECKING:
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table

    from headwater.runtime.executor import Counters
    from headwater.settings import Settings

log = logging.getLogger("headwater.runtime")

MAX_ATTEMPTS = 5  # a partition whose worker died this many times fails the run (never claimed again)


def split(settings: Settings, connector: Any, params: dict[str, Any]) -> list[list[str]] | None:
    """The files of the run's source in groups of about ``run_partition_bytes``; None when the source
    is not split (not a files source, too few files, or one group)."""
    target = settings.run_partition_bytes
    lister = getattr(connector, "files", None)
    if target <= 0 or lister is None:
        return None
    files = lister(params)
    if len(files) < settings.run_partition_min_files:
        return None
    groups: list[list[str]] = [[]]
    size = 0
    for info in files:
        if groups[-1] and size + info.size > target:
            groups.append([])
            size = 0
        groups[-1].append(info.path)
        size += info.size
    return groups if len(groups) > 1 else None


class PartitionedCopy:
    """The owner's side of one partitioned attempt at a run."""

    def __init__(self, services: Runtime, worker: str, run: Resource, batch_id: str) -> None:
        self.services = services
        self.worker = worker
        self.run = run
        self.batch_id = batch_id
        self._wait = threading.Event()  # never set: a wait with a timeout that is not a sleep

    def queue(self, window: Window, groups: list[list[str]]) -> Window:
        """Queue the partitions of ``groups`` over ``window``, unless an earlier attempt at the run
        queued them: then theirs stand (the files it listed, the window it chose), which is returned."""
        specs = [
            {
                "files": group,
                "batchId": self.batch_id,
                "windowStart": _iso(window.start),
                "windowEnd": _iso(window.end),
            }
            for group in groups
        ]
        parts = self.services.store.add_partitions(self.run.id, self.run.scope, specs)
        self.services.runs.queued.notify()  # idle workers of this process help at once
        first = parts[0].spec
        log.info("run %s: %d partitions", self.run.id, len(parts))
        return Window(_time(first["windowStart"]), _time(first["windowEnd"]), window.previous)

    def work(self, on_progress: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
        """Execute the run's partitions (here and on the other workers; or on Ray, with
        ``HEADWATER_PARTITION_ENGINE=ray``) until all are done; the outputs of all, in partition order.
        :class:`HeadwaterError` (the first error) when one failed."""
        if self.services.settings.partition_engine == "ray":
            from headwater.runtime import rayengine

            return rayengine.work(self, on_progress)
        return self._work_queued(on_progress)

    def _work_queued(self, on_progress: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
        """Execute the run's claimable partitions here, then wait for those other workers hold."""
        from headwater.runtime.partitionwork import execute  # it imports the executor, which imports us

        store, settings = self.services.store, self.services.settings
        lease_ms = int(settings.run_lease_seconds * 1000)
        while True:
            claimed = store.claim_partition(
                self.worker, lease_ms, now_ms(), self.run.id, max_attempts=MAX_ATTEMPTS
            )
            if claimed is not None:
                execute(self.services, claimed, self.worker)
                continue
            parts = store.partitions(self.run.id)
            done = finished(parts)
            on_progress(done)
            if len(done) == len(parts):
                return done
            self._wait.wait(settings.worker_poll_seconds)


def finished(parts: list[RunPartition]) -> list[dict[str, Any]]:
    """The outputs of the done partitions of ``parts``, in order. :class:`HeadwaterError` when one
    failed, or when one is :func:`given_up` (a partition that kills whoever reads it, out of memory say,
    fails the run instead of being redone forever)."""
    done = [p.output for p in parts if p.state == "done" and p.output is not None]
    failed = next((o["error"] for o in done if o.get("error")), None)
    if failed is not None:
        raise HeadwaterError(str(failed["message"]), code=str(failed["code"]))
    now = now_ms()
    for part in parts:
        if given_up(part, now):
            raise HeadwaterError(
                f"Partition {part.part} of the run ({len(part.spec.get('files', []))} files, the first "
                f"{part.spec.get('files', ['?'])[0]!r}) was started {part.attempts} times and its worker "
                "died each time; see the workers' logs.",
                code="HW-1000-500",
            )
    return done


def given_up(part: RunPartition, now: int) -> bool:
    """Whether ``part`` was taken :data:`MAX_ATTEMPTS` times and its last holder died too (its lease
    expired): no worker claims it again."""
    expired = part.state == "running" and (part.lease_expires_at or 0) < now
    return expired and part.attempts >= MAX_ATTEMPTS


def count(outputs: list[dict[str, Any]], counters: Counters) -> None:
    """Set ``counters`` to the sums of the partitions' ``outputs``."""
    counters.input_records = sum(int(o.get("inputRecords", 0)) for o in outputs)
    counters.output_records = sum(int(o.get("outputRecords", 0)) for o in outputs)
    counters.failed_records = sum(int(o.get("failedRecords", 0)) for o in outputs)
    counters.input_bytes = sum(int(o.get("inputBytes", 0)) for o in outputs)
    codes: dict[str, int] = {}
    for output in outputs:
        for code, n in (output.get("errorCodes") or {}).items():
            codes[code] = codes.get(code, 0) + int(n)
    counters.error_codes = codes


def data_files(table: Table, outputs: list[dict[str, Any]]) -> list[DataFile]:
    """The data files the partitions wrote, described from their Parquet footers (statistics included)
    for the commit."""
    from pyiceberg.io.pyarrow import parquet_file_to_data_file

    return [
        parquet_file_to_data_file(table.io, table.metadata, path)
        for output in outputs
        for path in output.get("files", [])
    ]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
