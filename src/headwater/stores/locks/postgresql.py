"""Locks of every process sharing one PostgreSQL database, on any machine: session-level advisory locks
(``pg_try_advisory_lock``), all held on one connection of the process, kept apart from the metadata
store's pool.

The server drops a session's locks when the session ends: at once when the process exits or is killed
(its socket closes), after about 11 s of silence when its machine vanishes (the session's TCP keepalives
and user timeout, set below; the server's defaults would wait hours). The process notices a lost session
(the server restarted or ended it, the network broke) at its next use of the connection or heartbeat
(a ``SELECT 1`` every :data:`HEARTBEAT_SECONDS` while a lock is held); its locks then read as not held and
the next :meth:`~PostgresLock.acquire` opens a new session.

The connection must reach PostgreSQL itself or a session-pooling proxy: a transaction-pooling one
(PgBouncer's ``pool_mode = transaction``) hands the session to others and the locks mean nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from headwater.errors import MetadataUnavailable
from headwater.stores.locks.base import Lock, Locks

log = logging.getLogger("headwater.locks")

HEARTBEAT_SECONDS = 2.0
_SECTIONS_KEPT = 4  # idle connections kept for ``exclusive`` sections (profile steps: one a commit)
RECONNECT_SECONDS = 1.0  # after a failed connect, tries fail at once for this long (not one wait per lock)
# libpq's side: notice a vanished server; the server's side (per session, below): drop a vanished client.
_CLIENT: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
_SESSION = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10000",  # PostgreSQL 12+
    "idle_session_timeout": "0",  # PostgreSQL 14+: the lock session idles by design
}


def key_of(name: str) -> int:
    """The advisory lock key of ``name``: 64 bits of its hash (``headwater:`` keeps it apart from the
    keys of anything else using advisory locks on the database)."""
    digest = hashlib.blake2b(f"headwater:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def conninfo(url: str) -> str:
    """libpq's URI of a SQLAlchemy URL (``postgresql+psycopg://…``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresLock(Lock):
    def __init__(self, locks: PostgresLocks, name: str) -> None:
        self.locks = locks
        self.name = name
        self.key = key_of(name)
        self._held = False

    def acquire(self) -> bool:
        return self.locks._acquire(self)

    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        self.locks._release(self)


class PostgresLocks(Locks):
    def __init__(self, url: str, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.conninfo = conninfo(url)
        self.heartbeat = heartbeat
        self._mutex = threading.Lock()  # the connection and the holders, between threads
        self._conn: psycopg.Connection[Any] | None = None
        self._holders: dict[int, PostgresLock] = {}
        self._closed = threading.Event()
        self._beat: threading.Thread | None = None
        self._reconnect_at = 0.0
        self._sections: list[psycopg.Connection[Any]] = []  # idle connections of ``exclusive``

    def lock(self, name: str) -> PostgresLock:
        return PostgresLock(self, name)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """On a connection of its own (the wait must not hold up the others' locks), let go when the
        section ends, however it ends, and kept for the next section; closed (which ends the session and
        so lets go too) when it failed."""
        key = key_of(name)
        conn = self._locked_section(key)
        try:
            yield
        finally:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                clean = True
            except psycopg.Error:
                clean = False
            with self._mutex:
                keep = clean and not self._closed.is_set() and len(self._sections) < _SECTIONS_KEPT
                if keep:
                    self._sections.append(conn)
            if not keep:
                conn.close()

    def _locked_section(self, key: int) -> psycopg.Connection[Any]:
        """A section connection holding ``key``: a kept one, or a new one (kept ones found broken are
        closed)."""
        while True:
            with self._mutex:
                conn = self._sections.pop() if self._sections else None
            kept = conn is not None
            if conn is None:
                try:
                    conn = psycopg.connect(self.conninfo, autocommit=True, **_CLIENT)
                except psycopg.OperationalError as exc:
                    raise MetadataUnavailable(str(exc)) from exc
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                return conn
            except psycopg.OperationalError as exc:
                conn.close()
                if not kept:
                    raise MetadataUnavailable(str(exc)) from exc

    def close(self) -> None:
        self._closed.set()
        with self._mutex:
            for holder in self._holders.values():
                holder._held = False
            self._holders.clear()
            self._disconnect()  # the session ends: the server drops its locks
            sections, self._sections = self._sections, []
        for conn in sections:
            conn.close()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=self.heartbeat + 1)

    # --- under the mutex ---
    def _acquire(self, lock: PostgresLock) -> bool:
        with self._mutex:
            holder = self._holders.get(lock.key)
            if holder is not None:
                return holder is lock
            for fresh in (self._conn is None, True):  # a connection found broken is replaced once
                try:
                    conn = self._connection()
                    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock.key,)).fetchone()
                    break
                except psycopg.Error as exc:
                    self._lost(exc)
                    if fresh:
                        return False
            if not (row and row[0]):
                return False
            self._holders[lock.key] = lock
            lock._held = True
            return True

    def _release(self, lock: PostgresLock) -> None:
        with self._mutex:
            if self._holders.get(lock.key) is not lock:
                return
            del self._holders[lock.key]
            lock._held = False
            if self._conn is not None:
                try:
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (lock.key,))
                except psycopg.Error as exc:
                    self._lost(exc)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._closed.is_set():
            raise psycopg.OperationalError("the process's locks are closed")
        if self._conn is None or self._conn.closed:
            if time.monotonic() < self._reconnect_at:
                raise psycopg.OperationalError("PostgreSQL was unreachable a moment ago")
            name = f"headwater-locks {socket.gethostname()} {os.getpid()}"[:63]
            try:
                conn = psycopg.connect(self.conninfo, autocommit=True, application_name=name, **_CLIENT)
            except psycopg.Error:
                self._reconnect_at = time.monotonic() + RECONNECT_SECONDS
                raise
            for setting, value in _SESSION.items():
                with suppress(psycopg.Error):  # an older server lacks the setting
                    conn.execute("SELECT set_config(%s, %s, false)", (setting, value))
            self._conn = conn
            if self._beat is None:
                self._beat = threading.Thread(target=self._beating, name="headwater-locks", daemon=True)
                self._beat.start()
        return self._conn

    def _lost(self, exc: BaseException) -> None:
        """The session is gone, or unusable: so are its locks."""
        if self._holders:
            names = ", ".join(sorted(h.name for h in self._holders.values()))
            log.warning("lost the PostgreSQL session holding the locks %s: %s", names, exc)
        for holder in self._holders.values():
            holder._held = False
        self._holders.clear()
        self._disconnect()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):
                conn.close()

    def _beating(self) -> None:
        """In a thread of its own: while a lock is held, look at the session every heartbeat."""
        while not self._closed.wait(self.heartbeat):
            with self._mutex:
                if self._conn is None or not self._holders:
                    continue
                try:
                    self._conn.execute("SELECT 1")
                except psycopg.Error as exc:
                    self._lost(exc)
