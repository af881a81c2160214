"""The local streaming log: append-only segment files under one directory, fsynced before ``append`` returns.

Layout::

    <directory>/<stream>/lock                       flock'ed by whoever appends (never by readers)
    <directory>/<stream>/00000000000000000000.log   segments, named by the offset of their first byte
    <directory>/<stream>/00000000000067108908.log   a new one starts once the last passes ~64 MiB

An offset is the absolute byte position of a record in its stream (segment base + position in the
segment), so every process computes the same offsets. A record is::

    magic b"\\xff\\xfeHW" | crc32 u32 | length u32 | appended_ms u64 | payload (length bytes)

little-endian; the CRC covers length, appended_ms and payload. Payloads are assumed to be UTF-8 (the
inlet stores JSON): 0xFF and 0xFE never occur in UTF-8, so the magic never occurs inside a payload and
a reader that lost its place can find the next record by scanning for it. (Other payloads work, but a
payload containing a whole valid record could be mistaken for one after a torn write.)

Writers: each process has one writer thread per stream that takes every append queued meanwhile, writes
them with one ``os.write`` under an exclusive ``flock`` of the stream's lock file, ``fdatasync``s once
and then completes each caller (group commit). Segments are created and rolled under that lock, and the
directory is fsynced when one is created. Several processes (``uvicorn --workers N``) may append to one
stream at once.

Readers take no lock. A writer killed mid-write leaves a torn record (a prefix of one) at the end of a
segment, and later appends land after it. Since ``write`` extends a file front to back, a reader sees a
prefix of any write in progress; so a record that is incomplete or fails its CRC is treated as "not yet
there" unless a valid record follows it (or a later segment exists), in which case it was torn, never
acknowledged, and is skipped. An acknowledged record was fsynced whole, so it is always returned.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fcntl
import itertools
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from headwater.errors import LogUnavailable
from headwater.stores.log.appends import AppendSignal
from headwater.stores.log.base import LogRecord, StreamLog, check_stream_name
from headwater.stores.log.frames import HEADER, MAGIC, MAX_PAYLOAD, encode
from headwater.stores.log.segments import read_segment, segment_path

__all__ = ["HEADER", "MAGIC", "LocalLog", "check_stream_name", "encode"]

log = logging.getLogger(__name__)

SEGMENT_BYTES = 64 << 20
MAX_WRITE_BYTES = 16 << 20  # one group commit writes at most about this much
WRITER_IDLE_SECONDS = 30.0  # a stream's writer thread ends after this long without appends

_SEGMENT_NAME = re.compile(r"(\d{20})\.log")

Done = Callable[[list[int] | None, BaseException | None], None]


class LocalLog(StreamLog):
    """Streams in ``directory``; ``segment_bytes`` is where a segment rolls over (small in tests)."""

    def __init__(self, directory: str, segment_bytes: int = SEGMENT_BYTES) -> None:
        if segment_bytes < 1:
            raise ValueError("segment_bytes must be positive")
        self.root = Path(directory)
        self.segment_bytes = segment_bytes
        self._writers: dict[str, _StreamWriter] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        self._appends = AppendSignal(self.root)
        if not self.root.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            _fsync_dir(self.root.parent)

    # --- appending ---
    def append(self, stream: str, payloads: Sequence[bytes]) -> list[int]:
        """Return the payloads' offsets once they are written and fsynced (shared with concurrent calls)."""
        batch = _checked(payloads)
        if not batch:
            check_stream_name(stream)
            return []
        waiter = threading.Lock()  # held until the writer thread releases it: cheaper than a Future
        waiter.acquire()
        outcome: list[tuple[list[int] | None, BaseException | None]] = []

        def done(offsets: list[int] | None, error: BaseException | None) -> None:
            outcome.append((offsets, error))
            waiter.release()

        self._writer(stream).submit(_Pending(batch, done))
        waiter.acquire()
        offsets, error = outcome[0]
        if error is not None:
            raise error
        return offsets or []

    async def append_async(self, stream: str, payloads: Sequence[bytes]) -> list[int]:
        """``append`` without a thread hop: the writer thread completes this loop's future directly."""
        batch = _checked(payloads)
        if not batch:
            check_stream_name(stream)
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()

        def settle(offsets: list[int] | None, error: BaseException | None) -> None:
            if future.done():  # the caller was cancelled; the records are written all the same
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(offsets or [])

        def done(offsets: list[int] | None, error: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits any more
                loop.call_soon_threadsafe(settle, offsets, error)

        self._writer(stream).submit(_Pending(batch, done))
        return await future

    def _writer(self, stream: str) -> _StreamWriter:
        writer = self._writers.get(stream)
        if writer is None or self._pid != os.getpid():
            check_stream_name(stream)
            with self._lock:
                if self._closed:
                    raise RuntimeError("the streaming log is closed")
                if self._pid != os.getpid():  # forked: the parent's threads and locks are not ours
                    self._writers, self._pid = {}, os.getpid()
                    self._appends = AppendSignal(self.root)
                writer = self._writers.get(stream)
                if writer is None:
                    writer = _StreamWriter(self.root / stream, self.segment_bytes, self._appends)
                    self._writers[stream] = writer
        return writer

    # --- reading ---
    def read(
        self, stream: str, offset: int, max_records: int = 10_000, max_bytes: int = 64 << 20
    ) -> list[LogRecord]:
        """Records from ``offset`` (an offset or next_offset this log returned; one in released segments
        reads from the first record kept). Takes no lock: safe while other processes append."""
        directory = self.root / check_stream_name(stream)
        out: list[LogRecord] = []
        budget = [max(1, max_records), max(1, max_bytes)]
        for _attempt in range(10):  # a release may delete a segment between listing and opening it
            bases = _segments(directory)
            if not bases:
                return out
            index = max(0, bisect.bisect_right(bases, offset) - 1)
            offset = max(offset, bases[0])
            try:
                for i in range(index, len(bases)):
                    # Listed before reading: a segment with a successor is complete, so an unreadable tail
                    # in it is torn, not in progress.
                    complete = i + 1 < len(bases)
                    offset, full = read_segment(directory, bases[i], offset, out, budget, complete)
                    if full or not complete:
                        return out
                    offset = bases[i + 1]
                return out
            except FileNotFoundError:
                continue
        return out

    def end_offset(self, stream: str) -> int:
        directory = self.root / check_stream_name(stream)
        bases = _segments(directory)
        if not bases:
            return self.START
        try:
            return bases[-1] + os.stat(segment_path(directory, bases[-1])).st_size
        except FileNotFoundError:  # dropped meanwhile
            return self.START

    # --- waking readers ---
    def appended(self, token: object = None) -> tuple[object, frozenset[str] | None]:
        """See base.py; appends of this process are told by stream, other processes' as "any" (see
        appends.py)."""
        return self._appends.appended(token)

    def wait_appended(self, token: object, timeout: float) -> tuple[object, frozenset[str] | None]:
        return self._appends.wait(token, timeout)

    # --- reclaiming ---
    def release(self, stream: str, before: int) -> None:
        """Delete the segments that end at or before ``before``; the last segment always stays."""
        directory = self.root / check_stream_name(stream)
        bases = _segments(directory)
        for base, successor in itertools.pairwise(bases):
            if successor > before:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(segment_path(directory, base))

    def drop(self, stream: str) -> None:
        """Delete the stream's directory. Taken under its lock, so no append is half-written into it;
        writers holding the old directory's files notice (the lock file changed) and start afresh."""
        directory = self.root / check_stream_name(stream)
        lock_fd = _lock_existing(directory)
        if lock_fd is None:
            return
        tomb = self.root / f".dropped-{stream}-{uuid.uuid4().hex}"
        try:
            with contextlib.suppress(FileNotFoundError):  # dropped by someone else meanwhile
                os.rename(directory, tomb)
                _fsync_dir(self.root)
        finally:
            os.close(lock_fd)
        shutil.rmtree(tomb, ignore_errors=True)

    def close(self) -> None:
        """Finish the appends already queued, then stop the writer threads."""
        with self._lock:
            self._closed = True
            writers = list(self._writers.values())
            self._writers.clear()
        for writer in writers:
            writer.close()
        self._appends.close()


class _Pending:
    __slots__ = ("done", "payloads", "size")

    def __init__(self, payloads: list[bytes], done: Done) -> None:
        self.payloads = payloads
        self.done = done
        self.size = sum(len(p) for p in payloads) + HEADER.size * len(payloads)


class _StreamWriter:
    """One stream's appends in this process: a thread that group-commits whatever is queued."""

    def __init__(self, directory: Path, segment_bytes: int, appends: AppendSignal) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.appends = appends
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock_fd = -1
        self._segment_fd = -1
        self._segment_base = 0

    def submit(self, pending: _Pending) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the streaming log is closed")
            self._queue.append(pending)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"headwater-log-{self.directory.name}", daemon=True
                )
                self._thread.start()
            else:
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as error:  # not an I/O error (those fail one batch): fail what is queued
            with self._cond:
                self._thread = None
                queued, self._queue = self._queue, []
            self._close_files()
            for pending in queued:
                pending.done(None, error)
            raise

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    if not self._cond.wait(WRITER_IDLE_SECONDS):
                        break
                if not self._queue:  # idle or closed: end; the next submit starts a new thread
                    self._thread = None
                    self._close_files()
                    return
                batch = self._take()
            self._commit(batch)

    def _take(self) -> list[_Pending]:
        size, count = 0, 0
        for pending in self._queue:
            if count and size + pending.size > MAX_WRITE_BYTES:
                break
            size += pending.size
            count += 1
        batch, self._queue = self._queue[:count], self._queue[count:]
        return batch

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            offsets = self._write(batch)
        except BaseException as error:  # each caller gets the error; the next batch reopens the files
            self._close_files()
            if isinstance(error, OSError) and not isinstance(error, LogUnavailable):
                cause = error
                error = LogUnavailable(f"appending to {self.directory}: {cause!r}")
                error.__cause__ = cause
            for pending in batch:
                pending.done(None, error)
            if not isinstance(error, Exception):
                raise
            return
        self.appends.notify(self.directory.name)
        for pending, result in zip(batch, offsets, strict=True):
            pending.done(result, None)

    def _write(self, batch: list[_Pending]) -> list[list[int]]:
        parts = encode([p for pending in batch for p in pending.payloads], int(time.time() * 1000))
        self._acquire()
        try:
            position = self._active_segment()
            offsets: list[list[int]] = []
            at = self._segment_base + position
            for pending in batch:
                mine = []
                for payload in pending.payloads:
                    mine.append(at)
                    at += HEADER.size + len(payload)
                offsets.append(mine)
            _write_all(self._segment_fd, b"".join(parts))
            os.fdatasync(self._segment_fd)
            return offsets
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _acquire(self) -> None:
        """Hold the stream's lock, reopening the files if the stream was dropped since they were opened."""
        while True:
            if self._lock_fd < 0:
                self._close_files()
                self._lock_fd = _open_lock(self.directory)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            if _is_current_lock(self.directory, self._lock_fd):
                return
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            self._close_files()

    def _active_segment(self) -> int:
        """Point the segment fd at the stream's last segment (rolling it if full); return its size."""
        if self._segment_fd < 0:
            bases = _segments(self.directory)
            self._open_segment(bases[-1] if bases else 0, create=not bases)
        while True:
            size = os.fstat(self._segment_fd).st_size
            successor = self._segment_base + size
            if size == 0 or not segment_path(self.directory, successor).exists():
                break
            self._open_segment(successor, create=False)  # another process rolled it
        if size >= self.segment_bytes:
            self._open_segment(successor, create=True)
            return 0
        return size

    def _open_segment(self, base: int, create: bool) -> None:
        if self._segment_fd >= 0:
            os.close(self._segment_fd)
            self._segment_fd = -1
        path = segment_path(self.directory, base)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        self._segment_fd = os.open(path, flags | (os.O_CREAT if create else 0), 0o644)
        self._segment_base = base
        if create:
            _fsync_dir(self.directory)

    def _close_files(self) -> None:
        for fd in (self._segment_fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self._segment_fd = self._lock_fd = -1


# --- files ---
def _checked(payloads: Sequence[bytes]) -> list[bytes]:
    batch = [bytes(p) if not isinstance(p, bytes) else p for p in payloads]
    for payload in batch:
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"a log record holds at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    return batch


def _segments(directory: Path) -> list[int]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for name in names if (m := _SEGMENT_NAME.fullmatch(name)))


def _open_lock(directory: Path) -> int:
    try:
        directory.mkdir()
        _fsync_dir(directory.parent)
    except FileExistsError:
        pass
    return os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _is_current_lock(directory: Path, fd: int) -> bool:
    try:
        named = os.stat(directory / "lock")
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_ino, named.st_dev) == (held.st_ino, held.st_dev)


def _lock_existing(directory: Path) -> int | None:
    """An fd holding the lock of the stream in ``directory`` (released by closing it); None if there is
    no such stream."""
    while True:
        if not directory.is_dir():
            return None
        try:
            fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # the directory went away meanwhile
            return None
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _is_current_lock(directory, fd):
            return fd
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
