"""PostgreSQL specifics: psycopg 3, JSONB, and an advisory lock around migrations."""

from __future__ import annotations

import orjson
from sqlalchemy import create_engine, text

from headwater.stores.metadata.migrate import upgrade
from headwater.stores.metadata.sql import SqlMetadataStore, json_dumps

_MIGRATION_LOCK = 0x4845_4144  # "HEAD": any constant, shared by every Headwater process


class PostgresMetadataStore(SqlMetadataStore):
    def __init__(self, url: str) -> None:
        engine = create_engine(
            url,
            json_serializer=json_dumps,
            json_deserializer=orjson.loads,
            pool_size=16,
            max_overflow=16,
            pool_pre_ping=True,
        )
        super().__init__(engine)

    def migrate(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            try:
                upgrade(self.engine, conn)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                conn.commit()
