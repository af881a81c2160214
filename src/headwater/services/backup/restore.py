"""``headwater restore``: a backup put in place as a new home, every path that named the old home moved.

Iceberg keeps absolute paths (it has no relative ones), so a restore into another folder rewrites them,
on the copy, before the home is put in place (lake/relocate.py does the lake's files):

- the catalog (``iceberg_tables``): metadata_location and previous_metadata_location;
- each table's metadata JSON, manifest lists and manifests (Avro, re-encoded with pyiceberg's writer);
- the metadata database's documents (``resources.doc``): any string naming a path in the old home (a
  Local Folder connection's absolute ``rootPath`` into its sandbox's files folder). Their etags change.
  Audit events keep the paths they recorded: they are history.

Every other path Headwater keeps is relative to the home or computed from it (row errors, lookback keys,
uploads, bulk-ingest jobs, the streaming log), so the copy needs nothing else. The restore then checks
that every file each relocated table references is in the new home, and renames the finished folder
to HOME: HOME is either a whole home or untouched.

Restoring into the home's own folder (same path) is the same operation with nothing to move.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from headwater.lake.relocate import Move, relocate_table
from headwater.lake.storage import warehouse_location
from headwater.services.backup.catalog import catalog_tables, locator
from headwater.services.backup.copying import CHUNK, Progress, Silent
from headwater.services.backup.manifest import HOME, Damaged, Manifest, Refused, read_manifest
from headwater.services.ids import new_etag


@dataclass(frozen=True)
class Restored:
    home: Path
    manifest: Manifest
    tables: int
    documents: int  # documents whose paths were moved

    def as_json(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "from": self.manifest.source_home,
            "backupAsOf": self.manifest.as_of,
            "tables": self.tables,
            "files": len(self.manifest.files),
            "documentsMoved": self.documents,
            "keysToSetAgain": [name for name, present in self.manifest.keys.items() if not present],
        }


def restore_home(source: Path, home: Path, progress: Progress | None = None) -> Restored:
    """Restore the backup in ``source`` as the home ``home`` (absent, or an empty folder). Raises
    :class:`NotABackup`, :class:`Damaged` or :class:`Refused`, leaving ``home`` as it was."""
    progress = progress or Silent()
    source = source.expanduser().resolve()
    home = home.expanduser().resolve()
    manifest = read_manifest(source)
    _check_home(source, home)
    partial = home.parent / f".{home.name}.restoring-{uuid.uuid4().hex[:8]}"
    partial.mkdir(mode=0o700, parents=True)
    try:
        _copy_verified(source / HOME, partial, manifest, progress)
        progress.stage("moving paths", None)
        tables, documents = _relocate(partial, manifest, home)
        os.sync()
        if home.exists():
            home.rmdir()  # empty, checked above
        os.rename(partial, home)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return Restored(home, manifest, tables, documents)


def _check_home(source: Path, home: Path) -> None:
    if home.is_relative_to(source) or source.is_relative_to(home):
        raise Refused(f"{home} is inside the backup {source} (or holds it): restore to another folder.")
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise Refused(
            f"{home} exists and is not empty: restore into a new or empty folder (a restore never "
            "overwrites a home)."
        )


def _copy_verified(root: Path, partial: Path, manifest: Manifest, progress: Progress) -> None:
    """Copy every file the manifest lists, checking its size and SHA-256 as it is read."""
    progress.stage("files", sum(entry.size for entry in manifest.files))
    for entry in manifest.files:
        source, target = root / entry.path, partial / entry.path
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        try:
            with source.open("rb") as src, target.open("xb") as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    progress.advance(len(chunk))
        except FileNotFoundError:
            raise Damaged(f"The backup lacks {entry.path} (its manifest lists it): it is damaged.") from None
        if size != entry.size or digest.hexdigest() != entry.sha256:
            raise Damaged(
                f"{entry.path} in the backup does not match its manifest (size or SHA-256 differ): "
                "the backup is damaged; use another."
            )


def _relocate(partial: Path, manifest: Manifest, home: Path) -> tuple[int, int]:
    new_location = warehouse_location(home / "warehouse")
    lake = Move(manifest.warehouse, new_location)
    locate = locator(new_location, partial / "warehouse")
    database = partial / "metadata.db"
    tables = catalog_tables(database)
    try:
        moved = [(table, relocate_table(table.metadata_location, lake, locate)) for table in tables]
    except FileNotFoundError as exc:
        raise Damaged(f"The backup lacks {exc.filename}, which its lake needs: it is incomplete.") from exc
    _check_tables(moved, new_location, partial)
    with closing(sqlite3.connect(database)) as conn, conn:
        for table, metadata in moved:
            previous = table.previous_metadata_location
            conn.execute(
                "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ?"
                " WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
                (metadata, lake(previous) if previous else None, table.catalog, table.namespace, table.name),
            )
        documents = _move_documents(conn, Move(manifest.source_home, str(home)))
    return len(tables), documents


def _check_tables(moved: list[tuple[Any, str]], location: str, partial: Path) -> None:
    """Every file a relocated table needs is in the new home (its references read from the new tree)."""
    from headwater.lake.references import table_files

    locate = locator(location, partial / "warehouse")
    for table, metadata in moved:
        for reference in table_files(metadata, locate):
            if reference.required and not locate(reference.path).is_file():
                raise Damaged(
                    f"Table {table.namespace}.{table.name} needs {reference.path}, which the backup does "
                    "not hold: it is damaged or incomplete."
                )


def _move_documents(conn: sqlite3.Connection, move: Move) -> int:
    """Move the old home's paths in the documents that name it; returns how many changed."""
    needle = orjson.dumps(move.old).decode()[1:-1]
    rows = conn.execute("SELECT seq, doc FROM resources WHERE instr(doc, ?) > 0", (needle,)).fetchall()
    changed = 0
    for seq, raw in rows:
        doc = orjson.loads(raw)
        moved = _moved_strings(doc, move)
        if moved != doc:
            conn.execute(
                "UPDATE resources SET doc = ?, etag = ? WHERE seq = ?",
                (orjson.dumps(moved).decode(), new_etag(), seq),
            )
            changed += 1
    return changed


def _moved_strings(value: Any, move: Move) -> Any:
    if isinstance(value, str):
        return move(value)
    if isinstance(value, dict):
        return {k: _moved_strings(v, move) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved_strings(v, move) for v in value]
    return value
