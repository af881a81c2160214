"""Variable bindings of an activation flow: each variable of the destination's request takes its value
from a source record, by path (``{"source": "person.name.firstName"}``) or by a mapping expression
(``{"expression": "lower(email)"}``, the language of mapping sets).

Paths are read straight from the record (Python dicts). Expressions run over a chunk of records at once
as Arrow, as mapping sets do; a record whose expression fails gets an error naming the variable and the
reason, and no variables (its delivery becomes a dead letter without a request).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from headwater.engines.mapping import paths
from headwater.engines.mapping.evaluate import Scope, compile_expression, evaluate
from headwater.engines.mapping.expressions import ExpressionError, Node
from headwater.engines.mapping.results import Describe, show
from headwater.engines.mapping.rows import plain, to_batch

Bound = tuple[dict[str, Any] | None, str | None]  # (variables, error)


def check(bindings: Any, where: str) -> list[dict[str, str]]:
    """Problems of a ``bindings`` object (``where`` prefixes the paths), none when it is usable."""
    if not isinstance(bindings, dict):
        return [{"path": where, "message": "must be an object: variable name -> {source} or {expression}"}]
    errors: list[dict[str, str]] = []
    for name, spec in bindings.items():
        path = f"{where}.{name}"
        if not isinstance(spec, dict) or len(spec.keys() & {"source", "expression"}) != 1:
            errors.append(
                {"path": path, "message": 'must be {"source": "<path>"} or {"expression": "<expr>"}'}
            )
            continue
        key = "source" if "source" in spec else "expression"
        text = spec[key]
        if not isinstance(text, str) or not text.strip():
            errors.append({"path": f"{path}.{key}", "message": "must be a non-empty string"})
        elif key == "expression":
            try:
                compile_expression(text)
            except ExpressionError as exc:
                errors.append({"path": f"{path}.expression", "message": f"expression does not parse: {exc}"})
    return errors


class Bindings:
    def __init__(self, bindings: Mapping[str, Mapping[str, str]]) -> None:
        self.sources: list[tuple[str, tuple[str | int, ...], str]] = []
        self.expressions: list[tuple[str, Node]] = []
        for name, spec in bindings.items():
            if "source" in spec:
                parsed = paths.parse(spec["source"])
                self.sources.append((name, parsed.steps, parsed.text))
            else:
                self.expressions.append((name, compile_expression(spec["expression"])))

    def bind(self, records: Sequence[Any]) -> list[Bound]:
        """The variables of each record (in order), or the reason they could not be bound."""
        out: list[Bound] = []
        for record in records:
            if not isinstance(record, dict):
                out.append((None, "the record is not a JSON object"))
                continue
            out.append(({name: _read(record, steps, text) for name, steps, text in self.sources}, None))
        if self.expressions:
            self._evaluate(records, out)
        return out

    def _evaluate(self, records: Sequence[Any], out: list[Bound]) -> None:
        rows = [r if isinstance(r, dict) else {} for r in records]
        batch = to_batch(rows)
        now = datetime.now(UTC)
        for name, node in self.expressions:
            failures: dict[int, str] = {}
            try:
                values = evaluate(node, Scope(batch, now, _collect(failures))).to_pylist()
            except (pa.ArrowException, ValueError, TypeError) as exc:
                values, failures = [None] * len(rows), dict.fromkeys(range(len(rows)), str(exc))
            for index, value in enumerate(values):
                variables = out[index][0]
                if variables is None:
                    continue
                if index in failures:
                    out[index] = (None, f"the expression of variable {name!r} failed: {failures[index]}")
                else:
                    variables[name] = plain(value)


def _collect(failures: dict[int, str]) -> Any:
    def sink(where: pa.Array, vals: pa.Array, function: str, describe: Describe) -> None:
        for index, value in zip(where.to_pylist(), vals.to_pylist(), strict=True):
            failures.setdefault(index, f"{function}: {describe(value)} ({show(value)})")

    return sink


def _read(record: dict[str, Any], steps: tuple[str | int, ...], text: str) -> Any:
    if text in record:
        return record[text]
    value: Any = record
    for index, step in enumerate(steps):
        if step == paths.EVERY:
            if not isinstance(value, list):
                return None
            return [_read_rest(v, steps[index + 1 :]) for v in value]
        value = _step(value, step)
        if value is None:
            return None
    return value


def _read_rest(value: Any, steps: tuple[str | int, ...]) -> Any:
    for step in steps:
        value = _step(value, step)
        if value is None:
            return None
    return value


def _step(value: Any, step: str | int) -> Any:
    if isinstance(step, int):
        return value[step] if isinstance(value, list) and -len(value) <= step < len(value) else None
    return value.get(step) if isinstance(value, dict) else None
