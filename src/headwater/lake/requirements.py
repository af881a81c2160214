"""Commit preconditions that survive pyiceberg's own commit retries.

pyiceberg (0.12) retries a transaction that lost the catalog's compare-and-swap: it refreshes the table,
drops every ``AssertRefSnapshotId`` requirement and applies the snapshot again on top of the new current
one. A precondition written as "the table is still at the snapshot I checked" is gone on that retry, so
two committers of one micro-batch (two workers stepping one streaming flow) or of one run both commit,
and the rows land twice. These requirements state the precondition itself, are kept on a retry, and
end the commit at once with :class:`Superseded` when another committer got there first:

- :class:`AssertProperty`: a table property (a streaming flow's log position) still has its value;
- :class:`AssertNoCheckpoint`: no snapshot carries these checkpoint values (a run committed once).

The catalog validates them against the table's current metadata inside its commit (pyiceberg's
``_update_and_stage_table`` calls each requirement's ``validate``), so the check and the swap are one
step. pyiceberg types requirements as a closed union of its own (hence the ``type: ignore`` where they
are staged); ``validate`` shadows pydantic's deprecated classmethod of that name, as pyiceberg's do.
"""

from __future__ import annotations

from typing import Literal

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import ValidatableTableRequirement


class Superseded(Exception):
    """Another committer got there first; nothing was committed. ``snapshot_id``: its snapshot, when
    known."""

    def __init__(self, message: str, snapshot_id: int | None = None) -> None:
        super().__init__(message)
        self.snapshot_id = snapshot_id


class AssertProperty(ValidatableTableRequirement):
    type: Literal["headwater-assert-property"] = "headwater-assert-property"
    key: str
    value: str
    default: str

    def validate(self, base_metadata: TableMetadata | None) -> None:  # type: ignore[override]
        if base_metadata is None:
            raise CommitFailedException("Requirement failed: current table metadata is missing")
        found = base_metadata.properties.get(self.key, self.default)
        if found != self.value:
            raise Superseded(f"table property {self.key} is {found}, not {self.value}")


class AssertNoCheckpoint(ValidatableTableRequirement):
    type: Literal["headwater-assert-no-checkpoint"] = "headwater-assert-no-checkpoint"
    match: dict[str, str]  # snapshot summary properties, prefixed

    def validate(self, base_metadata: TableMetadata | None) -> None:  # type: ignore[override]
        if base_metadata is None:
            raise CommitFailedException("Requirement failed: current table metadata is missing")
        for snapshot in base_metadata.snapshots:
            props = snapshot.summary.additional_properties if snapshot.summary else {}
            if all(props.get(k) == v for k, v in self.match.items()):
                raise Superseded(f"snapshot {snapshot.snapshot_id} has this checkpoint", snapshot.snapshot_id)
