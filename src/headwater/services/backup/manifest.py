"""A backup's manifest (``manifest.json``, written last: a folder without one is not a finished backup),
and the errors of backing up and restoring.

    BackupError             base; the message says what to do next
    ├── Refused             the request cannot be done as asked (PostgreSQL metadata, a folder that is
    │                       not empty, a folder inside the home); nothing was written
    ├── NotABackup          no manifest, or one that cannot be read or is of an unknown format
    ├── Damaged             a file of the backup is missing or differs from its checksum
    └── Raced               the home changed under the backup in a way a copy cannot absorb (a table
                            purged, log segments released between passes): the backup starts over
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "headwater-backup"
VERSION = 1
MANIFEST = "manifest.json"
HOME = "home"  # the folder of a backup that holds the home's files, laid out as in the home
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BackupError(Exception):
    """Base of backup and restore errors; ``str()`` is the message for the operator."""


class Refused(BackupError):
    pass


class NotABackup(BackupError):
    pass


class Damaged(BackupError):
    pass


class Raced(BackupError):
    pass


@dataclass(frozen=True)
class FileEntry:
    """One file of the backup: its path below ``home/`` (POSIX separators), size and SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass
class Manifest:
    """What a backup holds and where it came from. ``warehouse`` is the location the lake's catalog
    was opened with (the prefix of every path Iceberg wrote), ``source_home`` the home's folder: a
    restore moves both. ``keys``: which generated keys are files of the backup (a key given by
    HEADWATER_ENCRYPTION_KEY or HEADWATER_TOKEN_SIGNING_KEY is not, and must be given again)."""

    created_at: str  # when the backup finished
    as_of: str  # when the metadata database was copied: the backup holds the home as it was then
    headwater_version: str
    source_home: str
    warehouse: str
    database: dict[str, Any]
    keys: dict[str, bool]
    counts: dict[str, int]
    streams: dict[str, int]  # stream -> end offset of its copy
    files: list[FileEntry] = field(default_factory=list)
    version: int = VERSION

    def as_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write ``folder/manifest.json`` durably (fsynced)."""
    raw = json.dumps(manifest.as_json(), indent=1).encode()
    fd = os.open(folder / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(raw)
        out.flush()
        os.fsync(out.fileno())


def read_manifest(folder: Path) -> Manifest:
    """The manifest of the backup in ``folder``; :class:`NotABackup` saying why when there is none."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise NotABackup(f"{folder} is not a folder: give the folder `headwater backup` wrote.")
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise NotABackup(
            f"{folder} has no {MANIFEST}: it is not a Headwater backup, or one that did not finish "
            "(a backup writes its manifest last). Use another backup."
        ) from None
    except (OSError, ValueError) as exc:
        raise NotABackup(f"{path} cannot be read ({exc}): the backup is damaged; use another.") from exc
    return _parse(path, doc)


def _parse(path: Path, doc: Any) -> Manifest:
    def bad(why: str) -> NotABackup:
        return NotABackup(f"{path} is not a valid backup manifest ({why}): the backup is damaged.")

    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad(f"'format' is not {FORMAT!r}")
    version = doc.get("version")
    if not isinstance(version, int) or version < 1:
        raise bad("'version' is not a positive integer")
    if version > VERSION:
        raise NotABackup(
            f"{path} is a backup of format {version}, newer than this Headwater reads ({VERSION}): "
            "restore it with the Headwater version that made it (or a newer one)."
        )
    try:
        files = [_entry(item) for item in doc["files"]]
        manifest = Manifest(
            created_at=_text(doc, "created_at"),
            as_of=_text(doc, "as_of"),
            headwater_version=_text(doc, "headwater_version"),
            source_home=_text(doc, "source_home"),
            warehouse=_text(doc, "warehouse"),
            database=dict(doc["database"]),
            keys={str(k): bool(v) for k, v in dict(doc["keys"]).items()},
            counts={str(k): int(v) for k, v in dict(doc["counts"]).items()},
            streams={str(k): int(v) for k, v in dict(doc["streams"]).items()},
            files=files,
            version=version,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"{type(exc).__name__}: {exc}") from exc
    if manifest.database.get("kind") != "sqlite":
        raise bad("'database.kind' is not 'sqlite'")
    return manifest


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key!r} must be a non-empty string")
    return value


def _entry(item: Any) -> FileEntry:
    entry = FileEntry(path=str(item["path"]), size=int(item["size"]), sha256=str(item["sha256"]))
    parts = entry.path.split("/")
    if entry.path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"file path {entry.path!r} is not a plain relative path")
    if entry.size < 0 or not _SHA256.fullmatch(entry.sha256):
        raise ValueError(f"file {entry.path!r} has a bad size or checksum")
    return entry
