"""Rows committed late at the source: each incremental run re-reads an overlap and drops what it landed.

A source stamps a row's delta value when its transaction starts (Salesforce ``SystemModstamp``,
Dynamics ``modifiedon``, PostgreSQL ``now()``), but other readers see the row only once it commits:
minutes later for a long transaction, a Bulk API job or a replica's lag. A run that read up to E
before that commit never sees the row, and the next run starts after E. So:

- **The overlap.** A run whose window start S comes from the flow's previous checkpoint reads
  ``(S - L, E]`` instead of ``(S, E]``, L being the flow's ``options.lookbackSeconds`` or else its
  connector's default (10 minutes for Salesforce, Dynamics and PostgreSQL; connectors that cannot return
  row keys read no overlap). ``lookbackSeconds: 0`` turns it off. A run given an explicit
  ``windowStartTime`` reads exactly what it was asked (a deliberate re-read).
- **What was committed.** Rows are told apart by a 16-byte digest of (primary key, delta instant); a
  source without a primary key (a view, a keyless table) is keyed on every column it reads plus the
  delta instant, counted as a multiset, so identical rows land as many times as the source holds them.
  A run records the digests of every row it read (landed, dropped as already landed, or failed) whose
  delta lies in ``(keysFrom, E]``, ``keysFrom`` = ``max(E - L, what it read from)``, in a keys file
  written before its commit and named in the checkpoint of that commit (``headwater.keysFile``,
  ``keysFrom``). The knowledge is therefore durable and atomic with the rows: a run that crashes
  before the commit leaves an unreferenced file, and its retry reads and writes everything again.
- **Where.** Keys files live in ``WAREHOUSE/_lookback/{flowId}/``, or with the lake on S3 under
  ``<HEADWATER_LAKE_URL>/_lookback/{flowId}/`` (stores/objectfiles.py), so the worker that runs a flow
  next reads the keys whichever node wrote them. A missing file is "no overlap"; a store that fails
  fails the run (LakeUnavailable, retried), never silently reading without the overlap.
- **Dropping.** The next run reads from ``max(S - L, previous keysFrom)`` (never below what the keys
  cover, so raising L takes effect over one run instead of doubling rows) and drops each re-read row
  whose digest the previous keys hold, once per occurrence. A checkpoint without ``keysFrom`` (written
  before this existed, or with the overlap off) gives no overlap.

The dataset itself cannot be the record of what landed: a mapping may drop or transform the key and
the delta column.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from headwater.connectors.arrowing import TIMESTAMP, window_mask
from headwater.stores.objectfiles import ObjectFiles, object_files, unavailable

if TYPE_CHECKING:
    from headwater.settings import Settings

log = logging.getLogger("headwater.runtime")

DIGEST_BYTES = 16


def keys_files(settings: Settings) -> ObjectFiles:
    """The keys files' area: ``WAREHOUSE/_lookback``, or ``<HEADWATER_LAKE_URL>/_lookback`` on S3."""
    return object_files(settings, "_lookback", settings.warehouse_dir / "_lookback")


def write_keys(files: ObjectFiles, flow_id: str, batch_id: str, digests: bytes) -> str:
    """Write ``digests`` (16 bytes each) durably to a new file (on a disk fsynced and owner-only; on S3
    one object, durable once written); returns its key relative to the area, or "" when there are none.
    A fresh name per attempt: two attempts of one run never write the same file."""
    if not digests:
        return ""
    relative = f"{flow_id}/{batch_id}-{uuid.uuid4().hex}.keys"
    if not files.appendable:
        with unavailable("writing a run's lookback keys"), files.writer(relative) as out:
            out.write(digests)
        return relative
    path = Path(files.location(relative))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(digests)
        out.flush()
        os.fsync(out.fileno())
    return relative


def read_keys(files: ObjectFiles, relative: str, count: int) -> Counter[bytes] | None:
    """The digests a checkpoint names; None when its file is missing or not what the checkpoint says.
    A store that fails is LakeUnavailable."""
    if not relative:
        return Counter() if count == 0 else None
    try:
        with unavailable("reading a run's lookback keys"):
            data = files.read_bytes(relative)
    except FileNotFoundError:
        return None
    if len(data) != count * DIGEST_BYTES:
        return None
    return Counter(data[i : i + DIGEST_BYTES] for i in range(0, len(data), DIGEST_BYTES))


def remove_keys(files: ObjectFiles, relative: str) -> None:
    """Delete a keys file no checkpoint needs any more (best effort: a leftover file is harmless)."""
    if relative:
        try:
            files.delete(relative)
        except OSError:
            log.warning("could not remove the keys file %s", relative)


@dataclass
class KeyFilter:
    """Splits the row keys off a keyed read (connectors/base.py), drops rows already committed, and
    collects the digests the run's checkpoint records.

    ``key_count`` is how many primary key columns the batches carry (0: key on the output columns);
    ``start`` is the window start (rows at or before it may have been committed), ``keys_from`` the
    lower bound (exclusive) of the delta values whose digests are kept, ``committed`` the previous
    run's digests (consumed as rows match them).
    """

    key_count: int
    start: datetime | None
    keys_from: datetime
    committed: Counter[bytes] = field(default_factory=Counter)
    kept: bytearray = field(default_factory=bytearray)  # 16 bytes a row: a run's memory stays small
    skipped: int = 0

    def apply(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            out = self.filter(batch)
            if out.num_rows:
                yield out

    def filter(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The output columns of ``batch`` without the rows the previous run committed."""
        outputs = batch.num_columns - self.key_count - 1
        output = batch.select(list(range(outputs)))
        instants = _instants(batch.column(batch.num_columns - 1))
        # Digests are needed for rows a later overlap reads again (after keys_from) and for rows the
        # previous runs may have committed (at or before the window start).
        wanted = window_mask(instants, self.keys_from, None)
        if self.start is not None and self.committed:
            committed = pc.fill_null(pc.less_equal(instants, pa.scalar(self.start, type=TIMESTAMP)), False)
            wanted = pc.or_(wanted, committed)
        rows = pc.indices_nonzero(wanted)
        if not len(rows):
            return output
        keyed = range(outputs, batch.num_columns - 1) if self.key_count else range(outputs)
        values = [batch.column(i).take(rows).to_pylist() for i in keyed]
        micros = instants.take(rows).cast(pa.int64()).to_pylist()
        start_us, keep_us = _micros(self.start), _micros(self.keys_from)
        dropped: list[int] = []
        for position, row, delta in zip(rows.to_pylist(), zip(*values, strict=True), micros, strict=True):
            digest = hashlib.blake2b(repr((*row, delta)).encode(), digest_size=DIGEST_BYTES).digest()
            if start_us is not None and delta <= start_us and self.committed[digest] > 0:
                self.committed[digest] -= 1
                dropped.append(position)
            if delta > keep_us:
                self.kept += digest
        if not dropped:
            return output
        self.skipped += len(dropped)
        keep = [True] * batch.num_rows
        for position in dropped:
            keep[position] = False
        return output.filter(pa.array(keep, pa.bool_()))


def _instants(delta: pa.Array) -> pa.Array:
    """Delta values as UTC instants (a date is its midnight, as the window compares it)."""
    if pa.types.is_date32(delta.type):
        return delta.cast(pa.timestamp("us")).cast(TIMESTAMP)
    return pc.cast(delta, TIMESTAMP)


def _micros(value: datetime | None) -> int | None:
    if value is None:
        return None
    return int(pa.scalar(value, type=TIMESTAMP).cast(pa.int64()).as_py())


def overlap_start(start: datetime, lookback: float, previous_keys_from: datetime) -> datetime:
    """Where a run re-reads from: ``lookback`` before its window, never below what the keys cover."""
    return max(start - timedelta(seconds=lookback), min(previous_keys_from, start))
