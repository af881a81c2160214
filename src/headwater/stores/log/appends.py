"""Which streams of the local log gained records: the local log's side of ``StreamLog.appended``.

In this process, the writer thread calls :meth:`AppendSignal.notify` after each group commit is durable:
a counter and the stream's last count, under a condition that wakes waiters at once. Other processes
(``uvicorn --workers N`` appending, a ``headwater worker`` reading) cannot share the condition, so each
writing process also grows a file of its own, ``<log>/.appends/<pid>``, by one byte per group commit
(no fsync: it is a hint, the records are already durable). A reader stats the files of the other
processes (one per process, not per stream): a file that changed means "any stream may have gained
records" (it does not say which), and the reader checks its streams. The file is emptied once it
reaches :data:`ROLL_BYTES`; a size that went down is a change like any other.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import TypeGuard

ROLL_BYTES = 1 << 20
FOREIGN_POLL_SECONDS = 0.05  # how often a waiter looks at the other processes' files
FRESH_SECONDS = 0.045  # what one waiter saw of them serves the others meanwhile

Token = tuple[int, tuple[tuple[str, int, int, int], ...]]


class AppendSignal:
    """The appends of one local log (``root``): notified by its writers, asked by its readers."""

    def __init__(self, root: Path) -> None:
        self.directory = root / ".appends"
        self._cond = threading.Condition()
        self._count = 0
        self._last: dict[str, int] = {}  # stream -> the count at its last append
        self._fd = -1
        self._size = 0
        self._pid = os.getpid()
        self._seen: tuple[float, tuple[tuple[str, int, int, int], ...]] = (float("-inf"), ())

    def notify(self, stream: str) -> None:
        """``stream`` gained records that are durable now."""
        with contextlib.suppress(OSError):  # a hint only: readers in this process learn it below
            self._grow()
        with self._cond:
            self._count += 1
            self._last[stream] = self._count
            self._cond.notify_all()

    def appended(self, token: object) -> tuple[Token, frozenset[str] | None]:
        foreign = self._foreign()
        with self._cond:
            count = self._count
            since = token[0] if _is_token(token) else None
            mine = None if since is None else frozenset(s for s, n in self._last.items() if n > since)
        if not _is_token(token) or token[1] != foreign:
            return (count, foreign), None
        return (count, foreign), mine

    def wait(self, token: object, timeout: float) -> tuple[Token, frozenset[str] | None]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            current, streams = self.appended(token)
            left = deadline - time.monotonic()
            if streams is None or streams or left <= 0:
                return current, streams
            with self._cond:
                if self._count == current[0]:
                    self._cond.wait(min(left, FOREIGN_POLL_SECONDS))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            with contextlib.suppress(OSError):
                os.unlink(self.directory / str(os.getpid()))

    def _grow(self) -> None:
        if self._pid != os.getpid():  # forked: the file is the parent's
            self._pid, self._fd = os.getpid(), -1
        if self._fd < 0:
            self.directory.mkdir(exist_ok=True)
            path = self.directory / str(os.getpid())
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            self._size = os.fstat(self._fd).st_size
        if self._size >= ROLL_BYTES:
            os.ftruncate(self._fd, 0)
            self._size = 0
        self._size += os.write(self._fd, b".")

    def _foreign(self) -> tuple[tuple[str, int, int, int], ...]:
        """(name, size, mtime, inode) of every other process's file, looked at once per
        :data:`FRESH_SECONDS` whatever the number of waiters."""
        at, seen = self._seen
        if time.monotonic() - at < FRESH_SECONDS:
            return seen
        self._seen = (time.monotonic(), self._look())
        return self._seen[1]

    def _look(self) -> tuple[tuple[str, int, int, int], ...]:
        mine = str(os.getpid())
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return ()
        out = []
        for name in names:
            if name == mine:
                continue
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(self.directory / name)
                out.append((name, st.st_size, st.st_mtime_ns, st.st_ino))
        return tuple(out)


def _is_token(token: object) -> TypeGuard[Token]:
    return isinstance(token, tuple) and len(token) == 2 and isinstance(token[0], int)
