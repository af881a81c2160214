"""Moving a lake: the absolute paths an Iceberg table keeps, rewritten from one warehouse to another.

Iceberg names every file by an absolute path (the spec has no relative ones), so a warehouse copied to
another folder still points into the old one. :func:`relocate_table` rewrites a copied table's tree
(see references.py) bottom-up, so that no file ever names one not yet rewritten:

1. each manifest: ``data_file.file_path`` (and ``referenced_data_file``) of every entry;
2. each manifest list: ``manifest_path`` and ``manifest_length`` (the manifest's new size);
3. the metadata JSON: ``location``, every snapshot's ``manifest-list``, the ``metadata-log``, statistics
   paths and the ``write.*.path`` properties; the history files of the metadata-log that exist, alike.

The caller then points the catalog at the new metadata path. Avro files are decoded and encoded again
with pyiceberg's Avro reader and writer, with the file's own schema and header (codec, partition spec,
schema): never by substituting bytes, since Avro strings are length-prefixed. A file's schema must come
back from pyiceberg's conversion unchanged (true of every file pyiceberg wrote), else it is refused.

Each file is replaced atomically, and a run again over a partly relocated tree finishes it: paths
already under the new warehouse are left alone, and manifest lengths are always taken from the files.
"""

from __future__ import annotations

import gzip
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from headwater.lake.references import (
    DATA_FILE,
    FILE_PATH,
    MANIFEST_LENGTH,
    MANIFEST_PATH,
    REFERENCED_DATA_FILE,
    Locate,
    optional_position,
    position,
    read_avro,
    read_metadata,
    struct_schema,
)

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.typedef import Record

_PATH_PROPERTIES = (
    "write.data.path",
    "write.metadata.path",
    "write.object-storage.path",
    "write.folder-storage.path",
)


class RelocationError(ValueError):
    """A file of the table cannot be rewritten faithfully (an Avro schema pyiceberg would not write
    back the same)."""


@dataclass(frozen=True)
class Move:
    """From warehouse location ``old`` to ``new`` (``file://`` URIs, as the lake's catalog uses them).
    Paths written as bare absolute paths of the same folders move too; other paths stay as they are."""

    old: str
    new: str

    def __call__(self, path: str) -> str:
        for old, new in ((self.old, self.new), (_bare(self.old), _bare(self.new))):
            if old and (path == old or path.startswith(old.rstrip("/") + "/")):
                return new + path[len(old) :]
        return path

    def moves(self, path: str) -> bool:
        return self(path) != path


def _bare(location: str) -> str:
    parsed = urlparse(location)
    return unquote(parsed.path) if parsed.scheme == "file" else ""


def relocate_table(metadata_path: str, move: Move, locate: Locate) -> str:
    """Rewrite the table whose current metadata file is ``metadata_path`` (as the old catalog names
    it) for ``move``; returns the metadata path the catalog should name now. ``locate`` gives the file
    to read and rewrite for a path under the new warehouse."""

    def at(path: str) -> Path:
        return locate(move(path))

    current = at(metadata_path)
    doc = read_metadata(current)
    rewritten: dict[str, int] = {}  # manifest path (new) -> its size after rewriting
    for snapshot in doc.get("snapshots") or []:
        if "manifest-list" in snapshot:
            _rewrite_manifest_list(at(str(snapshot["manifest-list"])), move, at, rewritten)
        if "manifests" in snapshot:
            snapshot["manifests"] = [move(str(m)) for m in snapshot["manifests"]]
    _write_metadata(current, _moved_metadata(doc, move))
    for entry in doc.get("metadata-log") or []:
        history = at(str(entry["metadata-file"]))
        if history.is_file():  # history is not required; what exists is moved alike
            _write_metadata(history, _moved_metadata(read_metadata(history), move))
    return move(metadata_path)


def _moved_metadata(doc: dict[str, Any], move: Move) -> dict[str, Any]:
    if "location" in doc:
        doc["location"] = move(str(doc["location"]))
    for snapshot in doc.get("snapshots") or []:
        if "manifest-list" in snapshot:
            snapshot["manifest-list"] = move(str(snapshot["manifest-list"]))
    for entry in doc.get("metadata-log") or []:
        entry["metadata-file"] = move(str(entry["metadata-file"]))
    for stats in [*(doc.get("statistics") or []), *(doc.get("partition-statistics") or [])]:
        stats["statistics-path"] = move(str(stats["statistics-path"]))
    properties = doc.get("properties") or {}
    for key in _PATH_PROPERTIES:
        if isinstance(properties.get(key), str):
            properties[key] = move(properties[key])
    return doc


def _rewrite_manifest_list(path: Path, move: Move, at: Callable[[str], Path], sizes: dict[str, int]) -> None:
    meta, schema, rows = read_avro(path)
    path_at, length_at = position(schema, MANIFEST_PATH), position(schema, MANIFEST_LENGTH)
    for row in rows:
        manifest = move(str(row[path_at]))
        if manifest not in sizes:
            sizes[manifest] = _rewrite_manifest(at(manifest), move)
        row[path_at] = manifest
        row[length_at] = sizes[manifest]
    write_avro(path, meta, schema, rows)


def _rewrite_manifest(path: Path, move: Move) -> int:
    meta, schema, rows = read_avro(path)
    file_at = position(schema, DATA_FILE)
    data_file = struct_schema(schema, DATA_FILE)
    paths = [p for p in (position(data_file, FILE_PATH), optional_position(data_file, REFERENCED_DATA_FILE))]
    changed = False
    for row in rows:
        entry = row[file_at]
        for at in paths:
            if at is not None and isinstance(entry[at], str) and move.moves(entry[at]):
                entry[at] = move(entry[at])
                changed = True
    if changed:
        write_avro(path, meta, schema, rows)
    return path.stat().st_size


# --- writing ---
def write_avro(path: Path, meta: dict[str, str], schema: Schema, rows: list[Record]) -> None:
    """Replace ``path`` with ``rows`` encoded by ``schema``, keeping the header's metadata (the codec,
    Iceberg's schema and partition spec, format version, snapshot ids)."""
    from pyiceberg.avro.file import AvroOutputFile
    from pyiceberg.io.pyarrow import PyArrowFileIO
    from pyiceberg.utils.schema_conversion import AvroSchemaConversion

    original = json.loads(meta["avro.schema"])
    name = str(original.get("name", "record"))
    if AvroSchemaConversion().iceberg_to_avro(schema, schema_name=name) != original:
        raise RelocationError(f"{path}: its Avro schema would not be written back the same")
    keep = {k: v for k, v in meta.items() if k != "avro.schema"}
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    output = PyArrowFileIO().new_output(str(temporary))
    with AvroOutputFile[Any](output, schema, name, metadata=keep) as out:
        out.write_block(rows)
    os.replace(temporary, path)


def _write_metadata(path: Path, doc: dict[str, Any]) -> None:
    raw = json.dumps(doc, separators=(",", ":")).encode()
    if path.read_bytes()[:2] == b"\x1f\x8b":
        raw = gzip.compress(raw)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temporary.write_bytes(raw)
    os.replace(temporary, path)
