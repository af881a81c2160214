"""What applying a mapping returns, and how row failures are collected on the way.

Failures are gathered as whole Arrow arrays (the input rows that failed, and the offending values) while
the batch is mapped; messages are only formatted at the end, for the failed rows alone, so a clean batch
pays nothing for error reporting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from headwater.engines.mapping.arrays import mask_at

MAPPING_FAILED = "MAPPER-3700-400"  # a mapping, an expression or a conversion failed on the row
REQUIRED_MISSING = "INGEST-1555-400"  # a required field is missing
INVALID_VALUE = "INGEST-1401-400"  # type, format, pattern, enum, length or range violation

Describe = Callable[[Any], str]  # the offending value (a Python object) -> what is wrong with it
# (positions within the array being processed, the offending values at those positions, describe)
Report = Callable[[pa.Array, pa.Array, Describe], None]


@dataclass
class RowError:
    row: int  # index within the input batch
    code: str  # MAPPING_FAILED, REQUIRED_MISSING or INVALID_VALUE
    message: str  # names the mapping (index and destination) or the schema path, and what is wrong
    path: str | None  # destination XDM path


@dataclass
class MappingResult:
    output: pa.RecordBatch  # rows that passed, shaped exactly as the target schema
    errors: list[RowError]  # one or more per failed row, ordered by row
    failed_rows: pa.Array  # bool mask over the input: True = the row failed (it is not in output)
    input_rows: int


def show(value: Any, limit: int = 80) -> str:
    """A value as it appears in messages: repr, shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class _Failure:
    rows: pa.Array
    values: pa.Array | None
    code: str
    path: str | None
    where: str  # the mapping or the schema path, first in the message
    describe: Describe


@dataclass
class Problems:
    """Row failures collected while a batch is mapped and validated."""

    rows: int
    items: list[_Failure] = field(default_factory=list)

    def add(
        self,
        rows: pa.Array,
        code: str,
        path: str | None,
        where: str,
        describe: Describe,
        values: pa.Array | None = None,
    ) -> None:
        """Record failures of ``rows``; messages read ``row N: {where}: {describe(value)}``."""
        if len(rows):
            self.items.append(_Failure(rows, values, code, path, where, describe))

    def failed_mask(self) -> pa.Array:
        """Bool array over the input rows: True where at least one failure was recorded."""
        return mask_at(self.rows, [row for item in self.items for row in item.rows.to_pylist()])

    def row_errors(self) -> list[RowError]:
        out: list[tuple[int, int, RowError]] = []
        for order, item in enumerate(self.items):
            values = item.values.to_pylist() if item.values is not None else None
            for i, row in enumerate(item.rows.to_pylist()):
                detail = item.describe(values[i] if values is not None else None)
                message = f"row {row}: {item.where}: {detail}"
                out.append((row, order, RowError(int(row), item.code, message, item.path)))
        out.sort(key=lambda entry: (entry[0], entry[1]))
        return [entry[2] for entry in out]
