"""Orphan data files: Parquet files under a table's ``data/`` that no snapshot of the table references.

They are what an attempt that wrote files and never committed leaves behind: a run or a partition whose
worker died, a micro-batch whose commit was refused, a promotion that failed after writing; and files
that only expired snapshots referenced. Nothing reads them (a reader follows the current metadata), so
removing them frees storage and changes no query.

A file is an orphan only when no snapshot still in the table's metadata references it (``all_files``:
every snapshot's data and delete files) AND it is older than ``older_than_ms``: a run writing now has
files that no snapshot names yet, and its commit would fail if they vanished, so the age (days, by
default) must exceed the longest run. Only ``data/`` is swept: metadata files are pyiceberg's to manage.
A table whose snapshots reference a file that is not among those listed (its paths spelled otherwise
than the listing's, a moved home, or files outside ``data/``) is not swept at all: a referenced file
must never be judged an orphan because its name was written differently.
Listing and deleting go through the table's own file IO (a folder, or S3 with the lake's credentials).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyiceberg.table import Table


@dataclass
class Sweep:
    """What one table's sweep found: the orphans (local paths, or ``s3://`` URIs; removed unless only
    listed) and their bytes."""

    orphans: list[str] = field(default_factory=list)
    bytes: int = 0
    kept_young: int = 0  # unreferenced, but younger than the limit (perhaps a run writing now)
    skipped: str | None = None  # why the table was not swept


def sweep_table(table: Table, older_than_ms: int, remove: bool) -> Sweep:
    """Find (and with ``remove``, delete) ``table``'s orphan data files last modified before
    ``older_than_ms`` (epoch ms)."""
    from pyarrow import fs
    from pyiceberg.io.pyarrow import PyArrowFileIO

    io = table.io
    if not isinstance(io, PyArrowFileIO):  # pragma: no cover - the lake always uses pyarrow's IO
        raise TypeError("the orphan sweep reads the lake through pyarrow's file IO")
    # As the file system lists them: ``/abs/path`` on a disk, ``bucket/key`` on S3.
    referenced = {
        PyArrowFileIO.parse_location(p)[2] for p in table.inspect.all_files().column("file_path").to_pylist()
    }
    scheme, netloc, path = PyArrowFileIO.parse_location(table.location().rstrip("/") + "/data")
    filesystem = io.fs_by_scheme(scheme, netloc)
    try:
        listing = filesystem.get_file_info(fs.FileSelector(path, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return Sweep()
    found = Sweep()
    listed = {info.path for info in listing if info.type == fs.FileType.File}
    unseen = referenced - listed
    if unseen:  # named otherwise than listed (a moved home, a link), or elsewhere: nothing is safe to judge
        found.skipped = (
            f"{len(unseen)} of the files its snapshots reference are not among those listed under "
            f"{path} (e.g. {sorted(unseen)[0]}): not swept"
        )
        return found
    for info in listing:
        if info.type != fs.FileType.File or info.path in referenced:
            continue
        modified = info.mtime_ns // 1_000_000 if info.mtime_ns is not None else 0
        if modified >= older_than_ms:
            found.kept_young += 1
            continue
        shown = info.path if scheme == "file" else f"{scheme}://{info.path}"  # a path, or the object's URI
        found.orphans.append(shown)
        found.bytes += int(info.size or 0)
        if remove:
            filesystem.delete_file(info.path)
    return found
