"""Files on the server's disk: a folder a connection is confined to, and the decoders that turn its
delimited, JSON and Parquet files into Arrow record batches without loading a whole file.

Confinement: every path a connection names is resolved (symlinks and ``..`` included) and must land
inside the root; a path or glob that reaches outside is refused, never silently skipped. Files whose name
starts with ``.`` are left out of globs and folders (an uploader writes ``.name.partial`` and renames it
when complete), but may be named explicitly.

Decoding decisions:

- Delimited columns are read as strings unless ``infer_types`` is set: the mapping engine converts types,
  so a zip code like ``007`` keeps its zeros and a file reads the same whatever its first block holds.
  An empty field, quoted or not, is null.
- JSON is JSON lines, or one top-level array of objects. Lines are parsed a block at a time, so each
  block's types are inferred on their own: batches of one file may differ in schema (a field absent from
  a block is absent from its batch; a field null throughout a block has type null). A top-level array
  cannot be streamed and is parsed whole, up to :data:`MAX_JSON_ARRAY_BYTES`.
- Parquet keeps the file's own schema.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from headwater.connectors.errors import InvalidSourceParams, SourceNotFound
from headwater.connectors.files.config import FileInfo, SourceParams

MAX_JSON_ARRAY_BYTES = 256 << 20
GLOB_CHARS = frozenset("*?[")

Opener = Callable[[], pa.NativeFile]


class Files(Protocol):
    """A connection's folder: :class:`Folder` on a disk, ``objects.ObjectFolder`` in the lake's bucket.
    ``match`` pairs each file with what ``opener`` opens (a resolved path, an object's key)."""

    def match(self, pattern: str) -> list[tuple[FileInfo, Any]]: ...

    def entries(self, folder: str) -> list[tuple[str, str, str]]: ...

    def opener(self, found: Any, rel: str, codec: str | None) -> Opener: ...


class Folder:
    """A root folder and the files inside it. Every method refuses paths that leave the root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, root: Path, shown: str) -> Folder:
        """The folder at ``root``, an absolute path already resolved and allowed (``roots.confine``);
        :class:`InvalidSourceParams` if it is not a folder, or no longer resolves to itself (a symlink
        swapped in since it was checked). ``shown`` names it in messages (never the server's path)."""
        try:
            resolved = root.resolve(strict=True)
        except (OSError, RuntimeError):
            raise InvalidSourceParams(
                f"The connection's folder {shown!r} does not exist: create it, or fix auth.params.rootPath."
            ) from None
        if resolved != root:
            raise InvalidSourceParams(f"The connection's folder {shown!r} changed while it was opened.")
        if not resolved.is_dir():
            raise InvalidSourceParams(f"The connection's rootPath {shown!r} is not a folder.")
        return cls(resolved)

    def match(self, pattern: str) -> list[tuple[FileInfo, Path]]:
        """The files ``pattern`` names, sorted by relative path. ``pattern`` is a file, a folder (its files,
        one level deep) or a glob, relative to the root; a literal path that does not exist is
        :class:`SourceNotFound`, a glob that matches nothing is an empty list."""
        relative = relative_pattern(pattern)
        if GLOB_CHARS.intersection(relative):
            candidates = [p for p in self.root.glob(relative) if not _hidden(p, self.root)]
        else:
            target = self.root / relative
            if not target.exists() and not target.is_symlink():
                raise SourceNotFound(f"{relative} does not exist under the connection's folder; check path.")
            base = self._inside(target, relative)
            visible = [p for p in base.iterdir() if not p.name.startswith(".")] if base.is_dir() else []
            candidates = visible if base.is_dir() else [target]
        found = []
        for candidate in candidates:
            if not candidate.exists():  # a dangling symlink
                continue
            rel = candidate.relative_to(self.root).as_posix()
            resolved = self._inside(candidate, rel)
            if resolved.is_file():
                found.append((_info(rel, resolved), resolved))
        return sorted(found, key=lambda item: item[0].path)

    def entries(self, folder: str) -> list[tuple[str, str, str]]:
        """``(name, "folder" | "file", relative path)`` for each visible entry of ``folder``, sorted."""
        relative = relative_pattern(folder) if folder.strip("/ ") else "."
        base = self._inside(self.root / relative, folder)
        if not base.is_dir():
            raise SourceNotFound(f"{folder} is not a folder under the connection's folder.")
        out = []
        for child in sorted(base.iterdir(), key=lambda p: p.name):
            try:
                resolved = child.resolve(strict=True)
            except OSError:
                continue
            if child.name.startswith(".") or not resolved.is_relative_to(self.root):
                continue
            kind = "folder" if resolved.is_dir() else "file"
            out.append((child.name, kind, child.relative_to(self.root).as_posix()))
        return out

    def opener(self, found: Path, rel: str, codec: str | None) -> Opener:
        """:func:`opener` for a file :meth:`match` found."""
        return opener(found, rel, codec, self.root)

    def _inside(self, path: Path, shown: str) -> Path:
        try:
            resolved = path.resolve(strict=True)
        except OSError:
            raise SourceNotFound(
                f"{shown} does not exist under the connection's folder; check path."
            ) from None
        if not resolved.is_relative_to(self.root):
            raise InvalidSourceParams(
                f"{shown} leads outside the connection's folder; only files inside rootPath can be read."
            )
        return resolved


def relative_pattern(pattern: str) -> str:
    if "\0" in pattern:
        raise InvalidSourceParams("path may not contain NUL characters.")
    pure = PurePosixPath(pattern)
    if pure.is_absolute() or ".." in pure.parts:
        raise InvalidSourceParams(
            f"path {pattern!r} must be relative to the connection's folder and may not contain '..'."
        )
    return str(pure)


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _info(rel: str, path: Path) -> FileInfo:
    st = path.stat()
    return FileInfo(path=rel, size=st.st_size, mtime_ns=st.st_mtime_ns)


def opener(path: Path, rel: str, codec: str | None, root: Path) -> Opener:
    """A function opening ``path`` for reading, decompressed with ``codec`` (gzip | zstd | None). Each
    open checks what was opened: a regular file, still inside ``root`` (a symlink swapped in for the file
    or for a folder above it since the path was resolved is refused). The caller closes the stream."""

    def open_stream() -> pa.NativeFile:
        # O_NONBLOCK: a FIFO planted in the folder must not hang the open; regular files ignore it.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
        try:
            _check_opened(fd, path, rel, root)
            os.set_blocking(fd, True)
            raw = pa.PythonFile(os.fdopen(fd, "rb"), mode="r")
        except BaseException:
            os.close(fd)
            raise
        return pa.CompressedInputStream(raw, codec) if codec else raw

    return open_stream


def _check_opened(fd: int, path: Path, rel: str, root: Path) -> None:
    """Refuse the open file ``fd`` unless it is a regular file inside ``root``."""
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode):
        raise InvalidSourceParams(f"{rel} is not a regular file.")
    if not _opened_path(fd, path, opened).is_relative_to(root):
        raise InvalidSourceParams(
            f"{rel} leads outside the connection's folder; only files inside rootPath can be read."
        )


def _opened_path(fd: int, path: Path, opened: os.stat_result) -> Path:
    """Where the open file ``fd`` is: from ``/proc/self/fd`` (Linux), else ``path`` resolved again, if
    that is still the same file (same device and inode), else an empty path (which no root contains)."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
    try:
        again = path.resolve(strict=True)
        now = again.stat()
    except (OSError, RuntimeError):
        return Path()
    return again if (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino) else Path()


# --- delimited -------------------------------------------------------------------------------------


def delimited_batches(open_stream: Opener, source: SourceParams) -> Iterator[pa.RecordBatch]:
    names = delimited_names(open_stream, source)
    if names is None:
        return
    read, parse, convert = _csv_options(source, names)
    with open_stream() as stream:
        yield from pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)


def delimited_schema(open_stream: Opener, source: SourceParams) -> pa.Schema:
    names = delimited_names(open_stream, source) or []
    if source.delimited.infer_types:
        read, parse, convert = _csv_options(source, names)
        with open_stream() as stream:
            reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
            return reader.schema
    selected = source.columns if source.columns and source.delimited.header else names
    return pa.schema([(name, pa.string()) for name in selected])


def delimited_names(open_stream: Opener, source: SourceParams) -> list[str] | None:
    """The file's column names (from its header, ``columns`` or generated f0, f1, ...); None if empty."""
    options = source.delimited
    with open_stream() as stream:
        if not stream.read(1):
            return None
    if not options.header and source.columns:
        return list(source.columns)
    read = pacsv.ReadOptions(
        block_size=source.block_size,
        encoding=_arrow_encoding(source.encoding),
        autogenerate_column_names=not options.header,
    )
    with open_stream() as stream:
        reader = pacsv.open_csv(stream, read_options=read, parse_options=_parse_options(source))
        return list(reader.schema.names)


def _csv_options(
    source: SourceParams, names: list[str]
) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
    options = source.delimited
    read = pacsv.ReadOptions(
        block_size=source.block_size,
        encoding=_arrow_encoding(source.encoding),
        column_names=names,
        skip_rows=1 if options.header else 0,
    )
    convert = pacsv.ConvertOptions(
        column_types=None if options.infer_types else {name: pa.string() for name in names},
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        null_values=[""],
        include_columns=list(source.columns) if source.columns and options.header else None,
    )
    return read, _parse_options(source), convert


def _parse_options(source: SourceParams) -> pacsv.ParseOptions:
    options = source.delimited
    return pacsv.ParseOptions(
        delimiter=options.delimiter,
        quote_char=options.quote_char or False,
        escape_char=options.escape_char or False,
        double_quote=True,
        newlines_in_values=options.quote_char is not None,
    )


def _arrow_encoding(encoding: str) -> str:
    return "utf8" if encoding == "utf-8" else encoding


# --- JSON ------------------------------------------------------------------------------------------


def json_batches(open_stream: Opener, source: SourceParams) -> Iterator[pa.RecordBatch]:
    for table in _json_tables(open_stream, source):
        if source.columns:
            table = table.select([name for name in source.columns if name in table.column_names])
        yield from table.to_batches()


def json_schema(open_stream: Opener, source: SourceParams) -> pa.Schema:
    for table in _json_tables(open_stream, source):
        return table.schema
    return pa.schema([])


def _json_tables(open_stream: Opener, source: SourceParams) -> Iterator[pa.Table]:
    with open_stream() as raw:
        stream = raw
        if source.encoding != "utf-8":
            stream = pa.transcoding_input_stream(raw, source.encoding, "utf-8")
        first = stream.read(source.block_size).removeprefix(b"\xef\xbb\xbf")
        if first.lstrip()[:1] == b"[":
            yield from _json_array(first, stream)
            return
        for chunk in _line_chunks(first, stream, source.block_size):
            yield pajson.read_json(pa.BufferReader(chunk))


def _line_chunks(first: bytes, stream: pa.NativeFile, block_size: int) -> Iterator[bytes]:
    """Blocks of whole lines: each ends at the last newline seen, the rest carries to the next one."""
    carry = b""
    chunk = first
    while chunk:
        data = carry + chunk if carry else chunk
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if cut and data[:cut].strip():
            yield data[:cut]
        chunk = stream.read(block_size)
    if carry.strip():
        yield carry


def _json_array(first: bytes, stream: pa.NativeFile) -> Iterator[pa.Table]:
    import orjson

    data = first + stream.read(MAX_JSON_ARRAY_BYTES + 1 - len(first))
    if len(data) > MAX_JSON_ARRAY_BYTES:
        raise InvalidSourceParams(
            f"A top-level JSON array is parsed whole and may hold at most {MAX_JSON_ARRAY_BYTES >> 20} MiB; "
            "write larger files as JSON lines (one object per line)."
        )
    items = orjson.loads(data)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise InvalidSourceParams("A JSON file must hold one object per line or one array of objects.")
    step = 65_536
    for start in range(0, len(items), step):
        lines = b"\n".join(orjson.dumps(item) for item in items[start : start + step])
        yield pajson.read_json(pa.BufferReader(lines))


# --- Parquet ---------------------------------------------------------------------------------------


def parquet_batches(open_stream: Opener, source: SourceParams, batch_size: int) -> Iterator[pa.RecordBatch]:
    with open_stream() as stream:
        columns = list(source.columns) if source.columns else None
        yield from pq.ParquetFile(stream).iter_batches(batch_size=batch_size, columns=columns)


def parquet_schema(open_stream: Opener, source: SourceParams) -> pa.Schema:
    with open_stream() as stream:
        schema = pq.ParquetFile(stream).schema_arrow
    if source.columns:
        return pa.schema([schema.field(name) for name in source.columns])
    return schema
