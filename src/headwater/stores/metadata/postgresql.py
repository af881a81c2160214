"""PostgreSQL specifics: psycopg 3, autocommit reads, and an advisory lock around migrations."""

from __future__ import annotations

import orjson
from sqlalchemy import Connection, create_engine, text

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
            # No pre-ping (a round trip per checkout); stale connections are recycled instead.
            pool_recycle=1800,
        )
        super().__init__(engine)
        # Reads run in autocommit: no BEGIN and no reset ROLLBACK round trips around a single SELECT.
        self.read_engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    def _lock_flow(self, conn: Connection, flow_id: str) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:flow, 0))"), {"flow": flow_id})

    def migrate(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            try:
                upgrade(self.engine, conn)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                conn.commit()
