"""``headwater backup``: a consistent copy of a home while its server runs.

The copy is of one moment, the moment the metadata database is copied (SQLite's online backup API,
one step: one read transaction, which in WAL mode does not hold up the server's writers). The lake's
catalog lives in that database, so that moment fixes every table's snapshot too. In order:

1. the streaming log, first pass, and the home's other files (keys, files folders, row errors, lookback
   keys, bulk-ingest jobs): see streams.py for why the log is copied on both sides of the snapshot;
2. the metadata database (with the catalog), checked with ``PRAGMA quick_check``;
3. the log's second pass and the other files again (what changed since the first pass);
4. the lake: every file any snapshot of the copied catalog references, found by following each table's
   tree from its metadata file. Iceberg writes a file before anything points at it and never changes it,
   so every one of them exists now, unless a table was purged since step 2 (then the copy would name
   files it lacks: :class:`Raced`, and the backup starts over). Files no snapshot references (those of
   runs that never committed) are left out.

Everything is written into a hidden folder beside DEST, the manifest (sizes and SHA-256 of every file)
last, and renamed to DEST once durable: DEST is either a whole backup or absent.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headwater.lake.storage import local_only, warehouse_location
from headwater.services.backup.catalog import below, catalog_tables, referenced
from headwater.services.backup.copying import (
    Progress,
    Silent,
    copy_file,
    copy_if_changed,
    other_files,
    sha256_of,
)
from headwater.services.backup.manifest import HOME, FileEntry, Manifest, Raced, Refused, write_manifest
from headwater.services.backup.streams import LogCopy
from headwater.settings import Settings

ATTEMPTS = 3


@dataclass(frozen=True)
class Source:
    """The home being backed up: its folder, its SQLite database file and the warehouse location."""

    home: Path
    database: Path
    keys: dict[str, bool]

    @classmethod
    def of(cls, settings: Settings) -> Source:
        from sqlalchemy.engine import make_url

        refused = local_only(settings, "`headwater backup`")
        if refused:
            raise Refused(refused)
        url = make_url(settings.resolved_database_url)
        if not url.drivername.startswith("sqlite"):
            raise Refused(
                "This home's metadata and lake catalog are in PostgreSQL (HEADWATER_DATABASE_URL), which "
                "`headwater backup` does not copy. Back the database up with pg_dump, then copy the home "
                "folder after the dump has finished (see docs/operations.md)."
            )
        home = settings.home.resolve()
        database = Path(url.database or "").expanduser().resolve()
        if not database.is_file():
            raise Refused(f"There is no Headwater home at {home} (no {database}): check HEADWATER_HOME.")
        keys = {
            "encryption.key": settings.encryption_key is None,
            "token-signing.key": settings.token_signing_key is None,
        }
        return cls(home, database, keys)

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse"


def backup_home(settings: Settings, dest: Path, progress: Progress | None = None) -> Manifest:
    """Back the home of ``settings`` up into ``dest`` (absent, or an empty folder); returns the
    manifest written. Raises :class:`Refused` before writing anything when it cannot."""
    progress = progress or Silent()
    source = Source.of(settings)
    dest = dest.expanduser().resolve()
    _check_destination(source.home, dest)
    for attempt in range(1, ATTEMPTS + 1):
        partial = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"
        partial.mkdir(mode=0o700, parents=True)
        try:
            manifest = _copy(source, partial, progress)
            write_manifest(partial, manifest)
            os.sync()
            if dest.exists():
                dest.rmdir()  # empty, checked above
            os.rename(partial, dest)
            return manifest
        except Raced as exc:
            if attempt == ATTEMPTS:
                raise Raced(f"{exc} ({ATTEMPTS} attempts): run the backup again.") from exc
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    raise AssertionError("unreachable")


def _check_destination(home: Path, dest: Path) -> None:
    if dest.is_relative_to(home) or home.is_relative_to(dest):
        raise Refused(f"{dest} is inside the home {home} (or holds it): back up to a folder outside it.")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise Refused(f"{dest} exists and is not an empty folder: give a new folder for the backup.")


def _copy(source: Source, partial: Path, progress: Progress) -> Manifest:
    root = partial / HOME
    log = LogCopy(source.home / "streams", root / "streams")
    progress.stage("streaming log", log.pending_bytes())
    log.copy(progress.advance)
    _other_files(source, root, progress)

    progress.stage("metadata database", source.database.stat().st_size)
    database = root / "metadata.db"
    as_of = _now()
    migration = _snapshot_database(source.database, database)
    progress.advance(source.database.stat().st_size)

    progress.stage("streaming log (since)", log.pending_bytes())
    log.copy(progress.advance)
    _other_files(source, root, progress)
    ends = log.finish()

    digests, counts = _copy_lake(source, database, root, progress)
    files = _entries(root, digests, progress)
    counts.update(files=len(files), bytes=sum(f.size for f in files), streams=len(ends))
    from headwater import __version__

    return Manifest(
        created_at=_now(),
        as_of=as_of,
        headwater_version=__version__,
        source_home=str(source.home),
        warehouse=warehouse_location(source.warehouse),
        database={"kind": "sqlite", "migration": migration},
        keys={name: made and (root / "keys" / name).is_file() for name, made in source.keys.items()},
        counts=counts,
        streams=ends,
        files=files,
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _other_files(source: Source, root: Path, progress: Progress) -> None:
    found = list(other_files(source.home, source.database))
    progress.stage("home files", None)
    for relative in found:
        copy_if_changed(source.home / relative, root / relative, progress.advance)


def _snapshot_database(path: Path, target: Path) -> str | None:
    """Copy the SQLite database at ``path`` as of one moment; returns its migration revision."""
    with closing(sqlite3.connect(path, timeout=30)) as live, closing(sqlite3.connect(target)) as copy:
        live.backup(copy)  # pages=-1: one step, one read transaction
    with closing(sqlite3.connect(target)) as copy:
        check = copy.execute("PRAGMA quick_check").fetchone()
        if not check or check[0] != "ok":
            raise Refused(f"The metadata database {path} fails SQLite's integrity check ({check}).")
        try:
            row = copy.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:
            row = None
    return str(row[0]) if row else None


def _copy_lake(
    source: Source, database: Path, root: Path, progress: Progress
) -> tuple[dict[str, str], dict[str, int]]:
    """Copy every file the copied catalog's tables reference; returns their digests and counts."""
    location = warehouse_location(source.warehouse)
    tables = catalog_tables(database)
    wanted: dict[str, bool] = {}
    for table in tables:
        try:
            references = referenced(table, location, source.warehouse)
        except FileNotFoundError as exc:
            raise Raced(f"table {table.namespace}.{table.name} was purged during the backup") from exc
        for reference in references:
            wanted[reference.path] = wanted.get(reference.path, False) or reference.required
    sizes = {path: _size(location, source.warehouse, path) for path in wanted}
    progress.stage("lake", sum(s for s in sizes.values() if s is not None))
    digests: dict[str, str] = {}
    data_files = 0
    for path, required in wanted.items():
        relative = below(location, path)
        assert relative is not None  # referenced() refused any other
        if sizes[path] is None:
            if required:
                raise Raced(f"{path} vanished during the backup (a table was purged)")
            continue
        target = root / "warehouse" / relative
        try:
            _, digest = copy_file(source.warehouse / relative, target, progress.advance)
            digests[f"warehouse/{relative}"] = digest
        except FileNotFoundError as exc:
            if required:
                raise Raced(f"{path} vanished during the backup (a table was purged)") from exc
        data_files += path.endswith(".parquet")
    return digests, {"tables": len(tables), "dataFiles": data_files}


def _size(location: str, warehouse: Path, path: str) -> int | None:
    relative = below(location, path)
    try:
        return (warehouse / relative).stat().st_size if relative is not None else None
    except FileNotFoundError:
        return None


def _entries(root: Path, digests: dict[str, str], progress: Progress) -> list[FileEntry]:
    """Every file of the copy, with its checksum (computed while copying for the lake's files)."""
    entries: list[FileEntry] = []
    progress.stage("checksums", None)
    for folder, _dirs, names in os.walk(root):
        for name in sorted(names):
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            digest = digests.get(relative) or sha256_of(path)
            entries.append(FileEntry(relative, path.stat().st_size, digest))
    return sorted(entries, key=lambda e: e.path)


def summary(manifest: Manifest, dest: Path) -> dict[str, Any]:
    """What the CLI prints of a finished backup."""
    return {"backup": str(dest), "asOf": manifest.as_of, "createdAt": manifest.created_at, **manifest.counts}
