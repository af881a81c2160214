"""Compiling a mapping set against a resolved schema, and applying it to Arrow batches.

``compile_mapping`` checks everything that does not depend on data once (destinations, expressions,
STATIC constants) and raises ``ValidationFailed`` naming ``mappings[i].source`` or
``.destination``. ``CompiledMapping.apply`` then maps a whole batch with Arrow kernels: read or compute
one array per mapping, assemble the target's nested columns, validate them, and split the rows into
``output`` (passed) and ``errors`` (failed, with reasons).

Each mapping runs inside an error boundary: a value it cannot handle fails that row only
(MAPPER-3700-400, naming the mapping, its destination and what went wrong), and an unexpected error in
a vectorized step is narrowed down by bisection to the rows that cause it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from headwater.engines.mapping import arrays, assemble, coerce, paths
from headwater.engines.mapping.evaluate import Scope, compile_expression, evaluate
from headwater.engines.mapping.expressions import ExpressionError, Node
from headwater.engines.mapping.results import (
    INVALID_VALUE,
    MAPPING_FAILED,
    Describe,
    MappingResult,
    Problems,
    show,
)
from headwater.engines.mapping.validate import validate
from headwater.engines.xdm_arrow import arrow_schema
from headwater.engines.xdm_compose import field_at, split_path
from headwater.errors import ValidationFailed

# (positions within the batch given to ``produce``, offending values, describe)
Sink = Callable[[pa.Array, pa.Array, Describe], None]
Produce = Callable[[pa.RecordBatch, datetime, Sink], pa.Array]
_PLAN_CACHE = 16
_CRASH_LIMIT = 64  # rows a mapping may crash on before it is taken to fail on every row

# The Conversion Service's validation code and the source types a mapping may name (case-insensitive).
CODE = "CONV-1400-400"
SOURCE_TYPES = {
    "attribute": "ATTRIBUTE",
    "static": "STATIC",
    "expression": "EXPRESSION",
    "text/x.schema-path": "ATTRIBUTE",
    "text/x.aep-xl": "EXPRESSION",
}


@dataclass(frozen=True)
class Rule:
    """One mapping, ready to run: where it writes and how it computes one value per row."""

    label: str  # "mappings[2] (EXPRESSION to person.birthYear)", first in its row errors
    destination: str
    produce: Produce


@dataclass(frozen=True)
class Identity:
    """A mapping flagged as an identity (for the run executor: identity map, profile merge)."""

    destination: str
    namespace: str | None
    primary: bool


@dataclass
class Plan:
    rules: list[Rule]
    tree: assemble.Dest
    depths: dict[int, int]  # rule -> list depth of its destination type
    strict: bool = False  # no mapping set: a text field takes text only (typecheck)


class CompiledMapping:
    """A mapping set compiled against a resolved schema; ``apply`` maps batches (thread-safe)."""

    def __init__(
        self,
        resolved: dict[str, Any],
        target: pa.Schema,
        planner: Callable[[pa.Schema], Plan],
        identities: list[Identity] | None = None,
    ) -> None:
        self.resolved = resolved
        self.target = target
        self.identities = identities or []
        self._planner = planner
        self._plans: dict[pa.Schema, Plan] = {}

    def apply(self, batch: pa.RecordBatch, *, now: datetime | None = None) -> MappingResult:
        """Map, convert and validate every row of ``batch``; ``now`` is what ``now()`` returns."""
        moment = now or datetime.now(UTC)
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        if isinstance(batch, pa.Table):  # tolerated: its rows as one batch
            batches = batch.combine_chunks().to_batches()
            batch = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=batch.schema)
        plan = self._plan(batch.schema)
        n = batch.num_rows
        problems = Problems(n)
        values = {i: _produce(rule, batch, moment, problems) for i, rule in enumerate(plan.rules)}

        def rule_sink(rule: int | None, rows: pa.Array, vals: pa.Array, describe: Describe) -> None:
            found = plan.rules[rule] if rule is not None else None
            where = found.label if found else "mapping"
            problems.add(rows, MAPPING_FAILED, found.destination if found else None, where, describe, vals)

        def type_sink(path: str, rows: pa.Array, vals: pa.Array, describe: Describe) -> None:
            problems.add(rows, INVALID_VALUE, path, path, describe, vals)

        columns = assemble.build_columns(
            plan.tree, self.target, n, values, rule_sink, plan.depths, type_sink, plan.strict
        )
        output = self._validated(columns, problems)
        if not problems.items:
            return MappingResult(output, [], arrays.broadcast(False, n, pa.bool_()), n)
        return MappingResult(output, problems.row_errors(), problems.failed_mask(), n)

    def _validated(self, columns: list[pa.Array], problems: Problems) -> pa.RecordBatch:
        """Validate the rows that mapped cleanly; the output batch of the rows that pass."""

        def sink(rows: pa.Array, code: str, path: str, vals: pa.Array | None, describe: Describe) -> None:
            problems.add(rows, code, path, path, describe, vals)

        rows: pa.Array | None = None
        if problems.items:  # rows that failed mapping are not validated (nor output)
            alive = pc.invert(problems.failed_mask())
            columns, rows = _kept(columns, alive), arrays.positions(alive)
        mapped = len(problems.items)
        validate(self.resolved, self.target, columns, rows, sink)
        if len(problems.items) > mapped:
            passed = pc.invert(problems.failed_mask())
            columns = _kept(columns, passed if rows is None else passed.take(rows))
        return pa.RecordBatch.from_arrays(columns, schema=self.target)

    def _plan(self, schema: pa.Schema) -> Plan:
        plan = self._plans.get(schema)
        if plan is None:
            plan = self._planner(schema)
            if len(self._plans) >= _PLAN_CACHE:
                self._plans.clear()
            self._plans[schema] = plan
        return plan


def _kept(columns: list[pa.Array], keep: pa.Array) -> list[pa.Array]:
    """The columns filtered by ``keep``; all-null ones are made anew (filtering them is slow)."""
    count = int(pc.sum(keep).as_py() or 0)
    return [c.filter(keep) if c.null_count < len(c) else pa.nulls(count, c.type) for c in columns]


def _produce(rule: Rule, batch: pa.RecordBatch, now: datetime, problems: Problems) -> pa.Array:
    """The rule's values for every row; rows it fails on (or crashes on) are recorded and null."""
    n = batch.num_rows
    committed: list[tuple[pa.Array, pa.Array, Describe]] = []

    def step(offset: int, length: int) -> pa.Array:
        local: list[tuple[pa.Array, pa.Array, Describe]] = []
        part = batch if (offset == 0 and length == n) else batch.slice(offset, length)

        def sink(where: pa.Array, vals: pa.Array, describe: Describe) -> None:
            local.append((pc.add(where.cast(pa.int64()), offset), vals, describe))

        result = arrays.normalize(rule.produce(part, now, sink))
        committed.extend(local)  # only once the whole slice succeeded: a retried slice reports again
        return result

    try:
        value, crashes = arrays.bisect(
            step, n, pa.null(), errors=(Exception,), limit=max(_CRASH_LIMIT, n // 100)
        )
    except arrays.TooManyFailures as exc:  # failing everywhere: one reason for the whole batch
        reason = exc.failures[0][1]
        problems.add(arrays.arange(n), MAPPING_FAILED, rule.destination, rule.label, _said(reason))
        return pa.nulls(n)
    for rows, vals, describe in committed:
        problems.add(rows, MAPPING_FAILED, rule.destination, rule.label, describe, vals)
    for row, reason in crashes:
        problems.add(pa.array([row], pa.int64()), MAPPING_FAILED, rule.destination, rule.label, _said(reason))
    return value


def _said(reason: str) -> Describe:
    return lambda _value: reason


# --- compiling ---
def compile_mapping(mapping_set_doc: dict[str, Any], resolved_schema: dict[str, Any]) -> CompiledMapping:
    """Compile a stored mapping set (as conversion.py renders it) against the resolved output schema.

    ValidationFailed (CONV-1400-400) lists every mapping that cannot run: an expression that does not
    parse (``mappings[i].source``, with the position), a STATIC value the destination type cannot hold,
    a destination that is not a field or is mapped twice (``mappings[i].destination``).
    """
    target = arrow_schema(resolved_schema)
    mappings = mapping_set_doc.get("mappings") if isinstance(mapping_set_doc, dict) else None
    if not isinstance(mappings, list):
        raise ValidationFailed(
            [{"path": "mappings", "message": "is required: a list of mappings"}], code=CODE
        )
    errors: list[dict[str, str]] = []
    tree = assemble.root(resolved_schema, target)
    rules: list[Rule] = []
    depths: dict[int, int] = {}
    identities: list[Identity] = []
    for index, mapping in enumerate(mappings):
        rule = _compile_one(index, mapping, resolved_schema, tree, len(rules), depths, errors)
        if rule is not None:
            rules.append(rule)
            if mapping.get("identity") or mapping.get("primaryIdentity"):
                namespace = mapping.get("namespaceCode")
                identities.append(
                    Identity(
                        rule.destination,
                        namespace if isinstance(namespace, str) else None,
                        mapping.get("primaryIdentity") is True,
                    )
                )
    if errors:
        raise ValidationFailed(errors, code=CODE)
    plan = Plan(rules, tree, depths)
    return CompiledMapping(resolved_schema, target, lambda _schema: plan, identities)


def _compile_one(
    index: int,
    mapping: Any,
    resolved: dict[str, Any],
    tree: assemble.Dest,
    position: int,
    depths: dict[int, int],
    errors: list[dict[str, str]],
) -> Rule | None:
    where = f"mappings[{index}]"
    if not isinstance(mapping, dict):
        errors.append({"path": where, "message": "must be an object with sourceType, source and destination"})
        return None
    raw_type = mapping.get("sourceType") or "ATTRIBUTE"
    source_type = SOURCE_TYPES.get(raw_type.lower()) if isinstance(raw_type, str) else None
    source = mapping.get("source", mapping.get("sourceAttribute"))
    destination = mapping.get("destination", mapping.get("destinationXdmPath"))
    count = len(errors)
    if source_type is None:
        errors.append({"path": f"{where}.sourceType", "message": "must be ATTRIBUTE, STATIC or EXPRESSION"})
    if not isinstance(source, str):
        errors.append({"path": f"{where}.source", "message": "is required and must be a string"})
    if not isinstance(destination, str) or not destination:
        errors.append({"path": f"{where}.destination", "message": "is required and must be a schema path"})
    if len(errors) > count:
        return None
    assert isinstance(source, str) and isinstance(destination, str) and source_type is not None
    node = _place(tree, destination, position, resolved, f"{where}.destination", errors)
    if node is None:
        return None
    depths[position] = arrays.list_depth(node.arrow)
    label = f"{where} ({source_type} to {destination})"
    produce = _producer(source_type, source, node, f"{where}.source", errors)
    return Rule(label, destination, produce) if produce is not None else None


def _place(
    tree: assemble.Dest,
    destination: str,
    position: int,
    resolved: dict[str, Any],
    where: str,
    errors: list[dict[str, str]],
) -> assemble.Dest | None:
    parts = split_path(destination)
    if parts is None or field_at(resolved, destination) is None:
        errors.append({"path": where, "message": f"{destination!r} is not a field of the output schema"})
        return None
    try:
        return assemble.place(tree, parts, position, destination)
    except assemble.DestinationError as exc:
        errors.append({"path": where, "message": str(exc)})
        return None


def _producer(
    source_type: str, source: str, node: assemble.Dest, where: str, errors: list[dict[str, str]]
) -> Produce | None:
    if source_type == "ATTRIBUTE":
        return _attribute(paths.parse(source))
    if source_type == "STATIC":
        return _static(source, node, where, errors)
    try:
        expression = compile_expression(source)
    except ExpressionError as exc:
        errors.append({"path": where, "message": f"the expression does not parse: {exc}"})
        return None
    return _expression(expression)


def _attribute(path: paths.SourcePath) -> Produce:
    def produce(batch: pa.RecordBatch, now: datetime, sink: Sink) -> pa.Array:
        found = path.read(batch)
        return found if found is not None else pa.nulls(batch.num_rows)

    return produce


def _static(source: str, node: assemble.Dest, where: str, errors: list[dict[str, str]]) -> Produce | None:
    problems: list[str] = []

    def report(_where: pa.Array, vals: pa.Array, describe: Describe) -> None:
        problems.extend(describe(v) for v in vals.to_pylist())

    constant = coerce.coerce(pa.array([source], pa.string()), node.arrow, report)
    if problems:
        errors.append(
            {"path": where, "message": f"the constant {show(source)} does not fit {node.path}: {problems[0]}"}
        )
        return None
    scalar = constant[0]

    def produce(batch: pa.RecordBatch, now: datetime, sink: Sink) -> pa.Array:
        return pa.repeat(scalar, batch.num_rows)

    return produce


def _expression(expression: Node) -> Produce:
    def produce(batch: pa.RecordBatch, now: datetime, sink: Sink) -> pa.Array:
        def named(where: pa.Array, vals: pa.Array, function: str, describe: Describe) -> None:
            sink(where, vals, lambda value: f"{function}: {describe(value)}")

        return evaluate(expression, Scope(batch, now, named))

    return produce


# --- no mapping set ---
def identity_compile(resolved_schema: dict[str, Any]) -> CompiledMapping:
    """Copy input columns to the schema fields of the same dotted path (flows without a Mapping step).

    A column named like a top-level field fills it whole (structs field by field, by name); a column
    named with a dotted path (``person.name.firstName``, as flat files write them) fills that field.
    Columns that name no field of the schema are ignored.
    """
    target = arrow_schema(resolved_schema)

    def planner(schema: pa.Schema) -> Plan:
        tree = assemble.root(resolved_schema, target)
        rules: list[Rule] = []
        depths: dict[int, int] = {}
        for name in schema.names:
            parts = [name] if name in target.names else split_path(name)
            if parts is None or (name not in target.names and field_at(resolved_schema, name) is None):
                continue
            try:
                node = assemble.place(tree, parts, len(rules), name)
            except assemble.DestinationError:
                continue  # a second column for the same field: the first one wins
            depths[len(rules)] = arrays.list_depth(node.arrow)
            rules.append(
                Rule(f"column {name!r} (to {name})", name, _attribute(paths.SourcePath(name, (name,))))
            )
        return Plan(rules, tree, depths, strict=True)

    return CompiledMapping(resolved_schema, target, planner)
