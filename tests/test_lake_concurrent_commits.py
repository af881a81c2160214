"""Two committers of the same micro-batch, each with the table as it was before the other
committed (two workers, two processes): one commits, the other adds nothing. pyiceberg retries a commit
that lost the catalog's compare-and-swap on the newer snapshot by itself, dropping the snapshot
assertion; the lake's own preconditions (lake/requirements.py) must survive that retry. (Two attempts of
one run: tests/test_locks.py.)"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from headwater.lake.iceberg import Lake
from headwater.stores.metadata import Scope
from tests.conftest import make_settings

SCOPE = Scope("org-1", "sandbox-1")
SCHEMA = pa.schema([pa.field("_id", pa.string())])
ROWS = pa.table({"_id": [f"r{i}" for i in range(10)]}, schema=SCHEMA)


@pytest.fixture
def lakes(tmp_path: Path) -> tuple[Lake, Lake]:
    settings = make_settings(tmp_path / "home")
    first, second = Lake(settings), Lake(settings)  # one per process, on one catalog
    first.ensure_table(SCOPE, "ds1", SCHEMA)
    return first, second


def _rows(lake: Lake) -> int:
    table = lake.load(SCOPE, "ds1")
    assert table is not None
    return int(table.scan().to_arrow().num_rows)


def test_a_stale_committer_of_the_same_micro_batch_adds_nothing(lakes: tuple[Lake, Lake]) -> None:
    a, b = lakes
    ta, tb = a.load(SCOPE, "ds1"), b.load(SCOPE, "ds1")  # both read position 0 before either commits
    assert ta is not None and tb is not None
    files_a = a.write_files(ta, ROWS.to_batches(), SCHEMA)
    files_b = b.write_files(tb, ROWS.to_batches(), SCHEMA)
    assert a.commit_stream(ta, files_a, "flow-1", 0, 10, {"runId": "a"})[1]
    table, committed = b.commit_stream(tb, files_b, "flow-1", 0, 10, {"runId": "b"})
    assert not committed
    assert b.stream_offset(table, "flow-1") == 10  # the table handed back is the current one
    assert _rows(a) == 10


def test_a_micro_batch_of_another_flow_still_commits_after_a_concurrent_commit(
    lakes: tuple[Lake, Lake],
) -> None:
    a, b = lakes
    ta, tb = a.load(SCOPE, "ds1"), b.load(SCOPE, "ds1")
    assert ta is not None and tb is not None
    assert a.commit_stream(ta, a.write_files(ta, ROWS.to_batches(), SCHEMA), "flow-1", 0, 10, {})[1]
    # Its position did not move: pyiceberg's retry on the newer snapshot is what should happen here.
    assert b.commit_stream(tb, b.write_files(tb, ROWS.to_batches(), SCHEMA), "flow-2", 0, 5, {})[1]
    assert _rows(a) == 20
