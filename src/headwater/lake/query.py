"""The query engine: caller-written SQL over datasets, with no power beyond reading those datasets.

Contract (what the CLI uses today and the Query Service API will use):

- :meth:`QueryEngine.run` takes one SQL text and a mapping of table name -> :class:`TableSource`. The
  caller decides which tables are visible (the datasets of one sandbox, see
  :mod:`headwater.services.queries`); nothing else can be named. Only the sources the SQL references are
  opened, each read through its Iceberg table's current snapshot, as often as the query scans it.
- The SQL must be ONE ``SELECT`` (``WITH``, ``VALUES``, ``DESCRIBE``, ``SUMMARIZE`` included). ``COPY``,
  ``EXPORT``, ``ATTACH``, ``INSTALL``, ``LOAD``, ``SET``, ``PRAGMA``, ``CREATE`` and the rest are refused
  before DuckDB runs anything.
- Each query gets a fresh in-memory DuckDB connection whose configuration is fixed at connect time and
  then locked: no file system or network access (``enable_external_access = false``: ``read_csv``,
  ``read_text``, ``read_parquet``, ``glob``, ``COPY ... TO``, ``ATTACH 'file'``, ``INSTALL`` all fail), no
  extension loading or auto-install, no lookup of Python variables by name, no spilling to disk, a
  memory limit and a thread count. ``SET``/``RESET`` cannot undo any of it (``lock_configuration``).
- Bounds: a watchdog interrupts a query that runs longer than ``timeout_seconds``; at most ``max_rows``
  rows and ``max_result_bytes`` of Arrow data come back (``QueryResult.truncated`` says when more rows
  existed).
- :meth:`QueryEngine.describe` answers the Arrow schema of a SELECT's rows without reading any (the Query
  Service checks an ``INSERT INTO``'s columns with it before queuing the query).
- Errors are :class:`QueryError` subclasses (400s: the query's fault, retrying will not help), each with
  a message that says what to change. The connection is closed when ``run`` returns or raises.

What DuckDB's memory limit does not count: single values a query builds (``repeat('x', 10^8)``) live
outside its buffer manager. The time bound stops such a query, and a process that runs untrusted SQL
for many callers should run the engine in a child process with an address-space limit (the CLI, a
one-shot process, bounds itself with :func:`bound_address_space`).
"""

from __future__ import annotations

import json
import resource
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pyarrow as pa

from headwater.errors import BadRequest

if TYPE_CHECKING:
    import duckdb

# The only statement DuckDB may run for a caller. DESCRIBE/SUMMARIZE/SHOW parse as SELECT too.
_ALLOWED_STATEMENT = "SELECT"
_BATCH_ROWS = 8192
T = TypeVar("T")


class QueryError(BadRequest):
    """A query that cannot run as written. ``detail`` says why and what to change."""

    title, code = "Query failed", "QRY-1400-400"


class QueryRefused(QueryError):
    """The SQL asks for something other than reading the visible datasets (a statement, a file)."""

    title, code = "Query refused", "QRY-1403-400"


class QueryLimitExceeded(QueryError):
    """The query ran past its time or memory bound."""

    title, code = "Query limit exceeded", "QRY-1413-400"


class TableSource(Protocol):
    """One table a query may read. Both methods may be called several times (a self-join scans twice)."""

    def schema(self) -> pa.Schema:
        """The table's Arrow schema (what every reader from :meth:`reader` yields)."""

    def reader(self) -> pa.RecordBatchReader:
        """A fresh reader over the table's current rows."""


@dataclass(frozen=True)
class QueryLimits:
    """Bounds of one query. Read from the settings by :meth:`from_settings`."""

    timeout_seconds: float = 60.0
    memory_mb: int = 1024
    threads: int = 2
    max_rows: int = 100_000
    max_result_bytes: int = 256 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Any) -> QueryLimits:
        return cls(
            timeout_seconds=settings.query_timeout_seconds,
            memory_mb=settings.query_memory_mb,
            threads=settings.query_threads,
            max_rows=settings.query_max_rows,
            max_result_bytes=settings.query_max_result_mb * 1024 * 1024,
        )


@dataclass(frozen=True)
class QueryResult:
    """The rows of a query; ``truncated`` when the query had more rows than its limits let through."""

    table: pa.Table
    truncated: bool


class QueryEngine:
    """Runs caller-written SQL over the tables a caller names, and nothing else. Thread-safe."""

    def __init__(self, limits: QueryLimits | None = None) -> None:
        self.limits = limits or QueryLimits()

    def run(
        self,
        sql: str,
        tables: Mapping[str, TableSource],
        setup: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    ) -> QueryResult:
        """Run ``sql`` (one SELECT) with ``tables`` visible by name (case-insensitive); see the module.
        ``setup``, when given, prepares the connection first (the wire endpoint's emulated PostgreSQL
        catalog: pgwire/catalog.py); it runs before the statement, which is still checked as any."""
        return self._run(sql, tables, self._fetch, setup)

    def describe(self, sql: str, tables: Mapping[str, TableSource]) -> pa.Schema:
        """The Arrow schema of ``sql``'s rows, without reading any (checked and bounded like :meth:`run`)."""
        return self._run(sql, tables, _describe)

    def _run(
        self,
        sql: str,
        tables: Mapping[str, TableSource],
        fetch: Callable[[duckdb.DuckDBPyConnection, str], T],
        setup: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    ) -> T:
        visible = {name.lower(): source for name, source in tables.items()}
        connection = self._connect()
        watchdog = _Watchdog(connection, self.limits.timeout_seconds)
        scanned: list[_Scannable] = []
        try:
            _check_statement(connection, sql)
            if setup is not None:
                setup(connection)
            for name in _referenced_tables(connection, sql):
                if name in visible:
                    scanned.append(_Scannable(visible[name]))
                    connection.register(name, scanned[-1])
            with watchdog:
                return fetch(connection, sql)
        except QueryError:
            raise
        except Exception as exc:
            # A source's own failure (no data yet, the lake unreadable) reaches here wrapped by DuckDB:
            # raise it as it was. The rest are DuckDB's errors, translated to what the caller can change.
            failed = next((s.error for s in scanned if s.error is not None), None)
            if failed is not None:
                raise failed from None
            raise _translate(exc, watchdog.fired, self.limits, visible) from exc
        finally:
            connection.close()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        # Set at connect time, then locked: a query cannot SET, RESET or PRAGMA any of it back.
        config: dict[str, str | bool | int | float | list[str]] = {
            "enable_external_access": "false",
            "autoload_known_extensions": "false",
            "autoinstall_known_extensions": "false",
            "allow_community_extensions": "false",
            "allow_unsigned_extensions": "false",
            "allow_persistent_secrets": "false",
            "python_enable_replacements": "false",  # never resolve a table name to a Python variable
            "temp_directory": "",  # no spilling: the memory limit is a limit
            "memory_limit": f"{self.limits.memory_mb}MB",
            "threads": str(self.limits.threads),
            "lock_configuration": "true",
        }
        return duckdb.connect(":memory:", config=config)

    def _fetch(self, connection: duckdb.DuckDBPyConnection, sql: str) -> QueryResult:
        relation = connection.sql(sql)
        reader = relation.to_arrow_reader(_BATCH_ROWS)
        batches: list[pa.RecordBatch] = []
        rows = size = 0
        for batch in _batches(reader):
            fit = min(self.limits.max_rows - rows, _rows_within(batch, self.limits.max_result_bytes - size))
            if fit < batch.num_rows:  # more rows than the limits let through: keep what fits, stop
                batches.append(batch.slice(0, fit))
                return QueryResult(pa.Table.from_batches(batches, schema=reader.schema), True)
            batches.append(batch)
            rows += batch.num_rows
            size += batch.nbytes
        return QueryResult(pa.Table.from_batches(batches, schema=reader.schema), False)


def _describe(connection: duckdb.DuckDBPyConnection, sql: str) -> pa.Schema:
    schema: pa.Schema = connection.sql(sql).limit(0).to_arrow_table().schema
    return schema


def _batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return


def _rows_within(batch: pa.RecordBatch, budget: int) -> int:
    """How many leading rows of ``batch`` fit in ``budget`` bytes (an estimate by average row size)."""
    rows, size = int(batch.num_rows), int(batch.nbytes)
    if size <= budget:
        return rows
    if budget <= 0:
        return 0
    return min(rows, budget * rows // max(size, 1))


class _Scannable:
    """A :class:`TableSource` as DuckDB scans Python objects: a schema, and a fresh stream per scan."""

    def __init__(self, source: TableSource) -> None:
        self._source = source
        self._schema: pa.Schema | None = None
        self.error: Exception | None = None  # what the source raised, for the engine to raise unwrapped

    def _arrow_schema(self) -> pa.Schema:
        if self._schema is None:
            try:
                self._schema = self._source.schema()
            except Exception as exc:
                self.error = exc
                raise
        return self._schema

    def __arrow_c_schema__(self) -> object:
        return self._arrow_schema().__arrow_c_schema__()

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        try:
            reader = self._source.reader()
        except Exception as exc:
            self.error = exc
            raise
        if reader.schema != self._arrow_schema():
            reader = reader.cast(self._arrow_schema())
        recording = pa.RecordBatchReader.from_batches(reader.schema, self._recording(reader))
        return recording.__arrow_c_stream__(requested_schema)

    def _recording(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        """The batches; a failure while DuckDB reads them is kept, so the engine raises it as it was
        (a lake outage midway through a scan), not DuckDB's wrapping of it."""
        try:
            yield from reader
        except Exception as exc:
            self.error = exc
            raise


class _Watchdog:
    """Interrupts the connection's running query when the time bound passes."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self.fired = False
        self._connection = connection
        self._timer = threading.Timer(seconds, self._interrupt)
        self._timer.daemon = True

    def _interrupt(self) -> None:
        self.fired = True
        self._connection.interrupt()

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()


def _check_statement(connection: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but one SELECT, before DuckDB binds or runs it."""
    try:
        statements = connection.extract_statements(sql)
    except Exception as exc:  # a parse error: DuckDB's message points at the offending token
        raise QueryError(f"The SQL does not parse: {_first_line(exc)}") from exc
    if len(statements) != 1:
        raise QueryRefused(f"Send exactly one SELECT statement (this SQL has {len(statements)}).")
    kind = statements[0].type.name
    if kind != _ALLOWED_STATEMENT:
        raise QueryRefused(
            f"Only SELECT queries over this sandbox's datasets run here; {kind} statements are not "
            "allowed (nor COPY, EXPORT, ATTACH, INSTALL, LOAD, SET, PRAGMA or CREATE)."
        )


def _referenced_tables(connection: duckdb.DuckDBPyConnection, sql: str) -> set[str]:
    """Unqualified table names the SELECT reads (from its parse tree; binding is not needed)."""
    rows = connection.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
    tree = json.loads(rows[0][0])
    if tree.get("error"):
        raise QueryError(f"The SQL does not parse: {tree.get('error_message')}")
    names: set[str] = set()
    _collect_tables(tree, names)
    return names


def _collect_tables(node: Any, names: set[str]) -> None:
    if isinstance(node, dict):
        if node.get("type") == "BASE_TABLE" and not node.get("catalog_name") and not node.get("schema_name"):
            names.add(str(node.get("table_name", "")).lower())
        for value in node.values():
            _collect_tables(value, names)
    elif isinstance(node, list):
        for value in node:
            _collect_tables(value, names)


def _translate(
    exc: Exception, timed_out: bool, limits: QueryLimits, visible: Mapping[str, TableSource]
) -> QueryError:
    """DuckDB's exception as a :class:`QueryError` whose message says what to change."""
    import duckdb

    if timed_out or isinstance(exc, duckdb.InterruptException):
        return QueryLimitExceeded(
            f"The query ran longer than {limits.timeout_seconds:g} s and was stopped "
            "(HEADWATER_QUERY_TIMEOUT_SECONDS). Filter or aggregate more, or add a LIMIT."
        )
    if isinstance(exc, duckdb.OutOfMemoryException):
        return QueryLimitExceeded(
            f"The query needs more than {limits.memory_mb} MB (HEADWATER_QUERY_MEMORY_MB) and was "
            "stopped. Filter or aggregate more, or add a LIMIT."
        )
    if isinstance(exc, duckdb.PermissionException):
        return QueryRefused(
            "Queries read only the datasets of this sandbox: files, URLs, other databases and "
            f"extensions are not reachable ({_first_line(exc)})."
        )
    if isinstance(exc, duckdb.CatalogException) and "Table with name" in str(exc):
        tables = ", ".join(sorted(visible)) or "none"
        return QueryError(
            f"{_first_line(exc).split('!')[0]}: a query sees only the datasets of this sandbox, by "
            f"table name ({tables})."
        )
    if isinstance(exc, duckdb.Error):
        return QueryError(f"The query failed: {_first_line(exc)}")
    if isinstance(exc, MemoryError):
        return QueryLimitExceeded("The query needs more memory than this process may use and was stopped.")
    raise exc


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def bound_address_space(extra_mb: int) -> None:
    """Limit this process's address space to what it uses now plus ``extra_mb`` (plus headroom).

    For one-shot processes only (the CLI): the limit is process-wide, and an allocation past it fails
    with an out-of-memory error instead of growing the host's memory. Values a query builds outside
    DuckDB's buffer manager are bounded this way.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            size_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return  # not Linux: DuckDB's own limit and the time bound remain
    # Threads reserve address space they never touch (stacks, allocator arenas): allow for it.
    limit = (size_kb * 1024) + (extra_mb * 2 + 1024) * 1024 * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft == resource.RLIM_INFINITY or soft > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
