"""The CSV files of bulk ingestion jobs: checked whole on upload, read back in chunks of records.

Files are UTF-8, RFC 4180, comma-delimited. An upsert file starts with a header naming fields of the
object (every required field, no unknown or repeated column); empty cells are null. A delete file has no
header: each row is a primary key, then an optional record-modified date-time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from headwater.errors import ValidationFailed
from headwater.services.data360.ingest import CODE, cell_error, typed
from headwater.services.data360.lookup import EventRoute

MAX_ERRORS = 20
CHUNK_ROWS = 5_000

# A job's file: its path on a disk, or a function opening it as a binary stream (an object on S3).
Source = Path | Callable[[], Any]


def _open(source: Source) -> io.TextIOWrapper:
    raw = source.open("rb") if isinstance(source, Path) else source()
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _reader(path: Source) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every non-empty line of a UTF-8 (RFC 4180) CSV file."""
    with _open(path) as handle:
        reader = csv.reader(handle)
        try:
            for cells in reader:
                if cells and any(c != "" for c in cells):
                    yield reader.line_num, cells
        except csv.Error as exc:
            raise ValidationFailed(
                [{"path": f"line {reader.line_num}", "message": f"is not valid CSV: {exc}"}], code=CODE
            ) from exc


def check_csv(path: Source, route: EventRoute, operation: str) -> int:
    """Check an uploaded file whole; the number of rows, or ValidationFailed naming lines and fields."""
    errors: list[dict[str, str]] = []
    rows = 0
    try:
        lines = _reader(path)
        header = None if operation == "delete" else _header(next(lines, None), route, errors)
        for line, cells in lines:
            rows += 1
            errors += _row_errors(line, cells, header, route)
            if len(errors) >= MAX_ERRORS:
                break
    except UnicodeDecodeError as exc:
        raise ValidationFailed(
            [{"path": "(body)", "message": f"is not UTF-8 text: {exc.reason}"}], code=CODE
        ) from exc
    if errors:
        raise ValidationFailed(errors[:MAX_ERRORS], code=CODE)
    return rows


def _header(
    first: tuple[int, list[str]] | None, route: EventRoute, errors: list[dict[str, str]]
) -> list[str]:
    if first is None:
        errors.append(
            {"path": "line 1", "message": "the file is empty: an upsert file starts with a header row"}
        )
        return []
    names = [c.strip() for c in first[1]]
    seen: set[str] = set()
    for name in names:
        if name not in route.fields:
            errors.append(
                {"path": f"line 1.{name}", "message": f"{name!r} is not a field of {route.event!r}"}
            )
        elif name in seen:
            errors.append({"path": f"line 1.{name}", "message": f"column {name!r} appears twice"})
        seen.add(name)
    for name in route.required:
        if name not in seen:
            errors.append({"path": f"line 1.{name}", "message": f"required field {name!r} has no column"})
    return names


def _row_errors(
    line: int, cells: list[str], header: list[str] | None, route: EventRoute
) -> list[dict[str, str]]:
    if header is None:  # delete: primary key, then an optional record-modified date-time
        if len(cells) > 2 or not cells[0].strip():
            return [
                {
                    "path": f"line {line}",
                    "message": "a delete row is a primary key, then an optional date-time",
                }
            ]
        if (
            len(cells) == 2
            and cells[1]
            and cell_error({**_DATETIME, "developerName": "recordModified"}, cells[1], route.event)
        ):
            return [{"path": f"line {line}", "message": f"{cells[1]!r} is not an ISO 8601 date-time"}]
        return []
    if len(cells) != len(header):
        return [{"path": f"line {line}", "message": f"has {len(cells)} values; the header has {len(header)}"}]
    out = []
    for name, text in zip(header, cells, strict=True):
        spec = route.fields.get(name)
        problem = cell_error(spec, text, route.event) if spec else None
        if problem:
            out.append({"path": f"line {line}.{name}", "message": problem})
    return out


_DATETIME = {"dataType": "DateTime", "isDataRequired": False}


def read_rows(
    path: Source, route: EventRoute, kind: str, skip: int = 0
) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Chunks of records from a checked file, each with the number of rows read so far."""
    lines = _reader(path)
    header = None if kind == "delete" else [c.strip() for c in next(lines)[1]]
    chunk: list[dict[str, Any]] = []
    count = 0
    for _, cells in lines:
        count += 1
        if count <= skip:
            continue
        if header is None:
            chunk.append({"key": cells[0].strip()})
        else:
            chunk.append(
                {name: typed(route.fields[name], text) for name, text in zip(header, cells, strict=True)}
            )
        if len(chunk) >= CHUNK_ROWS:
            yield chunk, count
            chunk = []
    if chunk:
        yield chunk, count
