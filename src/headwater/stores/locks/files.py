"""Locks of the processes sharing one home: an exclusive flock on ``HOME/<name>.lock``, released by the
kernel when the file is closed or the process exits, however it exits."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from headwater.stores.locks.base import Lock, Locks


class FileLock(Lock):
    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self._fd: int | None = None
        self._held = False

    def acquire(self) -> bool:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._held = True
        return True

    def held(self) -> bool:
        return self._held  # a file lock is only lost with the process

    def release(self) -> None:
        self._held = False
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None


class FileLocks(Locks):
    """Locks named ``a/b`` are the files ``root/a/b.lock``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def lock(self, name: str) -> FileLock:
        return FileLock(self._path(name), name)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _path(self, name: str) -> Path:
        return self.root / f"{name}.lock"
