"""The lake's Iceberg catalog on a shared PostgreSQL database: processes that start together on a new
database (a server and its workers) all open it, whichever of them creates the catalog's tables."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import create_engine, text

from headwater.lake.iceberg import Lake
from headwater.settings import Settings
from tests.support import wait_until


def test_the_process_that_loses_the_race_to_create_the_catalog_tables_goes_on(
    lake_settings: Settings, postgres_url: str
) -> None:
    from pyiceberg.catalog.sql import SqlCatalogBaseTable

    engine = create_engine(postgres_url)
    opened: dict[str, Any] = {}
    lake = Lake(lake_settings.model_copy(update={"database_url": postgres_url}))
    with engine.connect() as winner:
        # The winner has created the tables but not committed yet: the loser's CREATE TABLE waits on it,
        # then fails with a duplicate key once the winner commits.
        SqlCatalogBaseTable.metadata.create_all(winner)
        opener = threading.Thread(target=lambda: opened.update(catalog=lake.catalog))
        opener.start()
        waiting = text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        # Autocommit: PostgreSQL snapshots pg_stat_activity once per transaction, so polls inside one
        # transaction would keep seeing the moment before the loser blocked.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
            wait_until(lambda: watcher.execute(waiting).scalar_one() > 0, timeout=30)
        winner.commit()
    opener.join(timeout=30)
    assert "catalog" in opened, "the catalog did not open after losing the race"
    opened["catalog"].create_namespace("after_the_race")
    assert ("after_the_race",) in opened["catalog"].list_namespaces()
    engine.dispose()
