"""Backing up, restoring and moving a Headwater home (``headwater backup`` / ``headwater restore``).

A backup is a folder::

    DEST/manifest.json   format, version, source home and warehouse, counts, every file's size and SHA-256
    DEST/home/...        the home's files, laid out as in the home: metadata.db (with the lake's
                         catalog), keys/, streams/ (the local log), warehouse/ (the files the catalog's
                         snapshots reference, row errors, lookback keys), files/, ...

backup.py makes one while the server runs, consistent as of the moment the metadata database was
copied; restore.py puts one in place in a new folder, moving every path that named the old home.
PostgreSQL metadata is refused: pg_dump is the tool for that database (docs/operations.md).
"""

from headwater.services.backup.backup import backup_home
from headwater.services.backup.copying import Progress, Silent
from headwater.services.backup.manifest import BackupError, Damaged, NotABackup, Raced, Refused
from headwater.services.backup.restore import Restored, restore_home

__all__ = [
    "BackupError",
    "Damaged",
    "NotABackup",
    "Progress",
    "Raced",
    "Refused",
    "Restored",
    "Silent",
    "backup_home",
    "restore_home",
]
