"""Arrow batch helpers shared by connectors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa


def rebatch(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """``batches`` re-cut into batches of ``size`` rows; shorter only at the end or where the schema
    changes. Slices are zero-copy; only batches assembled from several pieces are copied."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if pending and batch.schema != pending[0].schema:
            yield _concat(pending)
            pending, count = [], 0
        offset = 0
        while offset < batch.num_rows:
            take = min(size - count, batch.num_rows - offset)
            piece = batch.slice(offset, take)
            offset += take
            if not pending and take == size:
                yield piece
                continue
            pending.append(piece)
            count += take
            if count == size:
                yield _concat(pending)
                pending, count = [], 0
    if pending:
        yield _concat(pending)


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    return batches[0] if len(batches) == 1 else pa.concat_batches(batches)
