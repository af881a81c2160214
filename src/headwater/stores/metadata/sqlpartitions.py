"""The partitions of a run on SQLAlchemy Core: a mixin of :class:`~headwater.stores.metadata.sql.
SqlMetadataStore`, with the same lease mechanics as its run queue (a claim is one conditional UPDATE on
the row's state and lease as read)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from headwater.stores.metadata import tables as t
from headwater.stores.metadata.base import RunPartition, Scope

_P = t.run_partitions.c


def _partition(row: Any) -> RunPartition:
    return RunPartition(
        run_id=row["run_id"],
        part=row["part"],
        scope=Scope(row["org_id"], row["sandbox_id"]),
        spec=row["spec"],
        state=row["state"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        attempts=row["attempts"],
        output=row["output"],
    )


class SqlPartitions:
    engine: Engine
    read_engine: Engine

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def add_partitions(
        self, run_id: str, scope: Scope, specs: Sequence[dict[str, Any]]
    ) -> list[RunPartition]:
        rows = [
            {
                "run_id": run_id,
                "part": n,
                "org_id": scope.org_id,
                "sandbox_id": scope.sandbox_id,
                "spec": spec,
                "state": "queued",
                "attempts": 0,
            }
            for n, spec in enumerate(specs)
        ]
        with self._write() as conn:
            # One writer per run (its lease holder) adds them; a taken-over run finds its old ones here.
            if conn.execute(select(_P.part).where(_P.run_id == run_id).limit(1)).first() is None and rows:
                conn.execute(insert(t.run_partitions), rows)
        return self.partitions(run_id)

    def claim_partition(
        self,
        worker: str,
        lease_ms: int,
        now_ms: int,
        run_id: str | None = None,
        part: int | None = None,
        max_attempts: int | None = None,
    ) -> RunPartition | None:
        expired = (_P.state == "running") & (_P.lease_expires_at < now_ms)
        if max_attempts is not None:
            expired = expired & (_P.attempts < max_attempts)
        claimable = (_P.state == "queued") | expired
        if run_id is not None:
            claimable = claimable & (_P.run_id == run_id)
            if part is not None:
                claimable = claimable & (_P.part == part)
        candidates = select(t.run_partitions).where(claimable).order_by(_P.run_id, _P.part).limit(8)
        # Looked for on a read connection: an idle worker asks every poll, and with SQLite a write
        # transaction would queue every process's writes behind it. The claim's conditions (state and
        # lease as read) make a stale candidate harmless.
        with self.read_engine.connect() as reader:
            rows = reader.execute(candidates).mappings().all()
        if not rows:
            return None
        with self._write() as conn:
            for row in rows:
                same_lease = (
                    _P.lease_expires_at.is_(None)
                    if row["lease_expires_at"] is None
                    else _P.lease_expires_at == row["lease_expires_at"]
                )
                taken = conn.execute(
                    update(t.run_partitions)
                    .where(_P.run_id == row["run_id"], _P.part == row["part"], _P.state == row["state"])
                    .where(same_lease)
                    .values(
                        state="running",
                        lease_owner=worker,
                        lease_expires_at=now_ms + lease_ms,
                        attempts=_P.attempts + 1,
                    )
                )
                if taken.rowcount == 1:
                    claimed = {
                        **row,
                        "state": "running",
                        "lease_owner": worker,
                        "lease_expires_at": now_ms + lease_ms,
                        "attempts": row["attempts"] + 1,
                    }
                    return _partition(claimed)
        return None

    def renew_partition(self, run_id: str, part: int, worker: str, until_ms: int) -> bool:
        stmt = (
            update(t.run_partitions)
            .where(_P.run_id == run_id, _P.part == part, _P.lease_owner == worker, _P.state == "running")
            .values(lease_expires_at=until_ms)
        )
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    def finish_partition(self, run_id: str, part: int, worker: str, output: dict[str, Any]) -> bool:
        stmt = (
            update(t.run_partitions)
            .where(_P.run_id == run_id, _P.part == part, _P.lease_owner == worker, _P.state == "running")
            .values(state="done", lease_expires_at=None, output=output)
        )
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    def partitions(self, run_id: str) -> list[RunPartition]:
        query = select(t.run_partitions).where(_P.run_id == run_id).order_by(_P.part)
        with self.read_engine.connect() as conn:
            return [_partition(r) for r in conn.execute(query).mappings().all()]
