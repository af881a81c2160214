"""What a table gained since a snapshot: the rows a consumer of the lake (the profile projection) has not
read yet, and whether it must start over.

A consumer keeps the id of the last snapshot it read. :func:`increment` walks the table's ancestry from
its current snapshot back to that id:

- only appends in between: the rows those appends added (Iceberg's incremental append scan, projected
  onto the current schema);
- an overwrite or a delete in between (a full-refresh run, an upsert, a deletion, a batch taken out), or
  the snapshot is no longer an ancestor (expired, or the table was dropped and made again): ``rebuild``
  with every row of the current snapshot, so the consumer replaces what it derived from the table.

Compaction (``replace``) adds and removes no row and is passed over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from pyiceberg.table import Table

_REWRITES = frozenset({"overwrite", "delete"})


@dataclass(frozen=True)
class Increment:
    """The rows to read, up to ``snapshot_id`` (None: the table has no snapshot)."""

    snapshot_id: int | None
    rebuild: bool
    reader: pa.RecordBatchReader | None  # None: nothing new

    @property
    def empty(self) -> bool:
        return self.reader is None and not self.rebuild


def increment(table: Table, after: int | None) -> Increment:
    """The rows of ``table`` added since snapshot ``after`` (None: since the beginning), or all its rows
    with ``rebuild`` when the table was rewritten since."""
    current = table.current_snapshot()
    if current is None:
        return Increment(None, after is not None, None)
    if current.snapshot_id == after:
        return Increment(after, False, None)
    rebuild = after is not None and _rewritten_since(table, current.snapshot_id, after)
    if after is None or rebuild:
        reader = table.scan(snapshot_id=current.snapshot_id).to_arrow_batch_reader()
    else:
        scan = table.incremental_append_scan(
            from_snapshot_id_exclusive=after, to_snapshot_id_inclusive=current.snapshot_id
        )
        reader = scan.to_arrow_batch_reader()
    return Increment(current.snapshot_id, rebuild, reader)


def _rewritten_since(table: Table, current: int, after: int) -> bool:
    """Whether a snapshot after ``after`` up to ``current`` rewrote rows, or ``after`` is not an ancestor."""
    snapshot = table.snapshot_by_id(current)
    while snapshot is not None and snapshot.snapshot_id != after:
        operation = snapshot.summary.operation.value if snapshot.summary else "append"
        if operation in _REWRITES:
            return True
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return snapshot is None
