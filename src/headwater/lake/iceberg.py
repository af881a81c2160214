"""The lake: one Apache Iceberg table per dataset, in pyiceberg's SQL catalog inside the metadata DB.

Writes are two-stage so that a commit can be retried: ``write_files`` streams Arrow batches into Parquet
data files (bounded memory; nothing visible yet), then ``commit`` adds them in ONE snapshot whose
summary carries the checkpoint (flow, run, batch, watermark). Either the data and its checkpoint are
both in the table, or neither is. Data files written by a run that never committed are orphans, never
visible (removing them, and expiring old snapshots, is not implemented yet).

Reads always go through the table's current snapshot (``scan``), never through the folder's files.

The files are in the home's warehouse folder or on S3-compatible object storage (lake/storage.py), both
through pyiceberg's PyArrowFileIO. A lake that cannot be written or read (disk full or failing, a path
gone, the object store down) raises :class:`~headwater.errors.LakeUnavailable`; its catalog database,
MetadataUnavailable. Either way the
commit did not happen. An error of the rows' own source (the batches handed to ``write_files``) passes
through as it was raised: it is not the lake's.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import pyarrow as pa

from headwater.errors import LakeUnavailable, Unavailable
from headwater.lake import storage
from headwater.lake.storage import warehouse_location as warehouse_location  # its former home
from headwater.settings import Settings
from headwater.stores.metadata import Scope, unavailable

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table

    from headwater.lake.query import QueryLimits

PREFIX = "headwater."
# pyiceberg accumulates this many bytes of Arrow data in memory before writing a data file (default
# 512 MiB): 128 MiB keeps a run's memory bounded well under the 1.5 GB target and still writes files of
# tens of MB of Parquet.
TABLE_PROPERTIES = {
    "write.target-file-size-bytes": str(128 * 1024 * 1024),
    # Streaming flows commit about once a second: merge small manifests so reads stay fast.
    "commit.manifest-merge.enabled": "true",
}
_COMMIT_ATTEMPTS = 20
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Checkpoint:
    """What a commit recorded about the run that made it (read back from the snapshot summary)."""

    snapshot_id: int
    properties: dict[str, str]

    def get(self, key: str) -> str | None:
        return self.properties.get(PREFIX + key)


def _open_catalog(url: str, warehouse: str, io: dict[str, str]) -> SqlCatalog:
    """pyiceberg's SQL catalog; it creates its own tables when they are missing. Two processes starting
    on a new database race that DDL, and the loser's CREATE TABLE fails (on PostgreSQL a duplicate key in
    pg_type): the tables exist by then, so the next attempt finds them and goes on."""
    from pyiceberg.catalog.sql import SqlCatalog
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(_COMMIT_ATTEMPTS):
        try:
            catalog = SqlCatalog("headwater", uri=url, warehouse=warehouse, **io)
            unavailable.install(catalog.engine)
            return catalog
        except (IntegrityError, ProgrammingError):
            if attempt == _COMMIT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


class _SourceFailed(Exception):
    """Carries an OSError of the batches being written past :func:`_lake_io` (it is the source's)."""


def _from_source(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    try:
        yield from batches
    except OSError as exc:
        raise _SourceFailed() from exc


@contextlib.contextmanager
def _lake_io(doing: str) -> Iterator[None]:
    """Name the lake's own I/O failures :class:`LakeUnavailable`, with what it was doing."""
    try:
        yield
    except _SourceFailed as wrapped:
        assert wrapped.__cause__ is not None
        raise wrapped.__cause__ from None
    except OSError as exc:
        if isinstance(exc, Unavailable):
            raise
        kind = os.strerror(exc.errno) if isinstance(exc.errno, int) else "unavailable"
        detail = f"The lake failed {doing} ({type(exc).__name__}: {kind}); retry later."
        raise LakeUnavailable(f"{doing}: {exc!r}", detail=detail) from exc


def _lake_failures(doing: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a method whose OSErrors are the lake's: they become LakeUnavailable."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with _lake_io(doing):
                return method(*args, **kwargs)

        return wrapper

    return decorate


class CommitSignal:
    """Wakes this process's readers of the lake when one of its commits lands (commits of other
    processes are found by polling the catalog). A counter, so that a commit between two waits is not
    missed."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0

    def notify(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Return the commit count once it differs from ``seen``, or after ``timeout`` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self._count != seen, timeout)
            return self._count


class Lake:
    """Thread-safe facade over the Iceberg catalog. Create one per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._catalog: SqlCatalog | None = None
        self._lock = threading.Lock()
        self.commits = CommitSignal()

    @property
    def catalog(self) -> SqlCatalog:
        with self._lock:
            if self._catalog is None:
                self.settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
                url = self.settings.resolved_database_url
                if url.startswith(("postgresql://", "postgres://")):
                    url = "postgresql+psycopg://" + url.split("://", 1)[1]
                location = storage.lake_location(self.settings)
                self._catalog = _open_catalog(url, location, storage.io_properties(self.settings))
            return self._catalog

    # --- tables ---
    @staticmethod
    def identifier(scope: Scope, dataset_id: str) -> tuple[str, str]:
        """Namespace per organization and sandbox (a stable digest), table named after the dataset."""
        digest = hashlib.sha256(f"{scope.org_id}/{scope.sandbox_id}".encode()).hexdigest()[:20]
        return f"s{digest}", f"ds_{dataset_id}"

    @_lake_failures("reading a table")
    def load(self, scope: Scope, dataset_id: str) -> Table | None:
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return self.catalog.load_table(self.identifier(scope, dataset_id))
        except NoSuchTableError:
            return None

    @_lake_failures("creating or evolving a table")
    def ensure_table(self, scope: Scope, dataset_id: str, schema: pa.Schema) -> Table:
        """The dataset's table with at least ``schema``'s columns: created, or evolved additively."""
        from pyiceberg.exceptions import (
            CommitFailedException,
            NamespaceAlreadyExistsError,
            TableAlreadyExistsError,
        )
        from sqlalchemy.exc import IntegrityError

        namespace, name = self.identifier(scope, dataset_id)
        table = self.load(scope, dataset_id)
        if table is None:
            # Two flows of a new sandbox may create its namespace (or one table) at the same moment: the
            # loser sees the winner's row (IntegrityError from the catalog's own tables) and goes on.
            with contextlib.suppress(NamespaceAlreadyExistsError, IntegrityError):
                self.catalog.create_namespace(namespace)
            try:
                return self.catalog.create_table(
                    (namespace, name), schema=schema, properties=TABLE_PROPERTIES
                )
            except (TableAlreadyExistsError, IntegrityError):
                table = self.catalog.load_table((namespace, name))
        for _ in range(_COMMIT_ATTEMPTS):
            if not _missing_fields(table.schema().as_arrow(), schema):
                break
            try:
                with table.update_schema() as update:
                    update.union_by_name(schema)
            except CommitFailedException:
                pass  # evolved concurrently: check again on the fresh table
            table = self.catalog.load_table((namespace, name))
        return table

    def table_names(self, scope: Scope) -> set[str]:
        """The names of the tables of ``scope``'s namespace (``ds_<dataset id>``), read from the catalog
        for that namespace alone (not every table's row, as :meth:`metadata_locations` reads)."""
        from pyiceberg.exceptions import NoSuchNamespaceError

        namespace, _ = self.identifier(scope, "")
        try:
            return {ident[-1] for ident in self.catalog.list_tables(namespace)}
        except NoSuchNamespaceError:
            return set()

    def metadata_locations(self) -> dict[tuple[str, str], str]:
        """Every table's current metadata file, by identifier: one query of the catalog, for readers
        that look for tables that moved (a commit changes the pointer)."""
        from sqlalchemy import text

        query = text(
            "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables"
            " WHERE catalog_name = :catalog"
        )
        with self.catalog.engine.connect() as conn:
            rows = conn.execute(query, {"catalog": self.catalog.name}).all()
        return {(str(r[0]), str(r[1])): str(r[2]) for r in rows}

    def drop(self, scope: Scope, dataset_id: str) -> None:
        from pyiceberg.exceptions import NoSuchTableError

        with contextlib.suppress(NoSuchTableError):
            self.catalog.purge_table(self.identifier(scope, dataset_id))

    # --- writes ---
    def write_files(
        self, table: Table, batches: Iterable[pa.RecordBatch], schema: pa.Schema
    ) -> list[DataFile]:
        """Write ``batches`` as Parquet data files of ``table`` (not yet visible). Memory stays bounded."""
        from pyiceberg.io.pyarrow import _dataframe_to_data_files

        reader = pa.RecordBatchReader.from_batches(schema, _from_source(batches))
        with _lake_io("writing data files"):
            return list(
                _dataframe_to_data_files(
                    table_metadata=table.metadata,
                    df=reader,
                    io=table.io,
                    write_uuid=uuid.uuid4(),
                    counter=itertools.count(0),
                )
            )

    @_lake_failures("committing a snapshot")
    def commit(
        self,
        table: Table,
        data_files: list[DataFile],
        checkpoint: dict[str, Any],
        once_per: tuple[str, ...] = (),
        replace: bool = False,
    ) -> tuple[int, bool]:
        """Add ``data_files`` in one snapshot carrying ``checkpoint``; retried on concurrent commits.

        With ``once_per`` (checkpoint keys, e.g. flowId and runId), nothing is added when a snapshot with
        the same values already exists: the check runs on the freshly loaded table, and the commit asserts
        it again on the table as the catalog swaps it (lake/requirements.py), so two attempts of one run can
        never both commit. With ``replace``, the table's current rows are deleted in the same transaction
        (a full refresh). Returns (snapshot id, whether this call committed). When this returns, the rows
        and the checkpoint are durable together.
        """
        from pyiceberg.exceptions import CommitFailedException

        from headwater.lake.requirements import AssertNotCommitted, Superseded, require

        properties = {PREFIX + k: str(v) for k, v in checkpoint.items()}
        match = {k: str(checkpoint[k]) for k in once_per}
        for attempt in range(_COMMIT_ATTEMPTS):
            if match:
                table = self.catalog.load_table(table.name())
                existing = self.latest_checkpoint(table, **match)
                if existing is not None:
                    return existing.snapshot_id, False
            try:
                with table.transaction() as tx:
                    if match:
                        require(tx, AssertNotCommitted(match={PREFIX + k: v for k, v in match.items()}))
                    if replace and table.current_snapshot() is not None:
                        from pyiceberg.expressions import AlwaysTrue

                        tx.delete(delete_filter=AlwaysTrue())
                    with tx.update_snapshot(snapshot_properties=properties).fast_append() as add:
                        for data_file in data_files:
                            add.append_data_file(data_file)
                snapshot = table.current_snapshot()
                assert snapshot is not None
                self.commits.notify()
                return snapshot.snapshot_id, True
            except Superseded:  # the run committed meanwhile: the next attempt finds its snapshot
                table = self.catalog.load_table(table.name())
            except CommitFailedException:
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise
                table = self.catalog.load_table(table.name())
        # Superseded on the last attempt: the snapshot that superseded it is the run's commit.
        existing = self.latest_checkpoint(self.catalog.load_table(table.name()), **match)
        if existing is not None:
            return existing.snapshot_id, False
        raise CommitFailedException(f"{table.name()}: no commit after {_COMMIT_ATTEMPTS} attempts")

    # --- streaming commits ---
    @staticmethod
    def stream_offset(table: Table, flow_id: str) -> int:
        """Where ``flow_id``'s streaming log is committed up to in ``table`` (0: nothing yet)."""
        from headwater.lake.requirements import offset_in

        return offset_in(table.properties, flow_id)

    @_lake_failures("committing a micro-batch")
    def commit_stream(
        self,
        table: Table,
        data_files: list[DataFile],
        flow_id: str,
        start: int,
        next_offset: int,
        checkpoint: dict[str, Any],
        delete_filter: Any = None,
    ) -> tuple[Table, bool]:
        """Commit a micro-batch read from ``flow_id``'s log between ``start`` and ``next_offset``.

        The log position is a table property set in the same Iceberg transaction as the rows, so rows
        and position become visible together or not at all. The transaction asserts that the table's
        current snapshot is the one this call checked the position on, and that the position is still
        ``start`` (compare-and-swap, lake/requirements.py): when another committer moved the position
        first, nothing is added and (table, False) comes back. A commit by another flow of the same table
        makes this one try again on the new snapshot. With ``delete_filter``, matching rows are deleted in
        the same transaction (upserts, deletions).
        """
        from pyiceberg.exceptions import CommitFailedException
        from pyiceberg.table.update import AssertRefSnapshotId

        from headwater.lake.requirements import AssertStreamOffset, Superseded, offset_key, require

        key = offset_key(flow_id)
        properties = {PREFIX + k: str(v) for k, v in checkpoint.items()}
        properties[PREFIX + "flowId"] = flow_id
        properties[PREFIX + "streamFrom"] = str(start)
        properties[PREFIX + "streamTo"] = str(next_offset)
        for attempt in range(_COMMIT_ATTEMPTS):
            if self.stream_offset(table, flow_id) != start:
                return table, False
            snapshot = table.current_snapshot()
            current = snapshot.snapshot_id if snapshot else None
            try:
                with table.transaction() as tx:
                    require(
                        tx,
                        AssertRefSnapshotId(snapshot_id=current, ref="main"),
                        AssertStreamOffset(flow_id=flow_id, offset=start),
                    )
                    tx.set_properties({key: str(next_offset)})
                    if delete_filter is not None and snapshot is not None:
                        tx.delete(delete_filter=delete_filter, snapshot_properties=properties)
                    if data_files:
                        with tx.update_snapshot(snapshot_properties=properties).merge_append() as add:
                            for data_file in data_files:
                                add.append_data_file(data_file)
                self.commits.notify()
                return table, True
            except Superseded:  # another batcher moved the position first
                return self.catalog.load_table(table.name()), False
            except CommitFailedException:
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise
                table = self.catalog.load_table(table.name())
        raise AssertionError("unreachable")

    def expire_snapshots(self, table: Table, older_than_ms: int, keep: int = 10) -> int:
        """Expire snapshots older than ``older_than_ms`` beyond the ``keep`` newest; returns how many.

        The newest snapshot of each flow is kept whatever its age: a batch flow finds where its next
        window starts in it (:meth:`latest_checkpoint`), and a streaming flow's frequent commits must
        not expire it.
        """
        snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms, reverse=True)
        current = table.current_snapshot()
        protected = {current.snapshot_id} if current is not None else set()
        seen_flows: set[str] = set()
        for snapshot in snapshots:
            props = dict(snapshot.summary.additional_properties) if snapshot.summary else {}
            flow = props.get(PREFIX + "flowId")
            if flow and flow not in seen_flows:
                seen_flows.add(flow)
                protected.add(snapshot.snapshot_id)
        old = [
            s.snapshot_id
            for s in snapshots[keep:]
            if s.timestamp_ms < older_than_ms and s.snapshot_id not in protected
        ]
        if old:
            table.maintenance.expire_snapshots().by_ids(old).commit()
        return len(old)

    # --- checkpoints and reads ---
    def checkpoints(self, table: Table, **match: str) -> Iterator[Checkpoint]:
        """Checkpoints of committed snapshots, newest first, whose properties match ``match``."""
        wanted = {PREFIX + k: v for k, v in match.items()}
        snapshots = sorted(
            table.snapshots(), key=lambda s: (s.sequence_number or 0, s.timestamp_ms), reverse=True
        )
        for snapshot in snapshots:
            props = dict(snapshot.summary.additional_properties) if snapshot.summary else {}
            if all(props.get(k) == v for k, v in wanted.items()):
                yield Checkpoint(snapshot.snapshot_id, props)

    def latest_checkpoint(self, table: Table, **match: str) -> Checkpoint | None:
        return next(self.checkpoints(table, **match), None)

    def scan(self, table: Table, limit: int | None = None) -> pa.RecordBatchReader:
        """The table's current rows; a lake failure while reading them (now or as the reader is
        consumed) is LakeUnavailable."""
        with _lake_io("reading a table"):
            reader = table.scan(limit=limit).to_arrow_batch_reader()
        return pa.RecordBatchReader.from_batches(reader.schema, _guarded(reader))

    def query(self, table: Table, sql: str, limits: QueryLimits | None = None) -> pa.Table:
        """Run one SELECT over the table's current snapshot, exposed as the table ``dataset``.

        The query runs in :class:`~headwater.lake.query.QueryEngine`: it can read that table and
        nothing else (no files, no extensions, no settings), within ``limits`` (the settings' query
        limits by default). Raises :class:`~headwater.lake.query.QueryError` subclasses.
        """
        from headwater.lake.query import QueryEngine, QueryLimits

        engine = QueryEngine(limits or QueryLimits.from_settings(self.settings))
        return engine.run(sql, {"dataset": IcebergSource(table)}).table


class IcebergSource:
    """A dataset's table as the query engine reads it: always through one snapshot, the one current
    when the table was loaded, however many times a query scans it (never the folder's files)."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def schema(self) -> pa.Schema:
        return self.table.schema().as_arrow()

    def reader(self) -> pa.RecordBatchReader:
        with _lake_io("reading a table"):
            reader = self.table.scan().to_arrow_batch_reader()
        return pa.RecordBatchReader.from_batches(reader.schema, _guarded(reader))


def _guarded(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    with _lake_io("reading a table"):
        yield from reader


def _missing_fields(current: pa.Schema, wanted: pa.Schema) -> bool:
    """True when ``wanted`` has a field (at any depth) that ``current`` lacks."""
    for field in wanted:
        index = current.get_field_index(field.name)
        if index < 0:
            return True
        have = current.field(index).type
        nested = pa.types.is_struct(field.type) and pa.types.is_struct(have)
        if nested and _missing_fields(pa.schema(list(have)), pa.schema(list(field.type))):
            return True
    return False
