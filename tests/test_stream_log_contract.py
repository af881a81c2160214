"""Contract of the streaming log, on the local log and on NATS JetStream (127.0.0.1:4222), plus what only
the local log has: segments, torn and corrupt records, several processes appending to one stream."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.stores.log.base import LogRecord, StreamLog
from headwater.stores.log.local import HEADER, MAGIC, LocalLog, encode
from tests.support import free_port, wait_until

NATS_URL = os.environ.get("HEADWATER_TEST_NATS", "nats://127.0.0.1:4222")
CHILD = str(Path(__file__).with_name("log_writer_child.py"))


def payload(i: int, size: int = 0) -> bytes:
    return json.dumps({"i": i, "pad": "p" * size}).encode()


def read_all(
    log: StreamLog, stream: str, offset: int = StreamLog.START, chunk: int = 10_000
) -> list[LogRecord]:
    records: list[LogRecord] = []
    while batch := log.read(stream, offset, max_records=chunk):
        records.extend(batch)
        offset = batch[-1].next_offset
    return records


def delete_jetstream_stream(name: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    async def delete() -> None:
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jsm().delete_stream(name)
        except NotFoundError:
            pass
        finally:
            await nc.close()

    asyncio.run(delete())


class StreamLogContract:
    __test__ = False

    @pytest.fixture
    def log(self) -> Iterator[StreamLog]:
        raise NotImplementedError

    def test_records_come_back_in_order_with_resumable_offsets(self, log: StreamLog) -> None:
        first = log.append("flow-1", [payload(0), payload(1), payload(2)])
        second = log.append("flow-1", [payload(3)])
        offsets = first + second
        assert offsets == sorted(offsets) and len(set(offsets)) == 4
        records = log.read("flow-1", StreamLog.START)
        assert [r.payload for r in records] == [payload(i) for i in range(4)]
        assert [r.offset for r in records] == offsets
        for earlier, later in itertools.pairwise(records):
            assert earlier.offset < earlier.next_offset <= later.offset
        for k, record in enumerate(records):
            assert log.read("flow-1", record.offset) == records[k:]
            assert log.read("flow-1", record.next_offset) == records[k + 1 :]
        assert log.read("flow-1", records[-1].next_offset) == []
        now = time.time() * 1000
        assert all(now - 60_000 < r.appended_ms <= now + 1000 for r in records)

    def test_end_offset(self, log: StreamLog) -> None:
        assert log.end_offset("flow-1") == StreamLog.START
        assert log.read("flow-1", StreamLog.START) == []
        log.append("flow-1", [payload(0), payload(1)])
        end = log.end_offset("flow-1")
        assert end == log.read("flow-1", StreamLog.START)[-1].next_offset
        assert log.read("flow-1", end) == []
        (offset,) = log.append("flow-1", [payload(2)])
        assert offset >= end
        assert [r.payload for r in log.read("flow-1", end)] == [payload(2)]

    def test_max_records_and_max_bytes_are_respected(self, log: StreamLog) -> None:
        log.append("flow-1", [payload(i, 1000) for i in range(25)])
        page = log.read("flow-1", StreamLog.START, max_records=10)
        assert [json.loads(r.payload)["i"] for r in page] == list(range(10))
        rest = log.read("flow-1", page[-1].next_offset, max_records=10)
        assert [json.loads(r.payload)["i"] for r in rest] == list(range(10, 20))
        small = log.read("flow-1", StreamLog.START, max_bytes=2500)
        assert 1 <= len(small) <= 3
        assert len(log.read("flow-1", StreamLog.START, max_bytes=1)) == 1  # always at least one record
        assert [json.loads(r.payload)["i"] for r in read_all(log, "flow-1", chunk=7)] == list(range(25))

    def test_streams_are_isolated(self, log: StreamLog) -> None:
        log.append("flow-a", [b'"a1"', b'"a2"'])
        log.append("flow-b", [b'"b1"'])
        log.append("flow-a", [b'"a3"'])
        assert [r.payload for r in log.read("flow-a", StreamLog.START)] == [b'"a1"', b'"a2"', b'"a3"']
        assert [r.payload for r in log.read("flow-b", StreamLog.START)] == [b'"b1"']
        assert log.read("flow-c", StreamLog.START) == []
        log.drop("flow-a")
        assert [r.payload for r in log.read("flow-b", StreamLog.START)] == [b'"b1"']

    def test_release_keeps_later_records(self, log: StreamLog) -> None:
        log.append("flow-1", [payload(i) for i in range(5)])
        later = log.append("flow-1", [payload(i) for i in range(5, 10)])
        log.release("flow-1", later[0])
        records = log.read("flow-1", StreamLog.START)
        kept = [json.loads(r.payload)["i"] for r in records if r.offset >= later[0]]
        assert kept == list(range(5, 10))
        assert [r.payload for r in log.read("flow-1", later[0])] == [payload(i) for i in range(5, 10)]
        end = log.end_offset("flow-1")
        log.release("flow-1", end)
        log.append("flow-1", [payload(10)])
        assert [r.payload for r in log.read("flow-1", end)] == [payload(10)]

    def test_drop_forgets_the_stream(self, log: StreamLog) -> None:
        log.append("flow-1", [payload(0)])
        log.drop("flow-1")
        assert log.read("flow-1", StreamLog.START) == []
        log.drop("flow-1")  # dropping an absent stream is fine
        log.drop("never-there")
        log.append("flow-1", [payload(1)])
        assert [r.payload for r in log.read("flow-1", StreamLog.START)] == [payload(1)]

    def test_empty_appends_and_bad_names(self, log: StreamLog) -> None:
        assert log.append("flow-1", []) == []
        for bad in ("", "../x", "a.b", "a b", "a/b", "*"):
            with pytest.raises(ValueError):
                log.append(bad, [b"1"])
            with pytest.raises(ValueError):
                log.read(bad, 0)

    def test_concurrent_appends_get_distinct_offsets(self, log: StreamLog) -> None:
        acked: dict[int, bytes] = {}
        guard = threading.Lock()
        barrier = threading.Barrier(16)
        errors: list[BaseException] = []

        def worker(t: int) -> None:
            try:
                barrier.wait()
                for i in range(25):
                    batch = [f'{{"t":{t},"i":{i},"k":{k}}}'.encode() for k in range(1 + (i % 3))]
                    offsets = log.append("flow-1", batch)
                    with guard:
                        for offset, body in zip(offsets, batch, strict=True):
                            assert offset not in acked
                            acked[offset] = body
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        records = read_all(log, "flow-1", chunk=100)
        assert {r.offset: r.payload for r in records} == acked
        assert len(records) == len(acked) == 16 * sum(1 + (i % 3) for i in range(25))

    def test_append_async_from_an_event_loop(self, log: StreamLog) -> None:
        async def main() -> list[list[int]]:
            return await asyncio.gather(
                *(log.append_async("flow-1", [payload(i), payload(i)]) for i in range(50))
            )

        results = asyncio.run(main())
        offsets = [o for pair in results for o in pair]
        assert len(set(offsets)) == 100
        records = read_all(log, "flow-1")
        assert {r.offset for r in records} == set(offsets)
        by_offset = {r.offset: r.payload for r in records}
        assert all(by_offset[a] == by_offset[b] == payload(i) for i, (a, b) in enumerate(results))

    def test_an_append_wakes_a_waiter_and_names_its_stream(self, log: StreamLog) -> None:
        token, _ = log.appended(None)
        began = time.monotonic()
        token, quiet = log.wait_appended(token, 0.2)  # nothing appended: times out, naming no stream
        assert not quiet and 0.15 <= time.monotonic() - began < 5.0
        woken: list[tuple[object, frozenset[str] | None]] = []
        waiter = threading.Thread(target=lambda: woken.append(log.wait_appended(token, 10.0)))
        began = time.monotonic()
        waiter.start()
        log.append("flow-w", [payload(0)])
        waiter.join(timeout=15)
        assert woken and time.monotonic() - began < 5.0
        assert woken[0][1] is None or "flow-w" in woken[0][1]  # None: the log cannot tell which

    def test_each_append_wakes_every_waiter(self, log: StreamLog) -> None:
        """Two waiters of one process (the two supervisors) are both woken, append after append: a
        wake-up path that served only one waiter, or only the first append, makes one wait 10 s."""
        token, _ = log.appended(None)
        for n in range(3):
            woken: list[tuple[object, frozenset[str] | None]] = []

            def wait(since: object = token, into: list[tuple[object, frozenset[str] | None]] = woken) -> None:
                into.append(log.wait_appended(since, 10.0))

            waiters = [threading.Thread(target=wait) for _ in range(2)]
            began = time.monotonic()
            for waiter in waiters:
                waiter.start()
            log.append(f"flow-{n}", [payload(n)])
            for waiter in waiters:
                waiter.join(timeout=15)
            assert len(woken) == 2 and time.monotonic() - began < 5.0, n
            assert all(streams is None or f"flow-{n}" in streams for _, streams in woken)
            token = woken[0][0]


class TestLocalLog(StreamLogContract):
    __test__ = True

    @pytest.fixture
    def log(self, tmp_path: Path) -> Iterator[StreamLog]:
        log = LocalLog(str(tmp_path / "streams"))
        yield log
        log.close()

    # --- what only the local log has ---
    def test_offsets_are_byte_positions_and_segments_roll(self, tmp_path: Path) -> None:
        log = LocalLog(str(tmp_path), segment_bytes=1000)
        offsets = [log.append("flow-1", [payload(i, 50)])[0] for i in range(60)]
        offsets += log.append("flow-1", [payload(i, 50) for i in range(60, 80)])
        segments = sorted((tmp_path / "flow-1").glob("*.log"))
        assert len(segments) >= 4
        assert sum(s.stat().st_size for s in segments) == log.end_offset("flow-1")
        assert int(segments[1].stem) == segments[0].stat().st_size >= 1000
        records = read_all(log, "flow-1", chunk=9)
        assert [r.offset for r in records] == offsets
        assert all(r.next_offset - r.offset == HEADER.size + len(r.payload) for r in records)
        assert [json.loads(r.payload)["i"] for r in records] == list(range(80))
        assert LocalLog(str(tmp_path)).read("flow-1", offsets[41], max_records=1)[0].payload == payload(
            41, 50
        )

        log.release("flow-1", offsets[41])
        left = sorted((tmp_path / "flow-1").glob("*.log"))
        assert len(segments) > len(left) >= 2 and int(left[0].stem) <= offsets[41]
        assert [json.loads(r.payload)["i"] for r in read_all(log, "flow-1")][-39:] == list(range(41, 80))
        assert log.read("flow-1", offsets[0])[0].offset == int(left[0].stem)  # released: from the first kept
        log.release("flow-1", 10**12)
        assert len(list((tmp_path / "flow-1").glob("*.log"))) == 1  # never the active segment
        log.append("flow-1", [payload(80)])
        assert read_all(log, "flow-1")[-1].payload == payload(80)
        log.close()

    @pytest.mark.parametrize("cut", [1, 3, 10, HEADER.size, HEADER.size + 7])
    def test_a_torn_tail_is_not_yet_there_then_skipped(self, tmp_path: Path, cut: int) -> None:
        log = LocalLog(str(tmp_path))
        (a,) = log.append("flow-1", [payload(0)])
        end = log.end_offset("flow-1")
        torn = b"".join(encode([payload(99, 40)], 1))[:cut]
        with open(tmp_path / "flow-1" / f"{0:020d}.log", "ab") as segment:
            segment.write(torn)
        assert [r.offset for r in log.read("flow-1", a)] == [a]
        assert log.read("flow-1", end) == []  # an append in progress looks the same: wait for it
        other = LocalLog(str(tmp_path))  # as another process would
        (b,) = other.append("flow-1", [payload(1)])
        assert b == end + cut
        assert [(r.offset, r.payload) for r in log.read("flow-1", end)] == [(b, payload(1))]
        assert [r.payload for r in log.read("flow-1", a)] == [payload(0), payload(1)]
        other.close()
        log.close()

    def test_an_incomplete_record_is_returned_once_complete(self, tmp_path: Path) -> None:
        log = LocalLog(str(tmp_path))
        log.append("flow-1", [payload(0)])
        end = log.end_offset("flow-1")
        record = b"".join(encode([payload(1, 3000)], 1))
        path = tmp_path / "flow-1" / f"{0:020d}.log"
        with open(path, "ab") as segment:
            segment.write(record[:2000])
        assert log.read("flow-1", end) == []
        with open(path, "ab") as segment:
            segment.write(record[2000:])
        assert [r.payload for r in log.read("flow-1", end)] == [payload(1, 3000)]
        log.close()

    def test_a_torn_segment_end_is_skipped_into_the_next_segment(self, tmp_path: Path) -> None:
        log = LocalLog(str(tmp_path), segment_bytes=200)
        (a,) = log.append("flow-1", [payload(0)])
        torn = b"".join(encode([payload(99, 400)], 1))[:250]
        with open(tmp_path / "flow-1" / f"{0:020d}.log", "ab") as segment:
            segment.write(torn)
        (b,) = log.append("flow-1", [payload(1)])
        assert (tmp_path / "flow-1" / f"{b:020d}.log").exists()
        assert [(r.offset, r.payload) for r in log.read("flow-1", a)] == [(a, payload(0)), (b, payload(1))]
        log.close()

    def test_garbage_in_the_middle_is_skipped(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        log = LocalLog(str(tmp_path))
        log.append("flow-1", [payload(0)])
        path = tmp_path / "flow-1" / f"{0:020d}.log"
        fake = bytearray(b"".join(encode([payload(98)], 1)))
        fake[-2] ^= 0xFF  # a whole record, but its CRC fails
        with open(path, "ab") as segment:
            segment.write(b"\x00garbage\xff\xfe" + bytes(fake) + os.urandom(64).replace(b"\xff", b"\x00"))
            segment.write(HEADER.pack(MAGIC, 0, 1 << 30, 0))  # claims a gigabyte
        log.append("flow-1", [payload(1), payload(2)])
        with caplog.at_level(logging.WARNING):
            assert [r.payload for r in log.read("flow-1", StreamLog.START)] == [payload(i) for i in range(3)]
        assert "skipped" in caplog.text

    def test_a_corrupt_record_is_skipped_not_its_neighbours(self, tmp_path: Path) -> None:
        log = LocalLog(str(tmp_path))
        offsets = log.append("flow-1", [payload(i, 30) for i in range(5)])
        path = tmp_path / "flow-1" / f"{0:020d}.log"
        data = bytearray(path.read_bytes())
        data[offsets[2] + HEADER.size + 5] ^= 0x01
        path.write_bytes(bytes(data))
        records = log.read("flow-1", StreamLog.START)
        assert [r.offset for r in records] == offsets[:2] + offsets[3:]

    def test_reading_many_records_is_fast(self, tmp_path: Path) -> None:
        log = LocalLog(str(tmp_path))
        log.append("flow-1", [b'{"n":%d}' % i for i in range(100_000)])
        started = time.perf_counter()
        records = log.read("flow-1", StreamLog.START, max_records=100_000)
        elapsed = time.perf_counter() - started
        assert len(records) == 100_000 and records[-1].payload == b'{"n":99999}'
        assert elapsed < 2.0, f"reading 100k records took {elapsed:.2f}s"
        log.close()

    def test_two_processes_append_to_one_stream(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        options = ["--records", "300", "--threads", "4", "--max-batch", "4", "--segment-bytes", "65536"]
        children = [
            subprocess.Popen(
                [sys.executable, CHILD, "local", str(tmp_path), "flow-1", "--tag", tag, *options],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for tag in ("A", "B")
        ]
        acked: dict[int, str] = {}
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            for line in out.splitlines():
                offset, body = line.split(" ", 1)
                assert int(offset) not in acked
                acked[int(offset)] = body
        assert len(acked) == 2 * 4 * 300
        log = LocalLog(str(tmp_path))
        with caplog.at_level(logging.WARNING):
            records = read_all(log, "flow-1", chunk=500)
        assert {r.offset: r.payload.decode() for r in records} == acked
        assert "skipped" not in caplog.text  # no interleaving: every byte belongs to a valid record
        assert len(list((tmp_path / "flow-1").glob("*.log"))) > 2
        log.close()


class TestJetStreamLog(StreamLogContract):
    __test__ = True

    @pytest.fixture
    def log(self) -> Iterator[StreamLog]:
        from headwater.stores.log.jetstream import JetStreamLog

        name = f"HWTEST_{uuid.uuid4().hex[:12]}"
        log = JetStreamLog(NATS_URL, stream_name=name, subject_prefix=f"hwtest.{name.lower()}")
        try:
            yield log
        finally:
            log.close()
            delete_jetstream_stream(name)

    def test_a_second_log_on_the_same_stream_sees_the_records(self, log: StreamLog) -> None:
        from headwater.stores.log.jetstream import JetStreamLog

        assert isinstance(log, JetStreamLog)
        log.append("flow-1", [payload(0)])
        other = JetStreamLog(NATS_URL, stream_name=log.stream_name, subject_prefix=log.subject_prefix)
        try:
            other.append("flow-1", [payload(1)])
            assert [r.payload for r in log.read("flow-1", StreamLog.START)] == [payload(0), payload(1)]
        finally:
            other.close()

    def test_a_deleted_jetstream_stream_is_recreated_on_append(self, log: StreamLog) -> None:
        from headwater.stores.log.jetstream import JetStreamLog

        assert isinstance(log, JetStreamLog)
        log.append("flow-1", [payload(0)])
        delete_jetstream_stream(log.stream_name)
        assert log.read("flow-1", StreamLog.START) == []
        log.append("flow-1", [payload(1)])
        assert [r.payload for r in log.read("flow-1", StreamLog.START)] == [payload(1)]

    def test_polling_reads_reuse_one_consumer(self, log: StreamLog, monkeypatch: pytest.MonkeyPatch) -> None:
        from headwater.stores.log.jetstream import JetStreamLog

        assert isinstance(log, JetStreamLog)
        opened: list[int] = []
        new_cursor = log._new_cursor

        async def counting(subject: str, start: int) -> object:
            opened.append(start)
            return await new_cursor(subject, start)

        monkeypatch.setattr(log, "_new_cursor", counting)
        offset = StreamLog.START
        seen: list[bytes] = []
        for i in range(20):
            log.append("flow-1", [payload(i)])
            records = log.read("flow-1", offset)
            seen += [r.payload for r in records]
            offset = records[-1].next_offset
            assert log.read("flow-1", offset) == []
        assert seen == [payload(i) for i in range(20)]
        assert len(opened) <= 3  # one, and a new one only when the server had not yet told it of a record
        wait_until(lambda: consumer_count(log.stream_name) == 1)


def start_nats(port: int, store: Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        ["/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(lambda: answers() or server.poll() is not None, timeout=30)
    assert server.poll() is None, "nats-server did not start"
    return server


def test_jetstream_log_reconnects_after_the_server_is_killed(tmp_path: Path) -> None:
    from headwater.stores.log.jetstream import JetStreamLog, LogUnavailable

    port = free_port()
    server = start_nats(port, tmp_path)
    log = JetStreamLog(f"nats://127.0.0.1:{port}", timeout=2)
    try:
        log.append("flow-1", [payload(0)])
        assert [r.payload for r in log.read("flow-1", StreamLog.START)] == [payload(0)]
        server.kill()
        server.wait()
        with pytest.raises(LogUnavailable):
            log.append("flow-1", [payload(1)])
        server = start_nats(port, tmp_path)

        def appended() -> bool:
            try:
                return bool(log.append("flow-1", [payload(2)]))
            except LogUnavailable:
                return False

        wait_until(appended, timeout=30)
        payloads = [r.payload for r in read_all(log, "flow-1")]
        # The acknowledged records are there; the unacknowledged one may be too (sent on reconnect).
        assert payloads[0] == payload(0) and payloads[-1] == payload(2)
        assert set(payloads) <= {payload(0), payload(1), payload(2)}
    finally:
        log.close()
        server.kill()
        server.wait()


def consumer_count(stream_name: str) -> int:
    import nats

    async def count() -> int:
        nc = await nats.connect(NATS_URL)
        try:
            return (await nc.jsm().stream_info(stream_name)).state.consumer_count
        finally:
            await nc.close()

    return asyncio.run(count())


def test_a_reader_following_a_writer_reads_every_record_once(tmp_path: Path) -> None:
    """A record still being written when the reader reaches the end of the file is read once it is
    complete, never skipped as torn (the reader re-parses what is there before resyncing)."""
    import threading

    total = 60_000
    payload = b"x" * 200

    def write() -> None:
        writer = LocalLog(str(tmp_path))
        for i in range(0, total, 10):
            writer.append("s", [b'{"id":%d,"pad":"%s"}' % (j, payload) for j in range(i, i + 10)])
        writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    reader = LocalLog(str(tmp_path))
    offset, seen = 0, []
    while True:
        records = reader.read("s", offset, max_records=1000)
        if records:
            seen.extend(int(r.payload.split(b",")[0].split(b":")[1]) for r in records)
            offset = records[-1].next_offset
        elif not thread.is_alive() and not reader.read("s", offset):
            break
    thread.join()
    reader.close()
    assert seen == list(range(total))
