"""Backing up a home while its server runs and restoring it into a new folder (docs/operations.md).

The module's home gets a batch dataset (rows from a run, one row error, a Local Folder connection whose
absolute rootPath points into the home), a streaming dataset fed by a Customer.io inlet whose base
connection holds an encrypted signing key (records committed, one left in the log), and messages that
keep arriving, and commits that keep landing, while ``headwater backup`` runs in its own process. The
original home is deleted before the restored one is read: nothing can still point at it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from headwater.lake.iceberg import warehouse_location
from headwater.lake.references import table_files
from headwater.runtime.worker import Worker
from headwater.services.backup import Damaged, NotABackup, Raced, Refused, backup_home, restore_home
from headwater.services.backup.catalog import below, catalog_tables, locator
from headwater.services.backup.location import moved_home
from headwater.services.backup.streams import LogCopy
from headwater.stores.log.local import LocalLog
from tests.conftest import make_settings
from tests.flows_helpers import CAT
from tests.streaming_helpers import FS, cio_event, customerio_flow, rows, streaming, wait_rows
from tests.support import ApiClient, LiveServer, start_server, token_for, wait_until
from tests.test_batch_runs import contact, files_flow, run_and_wait, write_csv
from tests.test_cli import HEADWATER, cli_env


def signed(key: str, body: bytes) -> dict[str, str]:
    """Customer.io's signature headers (tests/test_streaming_inlets.py)."""
    stamp = str(int(time.time()))
    signature = hmac.new(key.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-CIO-Timestamp": stamp, "X-CIO-Signature": signature, "Content-Type": "application/json"}


def post_event(url: str, key: str, event_id: str) -> int:
    body = httpx.Request("POST", url, json=cio_event(event_id)).content
    return httpx.post(url, content=body, headers=signed(key, body), timeout=10).status_code


def client(live: LiveServer, sandbox: str = "prod") -> ApiClient:
    c = live.creds
    token = token_for(live.base_url, c["apiKey"], c["clientSecret"])
    return ApiClient(live.base_url, token, c["apiKey"], c["orgId"], sandbox, c["tenantId"])


def running_worker(live: LiveServer) -> tuple[Worker, threading.Thread]:
    runner = Worker(live.services, name="backup-test", schedule=False, streaming=False)
    thread = threading.Thread(target=runner.run_forever, daemon=True)
    thread.start()
    return runner, thread


@dataclass
class Made:
    """The backup, and what the original home held when it was made: ``acked_as_of``, the messages
    acknowledged before the backup's moment (its database copy); ``acked_during``, those after it."""

    base: Path
    original: Path
    backup: Path
    creds: dict[str, str]
    batch: dict[str, str]
    stream: dict[str, Any]
    parked: dict[str, Any]  # a streaming flow of sandbox 'parked', whose log no batcher read
    key: str
    batch_rows: list[dict[str, Any]]
    runs: dict[str, str]  # run id -> state
    row_errors: str
    acked_as_of: set[str] = field(default_factory=set)
    acked_during: set[str] = field(default_factory=set)


class Sender(threading.Thread):
    """Posts signed events to an inlet until stopped, remembering each acknowledged one."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.acked: list[tuple[str, float]] = []  # (event id, when its 200 arrived: durable by then)
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.wait(0.005):  # a steady trickle, not a flood of the 2-core machine
            n += 1
            if post_event(self.url, self.key, f"during-{n}") == 200:
                self.acked.append((f"during-{n}", time.time()))


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    base = tmp_path_factory.mktemp("backup")
    home = base / "original" / "home"
    live = start_server(make_settings(home))
    runner, thread = running_worker(live)
    try:
        yield _populate_and_back_up(base, home, live)
    finally:
        runner.stop()
        thread.join(timeout=10)
        live.stop()
        live.services.close()


def _populate_and_back_up(base: Path, home: Path, live: LiveServer) -> Made:
    api = client(live)
    files = home / "files" / api.org_id / "prod"  # the sandbox's files folder, named absolutely
    files.mkdir(parents=True)
    good = [contact(i, "2024-01-01 10:00:00") for i in range(5)]
    write_csv(files / "contacts.csv", [*good, contact(9, "2024-01-01 10:00:00", email="not-an-email")])
    batch = files_flow(api, files)
    run = run_and_wait(api, batch["flow"], "2024-01-02T00:00:00Z")
    assert run["state"] == "partialSuccess", run
    batch_id = run["activities"][0]["targetInfo"][0]["reference"]["ids"][0]
    row_errors = _row_errors(api, batch_id)
    assert "not-an-email" in row_errors

    key = "whsec-" + uuid.uuid4().hex
    live.services.tenancy.create_sandbox(api.org_id, "parked")
    parked = customerio_flow(client(live, "parked"), name="Parked")
    for n in range(3):  # only in the log when the backup runs: nothing commits this sandbox's flows
        assert httpx.post(parked["inletUrl"], json=cio_event(f"parked-{n}")).status_code == 200
    stream = customerio_flow(api, signing_key=key, name="Backed up")
    assert post_event(stream["inletUrl"], key, "landed-1") == 200
    assert post_event(stream["inletUrl"], key, "landed-2") == 200
    with streaming(live, api):
        wait_rows(live, api, stream["datasetId"], 2)
        assert post_event(stream["inletUrl"], key, "pending-1") == 200  # may land before or after
        sender = Sender(stream["inletUrl"], key)
        sender.start()
        wait_until(lambda: len(sender.acked) >= 3)
        acked_as_of = {"landed-1", "landed-2", "pending-1"}
        started = time.time()
        # The backup runs in its own process while the inlet acknowledges and the batcher commits.
        backup = base / "backup"
        done = subprocess.run(
            [str(HEADWATER), "backup", str(backup)],
            env=cli_env(home, HEADWATER_OUTBOUND_ALLOW="127.0.0.1"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        sender.halt.set()
        sender.join(timeout=10)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["tables"] == 2 and summary["streams"] == 2, summary
    # The backup holds the home as of the moment its database was copied: every message acknowledged
    # before then is in it (committed, or in the copied log), whether or not it was committed.
    as_of = dt.datetime.fromisoformat(summary["asOf"]).timestamp()
    acked_as_of.update(event for event, at in sender.acked if at < as_of)
    assert any(started < at < as_of for _, at in sender.acked), "no message arrived during the backup"
    runs = api.get(f"{FS}/runs", params={"property": f"flowId=={batch['flow']}"}).json()["items"]
    return Made(
        base=base,
        original=home,
        backup=backup,
        creds=dict(live.creds),
        batch=batch,
        stream=stream,
        parked=parked,
        key=key,
        batch_rows=_preview(api, batch["dataset"]),
        runs={r["id"]: r["state"] for r in runs},
        row_errors=row_errors,
        acked_as_of=acked_as_of,
        acked_during={event for event, _ in sender.acked} - acked_as_of,
    )


def _row_errors(api: ApiClient, batch_id: str) -> str:
    listing = api.get(f"/data/foundation/export/batches/{batch_id}/meta", params={"path": "row_errors"})
    assert listing.status_code == 200, listing.text
    content = api.get(listing.json()["data"][0]["_links"]["self"]["href"])
    assert content.status_code == 200, content.text
    return content.text


def _preview(api: ApiClient, dataset_id: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = api.get(f"{CAT}/dataSets/{dataset_id}/preview?limit=1000").json()["data"]
    return sorted(data, key=lambda r: str(r["_id"]))


def _restore(backup: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HEADWATER), "restore", str(backup), str(home)],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_restored_home_reads_every_dataset_run_and_secret_back(made: Made) -> None:
    shutil.rmtree(made.original.parent)  # nothing of the original may be needed any more
    home = made.base / "restored" / "home"
    done = _restore(made.backup, home)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["tables"] == 2 and report["documentsMoved"] >= 1 and report["keysToSetAgain"] == []

    live = start_server(make_settings(home))
    runner, thread = running_worker(live)
    try:
        # The bootstrap client's secret is sealed in the database: it decrypts with the restored key.
        assert {k: live.creds[k] for k in ("orgId", "apiKey", "clientSecret")} == {
            k: made.creds[k] for k in ("orgId", "apiKey", "clientSecret")
        }
        api = client(live)
        _check_lake_names_only(home)
        _check_batch(api, made, home)
        _check_stream(live, api, made)
    finally:
        runner.stop()
        thread.join(timeout=10)
        live.stop()
        live.services.close()


def _check_lake_names_only(home: Path) -> None:
    """Every path the restored catalog's tables reference lies in the new warehouse, and exists."""
    location = warehouse_location(home / "warehouse")
    tables = catalog_tables(home / "metadata.db")
    assert len(tables) == 2
    for table in tables:
        references = table_files(table.metadata_location, locator(location, home / "warehouse"))
        assert {r.kind for r in references} >= {"metadata", "manifest-list", "manifest", "data"}
        for reference in references:
            assert below(location, reference.path) is not None, reference
            assert not reference.required or locator(location, home / "warehouse")(reference.path).is_file()


def _check_batch(api: ApiClient, made: Made, home: Path) -> None:
    assert _preview(api, made.batch["dataset"]) == made.batch_rows
    assert len(made.batch_rows) == 5
    runs = api.get(f"{FS}/runs", params={"property": f"flowId=={made.batch['flow']}"}).json()["items"]
    assert {r["id"]: r["state"] for r in runs} == made.runs
    batch_id = next(iter(runs))["activities"][0]["targetInfo"][0]["reference"]["ids"][0]
    assert _row_errors(api, batch_id) == made.row_errors
    # The Local Folder connection's absolute rootPath moved with the home; a new run reads the restored
    # files folder and commits on the relocated table.
    files = home / "files" / api.org_id / "prod"
    connections = api.get(f"{FS}/connections").json()["items"]
    local = [c for c in connections if c["auth"]["specName"] == "Local Folder"]
    assert [c["auth"]["params"]["rootPath"] for c in local] == [str(files)]
    with (files / "contacts.csv").open("a") as handle:
        handle.write("7,First7,Last7,person7@example.com,2024-01-03 10:00:00\n")
    run = run_and_wait(api, made.batch["flow"], "2024-01-04T00:00:00Z")
    assert run["state"] == "success", run
    assert [r["_id"] for r in _preview(api, made.batch["dataset"])] == ["0", "1", "2", "3", "4", "7"]


def _check_stream(live: LiveServer, api: ApiClient, made: Made) -> None:
    inlet = live.base_url + urlparse(made.stream["inletUrl"]).path
    # The signing key decrypts: a signed message is accepted, a wrongly signed one refused.
    assert post_event(inlet, made.key, "after-restore") == 200
    assert post_event(inlet, "whsec-wrong", "forged") == 401
    dataset = made.stream["datasetId"]
    before = {r["_headwater"]["event_id"] for r in rows(live, api, dataset)}
    assert {"landed-1", "landed-2"} <= before  # committed before the backup, read through the Query Service
    with streaming(live, api):
        # Every message acknowledged before the backup began lands (from the table or the copied log),
        # with the one sent after the restore; none twice, and none that was never acknowledged.
        wanted = made.acked_as_of | {"after-restore"}
        wait_until(
            lambda: wanted <= {r["_headwater"]["event_id"] for r in rows(live, api, dataset)},
            timeout=20,
            interval=0.2,
        )
        landed = [r["_headwater"]["event_id"] for r in rows(live, api, dataset)]
    assert len(landed) == len(set(landed))
    assert set(landed) <= wanted | made.acked_during
    # The parked flow's messages were only in the streaming log: they come from its copy.
    parked = client(live, "parked")
    assert rows(live, parked, made.parked["datasetId"]) == []
    with streaming(live, parked):
        landed = wait_rows(live, parked, made.parked["datasetId"], 3)
    assert sorted(r["_headwater"]["event_id"] for r in landed) == ["parked-0", "parked-1", "parked-2"]


# --- refusals ---


def test_restore_refuses_a_folder_that_is_not_empty(made: Made, tmp_path: Path) -> None:
    home = tmp_path / "occupied"
    home.mkdir()
    (home / "keep.txt").write_text("mine")
    done = _restore(made.backup, home)
    assert done.returncode == 1
    assert "not empty" in done.stderr
    assert [p.name for p in home.iterdir()] == ["keep.txt"]


def test_restore_refuses_a_missing_or_corrupt_manifest(made: Made, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(made.backup, broken)
    (broken / "manifest.json").unlink()
    with pytest.raises(NotABackup, match=r"has no manifest\.json"):
        restore_home(broken, tmp_path / "a")
    (broken / "manifest.json").write_text('{"format": "headwater-backup", "version"')
    with pytest.raises(NotABackup, match="cannot be read"):
        restore_home(broken, tmp_path / "b")
    (broken / "manifest.json").write_text(json.dumps({"format": "headwater-backup", "version": 1}))
    with pytest.raises(NotABackup, match="not a valid backup manifest"):
        restore_home(broken, tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]  # nothing was written


def test_restore_refuses_a_damaged_file(made: Made, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(made.backup, damaged)
    data = next((damaged / "home" / "warehouse").rglob("*.parquet"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(Damaged, match="does not match its manifest"):
        restore_home(damaged, tmp_path / "home")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged"]  # no home, no partial folder


def test_backup_refuses_postgresql_and_a_folder_inside_the_home(made: Made, tmp_path: Path) -> None:
    postgres = make_settings(tmp_path / "pg-home", database_url="postgresql+psycopg://postgres@127.0.0.1/x")
    with pytest.raises(Refused, match="pg_dump"):
        backup_home(postgres, tmp_path / "out")
    home = tmp_path / "home"
    restore_home(made.backup, home)
    with pytest.raises(Refused, match="inside the home"):
        backup_home(make_settings(home), home / "backups" / "one")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(Refused, match="not an empty folder"):
        backup_home(make_settings(home), tmp_path / "full")


def test_a_home_moved_by_hand_is_refused_at_start_with_what_to_do(made: Made, tmp_path: Path) -> None:
    restored = tmp_path / "restored"
    restore_home(made.backup, restored)
    assert moved_home(make_settings(restored)) is None
    moved = tmp_path / "moved"
    os.rename(restored, moved)
    problem = moved_home(make_settings(moved))
    assert problem is not None and str(restored) in problem and "headwater restore" in problem
    done = subprocess.run(
        [str(HEADWATER), "worker"], env=cli_env(moved), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "moved" in done.stderr


# --- the streaming log's copy, pass by pass (services/backup/streams.py) ---


def test_the_log_copy_keeps_segments_released_between_its_passes(tmp_path: Path) -> None:
    log = LocalLog(str(tmp_path / "log"), segment_bytes=200)  # 70-byte records: three to a segment
    try:
        log.append("s", [b"a" * 50] * 3)
        held = log.append("s", [b"b" * 50] * 3)  # the database copy will hold "a" committed, "b" not
        copy = LogCopy(tmp_path / "log", tmp_path / "copy")
        copy.copy()  # before the database copy
        later = log.append("s", [b"c" * 50] * 3)
        log.release("s", later[0])  # after it, a batcher commits "b" and releases its segments
        copy.copy()
        ends = copy.finish()
    finally:
        log.close()
    assert not (tmp_path / "log" / "s" / f"{held[0]:020d}.log").exists()
    restored = LocalLog(str(tmp_path / "copy"))
    try:
        payloads = [r.payload for r in restored.read("s", held[0])]
        assert payloads == [b"b" * 50] * 3 + [b"c" * 50] * 3
        assert ends == {"s": restored.end_offset("s")}
    finally:
        restored.close()


def test_the_log_copy_refuses_a_segment_released_after_it_was_copied_in_part(tmp_path: Path) -> None:
    log = LocalLog(str(tmp_path / "log"), segment_bytes=200)
    try:
        log.append("s", [b"a" * 50] * 3)
        log.append("s", [b"b" * 50])
        copy = LogCopy(tmp_path / "log", tmp_path / "copy")
        copy.copy()  # the second segment holds one record now
        log.append("s", [b"b" * 50] * 2)
        later = log.append("s", [b"c" * 50] * 3)
        log.release("s", later[0])  # and is gone, with the two records the first pass did not see
        copy.copy()
        with pytest.raises(Raced, match="released while it was copied"):
            copy.finish()
    finally:
        log.close()


def test_the_log_copy_ends_on_the_last_whole_record(tmp_path: Path) -> None:
    log = LocalLog(str(tmp_path / "log"))
    try:
        offsets = log.append("s", [b"x" * 10, b"y" * 10])
        end = log.end_offset("s")
    finally:
        log.close()
    with (tmp_path / "log" / "s" / f"{0:020d}.log").open("ab") as segment:
        segment.write(b"\xff\xfeHW\x00\x00")  # an append in progress while the copy reads
    copy = LogCopy(tmp_path / "log", tmp_path / "copy")
    copy.copy()
    copy.copy()
    assert copy.finish() == {"s": end}
    restored = LocalLog(str(tmp_path / "copy"))
    try:
        assert restored.append("s", [b"z" * 10]) == [end]
        assert [r.offset for r in restored.read("s", 0)] == [*offsets, end]
    finally:
        restored.close()


def test_a_table_purged_while_the_backup_runs_makes_it_start_over(
    made: Made, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headwater.lake.iceberg import Lake
    from headwater.services.backup import backup as module

    home = tmp_path / "home"
    restore_home(made.backup, home)
    settings = make_settings(home)
    lake = Lake(settings)
    tables = catalog_tables(home / "metadata.db")
    copies: list[Path] = []
    snapshot = module._snapshot_database

    def then_purge(path: Path, target: Path) -> str | None:
        copies.append(target)
        revision = snapshot(path, target)
        if len(copies) == 1:  # a dataset deleted just after the first attempt's database copy
            lake.catalog.purge_table((tables[0].namespace, tables[0].name))
        return revision

    monkeypatch.setattr(module, "_snapshot_database", then_purge)
    manifest = backup_home(settings, tmp_path / "backup")
    assert len(copies) == 2 and manifest.counts["tables"] == len(tables) - 1
    assert not copies[0].exists()  # the first attempt's folder is gone
