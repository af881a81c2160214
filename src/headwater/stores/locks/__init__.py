"""Exclusive locks of a process, deployment-wide (stores/locks/base.py draws the tree).

``open_locks`` picks them by the metadata database the process shares with the others: flocks in the
home with SQLite (the processes of one machine sharing its home), PostgreSQL advisory locks otherwise
(the processes of every machine sharing the database).
"""

from __future__ import annotations

from headwater.settings import Settings
from headwater.stores.locks.base import Lock, Locks
from headwater.stores.locks.files import FileLocks

__all__ = ["FileLocks", "Lock", "Locks", "open_locks"]


def open_locks(settings: Settings) -> Locks:
    """The process's locks; a PostgreSQL connection is opened at the first lock taken, not here."""
    url = settings.resolved_database_url
    if url.startswith(("postgresql", "postgres")):
        from headwater.stores.locks.postgresql import PostgresLocks

        return PostgresLocks(url)
    return FileLocks(settings.home)
