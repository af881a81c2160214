"""Where the rows of a Query Service SELECT are kept between its run and its reads.

One Arrow IPC file per query, ``{folder}/{queryId}.arrow`` (the folder is ``WAREHOUSE/_queryresults``):
written to a hidden name and renamed, so a reader sees the whole file or none; read memory-mapped, a page
at a time. Files older than the retention are deleted by :meth:`ResultFiles.sweep` (the query runner
calls it); the query itself records until when its rows are readable (services/queryservice.py).
"""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

MAX_PAGE_BYTES = 16 * 1024 * 1024  # of Arrow data per page


class ResultFiles:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, ident: str) -> Path:
        return self.folder / f"{ident}.arrow"

    def exists(self, ident: str) -> bool:
        return self.path(ident).exists()

    def write(self, ident: str, table: pa.Table) -> None:
        """Keep ``table`` as the rows of query ``ident`` (durable once renamed into place)."""
        path = self.path(ident)
        path.parent.mkdir(parents=True, exist_ok=True)
        hidden = path.with_name(f".{path.name}.{os.getpid()}")
        with pa.OSFile(str(hidden), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        hidden.replace(path)

    def page(self, ident: str, start: int, limit: int) -> tuple[list[dict[str, str]], list[Any], int]:
        """(columns, rows as JSON values, total rows) of rows ``start`` to ``start + limit`` (fewer when
        they hold more than :data:`MAX_PAGE_BYTES`)."""
        with pa.memory_map(str(self.path(ident))) as source:
            table = pa.ipc.open_file(source).read_all()
            rows = table.slice(start, limit)
            while rows.num_rows > 1 and rows.nbytes > MAX_PAGE_BYTES:
                rows = rows.slice(0, rows.num_rows // 2)
            data = orjson.loads(orjson.dumps(rows.to_pylist(), default=_jsonable))
        columns = [{"name": f.name, "type": str(f.type)} for f in table.schema]
        return columns, list(data), int(table.num_rows)

    def remove(self, ident: str) -> None:
        self.path(ident).unlink(missing_ok=True)

    def sweep(self, older_than_ms: int) -> int:
        """Delete the files last written before ``older_than_ms`` (hidden leftovers included); how many."""
        removed = 0
        if not self.folder.is_dir():
            return 0
        for path in self.folder.glob("*.arrow*"):
            try:
                if path.stat().st_mtime * 1000 < older_than_ms:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed


def _jsonable(value: Any) -> Any:
    """What orjson cannot write itself: decimals as text, bytes as base64, durations in seconds."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)
