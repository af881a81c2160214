"""Turning a micro-batch's messages into rows and row errors: what one message can fail, it fails alone.

Contract, for the micro-batcher (runtime/streaming.py) and synchronous validation
(runtime/streamvalidation.py):

- :func:`_decode` splits the log records of a micro-batch into raw messages, XDM messages, upsert
  deletes and records that are not JSON (kept as received, by log position).
- :func:`_map` maps messages through a compiled mapping and returns the mapped Arrow tables with the log
  position of each row, and how many messages failed. Every failed message is written, as received and
  with its reason, to the run's row errors; it never fails the others. The messages become Arrow batches
  from the union of their keys (:func:`_batches`); a message Arrow cannot read is a row error; a batch
  on which the mapping raises is halved until the message that makes it raise is alone (:func:`_apply`);
  a raw message from which a mapping set takes no value at all is a row error (:func:`_drop_empty`).
- The one failure that is no message's: the mapping raises on more than :data:`CRASH_LIMIT` messages
  (or one in a hundred). :class:`MappingBroken` then fails the whole micro-batch (the micro-batcher
  retries it with backoff) and none of its row errors is written.
- :func:`_fill` fills the required ``_id`` and ``timestamp`` a flow's mapping leaves empty.

Nothing here reads the log, commits, or touches runs: that is the micro-batcher's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from headwater.stores.rowerrors import RowErrorWriter

if TYPE_CHECKING:
    from headwater.runtime.streaming import Plan

CORRUPT = "INGEST-1401-400"
EMPTY = "INGEST-1555-400"  # a required value is missing: here, every value the mapping reads


@dataclass
class _Decoded:
    raw: list[dict[str, Any]] = field(default_factory=list)
    raw_pos: list[int] = field(default_factory=list)
    raw_time: list[int] = field(default_factory=list)
    xdm: list[dict[str, Any]] = field(default_factory=list)
    xdm_pos: list[int] = field(default_factory=list)
    deletes: list[tuple[int, Any]] = field(default_factory=list)
    corrupt: list[tuple[int, bytes]] = field(default_factory=list)


def _decode(payloads: Iterable[bytes]) -> _Decoded:
    out = _Decoded()
    for position, payload in enumerate(payloads):
        try:
            entry = orjson.loads(payload)
            kind, record = entry["k"], entry["r"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            out.corrupt.append((position, payload))
            continue
        if kind == "delete":
            out.deletes.append((position, record.get("key") if isinstance(record, dict) else None))
        elif kind == "xdm" and isinstance(record, dict):
            out.xdm.append(record)
            out.xdm_pos.append(position)
        elif isinstance(record, dict):
            out.raw.append(record)
            out.raw_pos.append(position)
            out.raw_time.append(int(entry.get("t") or 0))
        else:
            out.corrupt.append((position, payload))
    return out


def _map(
    mapping: Any,
    rows: list[dict[str, Any]],
    positions: list[int],
    row_errors: RowErrorWriter,
    require_value: bool = False,
) -> tuple[list[tuple[pa.Table, list[int]]], int]:
    """Map the messages ``rows`` (at log positions ``positions`` of the micro-batch); returns the mapped
    tables with the positions of their rows, and how many messages failed.

    Every failure here is one message's: the message is kept as a row error, as received, with its
    reason, and the others go on. A message Arrow cannot read, one the mapping rejects or crashes on, and
    (``require_value``, raw messages through a mapping set) one from which the mapping takes no value at
    all are such failures; nothing a message contains can fail the micro-batch.

    A mapping that raises on more than :data:`CRASH_LIMIT` messages (or one in a hundred) is taken to be
    broken for every message, which is no message's fault: :class:`MappingBroken` fails the micro-batch
    (retried with backoff, the flow shown failing) and no row error of it is written."""
    sink = _Failures(rows, positions, max(CRASH_LIMIT, len(rows) // 100))
    out: list[tuple[pa.Table, list[int]]] = []
    for batch, members in _batches(rows, sink):
        for output, kept in _apply(mapping, batch, members, sink):
            if require_value:
                output, kept = _drop_empty(output, kept, sink)
            if output.num_rows:
                out.append((pa.Table.from_batches([output]), [positions[m] for m in kept]))
    sink.write(row_errors)
    return out, sink.failed


CRASH_LIMIT = 64


class MappingBroken(Exception):
    """The flow's mapping raises on message after message: the micro-batch fails (not its messages)."""


@dataclass
class _Failures:
    """The failed messages of one mapping pass, kept as received with their errors until :meth:`write`."""

    rows: list[dict[str, Any]]
    positions: list[int]
    crash_limit: int
    failed: int = 0
    crashes: int = 0
    found: list[tuple[dict[str, Any], list[Any]]] = field(default_factory=list)

    def fail(self, member: int, errors: list[Any]) -> None:
        """Message ``member`` (an index into ``rows``) failed for ``errors`` (RowErrors)."""
        position = self.positions[member]
        self.found.append((self.rows[member], [replace(e, row=position) for e in errors]))
        self.failed += 1

    def crashed(self, member: int, error: Exception) -> None:
        """The mapping raised ``error`` on message ``member`` alone."""
        self.crashes += 1
        if self.crashes > self.crash_limit:
            raise MappingBroken(
                f"the flow's mapping fails on more than {self.crash_limit} messages of a micro-batch "
                f"({type(error).__name__}: {error})"
            ) from error
        self.fail(member, [_corrupt(0, f"the message cannot be mapped: {error}")])

    def write(self, writer: RowErrorWriter) -> None:
        for record, errors in self.found:
            writer.add_record(record, errors)


UNREADABLE = (pa.ArrowException, OverflowError, ValueError, TypeError, RecursionError)


def _batches(rows: list[dict[str, Any]], sink: _Failures) -> list[tuple[pa.RecordBatch, list[int]]]:
    """The messages as Arrow batches, with the indexes of the messages in each.

    The columns are the union of every message's keys, at every level (``RecordBatch.from_pylist`` takes
    the first message's keys only: a first message ``{}`` made a batch of no rows, which failed every
    micro-batch, and a key missing from the first message was dropped from all the others). Messages
    whose values disagree in type (``1`` in one, ``"x"`` in another) are read one by one, so each keeps
    its own types and one odd message cannot fail the others; one that Arrow cannot read is a row error."""
    try:
        return [(pa.RecordBatch.from_struct_array(pa.array(rows)), list(range(len(rows))))]
    except UNREADABLE:
        pass
    groups: list[tuple[pa.RecordBatch, list[int]]] = []
    for member, row in enumerate(rows):
        try:
            groups.append((pa.RecordBatch.from_struct_array(pa.array([row])), [member]))
        except UNREADABLE as exc:
            sink.fail(member, [_corrupt(0, f"the message cannot be read as a record: {exc}")])
    return groups


def _apply(
    mapping: Any, batch: pa.RecordBatch, members: list[int], sink: _Failures
) -> list[tuple[pa.RecordBatch, list[int]]]:
    """``mapping`` applied to ``batch``: the output batches with the members of their rows. The mapping
    reports the rows it rejects; should it raise instead (a message it was not written for), the batch is
    split in halves until the message that makes it raise is alone, and that message is a row error."""
    try:
        result = mapping.apply(batch)
        failed_rows = result.failed_rows.to_pylist()
        if len(failed_rows) != batch.num_rows or result.output.num_rows != failed_rows.count(False):
            raise ValueError(
                f"the mapping returned {result.output.num_rows} rows and {len(failed_rows)} row states "
                f"for {batch.num_rows} messages"
            )
    except Exception as exc:  # a mapping failure of some message(s): isolate it
        if batch.num_rows > 1:
            half = batch.num_rows // 2
            return _apply(mapping, batch.slice(0, half), members[:half], sink) + _apply(
                mapping, batch.slice(half), members[half:], sink
            )
        sink.crashed(members[0], exc)
        return []
    by_row: dict[int, list[Any]] = {}
    for error in result.errors:
        by_row.setdefault(error.row, []).append(error)
    for row, bad in enumerate(failed_rows):
        if bad:
            sink.fail(members[row], by_row.get(row) or [_corrupt(0, "the message failed mapping")])
    kept = [m for m, bad in zip(members, failed_rows, strict=True) if not bad]
    return [(result.output, kept)]


def _drop_empty(
    output: pa.RecordBatch, members: list[int], sink: _Failures
) -> tuple[pa.RecordBatch, list[int]]:
    """Drop (as row errors) the mapped rows where every field is empty: the message has none of the
    fields the flow's mapping reads (``{}``, ``{"data": null}``), so there is nothing to land."""
    if output.num_rows == 0:
        return output, members
    empty = all_null(output)
    if not any(empty):
        return output, members
    for member, is_empty in zip(members, empty, strict=True):
        if is_empty:
            sink.fail(
                member,
                [
                    _corrupt(
                        0,
                        "the message has none of the fields the flow's mapping reads (every mapped value "
                        "is empty): there is nothing to land",
                        EMPTY,
                    )
                ],
            )
    keep = pa.array([not e for e in empty], type=pa.bool_())
    return output.filter(keep), [m for m, e in zip(members, empty, strict=True) if not e]


def all_null(batch: pa.RecordBatch) -> list[bool]:
    """Per row: True when every leaf value of the row is null (structs are looked into)."""
    table = pa.Table.from_batches([batch])
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    mask: Any = None
    for column in table.columns:
        null = pc.is_null(column)
        mask = null if mask is None else pc.and_(mask, null)
    if mask is None:
        return [True] * batch.num_rows
    return [bool(v) for v in mask.to_pylist()]


ID_SOURCES = ("_id", "event_id", "eventId", "id")


def _fill(plan: Plan, rows: pa.Table, positions: list[int], decoded: _Decoded) -> pa.Table:
    """Fill the required ``_id`` and ``timestamp`` a mapping left empty: ``_id`` from the message's own id
    (``_id``, ``event_id``, ``eventId`` or ``id``) or else a digest of the message, so that a message sent
    twice gets the same ``_id`` and is recognised as a duplicate; ``timestamp`` from when it was received."""
    where = {p: i for i, p in enumerate(decoded.raw_pos)}
    for name in plan.fills:
        index = rows.schema.get_field_index(name)
        if index < 0:
            continue
        current = rows.column(index).to_pylist()
        values: list[Any] = []
        for value, position in zip(current, positions, strict=True):
            i = where[position]
            if value is not None:
                values.append(value)
            elif name == "_id":
                record = decoded.raw[i]
                own = next((record[k] for k in ID_SOURCES if isinstance(record.get(k), str | int)), None)
                values.append(
                    str(own)
                    if own is not None
                    else hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
                )
            else:
                values.append(datetime.fromtimestamp(decoded.raw_time[i] / 1000, UTC))
        rows = rows.set_column(
            index, rows.schema.field(index), pa.array(values).cast(rows.schema.field(index).type)
        )
    return rows


def _corrupt(row: int, message: str, code: str = CORRUPT) -> Any:
    from headwater.engines.mapping import RowError

    return RowError(row=row, code=code, message=message, path=None)
