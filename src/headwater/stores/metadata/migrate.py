"""Run the Alembic migrations that live in ``migrations/`` beside this file."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, connection: Connection | None = None, revision: str = "head") -> None:
    """Upgrade to ``revision`` on ``connection`` (or a new one from ``engine``), committing at the end."""
    if connection is not None:
        command.upgrade(alembic_config(connection), revision)
        connection.commit()
        return
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
