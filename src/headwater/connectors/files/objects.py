"""A files connection's folder in the lake's bucket (with the lake on S3, ``roots.bucket_files``): the same
answers as ``client.Folder`` on a disk, over the objects under a key prefix.

Confinement is by construction: the root is a prefix inside the sandbox's files folder
(``roots.confine_key``), every path a source names is relative and free of ``..``
(``client.relative_pattern``), and the store never resolves a name, so a key read is always under the
root. S3 has no folders: a folder is the prefix of the objects below it, and a root that holds nothing
yet is an empty folder (uploads and an operator's S3 tool make it by writing into it). Hidden names
(``.`` first, e.g. a writer's temporary object) are left out as on a disk.

A store that fails while listing or opening is :class:`SourceUnavailable` (transient: the run is
retried); a missing file is :class:`SourceNotFound`.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Iterator

import pyarrow as pa
from pyarrow import fs

from headwater.connectors.errors import InvalidSourceParams, SourceNotFound, SourceUnavailable
from headwater.connectors.files.client import GLOB_CHARS, Opener, relative_pattern
from headwater.connectors.files.config import FileInfo
from headwater.stores.objectfiles import ObjectFiles


class ObjectFolder:
    """The objects under ``prefix`` of ``files``; every method refuses paths that leave it."""

    def __init__(self, files: ObjectFiles, prefix: str) -> None:
        self.files = files
        self.prefix = prefix.strip("/")

    @classmethod
    def open(cls, files: ObjectFiles, prefix: str, shown: str) -> ObjectFolder:
        """The folder at ``prefix`` (checked by ``roots.confine_key``); :class:`InvalidSourceParams` if
        an object of that name is a file."""
        with _store():
            if files.stat(prefix) is not None:
                raise InvalidSourceParams(f"The connection's rootPath {shown!r} is not a folder.")
        return cls(files, prefix)

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if relative not in ("", ".") else self.prefix

    def match(self, pattern: str) -> list[tuple[FileInfo, str]]:
        """As ``client.Folder.match``: a file, a folder's visible files (one level) or a glob, sorted;
        each with its key."""
        relative = relative_pattern(pattern)
        if GLOB_CHARS.intersection(relative):
            parts = relative.split("/")
            fixed = next(i for i, part in enumerate(parts) if GLOB_CHARS.intersection(part))
            base = "/".join(parts[:fixed])
            found = [
                info
                for info in self._files(base, recursive=True)
                if _glob(parts, info.path.split("/")) and not _hidden(info.path)
            ]
        else:
            with _store():
                single = self.files.stat(self._key(relative))
            if single is not None:
                found = [self._info(single.key, single.size, single.written_ms * 1_000_000)]
            else:
                found = [i for i in self._files(relative, recursive=False) if not _hidden(i.path)]
                if not found and relative != "." and not self._exists(relative):
                    raise SourceNotFound(
                        f"{relative} does not exist under the connection's folder; check path."
                    )
        return sorted(((info, self._key(info.path)) for info in found), key=lambda item: item[0].path)

    def entries(self, folder: str) -> list[tuple[str, str, str]]:
        """``(name, "folder" | "file", relative path)`` for each visible entry of ``folder``, sorted."""
        relative = relative_pattern(folder) if folder.strip("/ ") else "."
        base = self._key(relative)
        with _store():
            if relative != "." and self.files.stat(base) is not None:
                raise SourceNotFound(f"{folder} is not a folder under the connection's folder.")
            found = self.files.filesystem.get_file_info(
                fs.FileSelector(self.files.location(base), allow_not_found=True)
            )
        out = []
        for item in found:
            key = item.path.removeprefix(self.files.root + "/")
            name = key.rpartition("/")[2]
            if name.startswith(".") or item.type not in (fs.FileType.File, fs.FileType.Directory):
                continue
            kind = "folder" if item.type == fs.FileType.Directory else "file"
            out.append((name, kind, key.removeprefix(self.prefix + "/")))
        if not out and relative != "." and not self._exists(relative):
            raise SourceNotFound(f"{folder} is not a folder under the connection's folder.")
        return sorted(out)

    def opener(self, key: str, rel: str, codec: str | None) -> Opener:
        """A function opening the object ``key`` (one that :meth:`match` found) for random access,
        decompressed with ``codec``. The caller closes the stream."""
        if not key.startswith(self.prefix + "/"):  # match only returns keys under the root
            raise InvalidSourceParams(f"{rel} leads outside the connection's folder.")

        def open_stream() -> pa.NativeFile:
            with _store():
                raw = self.files.open(key)
            return pa.CompressedInputStream(raw, codec) if codec else raw

        return open_stream

    def _files(self, relative: str, recursive: bool) -> list[FileInfo]:
        with _store():
            found = self.files.list(self._key(relative), recursive=recursive)
        return [self._info(e.key, e.size, e.written_ms * 1_000_000) for e in found]

    def _exists(self, relative: str) -> bool:
        """Whether anything (a hidden object included) lies under ``relative``."""
        with _store():
            return bool(self.files.list(self._key(relative), recursive=True))

    def _info(self, key: str, size: int, mtime_ns: int) -> FileInfo:
        return FileInfo(path=key.removeprefix(self.prefix + "/"), size=size, mtime_ns=mtime_ns)


def _glob(pattern: list[str], parts: list[str]) -> bool:
    """Whether the key ``parts`` match the glob ``pattern`` as ``pathlib.Path.glob`` does: ``*``, ``?``
    and ``[...]`` within one name, ``**`` any number of folders."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_glob(rest, parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _glob(rest, parts[1:])


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/"))


@contextlib.contextmanager
def _store() -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        raise SourceNotFound("The file no longer exists under the connection's folder.") from None
    except OSError as exc:
        raise SourceUnavailable(
            f"The lake's store failed while reading the connection's files ({type(exc).__name__}); "
            "the run can be retried."
        ) from exc
