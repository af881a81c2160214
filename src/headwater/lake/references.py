"""Which files an Iceberg table's metadata references, read from files that need not be where their
metadata says (a home being backed up, a restore before it is moved into place).

A table is a tree of immutable files, each naming the next by an absolute path::

    metadata JSON                  the catalog's metadata_location (iceberg_tables)
      ├─ metadata-log              earlier metadata JSON files: history, not followed
      ├─ statistics                Puffin / Parquet statistics files
      └─ snapshots[].manifest-list Avro, one row per manifest (manifest_path, field 500)
            └─ manifest            Avro, one row per data or delete file (data_file.file_path, field 100),
                  └─ data file     status ADDED, EXISTING or DELETED

Every file is written before anything points at it, and never changed afterwards: whoever reads the
catalog first and then follows the tree finds every file it names (unless a table was purged meanwhile).

``locate`` turns a path as the metadata writes it into the file to read; the Avro files are read with
pyiceberg's own reader, generically (the file's own schema, fields found by their Iceberg field ids).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.typedef import Record

Locate = Callable[[str], Path]

# Iceberg field ids (spec, "Manifests" and "Manifest Lists").
STATUS = 0
DATA_FILE = 2
FILE_PATH = 100
REFERENCED_DATA_FILE = 143
MANIFEST_PATH = 500
MANIFEST_LENGTH = 501
DELETED = 2
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Reference:
    """A file a table's metadata names. ``required``: reads need it (False for history metadata files
    and for files a manifest entry marks DELETED, which older, expired snapshots may have held)."""

    path: str
    kind: str  # metadata, history, statistics, manifest-list, manifest, data
    required: bool


def table_files(metadata_path: str, locate: Locate) -> list[Reference]:
    """Every file the table whose current metadata file is ``metadata_path`` references, once each (a
    data file listed DELETED in one manifest and live in another is required). Raises OSError when a
    required metadata, manifest list or manifest file cannot be read."""
    found: dict[str, Reference] = {}

    def add(reference: Reference) -> None:
        known = found.get(reference.path)
        if known is None or (reference.required and not known.required):
            found[reference.path] = reference

    for reference in _walk(metadata_path, locate):
        add(reference)
    return list(found.values())


def _walk(metadata_path: str, locate: Locate) -> Iterator[Reference]:
    yield Reference(metadata_path, "metadata", True)
    doc = read_metadata(locate(metadata_path))
    for entry in doc.get("metadata-log") or []:
        yield Reference(str(entry["metadata-file"]), "history", False)
    for stats in [*(doc.get("statistics") or []), *(doc.get("partition-statistics") or [])]:
        yield Reference(str(stats["statistics-path"]), "statistics", True)
    manifests: set[str] = set()
    for snapshot in doc.get("snapshots") or []:
        listed: list[str] = []
        if "manifest-list" in snapshot:
            listed_in = str(snapshot["manifest-list"])
            yield Reference(listed_in, "manifest-list", True)
            _, schema, rows = read_avro(locate(listed_in))
            at = position(schema, MANIFEST_PATH)
            listed = [str(row[at]) for row in rows]
        listed += [str(m) for m in snapshot.get("manifests") or []]  # format v1 may list them inline
        for manifest in listed:
            if manifest in manifests:
                continue
            manifests.add(manifest)
            yield Reference(manifest, "manifest", True)
            yield from _manifest_entries(manifest, locate)


def _manifest_entries(manifest: str, locate: Locate) -> Iterator[Reference]:
    _, schema, rows = read_avro(locate(manifest))
    status_at, file_at = position(schema, STATUS), position(schema, DATA_FILE)
    path_at = position(struct_schema(schema, DATA_FILE), FILE_PATH)
    for row in rows:
        yield Reference(str(row[file_at][path_at]), "data", row[status_at] != DELETED)


# --- reading the files ---
def read_metadata(path: Path) -> dict[str, Any]:
    """A table metadata JSON file (gzip-compressed ones too, whatever their name)."""
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    doc: dict[str, Any] = json.loads(raw)
    return doc


def read_avro(path: Path) -> tuple[dict[str, str], Schema, list[Record]]:
    """An Avro file's header metadata, its schema (as Iceberg's) and its rows, read generically."""
    from pyiceberg.avro.file import AvroFile
    from pyiceberg.io.pyarrow import PyArrowFileIO

    with AvroFile[Any](PyArrowFileIO().new_input(str(path))) as avro:
        meta = dict(avro.header.meta)
        schema = avro.schema
        rows = list(avro)
    return meta, schema, rows


def position(schema: Schema, field_id: int) -> int:
    """Where the top-level field ``field_id`` sits in ``schema``'s rows."""
    return _position(schema.fields, field_id)


def struct_schema(schema: Schema, field_id: int) -> Schema:
    """The struct field ``field_id`` of ``schema``, as a schema of its own (to find its fields)."""
    from pyiceberg.schema import Schema as IcebergSchema
    from pyiceberg.types import StructType

    field = schema.fields[position(schema, field_id)].field_type
    if not isinstance(field, StructType):
        raise ValueError(f"Iceberg field {field_id} is not a struct")
    return IcebergSchema(*field.fields)


def _position(fields: tuple[Any, ...], field_id: int) -> int:
    for index, field in enumerate(fields):
        if field.field_id == field_id:
            return index
    raise ValueError(f"the file has no Iceberg field {field_id}")


def optional_position(schema: Schema, field_id: int) -> int | None:
    try:
        return position(schema, field_id)
    except ValueError:
        return None
