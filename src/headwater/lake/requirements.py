"""What Headwater's Iceberg commits assert, beyond Iceberg's own requirements: that a streaming flow's
log position is still the one a micro-batch was read from, and that a run has not committed yet.

Iceberg's ``assert-ref-snapshot-id`` alone does not make either commit happen once:

- a micro-batch that adds no rows (every record failed, was a duplicate, or deleted nothing) moves the
  position (a table property) without making a snapshot, so a second batcher that read the same records
  from the same snapshot passes it;
- pyiceberg (0.12) retries a commit that made a snapshot when the table changed under it: it reloads the
  table, drops the transaction's ``assert-ref-snapshot-id`` and appends again on the new snapshot. Two
  batchers of one flow, or two attempts of one run, would both commit.

The requirements here are kept on those retries and checked by pyiceberg's SQL catalog against the
table's metadata as loaded at commit time; the catalog then swaps its row only if that metadata is
still current (``UPDATE … WHERE metadata_location = <the one loaded>``, in PostgreSQL or SQLite). So of
two commits of the same records exactly one succeeds. A refusal raises :class:`Superseded`, which
pyiceberg does not retry (it is no ``CommitFailedException``). These requirements are not in the REST
catalog specification: they work with the SQL catalog Headwater commits through, which sends them
nowhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from pyiceberg.exceptions import ValidationException
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import ValidatableTableRequirement

if TYPE_CHECKING:
    from pyiceberg.table import Transaction

PREFIX = "headwater."


class Superseded(ValidationException):
    """Another commit came first: the position moved, or the run is committed. Nothing was added."""


def require(tx: Transaction, *requirements: ValidatableTableRequirement) -> None:
    """Add ``requirements`` to the transaction ``tx`` (checked now, and again at its commit)."""
    found: Any = requirements  # pyiceberg types them as its own union of the specification's
    tx._apply((), found)


def offset_key(flow_id: str) -> str:
    return f"{PREFIX}stream.{flow_id}.offset"


def offset_in(properties: dict[str, str], flow_id: str) -> int:
    """Where ``flow_id``'s log is committed up to, in a table's ``properties`` (0: nothing yet)."""
    return int(properties.get(offset_key(flow_id), "0"))


def committed_in(metadata: TableMetadata, match: dict[str, str]) -> bool:
    """Whether a snapshot of ``metadata`` carries every property of ``match``."""
    for snapshot in metadata.snapshots:
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        if all(summary.get(k) == v for k, v in match.items()):
            return True
    return False


class AssertStreamOffset(ValidatableTableRequirement):
    """The table's log position of ``flow_id`` must still be ``offset``."""

    type: Literal["assert-headwater-stream-offset"] = Field(default="assert-headwater-stream-offset")
    flow_id: str
    offset: int

    def validate(self, base_metadata: TableMetadata | None) -> None:  # type: ignore[override]
        found = offset_in(base_metadata.properties, self.flow_id) if base_metadata else None
        if found != self.offset:
            raise Superseded(f"the log position of flow {self.flow_id} is {found}, not {self.offset}")


class AssertNotCommitted(ValidatableTableRequirement):
    """No snapshot of the table may carry ``match`` (prefixed checkpoint properties, e.g. the flow and
    run ids): the run has not committed."""

    type: Literal["assert-headwater-not-committed"] = Field(default="assert-headwater-not-committed")
    match: dict[str, str]

    def validate(self, base_metadata: TableMetadata | None) -> None:  # type: ignore[override]
        if base_metadata is not None and committed_in(base_metadata, self.match):
            raise Superseded(f"a snapshot with {self.match} is committed already")
