"""SQLite specifics: its upsert, and writes queued with the metadata store's (one writer at a time)."""

from __future__ import annotations

from sqlalchemy.dialects.sqlite import insert

from headwater.stores.profiles.sql import SqlProfileStore


class SqliteProfileStore(SqlProfileStore):
    dialect_insert = staticmethod(insert)
    positional_paramstyle = "qmark"
    named_paramstyle = "named"
