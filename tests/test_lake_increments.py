"""A reader of the lake gets only what a table gained since its snapshot, or starts over after a rewrite."""

from __future__ import annotations

import uuid

import pyarrow as pa
from pyiceberg.expressions import EqualTo
from pyiceberg.table import Table

from headwater.lake.iceberg import Lake
from headwater.lake.increments import increment
from headwater.lake.storage import lake_location
from headwater.settings import Settings
from headwater.stores.metadata import Scope

SCHEMA = pa.schema([("id", pa.string())])


def _append(lake: Lake, table: Table, ids: list[str], **kwargs: object) -> Table:
    files = lake.write_files(table, iter([pa.record_batch([pa.array(ids)], schema=SCHEMA)]), SCHEMA)
    lake.commit(table, files, {"runId": uuid.uuid4().hex}, **kwargs)  # type: ignore[arg-type]
    return lake.catalog.load_table(table.name())


def _ids(table: Table, after: int | None) -> tuple[int | None, bool, list[str]]:
    step = increment(table, after)
    rows = step.reader.read_all().column("id").to_pylist() if step.reader is not None else []
    return step.snapshot_id, step.rebuild, sorted(rows)


def test_appends_are_read_once_and_a_rewrite_starts_over(lake_settings: Settings) -> None:
    lake = Lake(lake_settings)
    table = lake.ensure_table(Scope("org", "sb"), "ds" + uuid.uuid4().hex[:8], SCHEMA)
    assert table.location().startswith(lake_location(lake_settings) + "/")
    assert increment(table, None).empty

    table = _append(lake, table, ["a", "b"])
    first, rebuild, rows = _ids(table, None)
    assert (rebuild, rows) == (False, ["a", "b"])

    table = _append(lake, table, ["c"])
    table = _append(lake, table, ["d"])
    second, rebuild, rows = _ids(table, first)
    assert (rebuild, rows) == (False, ["c", "d"])  # only what was added since
    assert _ids(table, second) == (second, False, [])  # nothing new

    table = _append(lake, table, ["e"], replace=True)  # a full refresh
    third, rebuild, rows = _ids(table, second)
    assert (rebuild, rows) == (True, ["e"])

    with table.transaction() as tx:  # a deletion
        tx.delete(delete_filter=EqualTo("id", "e"))
    table = lake.catalog.load_table(table.name())
    _, rebuild, rows = _ids(table, third)
    assert (rebuild, rows) == (True, [])

    _, rebuild, rows = _ids(table, 12345)  # a snapshot that is not an ancestor (expired)
    assert rebuild
