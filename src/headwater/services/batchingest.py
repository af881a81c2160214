"""Batch ingestion (``/data/foundation/import/batches``): batches a client creates, fills with files and
completes, after Adobe Experience Platform's Batch Ingestion API.

A batch is a catalog batch (services/runs.py ``Batches``, ``GET /catalog/batches/{id}``) created
``loading`` for one dataset and one input format (json, parquet or csv). Its files are kept, until the
batch is completed or aborted, in its staging area ``WAREHOUSE/_ingest/{batchId}/{datasetId}/``:

- a small file (``PUT …/files/{name}``, no ``Content-Range``) is streamed to a hidden temporary name,
  synced, then renamed: a file is either all there or absent;
- a large file is uploaded in chunks (``POST …?action=INITIALIZE``, then ``PATCH`` or ``PUT`` with
  ``Content-Range: bytes start-end/total``, then ``POST …?action=COMPLETE``). Each chunk is written in
  place at its offset into a hidden data file (so sending a chunk twice writes the same bytes again),
  and its range is recorded in a hidden ``.ranges`` file under a file lock. Completing the file checks
  that the ranges cover ``0..total-1`` with no gap and no overlap (AEP answers 400 for either) and
  renames the data file to its name.

``POST /batches/{id}?action=COMPLETE`` queues the batch for promotion (services/batchqueue.py) and marks
it ``processing``; promotion into the dataset's table is the runtime's (runtime/batchingest.py, run by a
worker's runtime/batchpromotion.py). This module checks requests and keeps the staging area; it never
reads the files' contents.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from headwater.errors import Conflict, HeadwaterError, NotFound, PayloadTooLarge, ValidationFailed
from headwater.services.batchqueue import PromotionQueue
from headwater.services.catalogsvc import DataSets
from headwater.services.ids import new_hex
from headwater.services.ingeststaging import ObjectStaging, StagedFile, bad, check_cover, not_initialized
from headwater.services.runs import Batches
from headwater.services.tenancy import Actor
from headwater.settings import Settings
from headwater.stores.metadata import Resource
from headwater.stores.objectfiles import object_files

FORMATS = ("json", "parquet", "csv")
LOADING, PROCESSING, SUCCESS, FAILED, ABORTED = "loading", "processing", "success", "failed", "aborted"
FINAL = frozenset({SUCCESS, FAILED, ABORTED})
MAX_FILE_BYTES = 5 * 1024**3  # one file, whole or assembled from chunks
MAX_FILES = 25_000  # per batch: AEP's hard guardrail
MAX_NAME_BYTES = 255
ORIGIN = "batchIngestion"
_RANGE = re.compile(r"^\s*bytes\s+(\d{1,19})-(\d{1,19})/(\d{1,19})\s*$")


@dataclass(frozen=True)
class ChunkRange:
    start: int
    end: int  # inclusive, as Content-Range writes it
    total: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_content_range(value: str) -> ChunkRange:
    """``bytes start-end/total`` (end inclusive); 400 naming Content-Range otherwise."""
    match = _RANGE.match(value)
    if match is None:
        raise bad("Content-Range must be 'bytes START-END/TOTAL' (END inclusive).", "Content-Range")
    start, end, total = (int(g) for g in match.groups())
    if start > end or end >= total:
        raise bad("Content-Range must have START <= END < TOTAL.", "Content-Range")
    if total > MAX_FILE_BYTES:
        raise PayloadTooLarge(
            f"A file of a batch may hold at most {MAX_FILE_BYTES} bytes.", report={"field": "Content-Range"}
        )
    return ChunkRange(start, end, total)


def check_file_name(name: str) -> str:
    """The file name of a batch's file: one name (no folders), not hidden, no control characters."""
    if not name or "/" in name or name in (".", "..") or name.startswith("."):
        raise bad("The file name must be one name, without '/', and must not start with '.'.", "fileName")
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        raise bad("The file name may not contain NUL or other control characters.", "fileName")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise bad("The file name must be valid UTF-8.", "fileName") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise bad(f"The file name is at most {MAX_NAME_BYTES} bytes.", "fileName")
    return name


def dataset_of(batch: Resource) -> str:
    return str(next(o["id"] for o in batch.doc["relatedObjects"] if o.get("type") == "dataSet"))


class BatchIngestion:
    """The requests of the Batch Ingestion API, up to promotion; see the module's docstring."""

    def __init__(self, batches: Batches, datasets: DataSets, settings: Settings) -> None:
        self.batches = batches
        self.datasets = datasets
        self.settings = settings

    # --- batches ---
    def create(self, actor: Actor, body: Any) -> Resource:
        if not isinstance(body, dict):
            raise bad("The request body must be a JSON object.", "(body)")
        dataset_id = body.get("datasetId")
        if not isinstance(dataset_id, str) or not dataset_id.strip():
            raise ValidationFailed([{"path": "datasetId", "message": "is required"}], code="INGEST-1422-400")
        fmt_obj = body.get("inputFormat")
        fmt = fmt_obj.get("format") if isinstance(fmt_obj, dict) else None
        if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
            raise ValidationFailed(
                [{"path": "inputFormat.format", "message": "must be one of " + ", ".join(FORMATS)}],
                code="INGEST-1422-400",
            )
        partial = body.get("partialIngestionPercentage")
        if partial is not None and (
            isinstance(partial, bool) or not isinstance(partial, int | float) or not 0 <= partial <= 100
        ):
            raise ValidationFailed(
                [{"path": "partialIngestionPercentage", "message": "must be a number from 0 to 100"}],
                code="INGEST-1422-400",
            )
        diagnostics = body.get("enableErrorDiagnostics", True)
        if not isinstance(diagnostics, bool):
            raise ValidationFailed(
                [{"path": "enableErrorDiagnostics", "message": "must be true or false"}],
                code="INGEST-1422-400",
            )
        try:
            dataset = self.datasets.get(actor, dataset_id)
        except NotFound:
            raise ValidationFailed(
                [{"path": "datasetId", "message": f"no dataset {dataset_id!r} in this sandbox"}],
                code="INGEST-1422-400",
            ) from None
        tags: dict[str, list[str]] = {"acp_enableErrorDiagnostics": [str(diagnostics).lower()]}
        if partial is not None:
            tags["acp_partialIngestionPercent"] = [str(partial)]
        doc = {
            "status": LOADING,
            "origin": ORIGIN,
            "relatedObjects": [{"type": "dataSet", "id": dataset.id}],
            "inputFormat": {"format": fmt.lower()},
            "metrics": {
                "inputRecordCount": 0,
                "outputRecordCount": 0,
                "failedRecordCount": 0,
                "inputByteSize": 0,
                "inputFileCount": 0,
            },
            "errors": [],
            "tags": tags,
        }
        return self.batches.create(actor, doc)

    def render_created(self, batch: Resource) -> dict[str, Any]:
        """AEP's answer to creating a batch."""
        doc = self.batches.render(batch)
        return {
            "id": batch.id,
            "imsOrg": batch.doc.get("imsOrgId"),
            "updated": doc["updated"],
            "status": doc["status"],
            "created": doc["created"],
            "relatedObjects": doc["relatedObjects"],
            "version": doc["version"],
            "tags": doc["tags"],
            "inputFormat": doc["inputFormat"],
            "createdUser": batch.doc.get("createdBy") or batch.doc.get("createdClient"),
            "updatedUser": batch.doc.get("updatedBy") or batch.doc.get("updatedClient"),
        }

    def ingestion_batch(self, actor: Actor, batch_id: str) -> Resource:
        """A batch of this API in the actor's sandbox (404 for another sandbox's, or a flow's batch)."""
        batch = self.batches.get(actor, batch_id)
        if batch.doc.get("origin") != ORIGIN:
            raise self.batches.not_found(batch_id)
        return batch

    def loading(self, actor: Actor, batch_id: str, dataset_id: str | None = None) -> Resource:
        """The batch, still taking files; 400 naming datasetId when the path names another dataset."""
        batch = self.ingestion_batch(actor, batch_id)
        status = batch.doc.get("status")
        if status != LOADING:
            raise Conflict(
                f"Batch {batch_id} is {status}: files can be added only while it is loading.",
                code="INGEST-1409-409",
                report={"field": "batchId", "status": status},
            )
        if dataset_id is not None and dataset_id != dataset_of(batch):
            raise bad(f"Batch {batch_id} is for dataset {dataset_of(batch)}, not {dataset_id}.", "datasetId")
        return batch

    def complete(
        self,
        actor: Actor,
        batch_id: str,
        queue: PromotionQueue,
        save: Callable[[Resource, dict[str, Any]], Resource],
    ) -> Resource:
        """``?action=COMPLETE``: the batch is queued for promotion (durable when this returns) and marked
        ``processing``; a worker promotes it (runtime/batchpromotion.py). Again on a processing batch it
        queues it again (a batch left processing by an older version); on a final batch, nothing."""
        batch = self.ingestion_batch(actor, batch_id)
        status = batch.doc.get("status")
        if status in (SUCCESS, FAILED):
            return batch
        if status == ABORTED:
            raise Conflict(
                f"Batch {batch_id} was aborted: it cannot be completed.",
                code="INGEST-1409-409",
                report={"field": "action", "status": status},
            )
        if status == LOADING and not self.staged_files(batch):
            raise bad(
                f"Batch {batch_id} has no complete file: upload one before completing the batch.", "batchId"
            )
        queue.enqueue(batch)  # first: a crash before the next line leaves a queued batch, promoted anyway
        if status == LOADING:
            batch = save(batch, {"status": PROCESSING})
        return batch

    def abort(
        self, actor: Actor, batch_id: str, save: Callable[[Resource, dict[str, Any]], Resource]
    ) -> Resource:
        """``?action=ABORT``: until the batch is final; its staged files are removed."""
        batch = self.ingestion_batch(actor, batch_id)
        status = batch.doc.get("status")
        if status == ABORTED:
            return batch
        if status != LOADING:
            raise Conflict(
                f"Batch {batch_id} is {status}: only a loading batch can be aborted.",
                code="INGEST-1409-409",
                report={"field": "action", "status": status},
            )
        batch = save(batch, {"status": ABORTED})
        self.remove_staging(batch.id)
        return batch

    # --- staging ---
    def staging(self, batch: Resource) -> Path:
        return self.settings.warehouse_dir / "_ingest" / batch.id / dataset_of(batch)

    @functools.cached_property
    def objects(self) -> ObjectStaging | None:
        """The staging areas on object storage (services/ingeststaging.py); None on the home's disk."""
        if self.settings.lake_url is None:
            return None
        return ObjectStaging(object_files(self.settings, "_ingest", self.settings.warehouse_dir / "_ingest"))

    def remove_staging(self, batch_id: str) -> None:
        if self.objects is not None:
            self.objects.remove(batch_id)
            return
        shutil.rmtree(self.settings.warehouse_dir / "_ingest" / batch_id, ignore_errors=True)

    def staged_files(self, batch: Resource) -> list[StagedFile]:
        if self.objects is not None:
            return self.objects.staged(_area(batch))
        area = self.staging(batch)
        if not area.is_dir():
            return []
        found = sorted(p for p in area.iterdir() if p.is_file() and not p.name.startswith("."))
        return [
            StagedFile(p.name, p.stat().st_size, p, functools.partial(pa.memory_map, str(p))) for p in found
        ]

    def _room_for(self, batch: Resource, name: str) -> None:
        if self.objects is not None:
            names = self.objects.names(_area(batch))
            if name in names:
                return
            count = len(names)
        else:
            area = self.staging(batch)
            if (area / name).exists():
                return
            count = sum(1 for p in area.iterdir() if not p.name.startswith(".")) if area.is_dir() else 0
        if count >= MAX_FILES:
            raise bad(f"A batch may hold at most {MAX_FILES} files.", "fileName", code="INGEST-1413-400")

    async def put_file(self, batch: Resource, name: str, body: AsyncIterator[bytes]) -> int:
        """A whole file: streamed to a hidden name, synced, renamed (on S3: one object written whole).
        Returns its size."""
        if self.objects is not None:
            self._room_for(batch, name)
            return await self.objects.put(_area(batch), name, body, _file_limit)
        area = self.staging(batch)
        area.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._room_for(batch, name)
        partial = area / f".{new_hex(8)}.partial"
        size, created = 0, False
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            created = True
            with os.fdopen(fd, "wb") as handle:
                async for chunk in body:
                    size += len(chunk)
                    _file_limit(size)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, area / name)
        except OSError as exc:
            raise _refused(exc, name) from exc
        finally:
            if created:
                partial.unlink(missing_ok=True)
        return size

    def _chunk_paths(self, batch: Resource, name: str) -> tuple[Path, Path, Path]:
        area = self.staging(batch)
        return area / f".{name}.chunks", area / f".{name}.ranges", area / f".{name}.lock"

    def initialize(self, batch: Resource, name: str) -> None:
        """``?action=INITIALIZE``: an empty chunked file (again: starts over)."""
        self._room_for(batch, name)
        if self.objects is not None:
            self.objects.initialize(_area(batch), name)
            return
        area = self.staging(batch)
        area.mkdir(mode=0o700, parents=True, exist_ok=True)
        data, ranges, _ = self._chunk_paths(batch, name)
        with self._locked(batch, name):
            try:
                data.unlink(missing_ok=True)
                data.touch(mode=0o600)
                _write_ranges(ranges, {"total": None, "ranges": []})
            except OSError as exc:
                raise _refused(exc, name) from exc

    async def put_chunk(
        self, batch: Resource, name: str, span: ChunkRange, body: AsyncIterator[bytes]
    ) -> int:
        """One chunk, written at its offset (idempotent: the same bytes at the same place), its range
        recorded once the body was read whole and matched the range's length."""
        if self.objects is not None:
            return await self.objects.put_chunk(_area(batch), name, span, body)
        data, ranges, _ = self._chunk_paths(batch, name)
        if not data.exists():
            raise not_initialized(name)
        state = _read_ranges(ranges)
        if state["total"] is not None and state["total"] != span.total:
            raise bad(
                f"Content-Range total {span.total} differs from earlier chunks' ({state['total']}).",
                "Content-Range",
            )
        written = 0
        try:
            fd = os.open(data, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                async for chunk in body:
                    if written + len(chunk) > span.length:
                        raise bad(
                            f"The body is longer than the {span.length} bytes Content-Range names.",
                            "Content-Range",
                        )
                    view = memoryview(chunk)
                    while view:
                        n = os.pwrite(fd, view, span.start + written)
                        written += n
                        view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _refused(exc, name) from exc
        if written != span.length:
            raise bad(f"The body holds {written} bytes; Content-Range names {span.length}.", "Content-Range")
        with self._locked(batch, name):
            state = _read_ranges(ranges)
            if state["total"] is not None and state["total"] != span.total:
                raise bad("Content-Range total differs from the total of earlier chunks.", "Content-Range")
            state["total"] = span.total
            pair = [span.start, span.end]
            if pair not in state["ranges"]:
                state["ranges"].append(pair)
            _write_ranges(ranges, state)
        return written

    def complete_file(self, batch: Resource, name: str) -> int:
        """``?action=COMPLETE`` of a chunked file: its chunks must cover it exactly. Returns its size.
        Completing a file that is already complete (and has no chunked upload pending) answers its size."""
        if self.objects is not None:
            return self.objects.complete(_area(batch), name)
        data, ranges, lock = self._chunk_paths(batch, name)
        final = self.staging(batch) / name
        with self._locked(batch, name):
            if not data.exists():
                if final.is_file():
                    return final.stat().st_size
                raise NotFound(
                    f"No chunked upload of {name!r} in this batch.",
                    code="INGEST-1404-404",
                    report={"field": "fileName"},
                )
            state = _read_ranges(ranges)
            total = state["total"] or 0
            check_cover(name, total, [(start, end) for start, end in state["ranges"]])
            try:
                os.truncate(data, total)
                os.replace(data, final)
                ranges.unlink(missing_ok=True)
            except OSError as exc:
                raise _refused(exc, name) from exc
        lock.unlink(missing_ok=True)
        return total

    @contextlib.contextmanager
    def _locked(self, batch: Resource, name: str) -> Iterator[None]:
        _, _, lock = self._chunk_paths(batch, name)
        lock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with lock.open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _area(batch: Resource) -> str:
    return f"{batch.id}/{dataset_of(batch)}"


def _file_limit(size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise PayloadTooLarge(
            f"A file of a batch may hold at most {MAX_FILE_BYTES} bytes; larger files are "
            "uploaded in chunks (?action=INITIALIZE, then Content-Range).",
        )


def _read_ranges(path: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = orjson.loads(path.read_bytes())
        return state
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {"total": None, "ranges": []}


def _write_ranges(path: Path, state: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(orjson.dumps(state))
    os.replace(temporary, path)


def _refused(exc: OSError, name: str) -> HeadwaterError:
    if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ, errno.EISDIR):
        return bad(f"{name!r} is not a file name this server can store ({exc.strerror}).", "fileName")
    return HeadwaterError(f"The file could not be stored ({exc.strerror or exc}).", code="INGEST-1500-500")
