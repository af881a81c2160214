"""PostgreSQL specifics: its upsert; reads in autocommit (no BEGIN/ROLLBACK round trips)."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert

from headwater.stores.profiles.sql import SqlProfileStore


class PostgresProfileStore(SqlProfileStore):
    dialect_insert = staticmethod(insert)
