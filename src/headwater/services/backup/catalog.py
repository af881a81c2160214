"""The lake's side of a backup and a restore: the tables a copied catalog lists, the files they
reference, and the paths of the warehouse they name (lake/references.py, lake/relocate.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from headwater.lake.references import Reference, table_files
from headwater.services.backup.manifest import Refused


@dataclass(frozen=True)
class TableRow:
    """One row of pyiceberg's SQL catalog (``iceberg_tables``) in a copied metadata database."""

    catalog: str
    namespace: str
    name: str
    metadata_location: str
    previous_metadata_location: str | None


def catalog_tables(database: Path) -> list[TableRow]:
    """The tables of the catalog in the SQLite file ``database`` (none when the lake was never used)."""
    with closing(sqlite3.connect(database)) as conn, conn:
        try:
            rows = conn.execute(
                "SELECT catalog_name, table_namespace, table_name, metadata_location,"
                " previous_metadata_location FROM iceberg_tables ORDER BY 1, 2, 3"
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
    return [TableRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4]) for r in rows]


def below(location: str, path: str) -> str | None:
    """``path`` relative to the warehouse ``location`` (a ``file://`` URI; a bare absolute path of the
    same folder counts too), or None when it lies elsewhere. Never one with ``..`` in it."""
    parsed = urlparse(location)
    for prefix in (location.rstrip("/"), unquote(parsed.path).rstrip("/") if parsed.scheme == "file" else ""):
        if prefix and path.startswith(prefix + "/"):
            rest = path[len(prefix) + 1 :]
            rest = unquote(rest) if prefix == location.rstrip("/") else rest
            parts = rest.split("/")
            if any(p in ("", ".", "..") for p in parts):
                return None
            return rest
    return None


def locator(location: str, root: Path) -> Callable[[str], Path]:
    """Where a path under the warehouse ``location`` is found in the folder ``root``, laid out as
    that warehouse. A path elsewhere is :class:`Refused`: a home's copy holds the home only."""

    def locate(path: str) -> Path:
        relative = below(location, path)
        if relative is None:
            raise Refused(
                f"the lake names {path}, outside this home's warehouse ({location}): a backup copies the "
                "home only. Was the home moved? Move it back, then back it up."
            )
        return root / relative

    return locate


def referenced(table: TableRow, location: str, root: Path) -> list[Reference]:
    """Every file ``table`` references, read from the warehouse copy (or original) at ``root``."""
    return table_files(table.metadata_location, locator(location, root))
