"""Reading one segment of the local log (see local.py for the layout and why torn records are skipped)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from headwater.stores.log.base import LogRecord
from headwater.stores.log.frames import END, FULL, NEED_MORE, parse, resync

log = logging.getLogger("headwater.stores.log.local")

READ_CHUNK = 1 << 20


def segment_path(directory: Path, base: int) -> Path:
    return directory / f"{base:020d}.log"


def read_segment(
    directory: Path, base: int, offset: int, out: list[LogRecord], budget: list[int], complete: bool
) -> tuple[int, bool]:
    """Append the segment's records from ``offset`` to ``out``; return where it stopped and whether
    ``budget`` ([records, bytes] left) ran out. ``complete``: a later segment exists, so nothing more
    will be appended to this one. Raises FileNotFoundError if the segment was deleted."""
    fd = os.open(segment_path(directory, base), os.O_RDONLY | os.O_CLOEXEC)
    try:
        position = offset - base
        chunk = READ_CHUNK
        while True:
            data = os.pread(fd, chunk, position)
            at_eof = len(data) < chunk
            used, status, need = parse(data, base + position, out, budget)
            position += used
            if status == FULL:
                return base + position, True
            if status == END and at_eof:
                return base + position, False
            if status == END:
                continue
            if status == NEED_MORE and not at_eof and need <= os.fstat(fd).st_size - position:
                chunk = max(READ_CHUNK, need)
                continue
            # A bad record, or one longer than the data there is: in progress, torn or corrupt. Read what
            # is there now: a record that was still being written a moment ago is complete by now, and
            # must be read, not skipped as torn.
            rest = os.pread(fd, max(0, os.fstat(fd).st_size - position), position)
            used, status, _ = parse(rest, base + position, out, budget)
            if used:
                position += used
                if status == FULL:
                    return base + position, True
                continue
            skip = resync(rest)
            if skip is None:  # an append in progress, or torn with nothing valid after it (yet)
                if complete and rest:
                    skipped(directory, base + position, len(rest))
                return base + position, False
            skipped(directory, base + position, skip)
            position += skip
    finally:
        os.close(fd)


def skipped(directory: Path, offset: int, size: int) -> None:
    log.warning(
        "streaming log %s: skipped %d bytes of a torn or corrupt record at offset %d",
        directory.name,
        size,
        offset,
    )
