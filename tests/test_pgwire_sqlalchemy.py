"""SQLAlchemy's PostgreSQL dialect (the layer under pandas, Superset and most Python BI tools) against the
wire endpoint, unchanged but for its URL: it connects, reflects the sandbox's tables, columns, keys and
indexes from the emulated catalog (pgwire/catalog.py), and reads a table, also through pandas."""

from __future__ import annotations

from urllib.parse import quote

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from tests.support import ApiClient, LiveServer
from tests.test_pgwire_catalog import live, tables, token

__all__ = ["live", "tables", "token"]  # the fixtures, from test_pgwire_catalog.py


def test_sqlalchemy_reflects_the_sandbox_and_pandas_reads_it(
    live: LiveServer, token: str, tables: tuple[ApiClient, str, str]
) -> None:
    api, table, empty = tables
    user, port = quote(live.creds["orgId"]), live.settings.pgwire_port
    engine = sa.create_engine(f"postgresql+psycopg://{user}:{token}@127.0.0.1:{port}/{api.sandbox_name}:all")
    try:
        inspector = sa.inspect(engine)
        assert sorted(inspector.get_table_names()) == sorted([table, empty])
        assert inspector.get_view_names() == [] and inspector.get_schema_names() == [
            "information_schema",
            "public",
        ]
        columns = [(c["name"], type(c["type"]), c["nullable"]) for c in inspector.get_columns(table)]
        assert columns == [
            ("_id", postgresql.TEXT, True),
            ("n", postgresql.BIGINT, True),
            ("score", postgresql.DOUBLE_PRECISION, True),
            ("active", postgresql.BOOLEAN, True),
            ("seen", postgresql.TIMESTAMP, True),
            ("day", postgresql.DATE, True),
            ("person", postgresql.JSON, True),
        ]
        assert inspector.get_columns(table)[4]["type"].timezone is True
        assert inspector.get_pk_constraint(table)["constrained_columns"] == []
        assert inspector.get_indexes(table) == [] and inspector.get_foreign_keys(table) == []

        people = sa.Table(table, sa.MetaData(), autoload_with=engine)
        assert [c.name for c in people.columns][:3] == ["_id", "n", "score"]
        with engine.connect() as conn:
            assert conn.execute(sa.select(people.c._id, people.c.n).where(people.c.n >= 1)).all() == [
                ("p0", 1)
            ]
            frame = pd.read_sql_table(table, conn, columns=["_id", "n", "active"])
        assert frame.to_dict("records") == [{"_id": "p0", "n": 1, "active": True}]
    finally:
        engine.dispose()
