"""Checking and evaluating expression trees over a whole batch.

:func:`compile_expression` parses (:mod:`.expressions`) and checks the tree against the function table
before any data is read. :func:`evaluate` computes one Arrow array per node for every row at once.

Failures are scoped: each node is evaluated under an *active* mask, the rows whose result can matter.
``iif(c, a, b)`` evaluates ``a`` under ``c`` and ``b`` under ``not c``; ``coalesce`` evaluates each
argument where the earlier ones are null; ``a && b`` evaluates ``b`` where ``a`` is not false (``||``:
not true). A function failing a row outside its active mask does not fail the row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from headwater.engines.mapping import arrays, coerce, values
from headwater.engines.mapping.expressions import (
    Binary,
    Call,
    ExpressionError,
    Field,
    Literal,
    Node,
    Unary,
    parse,
)
from headwater.engines.mapping.functions import FUNCTIONS, Budget, Env
from headwater.engines.mapping.results import Describe, show

# (positions in the batch, offending values, the function or operator, describe)
Sink = Callable[[pa.Array, pa.Array, str, Describe], None]


def compile_expression(text: str) -> Node:
    """Parse and check an expression; ExpressionError names the position of the first problem."""
    node = parse(text)
    _check(node)
    return node


def _check(node: Node) -> None:
    if isinstance(node, Unary):
        _check(node.operand)
    elif isinstance(node, Binary):
        _check(node.left)
        _check(node.right)
    elif isinstance(node, Call):
        _check_call(node)


def _check_call(node: Call) -> None:
    spec = FUNCTIONS.get(node.name)
    if spec is None:
        raise ExpressionError(f"unknown function {node.written!r}", node.pos)
    count = len(node.args)
    if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
        raise ExpressionError(
            f"{node.written}() takes {_arity(spec.min_args, spec.max_args)}, not {count}", node.pos
        )
    for index, kinds in spec.constants.items():
        if index >= count:
            continue
        arg = node.args[index]
        if not isinstance(arg, Literal) or isinstance(arg.value, bool) or not isinstance(arg.value, kinds):
            what = "a whole number" if kinds == (int,) else "a string"
            raise ExpressionError(
                f"argument {index + 1} of {node.written}() must be a constant: "
                f"{what} written in the expression",
                getattr(arg, "pos", node.pos),
            )
    if spec.check is not None:
        problem = spec.check([a.value if isinstance(a, Literal) else None for a in node.args])
        if problem:
            raise ExpressionError(f"{node.written}(): {problem}", node.pos)
    for arg in node.args:
        _check(arg)


def _arity(low: int, high: int | None) -> str:
    if high is None:
        return f"at least {low} argument{'s' if low != 1 else ''}"
    if low == high:
        return f"{low} argument{'s' if low != 1 else ''}"
    return f"{low} to {high} arguments"


@dataclass
class Scope:
    """One evaluation: the rows, the run's time, where failures go, and which rows are active."""

    batch: pa.RecordBatch
    now: datetime
    sink: Sink
    active: pa.Array | None = None  # bool mask; None = every row
    budget: Budget | None = None  # bytes the evaluation's results may take; shared by within()

    def __post_init__(self) -> None:
        if self.budget is None:
            self.budget = Budget.for_rows(self.n)

    @property
    def n(self) -> int:
        return int(self.batch.num_rows)

    def within(self, mask: pa.Array) -> Scope:
        mask = arrays.truthy(mask)
        return replace(self, active=mask if self.active is None else pc.and_(self.active, mask))

    def report_for(self, name: str) -> Callable[[pa.Array, pa.Array, Describe], None]:
        def report(where: pa.Array, vals: pa.Array, describe: Describe) -> None:
            if self.active is not None:
                keep = self.active.take(where)
                where, vals = where.filter(keep), vals.filter(keep)
            if len(where):
                self.sink(where, vals, name, describe)

        return report


def evaluate(node: Node, scope: Scope) -> pa.Array:
    """The value of ``node`` for every row of ``scope.batch``."""
    if isinstance(node, Literal):
        return values.literal(node.value, scope.n)
    if isinstance(node, Field):
        found = node.path.read(scope.batch)
        return found if found is not None else pa.nulls(scope.n)
    if isinstance(node, Call):
        return _call(node, scope)
    if isinstance(node, Unary):
        return _unary(node, scope)
    return _binary(node, scope)


def _call(node: Call, scope: Scope) -> pa.Array:
    if node.name == "iif":
        return _iif(node, scope)
    if node.name == "coalesce":
        return _coalesce(node, scope)
    spec = FUNCTIONS[node.name]
    assert spec.impl is not None
    args: list[Any] = [
        a.value if i in spec.constants and isinstance(a, Literal) else evaluate(a, scope)
        for i, a in enumerate(node.args)
    ]
    env = Env(scope.n, scope.now, scope.report_for(f"{node.written}()"), scope.budget or Budget())
    return spec.impl(env, args)


def _iif(node: Call, scope: Scope) -> pa.Array:
    condition = arrays.truthy(_boolean(evaluate(node.args[0], scope), scope, "iif()"))
    then = evaluate(node.args[1], scope.within(condition))
    otherwise = evaluate(node.args[2], scope.within(pc.invert(condition)))
    then, otherwise = values.unify([then, otherwise])
    if pa.types.is_null(then.type):
        return then
    return pc.if_else(condition, then, otherwise)


def _coalesce(node: Call, scope: Scope) -> pa.Array:
    results: list[pa.Array] = []
    missing: pa.Array | None = None
    for arg in node.args:
        inner = scope if missing is None else scope.within(missing)
        value = evaluate(arg, inner)
        results.append(value)
        missing = pc.is_null(value) if missing is None else pc.and_(missing, pc.is_null(value))
    unified = values.unify(results)
    if pa.types.is_null(unified[0].type):
        return unified[0]
    return pc.coalesce(*unified) if len(unified) > 1 else unified[0]


def _boolean(value: pa.Array, scope: Scope, where: str) -> pa.Array:
    """A boolean view of a value (true/false text, 0/1); other values fail their rows."""
    value = arrays.normalize(value)
    if pa.types.is_boolean(value.type):
        return value
    if pa.types.is_null(value.type):
        return pa.nulls(len(value), pa.bool_())
    return coerce.coerce(value, pa.bool_(), scope.report_for(where))


def _unary(node: Unary, scope: Scope) -> pa.Array:
    operand = evaluate(node.operand, scope)
    if node.op == "!":
        return pc.invert(_boolean(operand, scope, "'!'"))
    number = _number(operand, scope, "'-'")
    return arrays.guarded(
        pc.negate_checked, number, number.type, scope.report_for("'-'"), "overflows the 64-bit integer range"
    )


def _binary(node: Binary, scope: Scope) -> pa.Array:
    op = node.op
    left = evaluate(node.left, scope)
    if op in ("&&", "||"):
        decided = pc.equal(_boolean(left, scope, f"'{op}'"), op == "||")
        right = evaluate(node.right, scope.within(pc.invert(arrays.truthy(decided))))
        lhs, rhs = _boolean(left, scope, f"'{op}'"), _boolean(right, scope, f"'{op}'")
        return pc.and_kleene(lhs, rhs) if op == "&&" else pc.or_kleene(lhs, rhs)
    right = evaluate(node.right, scope)
    if op in ("==", "!=", "<", "<=", ">", ">="):
        return values.compare(op, left, right)
    if op == "+" and (_is_text(left) or _is_text(right)):
        return pc.binary_join_element_wise(values.text(left), values.text(right), "")
    return _arithmetic(op, left, right, scope)


def _is_text(arr: pa.Array) -> bool:
    return arrays.is_text(arr.type) or pa.types.is_dictionary(arr.type)


_KERNELS = {"+": pc.add_checked, "-": pc.subtract_checked, "*": pc.multiply_checked}


def _arithmetic(op: str, left: pa.Array, right: pa.Array, scope: Scope) -> pa.Array:
    name = f"'{op}'"
    left, right = _number(left, scope, name), _number(right, scope, name)
    if pa.types.is_null(left.type) or pa.types.is_null(right.type):
        return pa.nulls(scope.n, pa.float64() if op == "/" else pa.int64())
    if op in ("/", "%"):
        zero = arrays.truthy(pc.equal(right, 0))
        if arrays.any_true(zero):
            Env(scope.n, scope.now, scope.report_for(name)).fail(zero, right, lambda _: "division by zero")
            right = pc.if_else(zero, pa.scalar(None, right.type), right)
        if op == "/":
            return pc.divide(left.cast(pa.float64()), right.cast(pa.float64()))
        return _remainder(left, right)
    pair = pa.StructArray.from_arrays([left, right], names=["l", "r"])
    kernel = _KERNELS[op]
    kind = values.common_type([left.type, right.type]) or pa.int64()
    report = scope.report_for(name)

    def overflow(where: pa.Array, pairs: pa.Array, _describe: Describe) -> None:
        report(where, pairs, lambda p: f"{p['l']} {op} {p['r']} overflows the 64-bit integer range")

    return arrays.guarded(lambda p: kernel(p.field(0), p.field(1)), pair, kind, overflow, "overflows")


def _remainder(left: pa.Array, right: pa.Array) -> pa.Array:
    """The remainder with the sign of the dividend, as in Java and C (``-7 % 3`` is ``-1``)."""
    if pa.types.is_integer(left.type) and pa.types.is_integer(right.type):
        return pc.remainder(left, right)
    return pc.remainder(left.cast(pa.float64()), right.cast(pa.float64()))


def _number(value: pa.Array, scope: Scope, where: str) -> pa.Array:
    """A numeric view of a value: numbers, booleans (1/0), numeric text; other values fail their rows."""
    value = arrays.normalize(value)
    kind = value.type
    if pa.types.is_integer(kind):
        return value.cast(pa.int64())
    if arrays.is_numeric(kind):
        return value.cast(pa.float64())
    if pa.types.is_boolean(kind):
        return value.cast(pa.int64())
    if pa.types.is_null(kind):
        return value
    report = scope.report_for(where)
    if arrays.is_text(kind):
        return coerce.coerce(value, pa.float64(), report)
    bad = pc.is_valid(value)
    if arrays.any_true(bad):
        report(arrays.positions(bad), value.filter(bad), lambda v: f"{show(v)} is not a number")
    return pa.nulls(len(value), pa.float64())
