"""Where the rows of a Query Service SELECT are kept between its run and its reads.

One Arrow IPC file per query, ``{queryId}.arrow``, in ``WAREHOUSE/_queryresults`` or, with the lake on
object storage, under ``<HEADWATER_LAKE_URL>/_queryresults/`` (stores/objectfiles.py), so that any node
serves the rows another ran. Written whole (to a hidden name, then moved into place), so a reader sees the
whole file or none; read a page at a time (memory-mapped on a disk). Files older than the retention are
deleted by :meth:`ResultFiles.sweep` (the query runner calls it); the query itself records until when its
rows are readable (services/queryservice.py).
"""

from __future__ import annotations

import base64
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa

from headwater.stores.objectfiles import ObjectFiles, unavailable

MAX_PAGE_BYTES = 16 * 1024 * 1024  # of Arrow data per page
SUFFIX = ".arrow"


class ResultFiles:
    def __init__(self, files: ObjectFiles) -> None:
        self.files = files

    def key(self, ident: str) -> str:
        return f"{ident}{SUFFIX}"

    def written_ms(self, ident: str) -> int | None:
        """When query ``ident``'s rows were written (ms since the epoch); None when they are not kept."""
        with unavailable("reading query results"):
            entry = self.files.stat(self.key(ident))
        return entry.written_ms if entry is not None else None

    def exists(self, ident: str) -> bool:
        return self.written_ms(ident) is not None

    def write(self, ident: str, table: pa.Table) -> None:
        """Keep ``table`` as the rows of query ``ident`` (durable once moved into place)."""
        with (
            unavailable("writing query results"),
            self.files.writer(self.key(ident)) as sink,
            pa.ipc.new_file(sink, table.schema) as writer,
        ):
            writer.write_table(table)

    def page(self, ident: str, start: int, limit: int) -> tuple[list[dict[str, str]], list[Any], int]:
        """(columns, rows as JSON values, total rows) of rows ``start`` to ``start + limit`` (fewer when
        they hold more than :data:`MAX_PAGE_BYTES`)."""
        with unavailable("reading query results"), self.files.open(self.key(ident)) as source:
            table = pa.ipc.open_file(source).read_all()
            rows = table.slice(start, limit)
            while rows.num_rows > 1 and rows.nbytes > MAX_PAGE_BYTES:
                rows = rows.slice(0, rows.num_rows // 2)
            data = orjson.loads(orjson.dumps(rows.to_pylist(), default=_jsonable))
        columns = [{"name": f.name, "type": str(f.type)} for f in table.schema]
        return columns, list(data), int(table.num_rows)

    def remove(self, ident: str) -> None:
        with unavailable("deleting query results"):
            self.files.delete(self.key(ident))

    def sweep(self, older_than_ms: int) -> int:
        """Delete the files last written before ``older_than_ms`` (hidden leftovers included); how many."""
        return self.files.sweep(older_than_ms, SUFFIX)


def _jsonable(value: Any) -> Any:
    """What orjson cannot write itself: decimals as text, bytes as base64, durations in seconds."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)
