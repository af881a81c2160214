"""Copying files of a home that is in use: whole files with their checksum, the growth of append-only
files, and the home's other files (everything that is neither the database, the lake's tables nor the
streaming log)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

CHUNK = 1 << 20
# In the home, beside the database: SQLite's and Headwater's lock and journal files, remade on start.
_TOP_LEVEL_SKIPPED = {".bootstrap.lock"}
_SKIPPED_SUFFIXES = (".write-lock", ".migrate-lock", "-wal", "-shm", "-journal")
# Files still being written, never acknowledged (uploads, bulk-ingest job files): renamed when done.
_IN_PROGRESS_SUFFIXES = (".partial", ".part", ".tmp")


class Progress(Protocol):
    """Where long work reports itself (the CLI shows it as progress bars)."""

    def stage(self, name: str, total: int | None) -> None:
        """A new stage begins; ``total`` bytes of work (None: unknown)."""

    def advance(self, amount: int) -> None:
        """``amount`` more bytes of the current stage are done."""


class Silent:
    """A :class:`Progress` that shows nothing."""

    def stage(self, name: str, total: int | None) -> None:
        return None

    def advance(self, amount: int) -> None:
        return None


def copy_file(source: Path, target: Path, advance: Callable[[int], None] | None = None) -> tuple[int, str]:
    """Copy ``source`` to the new file ``target`` (parents made, owner-only by the umask); returns its
    size and SHA-256, computed from the bytes written."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as src, target.open("xb") as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if advance is not None:
                advance(len(chunk))
    return size, digest.hexdigest()


def copy_growth(source: Path, target: Path, advance: Callable[[int], None] | None = None) -> int:
    """Bring ``target`` up to ``source``'s current length, for an append-only ``source``: the bytes
    already copied never change, so only what was appended since is read. Returns the bytes copied.
    Raises FileNotFoundError when ``source`` is gone."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    have = target.stat().st_size if target.exists() else 0
    copied = 0
    with source.open("rb") as src, target.open("ab") as dst:
        src.seek(have)
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            copied += len(chunk)
            if advance is not None:
                advance(len(chunk))
    return copied


def copy_if_changed(source: Path, target: Path, advance: Callable[[int], None] | None = None) -> None:
    """Copy ``source`` over ``target`` unless ``target`` already has its size and modification time
    (a second pass over a home copies only what changed since the first). A source that vanished
    meanwhile is skipped: it was deleted while the backup ran."""
    try:
        stat = source.stat()
        if target.exists():
            mine = target.stat()
            if (mine.st_size, mine.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                return
            target.unlink()
        copy_file(source, target, advance)
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    except FileNotFoundError:
        return


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def other_files(home: Path, database: Path) -> Iterator[Path]:
    """The home's files other than the database (and its journal and lock files), the lake's tables
    (``warehouse/`` except Headwater's own ``_``-folders: row errors, lookback keys) and the streaming
    log (``streams/``), as paths relative to ``home``. Symbolic links and special files are left out
    (a link in a files folder may point anywhere), as are files still being written."""
    for folder, dirs, files in os.walk(home):
        here = Path(folder)
        relative = here.relative_to(home)
        if relative == Path("."):
            dirs[:] = [d for d in dirs if d != "streams"]
        elif relative == Path("warehouse"):
            dirs[:] = [d for d in dirs if d.startswith("_")]
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
        for name in files:
            path = here / name
            if _skipped(relative, name, path, database) or path.is_symlink() or not path.is_file():
                continue
            yield relative / name


def _skipped(relative: Path, name: str, path: Path, database: Path) -> bool:
    if name.endswith(_IN_PROGRESS_SUFFIXES):
        return True
    if relative == Path(".") and (name in _TOP_LEVEL_SKIPPED or name.endswith(_SKIPPED_SUFFIXES)):
        return True
    if path.parent == database.parent and name.startswith((database.name + "-", database.name + ".")):
        return True  # the database's journal and lock files
    return path == database
