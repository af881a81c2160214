"""Orphan data files (lake/orphans.py): files written by an attempt that never committed are found and
removed, on a folder and on S3; files a snapshot references, expired ones included while in the
metadata, and files younger than the limit (a run writing now) are kept; the table reads the same rows.
`headwater datasets remove-orphans` lists them, and deletes them only with --delete."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pyarrow as pa
from pyiceberg.table import Table

from headwater.lake.iceberg import Lake
from headwater.lake.orphans import sweep_table
from headwater.services.ids import now_ms
from headwater.settings import Settings
from headwater.stores.metadata import Scope
from tests.test_crash_recovery import EXE

SCHEMA = pa.schema([("id", pa.string())])
DAY_MS = 86_400_000


def _files(lake: Lake, table: Table, ids: list[str]) -> list[str]:
    batch = pa.record_batch([pa.array(ids)], schema=SCHEMA)
    return [f.file_path for f in lake.write_files(table, iter([batch]), SCHEMA)]


def _ids(lake: Lake, table: Table) -> list[str]:
    fresh = lake.catalog.load_table(table.name())
    return sorted(lake.scan(fresh).read_all().column("id").to_pylist())


def test_only_unreferenced_old_data_files_are_removed(lake_settings: Settings) -> None:
    lake = Lake(lake_settings)
    table = lake.ensure_table(Scope("org", "sb"), "ds" + uuid.uuid4().hex[:8], SCHEMA)
    committed = lake.write_files(
        table, iter([pa.record_batch([pa.array(["a", "b"])], schema=SCHEMA)]), SCHEMA
    )
    lake.commit(table, committed, {"runId": "r1"})
    table = lake.catalog.load_table(table.name())
    orphans = _files(lake, table, ["dead-1", "dead-2"])  # an attempt that died before its commit
    if not lake_settings.lake_url:  # on a disk its files can be aged; S3 keeps its own times
        for path in orphans:
            local = path.removeprefix("file://")
            os.utime(local, (os.path.getatime(local), (now_ms() - 5 * DAY_MS) / 1000))
        young = _files(lake, table, ["writing-now"])  # a run writing now: not yet committed, kept
        limit = now_ms() - 3 * DAY_MS
    else:
        young, limit = [], now_ms() + 60_000  # every file is "old": the references alone decide

    listed = sweep_table(table, limit, remove=False)
    assert sorted(listed.orphans) == sorted(p.removeprefix("file://") for p in orphans), listed
    assert listed.bytes > 0 and listed.kept_young == len(young)
    assert sweep_table(table, limit, remove=False).orphans == listed.orphans  # listing removed nothing

    removed = sweep_table(table, limit, remove=True)
    assert removed.orphans == listed.orphans
    assert sweep_table(table, limit, remove=False).orphans == []
    assert _ids(lake, table) == ["a", "b"]
    for path in young:
        assert Path(path.removeprefix("file://")).is_file()
    referenced = table.inspect.all_files().column("file_path").to_pylist()
    assert referenced == [f.file_path for f in committed]


def test_a_table_referencing_a_file_not_listed_under_its_data_folder_is_not_swept(tmp_path: Path) -> None:
    """A referenced file spelled otherwise than the listing (here: reached through a link, as a moved
    home's tables may be) must not make the real file look like an orphan."""
    lake = Lake(Settings(home=tmp_path / "home", environment="development"))
    table = lake.ensure_table(Scope("org", "sb"), "dslinked", SCHEMA)
    data = Path(table.location().removeprefix("file://")) / "data"
    data.mkdir(parents=True)
    (tmp_path / "link").symlink_to(data)
    written = lake.write_files(table, iter([pa.record_batch([pa.array(["a"])], schema=SCHEMA)]), SCHEMA)
    [real] = [Path(f.file_path.removeprefix("file://")) for f in written]
    from pyiceberg.io.pyarrow import parquet_file_to_data_file

    linked = parquet_file_to_data_file(table.io, table.metadata, str(tmp_path / "link" / real.name))
    lake.commit(table, [linked], {"runId": "r1"})
    table = lake.catalog.load_table(table.name())
    sweep = sweep_table(table, now_ms() + 60_000, remove=True)
    assert sweep.orphans == [] and sweep.skipped and "not swept" in sweep.skipped
    assert real.is_file() and _ids(lake, table) == ["a"]


def test_the_command_lists_orphans_and_deletes_them_only_when_asked(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "HEADWATER_HOME": str(home), "HEADWATER_ENVIRONMENT": "development"}
    settings = Settings(home=home, environment="development")
    lake = Lake(settings)
    table = lake.ensure_table(Scope("org", "sb"), "dsorphans", SCHEMA)
    [orphan] = _files(lake, table, ["dead"])
    command = [EXE, "datasets", "remove-orphans", "--older-than-days", "0"]

    listed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    [line] = [json.loads(row) for row in listed.stdout.splitlines()]
    assert line["orphans"] == 1 and line["files"] == [orphan.removeprefix("file://")] and not line["deleted"]
    assert Path(line["files"][0]).is_file() and "add --delete" in listed.stderr

    deleted = subprocess.run([*command, "--delete"], env=env, capture_output=True, text=True, timeout=120)
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["deleted"] is True
    assert not Path(line["files"][0]).exists()
