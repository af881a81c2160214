"""The ground truth: a plain Python evaluation of a segment definition over one profile.

Slow on purpose and written for reading. Tests compare the compiled SQL (compile.py) with it, so both
follow the same rules, which docs/pql.md states:

- a value is read by the type of the literal it is compared with: a string literal reads JSON strings
  only, a number literal JSON numbers only (booleans are not numbers), ``true``/``false`` JSON booleans, a
  time (``date(..)``, ``occurs``) an ISO-8601 string (no offset means UTC) or a number of epoch ms;
- a test on a missing value, or on a value of another type, is false: ``x != "a"``, ``x notIn [..]`` and
  ``x.doesNotStartWith(..)`` too. ``not`` is plain negation, so ``not (x = "a")`` is true when x is
  missing (as AEP documents for ``notIn`` against ``not in``);
- in an ``xEvent[..]`` condition paths are the event's fields, and ``timestamp`` is the event's time.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from headwater.engines.profile_merge import merge
from headwater.engines.segments.nodes import (
    Anchor,
    And,
    Compare,
    CompareOp,
    Const,
    EventCount,
    Expr,
    In,
    Instant,
    IsNull,
    Not,
    Occurs,
    OccursBetween,
    Or,
    Path,
    StringTest,
    Value,
)

Event = tuple[int, Mapping[str, Any]]  # (ts_ms, body)
Getter = Callable[[Path], Any]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def merge_for_brute(
    fragments: Iterable[tuple[str, int, Mapping[str, Any]]], policy: Mapping[str, Any]
) -> dict[str, Any]:
    """The merged profile of ``(dataset_id, ts_ms, attributes)`` fragments under ``policy``. Fragments are
    put in (ts_ms, dataset_id) order first, so that a tie of time goes to the greater dataset id, as the
    compiled query breaks it."""
    ordered = sorted(fragments, key=lambda f: (f[1], f[0]))
    return merge(ordered, policy)


def evaluate(expr: Expr, profile: Mapping[str, Any], events: Sequence[Event], now_ms: int) -> bool:
    """Whether the merged ``profile`` with its ``events`` qualifies for ``expr`` at ``now_ms``."""
    return _eval(expr, lambda path: _get(profile, path.parts), events, now_ms)


def evaluate_population(
    fragments: Iterable[tuple[int, str, int, Mapping[str, Any]]],
    events: Iterable[tuple[int, int, Mapping[str, Any]]],
    definitions: Mapping[str, Expr],
    merge_policy: Mapping[str, Any],
    now_ms: int,
) -> dict[int, dict[str, bool]]:
    """Every cluster of ``fragments`` ((cluster_id, dataset_id, ts_ms, attributes) rows) with each
    definition's result; ``events`` are (cluster_id, ts_ms, body) rows. What compile.evaluate returns,
    computed profile by profile."""
    by_cluster: dict[int, list[tuple[str, int, Mapping[str, Any]]]] = defaultdict(list)
    for cluster_id, dataset_id, ts_ms, attributes in fragments:
        by_cluster[cluster_id].append((dataset_id, ts_ms, attributes))
    events_of: dict[int, list[Event]] = defaultdict(list)
    for cluster_id, ts_ms, body in events:
        events_of[cluster_id].append((ts_ms, body))
    out: dict[int, dict[str, bool]] = {}
    for cluster_id, parts in by_cluster.items():
        profile = merge_for_brute(parts, merge_policy)
        own = events_of.get(cluster_id, [])
        out[cluster_id] = {name: evaluate(expr, profile, own, now_ms) for name, expr in definitions.items()}
    return out


def _get(document: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    node: Any = document
    for part in parts:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _event_getter(event: Event) -> Getter:
    ts_ms, body = event
    return lambda path: ts_ms if path.parts == ("timestamp",) else _get(body, path.parts)


def _eval(expr: Expr, get: Getter, events: Sequence[Event], now_ms: int) -> bool:
    if isinstance(expr, And):
        return all(_eval(item, get, events, now_ms) for item in expr.items)
    if isinstance(expr, Or):
        return any(_eval(item, get, events, now_ms) for item in expr.items)
    if isinstance(expr, Not):
        return not _eval(expr.item, get, events, now_ms)
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, EventCount):
        where = expr.where
        count = sum(1 for e in events if where is None or _eval(where, _event_getter(e), (), now_ms))
        return _OPS[expr.op](count, expr.count)
    return _leaf(expr, get(expr.path), now_ms)


def _leaf(expr: Expr, raw: Any, now_ms: int) -> bool:
    if isinstance(expr, IsNull):
        return (raw is not None) is expr.negated
    if isinstance(expr, Compare):
        return _compare(expr.op, raw, expr.value)
    if isinstance(expr, In):
        value = read(raw, expr.values[0])
        targets = [v.ms if isinstance(v, Instant) else v for v in expr.values]
        return value is not None and (value in targets) is not expr.negated
    if isinstance(expr, StringTest):
        return _string_test(expr, raw)
    if isinstance(expr, Occurs):
        return _occurs(expr, time_of(raw), now_ms)
    if isinstance(expr, OccursBetween):
        t = time_of(raw)
        return t is not None and anchor_ms(expr.start, now_ms) <= t <= anchor_ms(expr.end, now_ms)
    raise TypeError(f"not a condition: {expr!r}")


def _compare(op: CompareOp, raw: Any, literal: Value) -> bool:
    value = read(raw, literal)
    if value is None:
        return False
    return _OPS[op](value, literal.ms if isinstance(literal, Instant) else literal)


def read(raw: Any, like: Value) -> Any:
    """``raw`` read as the type of ``like``; None when it is missing or of another type."""
    if isinstance(like, bool):
        return raw if isinstance(raw, bool) else None
    if isinstance(like, float):
        return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    if isinstance(like, str):
        return raw if isinstance(raw, str) else None
    return time_of(raw)


def time_of(raw: Any) -> float | None:
    """Epoch ms of an ISO-8601 string (UTC when it has no offset) or of a number of epoch ms."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return float((moment - _EPOCH) // timedelta(milliseconds=1))


def anchor_ms(anchor: Anchor, now_ms: int) -> int:
    return anchor.ms if isinstance(anchor, Instant) else anchor.at(now_ms)


def _string_test(expr: StringTest, raw: Any) -> bool:
    if not isinstance(raw, str):
        return False
    text, argument = (raw, expr.argument) if expr.case_sensitive else (raw.lower(), expr.argument.lower())
    return string_result(expr.function, text, argument) is not expr.negated


def string_result(function: str, text: str, argument: str) -> bool:
    if function == "startsWith":
        return text.startswith(argument)
    if function == "endsWith":
        return text.endswith(argument)
    if function == "contains":
        return argument in text
    if function == "equals":
        return text == argument
    if function == "like":
        return like_regex(argument).fullmatch(text) is not None
    return re.search(argument, text) is not None


def like_regex(pattern: str) -> re.Pattern[str]:
    """PQL's ``like``: ``%`` any run of characters, ``_`` exactly one, everything else itself."""
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _occurs(expr: Occurs, t: float | None, now_ms: int) -> bool:
    if t is None:
        return False
    anchor = anchor_ms(expr.anchor, now_ms)
    if expr.op is None:
        return t < anchor if expr.direction == "before" else t > anchor
    if expr.direction == "before":
        return t <= anchor and _OPS[expr.op](anchor - t, expr.amount_ms)
    return t >= anchor and _OPS[expr.op](t - anchor, expr.amount_ms)
