"""Row errors of a batch: the records that failed mapping or validation, with their reasons.

Kept as JSON lines (``{"_corrupt_record", "_errors": [{"code", "message"}], "_row"}``) in
``WAREHOUSE/_errors/{batchId}/row_errors.json``, or with the lake on object storage under
``<HEADWATER_LAKE_URL>/_errors/{batchId}/`` (stores/objectfiles.py), served by
``GET /data/foundation/export/batches/{batchId}/meta?path=row_errors``. At most
``MAX_STORED_ROW_ERRORS`` records are kept per batch; every failure is counted.

A streaming run writes each micro-batch's row errors as an object of their own beside its batch's file,
``row_errors.json.stream-{log offset}`` (the offset the micro-batch read from), written whole before the
micro-batch commits: a micro-batch retried after a crash or a failed commit reads the same records from
the same offset and replaces its object, so its row errors are never doubled. A partition of a split
run writes ``row_errors.json.part-NNNNN`` the same way. A reader sees ``row_errors.json`` followed by the
others in the order of their names (:meth:`RowErrorFiles.chunks`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from headwater.stores.objectfiles import ObjectFiles, object_files, unavailable

if TYPE_CHECKING:
    from headwater.settings import Settings

MAX_STORED_ROW_ERRORS = 100_000
MAX_RECORD_TEXT = 64 * 1024


NAME = "row_errors.json"


class RowErrorFiles:
    """The row-error files of every batch of a home (or of its lake's bucket)."""

    def __init__(self, files: ObjectFiles) -> None:
        self.files = files

    @classmethod
    def of(cls, settings: Settings) -> RowErrorFiles:
        return cls(object_files(settings, "_errors", settings.warehouse_dir / "_errors"))

    def writer(
        self, batch_id: str, stored: int = 0, part: int | None = None, micro_batch: int | None = None
    ) -> RowErrorWriter:
        """A writer of ``batch_id``'s row errors, replacing them; ``stored`` of the batch are kept
        already (counted against :data:`MAX_STORED_ROW_ERRORS`). A partition of a run
        (runtime/partitions.py) writes its own object, ``row_errors.json.part-NNNNN``, and a streaming
        micro-batch its own, ``row_errors.json.stream-{offset}``: each replaced whole when it is redone,
        none made when it has no row error."""
        if part is not None:
            return RowErrorWriter(self.files, f"{batch_id}/{NAME}.part-{part:05d}", stored)
        if micro_batch is not None:
            key = f"{batch_id}/{NAME}.stream-{micro_batch:020d}"
            return RowErrorWriter(self.files, key, stored, keep_empty=False)
        return RowErrorWriter(self.files, f"{batch_id}/{NAME}", stored)

    def _parts(self, batch_id: str) -> list[str]:
        found = [e.key for e in self.files.list(batch_id) if e.key.rpartition("/")[2].startswith(NAME)]
        return sorted(found, key=lambda k: (k != f"{batch_id}/{NAME}", k))

    def size(self, batch_id: str) -> int | None:
        """The bytes of ``batch_id``'s row errors; None when it has no file."""
        sizes = [e.size for e in self.files.list(batch_id) if e.key.rpartition("/")[2].startswith(NAME)]
        return sum(sizes) if sizes else None

    def chunks(self, batch_id: str) -> Iterator[bytes]:
        """The JSON lines of ``batch_id``'s row errors, a chunk at a time."""
        for key in self._parts(batch_id):
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile (its dataset deleted)
                yield from self.files.chunks(key)

    def remove(self, batch_id: str) -> None:
        self.files.delete_tree(batch_id)


class RowErrorWriter:
    """Writes a batch's failed records into ``key`` of ``files``; counts every error code. Use as a
    context manager: the records are durable when its block ends (on S3, visible only then)."""

    def __init__(self, files: ObjectFiles, key: str, stored: int = 0, keep_empty: bool = True) -> None:
        self._block = contextlib.ExitStack()
        with unavailable("writing row errors"):
            self._out = self._block.enter_context(files.writer(key, keep_empty=keep_empty))
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
        with unavailable("writing row errors"):
            self._block.__exit__(kind, error, tb)
