"""Pick the metadata store implementation from a SQLAlchemy URL."""

from __future__ import annotations

from headwater.stores.metadata.base import MetadataStore


def open_store(url: str) -> MetadataStore:
    if url.startswith("sqlite"):
        from headwater.stores.metadata.sqlite import SqliteMetadataStore

        return SqliteMetadataStore(url)
    if url.startswith(("postgresql", "postgres")):
        from headwater.stores.metadata.postgresql import PostgresMetadataStore

        if url.startswith("postgres://") or url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return PostgresMetadataStore(url)
    raise ValueError(f"unsupported HEADWATER_DATABASE_URL {url.split(':', 1)[0]!r}: use sqlite or postgresql")
