"""The typed AST of a segment definition's PQL, and what can be read off it without data.

Every node is a frozen dataclass, so two parses of the same text compare equal and a node can be a
dict key. The tree has two worlds: conditions on the merged profile (paths are profile paths), and
``EventCount`` nodes whose ``where`` speaks of one experience event (paths are the event's fields; the
path ``timestamp`` is the event's own time).

    Expr = And | Or | Not | Const | Compare | In | IsNull | StringTest | Occurs | OccursBetween | EventCount
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal as TypingLiteral

DAY_MS = 86_400_000
UNIT_MS = {
    "millisecond": 1,
    "second": 1_000,
    "minute": 60_000,
    "hour": 3_600_000,
    "day": DAY_MS,
    "week": 7 * DAY_MS,
}
STREAMING_WINDOW_MS = DAY_MS  # AEP's streaming segmentation: event windows of at most 24 hours

CompareOp = TypingLiteral["=", "!=", "<", "<=", ">", ">="]
COMPARE_OPS: tuple[str, ...] = ("=", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True)
class Path:
    """A dotted path: ``person.name.firstName`` is ``Path(("person", "name", "firstName"))``."""

    parts: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Instant:
    """A fixed point in time, epoch milliseconds UTC (``date(2020, 3, 14)``)."""

    ms: int


@dataclass(frozen=True)
class RelativeTime:
    """A point that moves with the evaluation's ``now``: ``now``, ``today`` (UTC midnight), ``yesterday``,
    ``tomorrow``."""

    name: TypingLiteral["now", "today", "yesterday", "tomorrow"]

    def at(self, now_ms: int) -> int:
        if self.name == "now":
            return now_ms
        midnight = now_ms - now_ms % DAY_MS
        return midnight + {"today": 0, "yesterday": -DAY_MS, "tomorrow": DAY_MS}[self.name]


Anchor = Instant | RelativeTime
Value = str | float | bool | Instant  # a literal; its type decides how the compared value is read


@dataclass(frozen=True)
class Const:
    value: bool


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


@dataclass(frozen=True)
class Compare:
    path: Path
    op: CompareOp
    value: Value


@dataclass(frozen=True)
class In:
    """``path in [..]`` (``negated``: ``notIn``, which is false for a missing value, as AEP documents)."""

    path: Path
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    """``path.isNull()``; ``negated`` is ``path.isNotNull()``."""

    path: Path
    negated: bool = False


StringFunction = TypingLiteral["startsWith", "endsWith", "contains", "equals", "like", "matches"]


@dataclass(frozen=True)
class StringTest:
    """A string function. ``negated`` spells the doesNot*/notEqualTo forms, false for a missing value."""

    path: Path
    function: StringFunction
    argument: str
    case_sensitive: bool = True
    negated: bool = False


@dataclass(frozen=True)
class Occurs:
    """``path occurs <op> <amount> <unit> <direction> <anchor>``, or without ``op``/``amount``:
    ``path occurs before now``. ``before``: the time is at or before the anchor and the distance back
    satisfies ``op amount``; ``after`` mirrors it."""

    path: Path
    direction: TypingLiteral["before", "after"]
    anchor: Anchor
    op: CompareOp | None = None
    amount: int = 0
    unit: str = "day"

    @property
    def amount_ms(self) -> int:
        return self.amount * UNIT_MS[self.unit]


@dataclass(frozen=True)
class OccursBetween:
    """``path occurs between <start> and <end>``: start <= time <= end."""

    path: Path
    start: Anchor
    end: Anchor


@dataclass(frozen=True)
class EventCount:
    """``xEvent[where].count() <op> <count>``: how many of the profile's events satisfy ``where``."""

    where: Expr | None
    op: CompareOp
    count: int


Expr = And | Or | Not | Const | Compare | In | IsNull | StringTest | Occurs | OccursBetween | EventCount
Leaf = Compare | In | IsNull | StringTest | Occurs | OccursBetween


def children(node: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions in the same world (an EventCount's ``where`` is another world)."""
    if isinstance(node, And | Or):
        return node.items
    if isinstance(node, Not):
        return (node.item,)
    return ()


def walk(node: Expr) -> list[Expr]:
    """Every node of the profile world, pre-order; EventCount nodes included, their ``where`` not."""
    out = [node]
    for child in children(node):
        out.extend(walk(child))
    return out


def _leaf_paths(node: Expr) -> set[str]:
    return {n.path.dotted for n in walk(node) if isinstance(n, Leaf)}


def paths(node: Expr) -> set[str]:
    """The dotted profile paths the definition reads."""
    return _leaf_paths(node)


def event_paths(node: Expr) -> set[str]:
    """The dotted event paths the definition's event conditions read (``timestamp`` included)."""
    out: set[str] = set()
    for count in event_counts(node):
        if count.where is not None:
            out |= _leaf_paths(count.where)
    return out


def event_counts(node: Expr) -> list[EventCount]:
    return [n for n in walk(node) if isinstance(n, EventCount)]


def depends_on_events(node: Expr) -> bool:
    return bool(event_counts(node))


def is_streamable(node: Expr) -> bool:
    """Whether a change of the profile or its events is enough to re-evaluate the definition, AEP's
    streaming rule: no condition on the profile's attributes relative to ``now``; every event condition
    counts either an event at all (``> 0``, ``>= 1``) with no window, or events inside a window of at
    most 24 hours before now (a top-level ``timestamp occurs <= N unit before now`` of the filter)."""
    for n in walk(node):
        if isinstance(n, Occurs | OccursBetween) and _relative(n):
            return False
        if isinstance(n, EventCount) and not _streamable_count(n):
            return False
    return True


def _relative(node: Occurs | OccursBetween) -> bool:
    anchors = (node.anchor,) if isinstance(node, Occurs) else (node.start, node.end)
    return any(isinstance(a, RelativeTime) for a in anchors)


def _streamable_count(node: EventCount) -> bool:
    conjuncts = _conjuncts(node.where) if node.where is not None else []
    windowed = [c for c in conjuncts if _short_window(c)]
    others = [c for c in conjuncts if not _short_window(c) and c.__class__ is not Const]
    if any(_relative(c) for n in others for c in walk(n) if isinstance(c, Occurs | OccursBetween)):
        return False
    if windowed:
        return True
    return (node.op, node.count) in {(">", 0), (">=", 1)}


def _conjuncts(node: Expr) -> list[Expr]:
    if isinstance(node, And):
        return [c for item in node.items for c in _conjuncts(item)]
    return [node]


def _short_window(node: Expr) -> bool:
    return (
        isinstance(node, Occurs)
        and node.path.parts == ("timestamp",)
        and node.direction == "before"
        and node.anchor == RelativeTime("now")
        and node.op in ("<", "<=")
        and node.amount_ms <= STREAMING_WINDOW_MS
    )
