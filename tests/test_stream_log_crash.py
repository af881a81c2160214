"""Crash tests with real processes: a writer killed with SIGKILL while appending from several threads
loses no acknowledged record, and the log takes appends and reads afterwards (local log and JetStream)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.stores.log.base import StreamLog
from headwater.stores.log.jetstream import JetStreamLog
from headwater.stores.log.local import LocalLog
from tests.support import wait_until
from tests.test_stream_log_contract import CHILD, NATS_URL, delete_jetstream_stream, read_all

ACKS_BEFORE_KILL = 400


def run_and_kill(args: list[str]) -> dict[int, str]:
    """Start the writer child, SIGKILL it once it has acknowledged some records; return those records."""
    child = subprocess.Popen(
        [sys.executable, CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    acked: dict[int, str] = {}
    guard = threading.Lock()

    def collect() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            if line.endswith("\n"):  # a line cut by the kill was not fully reported: ignore it
                offset, body = line.rstrip("\n").split(" ", 1)
                with guard:
                    assert int(offset) not in acked, "an offset was acknowledged twice"
                    acked[int(offset)] = body

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        wait_until(lambda: len(acked) >= ACKS_BEFORE_KILL or child.poll() is not None, timeout=60)
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        reader.join(timeout=30)
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return acked


def check_after_crash(log: StreamLog, stream: str, acked: dict[int, str]) -> None:
    records = read_all(log, stream, chunk=1000)
    by_offset = {r.offset: r.payload.decode() for r in records}
    missing = [offset for offset, body in acked.items() if by_offset.get(offset) != body]
    assert not missing, f"{len(missing)} acknowledged records missing or changed, e.g. at {missing[:5]}"
    copies = Counter(r.payload.decode() for r in records)
    assert all(copies[body] == 1 for body in acked.values()), "an acknowledged record is there twice"
    assert all(json.loads(r.payload)["w"] for r in records)  # nothing but whole records comes back
    assert [r.offset for r in records] == sorted(by_offset)

    (offset,) = log.append(stream, [b'{"w":"after"}'])
    assert offset >= records[-1].next_offset
    assert [(r.offset, r.payload) for r in log.read(stream, records[-1].next_offset)][-1] == (
        offset,
        b'{"w":"after"}',
    )


def test_local_log_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    acked: dict[int, str] = {}
    for round_ in range(3):  # each writer starts after the previous one was killed, maybe mid-write
        args = ["local", str(tmp_path), "flow-1", "--tag", f"r{round_}", "--threads", "6"]
        acked.update(
            run_and_kill([*args, "--max-batch", "20", "--pad", "30000", "--segment-bytes", "4194304"])
        )
    assert len(list((tmp_path / "flow-1").glob("*.log"))) > 1
    log = LocalLog(str(tmp_path))
    check_after_crash(log, "flow-1", acked)
    log.close()


@pytest.fixture
def jetstream() -> Iterator[JetStreamLog]:
    name = f"HWCRASH_{uuid.uuid4().hex[:12]}"
    log = JetStreamLog(NATS_URL, stream_name=name, subject_prefix=f"hwcrash.{name.lower()}")
    try:
        yield log
    finally:
        log.close()
        delete_jetstream_stream(name)


def test_jetstream_log_keeps_every_acknowledged_record(jetstream: JetStreamLog) -> None:
    where = f"{NATS_URL},{jetstream.stream_name},{jetstream.subject_prefix}"
    acked: dict[int, str] = {}
    for round_ in range(2):
        args = ["jetstream", where, "flow-1", "--tag", f"r{round_}", "--threads", "6", "--max-batch", "20"]
        acked.update(run_and_kill(args))
    jetstream.append("flow-2", [b'{"w":"elsewhere"}'])  # another subject in between
    check_after_crash(jetstream, "flow-1", acked)
