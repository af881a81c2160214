"""Whether a home's lake is where its catalog says: a home moved or copied by hand (not restored) still
names its old folder in every path Iceberg wrote, and would fail on its first read of a dataset."""

from __future__ import annotations

from headwater.lake.storage import lake_location
from headwater.services.backup.catalog import below
from headwater.settings import Settings


def moved_home(settings: Settings) -> str | None:
    """A message for the operator when the lake's catalog names files outside this home's warehouse
    (or outside HEADWATER_LAKE_URL); None when it does not (or has no tables yet)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    url = make_url(settings.resolved_database_url)
    if url.drivername.startswith("sqlite"):
        if not url.database or not settings.home.joinpath(url.database).is_file():
            return None  # a new home: nothing written yet (and the check must not create the file)
    elif url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    location = lake_location(settings)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT metadata_location FROM iceberg_tables")).all()
    except DBAPIError:
        return None  # no catalog yet; an unreachable database is reported by the server's start
    finally:
        engine.dispose()
    for (path,) in rows:
        if below(location, str(path)) is None and settings.lake_url is not None:
            return (
                f"The lake's catalog names {path}, outside HEADWATER_LAKE_URL {location}: the setting "
                "changed after tables were written, and Iceberg keeps absolute paths (tables are not "
                "moved between stores). Set it back (docs/configuration.md)."
            )
        if below(location, str(path)) is None:
            return (
                f"The lake's catalog names {path}, outside this home's warehouse {location}: the home "
                "was moved or copied by hand, and Iceberg keeps absolute paths. Move it back, then use "
                "`headwater backup` and `headwater restore` to move it (docs/operations.md)."
            )
    return None
