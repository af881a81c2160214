"""PostgreSQL specifics: its upsert; reads in autocommit (no BEGIN/ROLLBACK round trips); large writes
through COPY into a session's temporary staging table, then one ``INSERT ... SELECT ... ON CONFLICT``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Connection, MetaData, Table, select
from sqlalchemy.dialects.postgresql import insert

from headwater.stores.profiles.sql import BULK_TABLES, SqlProfileStore

#: Below this many rows, executemany (psycopg's pipeline) beats creating and filling a staging table.
COPY_FROM_ROWS = 2_000


class PostgresProfileStore(SqlProfileStore):
    dialect_insert = staticmethod(insert)
    positional_paramstyle = "format"
    named_paramstyle = "pyformat"

    def _build_statements(self) -> None:
        super()._build_statements()
        self._staged: dict[str, tuple[str, str, str]] = {}
        for table in BULK_TABLES:
            staging = Table(
                f"staging_{table.name}", MetaData(), *(Column(c.name, c.type) for c in table.columns)
            )
            names = [c.name for c in table.columns]
            upsert = self.on_conflict(table, insert(table).from_select(names, select(staging)))
            create = (
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging.name} "
                f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            copy = f"COPY {staging.name} ({', '.join(names)}) FROM STDIN"
            self._staged[table.name] = (create, copy, str(upsert.compile(dialect=self.engine.dialect)))

    def _executemany(self, conn: Connection, table: Any, rows: list[tuple[Any, ...]]) -> None:
        """Many rows: COPY them into the session's staging table (emptied at commit, and before use:
        one transaction may write a table twice), then upsert from it in one statement."""
        if len(rows) < COPY_FROM_ROWS:
            super()._executemany(conn, table, rows)
            return
        create, copy_sql, upsert = self._staged[table.name]
        driver: Any = conn.connection.driver_connection
        with driver.cursor() as cursor:
            cursor.execute(create)
            cursor.execute(f"TRUNCATE staging_{table.name}")
            with cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(upsert)
