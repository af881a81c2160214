"""Open the profile store on the metadata database: the embedded default needs no second database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from headwater.stores.metadata.sql import SqlMetadataStore
from headwater.stores.profiles.sql import SqlProfileStore, WriteTransaction


def open_profile_store(source: SqlMetadataStore | Engine) -> SqlProfileStore:
    """The profile store on ``source``'s database.

    Given the metadata store, it shares its engine and its write queue (on SQLite, one writer at a time
    for both stores). Given a bare engine, the caller owns it (and has migrated the database: the
    profile tables are in the metadata store's migrations); on SQLite its writes queue on the same lock
    file as the metadata store's. The profile store never disposes of the engine.
    """
    if isinstance(source, SqlMetadataStore):
        return _store_for(source.engine, source.read_engine, source.write_transaction)
    if source.dialect.name == "sqlite":
        from headwater.stores.metadata.sqlite import WriteQueue

        database = source.url.database
        queue = WriteQueue(source, Path(database) if database and database != ":memory:" else None)
        return _store_for(source, source, queue.transaction)
    return _store_for(source, source.execution_options(isolation_level="AUTOCOMMIT"), source.begin)


def _store_for(engine: Engine, read_engine: Engine, write: WriteTransaction) -> SqlProfileStore:
    store_class: type[SqlProfileStore]
    if engine.dialect.name == "sqlite":
        from headwater.stores.profiles.sqlite import SqliteProfileStore

        store_class = SqliteProfileStore
    elif engine.dialect.name == "postgresql":
        from headwater.stores.profiles.postgresql import PostgresProfileStore

        store_class = PostgresProfileStore
    else:
        raise ValueError(f"no profile store for {engine.dialect.name}: use sqlite or postgresql")
    return store_class(engine, write, read_engine)
