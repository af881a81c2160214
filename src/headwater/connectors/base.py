"""The contract every source connector implements.

A connector is built from a connection's decrypted auth params and the outbound policy. It explores
what a connection can read, describes a source connection's columns, and reads a source connection as a
stream of Arrow record batches, optionally restricted to an incremental window on a delta column.

Window semantics (the runtime relies on them): a read with ``window_start`` S and ``window_end`` E
returns exactly the rows whose delta column value v satisfies ``S < v <= E`` (S absent: no lower bound;
E absent: no upper bound). Values compare as UTC instants. Rows whose delta value is null are returned
only by reads with no lower bound. Batches may arrive in any order.

Row keys (the runtime's late-row overlap, runtime/lookback.py): a read with ``key_columns`` set (a
tuple, possibly empty) returns, after the output columns of every batch, one more column per name in
``key_columns`` (that source column's values, whether or not the output names it) and then the delta
column as read for the window (timestamp[us, UTC] or date32). The runtime finds them by position, the
last ``len(key_columns) + 1`` columns, and removes them before mapping. Connectors that can do this
declare a ``default_lookback_seconds``; the others keep ``None`` and are never asked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import pyarrow as pa

    from headwater.connectors.outbound import OutboundPolicy
    from headwater.settings import Settings


LOOKBACK_OPTION = "lookbackSeconds"  # the flow option that overrides a connector's default lookback
MAX_LOOKBACK_SECONDS = 7 * 24 * 3600


def lookback_option_errors(options: dict[str, Any]) -> list[dict[str, str]]:
    """Validation errors for a flow's ``options.lookbackSeconds`` (a number of seconds, 0 to 7 days)."""
    if LOOKBACK_OPTION not in options:
        return []
    value = options[LOOKBACK_OPTION]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= MAX_LOOKBACK_SECONDS
    ):
        message = f"must be a number of seconds from 0 to {MAX_LOOKBACK_SECONDS}"
        return [{"path": f"options.{LOOKBACK_OPTION}", "message": message}]
    return []


def lookback_seconds(options: dict[str, Any], default: float | None) -> float:
    """A flow's overlap: its option, else the connector's default; 0 when the connector has none."""
    if default is None:
        return 0.0
    if LOOKBACK_OPTION not in options or lookback_option_errors(options):
        return default
    return float(options[LOOKBACK_OPTION])


@dataclass(frozen=True)
class ReadRequest:
    params: dict[str, Any]  # the source connection's params (tableName, columns, path, ...)
    data_format: str  # delimited | json | parquet | tabular
    delta_column: str | None = None
    window_start: datetime | None = None  # exclusive, timezone-aware UTC
    window_end: datetime | None = None  # inclusive, timezone-aware UTC
    batch_size: int = 65_536
    options: dict[str, Any] = field(default_factory=dict)  # connector-specific extras
    key_columns: tuple[str, ...] | None = None  # append these and the delta (module docstring)


@dataclass(frozen=True)
class ExploreItem:
    name: str
    type: str  # "table" | "folder" | "file" | "object"
    label: str | None = None
    path: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "name": self.name}
        if self.label:
            out["label"] = self.label
        if self.path:
            out["path"] = self.path
        return out


class SourceConnector(ABC):
    """One connection's access to its source. Not thread-safe; one per run or request."""

    # How far before its window an incremental run re-reads by default, for rows committed late at the
    # source (runtime/lookback.py); None: the connector cannot return row keys, so no overlap is read.
    default_lookback_seconds: ClassVar[float | None] = None

    def __init__(self, auth: dict[str, Any], outbound: OutboundPolicy, settings: Settings) -> None:
        self.auth = auth
        self.outbound = outbound
        self.settings = settings

    @abstractmethod
    def explore(self) -> list[ExploreItem]:
        """What this connection can read: tables, objects or files (``?objectType=root``)."""

    @abstractmethod
    def describe(self, name: str) -> pa.Schema:
        """The Arrow schema of one table or object (``?objectType=table&object=NAME``)."""

    def preview(self, name: str, limit: int = 10) -> pa.Table:
        """Up to ``limit`` rows of one table or object."""
        import pyarrow as pa

        batches = []
        rows = 0
        for batch in self.read(
            ReadRequest(params={"tableName": name}, data_format="tabular", batch_size=limit)
        ):
            batches.append(batch.slice(0, limit - rows))
            rows += batches[-1].num_rows
            if rows >= limit:
                break
        return (
            pa.Table.from_batches(batches, schema=self.describe(name))
            if batches
            else self.describe(name).empty_table()
        )

    @abstractmethod
    def read(self, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        """Stream the rows of ``request`` (see the window semantics in the module docstring)."""

    def primary_key(self, params: dict[str, Any]) -> tuple[str, ...]:
        """The columns that identify a row of what ``params`` names (its primary key); empty when the
        source has none (a view, a table without a key): the runtime then keys rows on their values."""
        return ()

    def close(self) -> None:  # noqa: B027 - optional hook, most connectors hold nothing to release
        """Release connections; called once when the run or request is done."""
