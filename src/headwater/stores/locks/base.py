"""Exclusive locks a process holds for as long as it lives: which process of a deployment steps a
streaming flow's micro-batcher, which delivers an activation flow, and which runs the first-start
bootstrap. One :class:`Locks` per process (``open_locks``), by the metadata store it shares:

    Locks
    ├── FileLocks      an flock on HOME/<name>.lock: the processes sharing a home (SQLite metadata,
    │                  the embedded default)
    └── PostgresLocks  a session-level advisory lock on one connection of the process: every process
                       sharing the PostgreSQL database, on any machine

A lock is released when its holder releases it or exits, however it exits (``kill -9`` too): the kernel
closes the file, or the server ends the session and drops its locks. A held lock can also be *lost*
without its holder releasing it (PostgreSQL: the connection broke, the server restarted or ended the
session); :meth:`Lock.held` turns False once the process notices (within ``HEARTBEAT_SECONDS`` on
PostgreSQL), and the holder stops the work and tries :meth:`Lock.acquire` again. Between the loss and
the holder noticing, another process may already hold the lock: a lock makes one process do the work
(efficiency), it does not make the work safe. What it guards must be safe on its own (a micro-batch's
commit is an Iceberg compare-and-swap of the log position: runtime/streaming.py).

Within one process a lock is exclusive too: two :class:`Lock` objects of one name do not both hold it
(as two flocks of one file do not).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager


class Lock(ABC):
    """One named lock of a :class:`Locks`. Not held until :meth:`acquire` says so."""

    name: str

    @abstractmethod
    def acquire(self) -> bool:
        """Try to hold the lock without waiting: True when this object holds it (already, or now);
        False when another holds it, or the lock service cannot be reached (stand by and try again)."""

    @abstractmethod
    def held(self) -> bool:
        """Whether this object still holds the lock, as far as the process knows (no round trip)."""

    @abstractmethod
    def release(self) -> None:
        """Let the lock go (idempotent); the object may :meth:`acquire` it again later."""


class Locks(ABC):
    """The locks of one process, named by paths such as ``streams/.batchers/<flow id>``."""

    @abstractmethod
    def lock(self, name: str) -> Lock:
        """A lock of ``name``, not held yet."""

    @abstractmethod
    def exclusive(self, name: str) -> AbstractContextManager[None]:
        """Hold ``name`` for a short section, waiting for it as long as another holds it."""

    def close(self) -> None:  # noqa: B027 - nothing to close by default
        """Release every lock of the process."""
