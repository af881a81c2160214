"""Copying the local streaming log (``HOME/streams``, see stores/log/local.py) while it is appended to
and released.

Segments are append-only and named by their first offset; a consumer saves its position (in its
table's snapshot, or its activationState) before it releases the segments behind it. So the log is
copied in two passes around the database snapshot: the first before it, which holds every segment
still present then, hence every record at or after any position the snapshot can hold; the second
after it, which adds what was appended since. A segment released between the passes is kept from
the first. What could still be lost, and is checked (:class:`Raced`, the backup starts over): bytes
appended to a segment after the first pass copied it and released before the second (the copied
segments would not be contiguous), and a stream that appeared and released its first segment
between the passes.

At the end, each stream's last segment is cut after its last whole record: an append in progress
during the copy was never acknowledged before it, and a restored log starts on a record boundary.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable
from pathlib import Path

from headwater.services.backup.copying import copy_growth
from headwater.services.backup.manifest import Raced
from headwater.stores.log.base import check_stream_name
from headwater.stores.log.frames import BAD, END, FULL, NEED_MORE, parse, resync
from headwater.stores.log.segments import segment_path

_SEGMENT = re.compile(r"(\d{20})\.log")


class LogCopy:
    """The copy of the log in ``source`` into ``target``: :meth:`copy` once before the database
    snapshot and once after, then :meth:`finish`."""

    def __init__(self, source: Path, target: Path) -> None:
        self.source = source
        self.target = target
        self._passes = 0
        self._first_pass: set[str] = set()

    def pending_bytes(self) -> int:
        """About how many bytes the next :meth:`copy` reads (for progress)."""
        total = 0
        for stream in streams(self.source):
            for base in segments(self.source / stream):
                mine = segment_path(self.target / stream, base)
                try:
                    total += os.stat(segment_path(self.source / stream, base)).st_size
                except FileNotFoundError:
                    continue
                total -= mine.stat().st_size if mine.exists() else 0
        return max(total, 0)

    def copy(self, advance: Callable[[int], None] | None = None) -> None:
        self._passes += 1
        for stream in streams(self.source):
            if self._passes == 1:
                self._first_pass.add(stream)
            for base in segments(self.source / stream):
                source = segment_path(self.source / stream, base)
                try:
                    copy_growth(source, segment_path(self.target / stream, base), advance)
                except FileNotFoundError:  # released meanwhile: kept from an earlier pass, or not needed
                    continue
            if self._passes > 1 and stream not in self._first_pass:
                bases = segments(self.target / stream)
                if bases and bases[0] != 0:
                    raise Raced(f"streaming log {stream}: a new stream released its first segment")

    def finish(self) -> dict[str, int]:
        """Check the copy has no gaps and cut each stream after its last whole record; returns each
        stream's end offset."""
        ends: dict[str, int] = {}
        for stream in streams(self.target):
            directory = self.target / stream
            bases = segments(directory)
            for base, following in itertools.pairwise(bases):
                if base + segment_path(directory, base).stat().st_size != following:
                    raise Raced(f"streaming log {stream}: segment {base} was released while it was copied")
            if not bases:
                continue
            last = segment_path(directory, bases[-1])
            end = whole_records_end(last)
            if end < last.stat().st_size:
                os.truncate(last, end)
            ends[stream] = bases[-1] + end
        return ends


def streams(root: Path) -> list[str]:
    """The stream folders of a log (its dot-folders hold locks and wake-up hints, not records)."""
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        try:
            check_stream_name(name)
        except ValueError:
            continue
        if (root / name).is_dir() and not (root / name).is_symlink():
            found.append(name)
    return found


def segments(directory: Path) -> list[int]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for name in names if (m := _SEGMENT.fullmatch(name)))


def whole_records_end(path: Path) -> int:
    """Where the last whole, valid record of the segment at ``path`` ends (a torn record in the
    middle, followed by valid ones, is passed over as the log's readers do)."""
    data = memoryview(path.read_bytes())
    position = end = 0
    while position < len(data):
        used, status, _ = parse(data[position:], position, [], [10_000, 1 << 62])  # type: ignore[arg-type]
        position += used
        if used:
            end = position
        if status in (FULL, END):
            continue
        assert status in (BAD, NEED_MORE)
        skip = resync(bytes(data[position:]))
        if skip is None:
            break
        position += skip
    return end
