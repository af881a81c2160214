"""SQLite specifics: WAL, a busy timeout, foreign-key pragmas, and a file lock around migrations."""

from __future__ import annotations

import fcntl
import sqlite3
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url

from headwater.stores.metadata.migrate import upgrade
from headwater.stores.metadata.sql import SqlMetadataStore, json_dumps


class SqliteMetadataStore(SqlMetadataStore):
    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.path = Path(parsed.database or ":memory:")
        if parsed.database:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            json_serializer=json_dumps,
            json_deserializer=orjson.loads,
            pool_size=16,
            max_overflow=16,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        event.listen(engine, "connect", _on_connect)
        super().__init__(engine)

    def migrate(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".migrate-lock")
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            upgrade(self.engine)


def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed metadata write survives power loss, not only a process crash.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
