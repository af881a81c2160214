"""Process-wide state shared by the server, the worker and the CLI: garbage collection, file modes."""

from __future__ import annotations

import contextlib
import gc
import os
import stat
from pathlib import Path


def tune_garbage_collector() -> None:
    """Collect cyclic garbage less often, and never scan what start-up allocated.

    Parsing a streaming batch (100 messages, tens of KB of JSON) allocates enough containers to trigger
    several young-generation collections, and a full collection of a loaded server pauses for about
    100 ms: with CPython's default thresholds the collector took a third of the inlet's time and set its
    p99 latency. Headwater's objects rarely form cycles, so a higher threshold costs little memory.
    """
    gc.collect()
    gc.freeze()  # start-up objects (modules, schemas, caches) move to a generation never scanned
    gc.set_threshold(100_000, 50, 100)


# Bits for other users are masked whatever the setting says: the home holds password hashes, sealed
# secrets, keys and every organization's data.
_ALWAYS_MASKED = 0o007


def file_mask(value: str) -> int:
    """The umask a ``HEADWATER_UMASK`` value stands for (octal text), with the bits for others set."""
    return int(value, 8) | _ALWAYS_MASKED


def secure_home(home: Path, umask_value: str = "077") -> None:
    """Make every file this process creates private, and the home unreachable for other users.

    Sets the process umask (process-wide, so files that libraries create, such as pyiceberg's Parquet
    and metadata files, SQLite's database, -wal and -shm, stream segments and uploads, get it too).
    Then creates the home with the mask's mode, or narrows an existing home (one from before, 0755) and
    its ``keys/`` folder: with the home closed to others, files below it that older versions created
    0644 cannot be reached either, so they need no walk. Call at every entry point before anything
    writes into the home (the server, the worker and the CLI all go through ``Services``).
    """
    mask = file_mask(umask_value)
    os.umask(mask)
    folder_mode = 0o777 & ~mask
    home.mkdir(mode=folder_mode, parents=True, exist_ok=True)
    _narrow(home, folder_mode)
    keys = home / "keys"
    if keys.is_dir():
        _narrow(keys, 0o700)
        for key in keys.iterdir():
            if key.is_file() and not key.is_symlink():
                _narrow(key, 0o600)


def _narrow(path: Path, mode: int) -> None:
    """Drop the permission bits of ``path`` that ``mode`` lacks (never adds any). Not ours: left alone."""
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        with contextlib.suppress(PermissionError):
            path.chmod(current & mode)
