"""Where the CSV files of bulk ingestion jobs (services/data360/bulk.py) are kept: in the home,
``HOME/ingest-jobs/{org}/{sandbox}/{job}/``, or with the lake on S3 under
``<HEADWATER_LAKE_URL>/_ingestjobs/{org}/{sandbox}/{job}/`` (stores/objectfiles.py), so that the node
that processes a job reads the files whichever API server took them.

A file is stored, then checked whole (``check``), and only then named in the job, so a processor never
reads a file that is not complete and checked: on a disk it is written as ``{name}.part`` and renamed;
on S3 it is one object, written whole, and deleted again if the check refuses it (its name is new, and
nothing reads a file the job does not name).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.errors import PayloadTooLarge
from headwater.services.data360.bulkcsv import Source
from headwater.stores.objectfiles import object_files, on_objects, unavailable

if TYPE_CHECKING:
    from headwater.settings import Settings
    from headwater.stores.metadata import Scope

log = logging.getLogger("headwater.data360.bulk")

AREA = "_ingestjobs"


class JobFiles:
    def __init__(self, settings: Settings, max_bytes: int) -> None:
        self.home = settings.home
        self.max_bytes = max_bytes
        self.objects = (
            object_files(settings, AREA, self.home / "ingest-jobs") if on_objects(settings) else None
        )

    def folder(self, scope: Scope, ident: str) -> Path:
        """The job's folder in the home (with the lake on a disk)."""
        return self.home / "ingest-jobs" / self._relative(scope, ident)

    def _relative(self, scope: Scope, ident: str) -> str:
        return f"{_safe(scope.org_id)}/{scope.sandbox_id}/{ident}"

    def _limit(self, size: int) -> None:
        if size > self.max_bytes:
            raise PayloadTooLarge(f"A job's file is at most {self.max_bytes} bytes.", code="INGEST-1413-413")

    async def store(
        self,
        scope: Scope,
        ident: str,
        name: str,
        chunks: AsyncIterator[bytes],
        check: Callable[[Source], int],
    ) -> tuple[int, int]:
        """Store ``chunks`` as the job's file ``name`` and check it (``check(source) -> rows``, run in a
        thread; what it raises removes the file). Returns (size, rows)."""
        import anyio.to_thread

        if self.objects is not None:
            key = f"{self._relative(scope, ident)}/{name}"
            with unavailable("storing a job's file"):
                size = await self.objects.write_stream(key, chunks, self._limit)
            try:
                rows = await anyio.to_thread.run_sync(check, self.source(scope, ident, name))
            except BaseException:
                await anyio.to_thread.run_sync(self.remove, scope, ident, name)
                raise
            return size, rows
        folder = self.folder(scope, ident)
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / (name + ".part")
        size = 0
        try:
            with partial.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    self._limit(size)
                    out.write(chunk)
            rows = await anyio.to_thread.run_sync(check, partial)
            partial.rename(folder / name)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return size, rows

    def source(self, scope: Scope, ident: str, name: str) -> Source:
        """The stored file ``name``, for bulkcsv: a path, or a function opening its object."""
        objects = self.objects
        if objects is None:
            return self.folder(scope, ident) / name
        key = f"{self._relative(scope, ident)}/{name}"

        def open_object() -> Any:
            with unavailable("reading a job's file"):
                return objects.filesystem.open_input_stream(objects.location(key), compression=None)

        return open_object

    def remove(self, scope: Scope, ident: str, name: str) -> None:
        if self.objects is not None:
            with unavailable("removing a job's file"):
                self.objects.delete(f"{self._relative(scope, ident)}/{name}")
        else:
            (self.folder(scope, ident) / name).unlink(missing_ok=True)

    def forget(self, scope: Scope, ident: str) -> None:
        """Delete every file of the job (best effort)."""
        if self.objects is not None:
            try:
                self.objects.delete_tree(self._relative(scope, ident))
            except OSError:  # a leftover is only garbage: the job no longer names its files
                log.warning("could not remove the files of job %s", ident, exc_info=True)
        else:
            shutil.rmtree(self.folder(scope, ident), ignore_errors=True)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
