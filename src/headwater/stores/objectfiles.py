"""Files the platform keeps beside the lake that every node must see (row errors, query results): a folder
of the home (the embedded default) or, with the lake on object storage (``HEADWATER_LAKE_URL``), a prefix
of the lake's bucket, ``s3://bucket/prefix/<area>/...``.

Both go through pyarrow's own file systems (``LocalFileSystem``, ``S3FileSystem`` made from the same
HEADWATER_S3_* settings as the lake's); there is no other client. Keys are relative to the area, with
``/`` between their parts (``{batchId}/row_errors.json``).

CONTRACT:

- :meth:`ObjectFiles.writer` is atomic: readers see the whole file or none. It writes under a hidden name
  beside the key and moves it into place once the writer's block ends (a rename on a disk, a server-side
  copy and delete on S3, whose objects are never appended to); a block that raises leaves nothing.
- Nothing is appended to: an object is written whole (:attr:`ObjectFiles.appendable` tells a folder).
- A store that fails raises ``OSError`` (pyarrow's), a missing key ``FileNotFoundError``: callers that
  answer a request turn the first into an ``Unavailable`` of theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from pyarrow import fs

from headwater.errors import LakeUnavailable

if TYPE_CHECKING:
    from headwater.settings import Settings

CHUNK_BYTES = 1024 * 1024  # read at a time by :meth:`ObjectFiles.chunks`
# A store that does not answer fails the call within these (as the lake's FileIO does).
_CONNECT_TIMEOUT_S = 5.0
_REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Entry:
    key: str
    size: int
    written_ms: int


class ObjectFiles:
    """The files of one area: ``root`` on ``filesystem`` (a folder's path, or ``bucket/prefix/area``)."""

    def __init__(self, filesystem: fs.FileSystem, root: str) -> None:
        self.filesystem = filesystem
        self.root = root.rstrip("/")
        self.appendable = isinstance(filesystem, fs.LocalFileSystem)

    @classmethod
    def folder(cls, path: Path) -> ObjectFiles:
        return cls(fs.LocalFileSystem(), str(path))

    def location(self, key: str) -> str:
        """Where ``key`` is, as pyarrow names it (a path, or ``bucket/prefix/...``)."""
        return f"{self.root}/{key}"

    def url(self, key: str) -> str:
        """``key`` as a URL: ``file:///...`` or ``s3://bucket/...`` (for logs and tests)."""
        return Path(self.location(key)).as_uri() if self.appendable else f"s3://{self.location(key)}"

    # --- writing ---
    @contextlib.contextmanager
    def writer(self, key: str, keep_empty: bool = True) -> Iterator[pa.NativeFile]:
        """A stream whose bytes become ``key`` (replacing it) when the block ends without raising (unless
        nothing was written and not ``keep_empty``)."""
        target = self.location(key)
        folder, _, name = target.rpartition("/")
        hidden = f"{folder}/.{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._parent(target)
        out = self.filesystem.open_output_stream(hidden)
        try:
            yield out
        except BaseException:
            with contextlib.suppress(OSError):
                out.close()
                self.filesystem.delete_file(hidden)
            raise
        written = out.tell()
        out.close()
        if written or keep_empty:
            self.filesystem.move(hidden, target)
        else:
            self.filesystem.delete_file(hidden)

    async def write_stream(
        self, key: str, body: AsyncIterator[bytes], limit: Callable[[int], None] | None = None
    ) -> int:
        """Write ``body`` as ``key`` (whole or not at all, as :meth:`writer`), the store's calls off the
        event loop; ``limit(size so far)`` may raise to refuse it. Returns the size."""
        size = 0
        block = self.writer(key)
        out = await asyncio.to_thread(block.__enter__)
        try:
            async for chunk in body:
                size += len(chunk)
                if limit is not None:
                    limit(size)
                await asyncio.to_thread(out.write, chunk)
        except BaseException as exc:
            await asyncio.to_thread(block.__exit__, type(exc), exc, exc.__traceback__)
            raise
        await asyncio.to_thread(block.__exit__, None, None, None)
        return size

    def _parent(self, target: str) -> None:
        if self.appendable:  # S3 has no folders to make
            self.filesystem.create_dir(target.rpartition("/")[0], recursive=True)

    # --- reading ---
    def open(self, key: str) -> pa.NativeFile:
        """``key`` for random access (memory-mapped on a disk); the caller closes it."""
        if self.appendable:
            return pa.memory_map(self.location(key))
        return self.filesystem.open_input_file(self.location(key))

    def chunks(self, key: str) -> Iterator[bytes]:
        """The bytes of ``key``, :data:`CHUNK_BYTES` at a time."""
        with self.filesystem.open_input_stream(self.location(key)) as source:
            while chunk := source.read(CHUNK_BYTES):
                yield chunk

    def read_bytes(self, key: str) -> bytes:
        return b"".join(self.chunks(key))

    def stat(self, key: str) -> Entry | None:
        info = self.filesystem.get_file_info(self.location(key))
        return self._entry(info) if info.type == fs.FileType.File else None

    def list(self, prefix: str = "", recursive: bool = False) -> list[Entry]:
        """The files under ``prefix`` (a folder of keys; "" is the area), hidden ones included."""
        base = f"{self.root}/{prefix}".rstrip("/")
        selector = fs.FileSelector(base, allow_not_found=True, recursive=recursive)
        found = self.filesystem.get_file_info(selector)
        return [self._entry(i) for i in found if i.type == fs.FileType.File]

    def _entry(self, info: fs.FileInfo) -> Entry:
        key = info.path.removeprefix(self.root + "/")
        return Entry(key, int(info.size or 0), int((info.mtime_ns or 0) // 1_000_000))

    # --- removing ---
    def delete(self, key: str) -> None:
        """Delete ``key``; a missing key is no error."""
        with contextlib.suppress(FileNotFoundError):
            self.filesystem.delete_file(self.location(key))

    def delete_tree(self, prefix: str) -> None:
        """Delete every file under ``prefix`` (and the folder, on a disk)."""
        for entry in self.list(prefix, recursive=True):
            self.delete(entry.key)
        if self.appendable:
            with contextlib.suppress(FileNotFoundError):
                self.filesystem.delete_dir(self.location(prefix))

    def sweep(self, older_than_ms: int, suffix: str = "") -> int:
        """Delete the area's top-level files (hidden leftovers of writers included) whose names contain
        ``suffix`` and that were last written before ``older_than_ms``; how many."""
        removed = 0
        for entry in self.list():
            if suffix in entry.key and entry.written_ms < older_than_ms:
                with contextlib.suppress(FileNotFoundError):  # another node swept it meanwhile
                    self.filesystem.delete_file(self.location(entry.key))
                    removed += 1
        return removed


@contextlib.contextmanager
def unavailable(doing: str) -> Iterator[None]:
    """A failing store (an ``OSError`` other than a missing file) as LakeUnavailable, a 503 that says
    what failed; the host and the store's message only reach the logs."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as exc:
        detail = f"The lake's store failed {doing} ({type(exc).__name__}); retry later."
        raise LakeUnavailable(f"{doing}: {exc!r}", detail=detail) from exc


def on_objects(settings: Settings) -> bool:
    """Whether the lake, and so every file of :func:`object_files`, is on object storage."""
    return settings.lake_url is not None


def object_files(settings: Settings, area: str, folder: Path) -> ObjectFiles:
    """The files of ``area``: ``folder`` with the lake in the home, ``<HEADWATER_LAKE_URL>/<area>`` with
    the lake on object storage."""
    if settings.lake_url is None:
        return ObjectFiles.folder(folder)
    return ObjectFiles(_s3(*_s3_options(settings)), f"{settings.lake_url.removeprefix('s3://')}/{area}")


def _s3_options(settings: Settings) -> tuple[str | None, str | None, str, str | None, bool]:
    secret = settings.s3_secret_access_key
    return (
        settings.s3_access_key_id,
        secret.get_secret_value() if secret is not None else None,
        settings.s3_region,
        settings.s3_endpoint,
        settings.s3_path_style,
    )


@functools.lru_cache(maxsize=8)
def _s3(
    access_key: str | None, secret_key: str | None, region: str, endpoint: str | None, path_style: bool
) -> fs.S3FileSystem:
    """One S3FileSystem per set of settings (each holds its connection pool), as the lake's FileIO makes
    it: the same region, endpoint, addressing and time limits."""
    return fs.S3FileSystem(
        access_key=access_key,
        secret_key=secret_key,
        region=region,
        endpoint_override=endpoint.rstrip("/") if endpoint else None,
        force_virtual_addressing=not path_style,
        connect_timeout=_CONNECT_TIMEOUT_S,
        request_timeout=_REQUEST_TIMEOUT_S,
    )
