"""The files connectors: local folders (``local-files``) and Headwater's upload area (``uploaded-files``).

A read streams the files ``params.path`` names in sorted path order, each decoded in blocks (see
``client.py``), filtered to the request's window and re-cut into batches of exactly ``batch_size`` rows
(the last batch of each file may be shorter; a batch never spans two files). Memory stays bounded by the
block size and the batch size, whatever the files' sizes.

Incremental reads come in two kinds, and a runtime may combine them:

- Row windows: with ``delta_column``, a row is returned when its delta value v satisfies ``S < v <= E``.
  The column is read as a UTC instant: timestamps with a zone keep it; naive timestamps, dates and strings
  without an offset are in ``options["delta_timezone"]`` (default UTC); strings are ISO 8601 (``T`` or a
  space between date and time, optional fraction and offset), or follow ``options["delta_format"]``
  (strptime codes, e.g. ``%d/%m/%Y %H:%M``; a flow's Java ``deltaColumn.dateFormat`` translated by
  ``engines/javadate.py``) when given, values it does not fit being read as ISO 8601. A value that is
  null, empty or does not parse is returned only by reads with no lower bound, as the base contract says
  for nulls.
- New files: :meth:`LocalFilesConnector.files` lists the files a path names with size and mtime, and
  ``options["files"]`` (relative paths) restricts a read to those files (paths no longer matching are
  ignored). ``files_read`` lists the files the last read opened, in order.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from contextlib import closing
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc

from headwater.connectors.base import ExploreItem, ReadRequest, SourceConnector
from headwater.connectors.batches import rebatch
from headwater.connectors.errors import InvalidSourceParams, SourceNotFound
from headwater.connectors.files import client, objects, roots
from headwater.connectors.files.config import (
    FileInfo,
    SourceParams,
    compression_for,
    format_for,
    root_path,
    source_params,
)
from headwater.connectors.files.errors import reading

if TYPE_CHECKING:
    from headwater.connectors.outbound import OutboundPolicy
    from headwater.settings import Settings

UTC_US = pa.timestamp("us", "UTC")
_OFFSET = re.compile(r"\d:\d\d(:\d\d(\.\d+)?)?\s*(Z|[+-]\d\d(:?\d\d)?)$")


class LocalFilesConnector(SourceConnector):
    """Files under ``auth.params.rootPath``, a folder the allow list of ``roots`` admits (checked each
    time the connector opens it). The runtime names the connection's organization and sandbox in the auth
    params (``_orgId``, ``_sandboxName``); without them only ``HEADWATER_FILES_ROOTS`` is allowed."""

    def __init__(self, auth: dict[str, Any], outbound: OutboundPolicy, settings: Settings) -> None:
        super().__init__(auth, outbound, settings)
        self._folder: client.Files | None = None
        self.files_read: list[FileInfo] = []

    @property
    def folder(self) -> client.Files:
        if self._folder is None:
            self._folder = self._open_folder()
        return self._folder

    def _open_folder(self) -> client.Files:
        given = root_path(self.auth)
        place = roots.Place.of(self.auth)
        files = roots.bucket_files(self.settings)
        if files is not None and place is not None and roots.in_bucket(self.settings, place, given):
            return objects.ObjectFolder.open(files, roots.confine_key(place, given), given)
        return client.Folder.open(roots.confine(self.settings, place, given), given)

    def explore(self) -> list[ExploreItem]:
        return self.explore_path("")

    def explore_path(self, folder: str) -> list[ExploreItem]:
        """The files and folders directly inside ``folder`` (relative to the root; "" is the root)."""
        return [ExploreItem(name=n, type=kind, path=p) for n, kind, p in self.folder.entries(folder)]

    def files(self, params: dict[str, Any]) -> list[FileInfo]:
        """The files ``params.path`` names now, in the order a read visits them."""
        return [info for info, _ in self.folder.match(source_params(params).path)]

    def describe(
        self, name: str, params: dict[str, Any] | None = None, data_format: str | None = None
    ) -> pa.Schema:
        """The schema of the first file ``name`` (a path or glob) names, parsed with ``params``."""
        source = source_params({**(params or {}), "path": name})
        matches = self.folder.match(source.path)
        if not matches:
            raise SourceNotFound(f"No file matches {name!r} under the connection's folder.")
        info, found = matches[0]
        fmt = format_for(info.path, data_format)
        with reading(info.path):
            if fmt == "parquet":
                return client.parquet_schema(self.folder.opener(found, info.path, None), source)
            open_stream = self.folder.opener(found, info.path, compression_for(info.path, source.compression))
            if fmt == "json":
                return client.json_schema(open_stream, source)
            return client.delimited_schema(open_stream, source)

    def preview(
        self,
        name: str,
        limit: int = 10,
        params: dict[str, Any] | None = None,
        data_format: str | None = None,
    ) -> pa.Table:
        request = ReadRequest(
            params={**(params or {}), "path": name}, data_format=data_format or "", batch_size=limit
        )
        tables: list[pa.Table] = []
        rows = 0
        with closing(_generator(self.read(request))) as batches:
            for batch in batches:
                tables.append(pa.Table.from_batches([batch.slice(0, limit - rows)]))
                rows += tables[-1].num_rows
                if rows >= limit:
                    break
        if not tables:
            return self.describe(name, params, data_format).empty_table()
        return pa.concat_tables(tables, promote_options="permissive")

    def read(self, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        source = source_params(request.params, request.options)
        if request.batch_size < 1:
            raise InvalidSourceParams("batch_size must be at least 1.")
        window = Window.of(request)
        self.files_read = []
        for info, found in self._selected(source, request.options.get("files")):
            self.files_read.append(info)
            with reading(info.path):
                fmt = format_for(info.path, request.data_format)
                batches = self._decode(info.path, found, fmt, source, request)
                yield from rebatch((window.apply(batch) for batch in batches), request.batch_size)

    def _selected(self, source: SourceParams, only: Any) -> list[tuple[FileInfo, Any]]:
        matches = self.folder.match(source.path)
        if only is None:
            return matches
        if not isinstance(only, list | tuple | set | frozenset) or not all(isinstance(p, str) for p in only):
            raise InvalidSourceParams('options["files"] must be a list of paths relative to the root.')
        wanted = set(only)
        return [match for match in matches if match[0].path in wanted]

    def _decode(
        self, rel: str, found: Any, fmt: str, source: SourceParams, request: ReadRequest
    ) -> Iterator[pa.RecordBatch]:
        if fmt == "parquet":  # compressed inside; needs a seekable file
            return client.parquet_batches(self.folder.opener(found, rel, None), source, request.batch_size)
        open_stream = self.folder.opener(found, rel, compression_for(rel, source.compression))
        if fmt == "json":
            return client.json_batches(open_stream, source)
        return client.delimited_batches(open_stream, source)


class UploadedFilesConnector(LocalFilesConnector):
    """Files uploaded through Headwater's API, kept in the sandbox's files folder under
    ``uploads/<connection id>`` (``roots.uploads_area``, created when missing; with the lake on S3 the
    prefix ``roots.uploads_prefix`` of the lake's bucket).

    The runtime names the connection (``_connectionId``), its organization and sandbox in the auth
    params; without them nothing is readable. An uploader writes a hidden partial file and renames it
    when complete: hidden files are never read.
    """

    def _open_folder(self) -> client.Files:
        place = roots.Place.of(self.auth)
        connection_id = self.auth.get("_connectionId")
        if place is None or not isinstance(connection_id, str):
            raise InvalidSourceParams(
                "An Uploaded files connection is read in its organization and sandbox; none was named."
            )
        files = roots.bucket_files(self.settings)
        if files is not None:
            return objects.ObjectFolder.open(files, roots.uploads_prefix(place, connection_id), "uploads")
        area = roots.uploads_area(self.settings, place, connection_id)
        resolved = area.resolve()
        if not resolved.is_relative_to(roots.sandbox_area(self.settings, place).resolve()):
            raise InvalidSourceParams(
                "The connection's uploads folder leads outside its sandbox's files folder."
            )
        return client.Folder.open(resolved, "uploads")


class Window:
    """The rows of a batch inside ``(start, end]`` on the delta column (see the module docstring)."""

    def __init__(
        self,
        column: str | None,
        start: datetime | None,
        end: datetime | None,
        timezone: str = "UTC",
        fmt: str | None = None,
    ) -> None:
        self.column = column if start is not None or end is not None else None
        self.start = _utc(start)
        self.end = _utc(end)
        self.timezone = timezone
        self.fmt = fmt
        if timezone != "UTC":
            try:
                ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise InvalidSourceParams(f"Unknown delta_timezone {timezone!r}; use an IANA name.") from None

    @classmethod
    def of(cls, request: ReadRequest) -> Window:
        return cls(
            request.delta_column,
            request.window_start,
            request.window_end,
            str(request.options.get("delta_timezone") or "UTC"),
            request.options.get("delta_format"),
        )

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if self.column is None:
            return batch
        if self.column not in batch.schema.names:
            raise InvalidSourceParams(
                f"The delta column {self.column!r} is not in the file; check the flow's deltaColumn."
            )
        return batch.filter(self.mask(utc_instants(batch.column(self.column), self.timezone, self.fmt)))

    def mask(self, instants: pa.Array) -> pa.Array:
        lower = pc.greater(instants, pa.scalar(self.start, UTC_US)) if self.start else None
        upper = pc.less_equal(instants, pa.scalar(self.end, UTC_US)) if self.end else None
        if lower is None:
            inside = pc.or_kleene(upper, pc.is_null(instants))
        else:
            inside = lower if upper is None else pc.and_kleene(lower, upper)
        return pc.fill_null(inside, False)


def utc_instants(values: pa.Array, timezone: str = "UTC", fmt: str | None = None) -> pa.Array:
    """``values`` as ``timestamp[us, UTC]``; values that do not parse become null."""
    kind = values.type
    if pa.types.is_timestamp(kind):
        return values.cast(UTC_US, safe=False) if kind.tz else _assume(values, timezone)
    if pa.types.is_date(kind):
        return _assume(values.cast(pa.timestamp("us")), timezone)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _parse(values, timezone, fmt)
    if pa.types.is_null(kind):
        return pa.nulls(len(values), UTC_US)
    raise InvalidSourceParams(f"The delta column holds {kind} values; it must hold dates or timestamps.")


def _assume(naive: pa.Array, timezone: str) -> pa.Array:
    naive = naive.cast(pa.timestamp("us"), safe=False)
    if timezone == "UTC":
        return naive.cast(UTC_US)
    local = pc.assume_timezone(naive, timezone, ambiguous="earliest", nonexistent="latest")
    return local.cast(UTC_US)


def _parse(strings: pa.Array, timezone: str, fmt: str | None) -> pa.Array:
    if fmt:
        by_format = _parse_format(strings, timezone, fmt)
        missed = pc.and_(pc.is_null(by_format), pc.is_valid(strings))
        if not pc.any(missed).as_py():
            return by_format
        # Values the format does not fit are read as ISO 8601 (AEP's own example names YYYY-MM-DD for
        # a column of full ISO timestamps).
        return pc.coalesce(by_format, _parse(strings, timezone, None))
    # Fast paths: every value has an offset, or none has. A failed cast costs as much as a slow parse,
    # so the first value picks which one to try first.
    attempts = [_with_offsets, _without_offsets]
    head = strings.slice(0, 1000).drop_null()
    if not (len(head) and _OFFSET.search(head[0].as_py())):
        attempts.reverse()
    for attempt in attempts:
        try:
            return attempt(strings, timezone)
        except pa.ArrowInvalid:
            pass
    return _parse_each(strings, timezone)


def _parse_format(strings: pa.Array, timezone: str, fmt: str) -> pa.Array:
    """``strings`` read with the strptime format ``fmt``; values it does not fit are null."""
    if "%f" not in fmt:  # Arrow's strptime has no fractions of a second
        parsed = pc.strptime(strings, format=fmt, unit="us", error_is_null=True)
        return parsed.cast(UTC_US) if parsed.type.tz else _assume(parsed, timezone)
    zone = ZoneInfo(timezone)
    out: list[datetime | None] = []
    for text in strings.to_pylist():
        try:
            value = datetime.strptime(text.strip(), fmt) if text else None
        except ValueError:
            value = None
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        out.append(value)
    return pa.array(out, UTC_US)


def _with_offsets(strings: pa.Array, timezone: str) -> pa.Array:
    return strings.cast(UTC_US)


def _without_offsets(strings: pa.Array, timezone: str) -> pa.Array:
    return _assume(strings.cast(pa.timestamp("us")), timezone)


def _parse_each(strings: pa.Array, timezone: str) -> pa.Array:
    """The slow path for mixed or partly invalid values: one Python parse per value."""
    zone = ZoneInfo(timezone)
    out: list[datetime | None] = []
    for text in strings.to_pylist():
        try:
            value = datetime.fromisoformat(text.strip()) if text else None
        except ValueError:
            value = None
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        out.append(value)
    return pa.array(out, UTC_US)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _generator(batches: Iterator[pa.RecordBatch]) -> Generator[pa.RecordBatch, None, None]:
    yield from batches
