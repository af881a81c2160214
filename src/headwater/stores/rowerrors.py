"""Row errors of a batch: the records that failed mapping or validation, with their reasons.

Kept as JSON lines (``{"_corrupt_record", "_errors": [{"code", "message"}], "_row"}``) in
``WAREHOUSE/_errors/{batchId}/row_errors.json``, served by
``GET /data/foundation/export/batches/{batchId}/meta?path=row_errors``. At most
``MAX_STORED_ROW_ERRORS`` records are kept per batch; every failure is counted.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import pyarrow as pa

MAX_STORED_ROW_ERRORS = 100_000
MAX_RECORD_TEXT = 64 * 1024


def errors_file(warehouse: Path, batch_id: str) -> Path:
    return warehouse / "_errors" / batch_id / "row_errors.json"


class RowErrorWriter:
    """Writes a batch's failed records; counts every error code. Use as a context manager."""

    def __init__(self, path: Path, append: bool = False, stored: int = 0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out = path.open("ab" if append else "wb")
        self.stored = stored
        self.codes: dict[str, int] = {}

    def add(self, batch: pa.RecordBatch, errors: list[Any]) -> None:
        """Record ``errors`` (RowError objects) of ``batch``: one line per failed row."""
        by_row: dict[int, list[dict[str, str]]] = {}
        for error in errors:
            by_row.setdefault(error.row, []).append({"code": error.code, "message": error.message})
            self.codes[error.code] = self.codes.get(error.code, 0) + 1
        for row, row_errors in by_row.items():
            if self.stored >= MAX_STORED_ROW_ERRORS:
                break
            record = batch.slice(row, 1).to_pylist()[0]
            line = {"_corrupt_record": record, "_errors": row_errors, "_row": row}
            self._out.write(orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n")
            self.stored += 1

    def add_record(self, record: Any, errors: list[Any]) -> None:
        """Record the ``errors`` (RowError objects, all of one row) of one record kept as it was received
        (a streaming message, whatever its shape), so that the row error shows the message itself."""
        for error in errors:
            self.codes[error.code] = self.codes.get(error.code, 0) + 1
        if not errors or self.stored >= MAX_STORED_ROW_ERRORS:
            return
        line = {
            "_corrupt_record": record,
            "_errors": [{"code": e.code, "message": e.message} for e in errors],
            "_row": errors[0].row,
        }
        try:
            text = orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS)
        except orjson.JSONEncodeError:  # nested beyond what the encoder writes: keep its text, shortened
            line["_corrupt_record"] = repr(record)[:MAX_RECORD_TEXT]
            text = orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS)
        self._out.write(text + b"\n")
        self.stored += 1

    def __enter__(self) -> RowErrorWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._out.close()
