"""A batch's staging area on object storage: what services/batchingest.py keeps in
``WAREHOUSE/_ingest/{batchId}/{datasetId}/`` when the lake is on S3, under
``<HEADWATER_LAKE_URL>/_ingest/{batchId}/{datasetId}/`` instead, so that any API server takes any request
of an upload and any worker promotes the batch.

S3 objects are written whole and never appended to, and there is no file lock to share, so:

- a small file (``PUT``, no ``Content-Range``) is one object, written whole (stores/objectfiles.py): it
  is all there or absent;
- a chunked file is INITIALIZEd as a marker object ``.{name}.chunks/init``; each chunk is its own object
  ``.{name}.chunks/{start}-{end}-{total}`` (zero-padded), published only once its body was read whole
  and matched its range. Sending a chunk again writes the same object again (idempotent), on whichever
  node; the listing of the chunk objects is the record of ranges, so no lock is needed;
- ``?action=COMPLETE`` checks that the chunks cover ``0..total-1`` with no gap and no overlap (the same
  rule and answers as on a disk), streams them in order into the file's object (a megabyte at a time:
  memory stays bounded whatever the file's size), deletes the marker, then the chunks. Completing again
  answers the size, also after a node died while deleting them (the marker gone first).

A store that fails is LakeUnavailable (503): nothing the client sent is acknowledged.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from headwater.errors import BadRequest, NotFound
from headwater.stores.objectfiles import ObjectFiles, unavailable

if TYPE_CHECKING:
    from headwater.services.batchingest import ChunkRange

_CHUNK = re.compile(r"^(\d{19})-(\d{19})-(\d{19})$")
_MARKER = "init"


@dataclass(frozen=True)
class StagedFile:
    """A file of a batch, ready for promotion: on the home's disk (``path``) or an object (``open``)."""

    name: str
    size: int
    path: Path | None
    open: Callable[[], pa.NativeFile]  # random access; the caller closes it


def bad(message: str, field: str, code: str = "INGEST-1400-400") -> BadRequest:
    return BadRequest(message, code=code, report={"field": field})


def check_cover(name: str, total: int, ranges: list[tuple[int, int]]) -> None:
    """The chunks' ``ranges`` (inclusive) must cover ``0..total-1`` exactly; 400 naming what is not."""
    expected = 0
    for start, end in sorted(ranges):
        if start < expected:
            raise bad(f"Chunks of {name!r} overlap at byte {start}.", "Content-Range")
        if start > expected:
            raise bad(f"Bytes {expected}-{start - 1} of {name!r} were never sent.", "Content-Range")
        expected = end + 1
    if expected != total:
        raise bad(f"Bytes {expected}-{total - 1} of {name!r} were never sent.", "Content-Range")


def not_initialized(name: str) -> NotFound:
    return NotFound(
        f"No chunked upload of {name!r} in this batch: start it with POST …/files/{name}?action=INITIALIZE.",
        code="INGEST-1404-404",
        report={"field": "fileName"},
    )


class ObjectStaging:
    """Staging areas as objects of ``files`` (the ``_ingest`` area of the lake's bucket); an area is
    ``{batchId}/{datasetId}``."""

    def __init__(self, files: ObjectFiles) -> None:
        self.files = files

    # --- whole files ---
    def names(self, area: str) -> list[str]:
        """The files of the area (not the hidden chunked uploads)."""
        with unavailable("listing a batch's files"):
            found = self.files.list(area)
        return sorted(n for e in found if not (n := e.key.rpartition("/")[2]).startswith("."))

    def exists(self, area: str, name: str) -> bool:
        with unavailable("reading a batch's files"):
            return self.files.stat(f"{area}/{name}") is not None

    async def put(
        self, area: str, name: str, body: AsyncIterator[bytes], limit: Callable[[int], None]
    ) -> int:
        """Write ``body`` as ``name`` (whole or not at all); ``limit(size so far)`` may raise to refuse it."""
        with unavailable("storing a batch's file"):
            return await self.files.write_stream(f"{area}/{name}", body, limit)

    def staged(self, area: str) -> list[StagedFile]:
        with unavailable("listing a batch's files"):
            found = self.files.list(area)
        out = []
        for entry in sorted(found, key=lambda e: e.key):
            name = entry.key.rpartition("/")[2]
            if not name.startswith("."):
                out.append(StagedFile(name, entry.size, None, self._opener(entry.key)))
        return out

    def _opener(self, key: str) -> Callable[[], pa.NativeFile]:
        return lambda: self.files.filesystem.open_input_file(self.files.location(key))

    def remove(self, batch_id: str) -> None:
        with unavailable("removing a batch's files"):
            self.files.delete_tree(batch_id)

    # --- chunked files ---
    def _chunks(self, area: str, name: str) -> str:
        return f"{area}/.{name}.chunks"

    def initialize(self, area: str, name: str) -> None:
        prefix = self._chunks(area, name)
        with unavailable("starting a chunked upload"):
            self.files.delete_tree(prefix)
            with self.files.writer(f"{prefix}/{_MARKER}"):
                pass

    def _ranges(self, prefix: str) -> tuple[bool, list[tuple[int, int, int, str]]]:
        """(initialized, the chunks as (start, end, total, key))."""
        with unavailable("reading a chunked upload"):
            found = self.files.list(prefix)
        initialized, chunks = False, []
        for entry in found:
            leaf = entry.key.rpartition("/")[2]
            if leaf == _MARKER:
                initialized = True
            elif match := _CHUNK.match(leaf):
                start, end, total = (int(g) for g in match.groups())
                chunks.append((start, end, total, entry.key))
        return initialized, sorted(chunks)

    async def put_chunk(self, area: str, name: str, span: ChunkRange, body: AsyncIterator[bytes]) -> int:
        prefix = self._chunks(area, name)
        initialized, chunks = self._ranges(prefix)
        if not initialized:
            raise not_initialized(name)
        totals = {total for _, _, total, _ in chunks}
        if totals and totals != {span.total}:
            raise bad(
                f"Content-Range total {span.total} differs from earlier chunks' ({min(totals)}).",
                "Content-Range",
            )

        def limit(size: int) -> None:
            if size > span.length:
                raise bad(
                    f"The body is longer than the {span.length} bytes Content-Range names.", "Content-Range"
                )

        async def checked() -> AsyncIterator[bytes]:
            written = 0
            async for chunk in body:
                written += len(chunk)
                yield chunk
            if written != span.length:  # raised inside put: the chunk is not published
                raise bad(
                    f"The body holds {written} bytes; Content-Range names {span.length}.", "Content-Range"
                )

        key = f"{span.start:019d}-{span.end:019d}-{span.total:019d}"
        return await self.put(prefix, key, checked(), limit)

    def complete(self, area: str, name: str) -> int:
        prefix = self._chunks(area, name)
        initialized, chunks = self._ranges(prefix)
        final = f"{area}/{name}"
        if not initialized:
            with unavailable("reading a batch's files"):
                done = self.files.stat(final)
            if done is not None:
                return done.size
            raise NotFound(
                f"No chunked upload of {name!r} in this batch.",
                code="INGEST-1404-404",
                report={"field": "fileName"},
            )
        totals = {total for _, _, total, _ in chunks}
        if len(totals) > 1:
            raise bad("Content-Range total differs from the total of earlier chunks.", "Content-Range")
        total = totals.pop() if totals else 0
        check_cover(name, total, [(start, end) for start, end, _, _ in chunks])
        with unavailable("assembling a chunked file"):
            with self.files.writer(final) as out:
                for *_, key in chunks:
                    for piece in self.files.chunks(key):
                        out.write(piece)
            # The marker first: a node killed while it deletes the chunks leaves an upload that reads as
            # complete (the file's size) to a COMPLETE sent again, not as one missing its first chunks.
            self.files.delete(f"{prefix}/{_MARKER}")
            self.files.delete_tree(prefix)
        return total
