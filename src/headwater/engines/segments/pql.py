"""A parser for the subset of Adobe's Profile Query Language that docs/pql.md documents.

``parse(text) -> Expr`` returns the typed AST of nodes.py, or raises ``PqlError`` (a ValueError) whose
``position`` is the 0-based character offset of the problem and whose message names it, e.g.
``expected a value after '=' at 23`` or ``unknown function 'startWith' at 17; did you mean startsWith?``.

The grammar, lowest precedence first (keywords are case-sensitive, as in AEP's examples)::

    expr      := and ("or" and)*
    and       := unary ("and" unary)*
    unary     := ("not" | "!") unary | primary
    primary   := "(" expr ")" | "true" | "false" | events | path test
    events    := "xEvent" ["[" expr "]"] "." "count" "(" ")" op integer
    test      := op value | ("in" | "notIn") list | "like" string | "occurs" occurs
               | "." function "(" [args] ")"
    occurs    := op integer unit ("before" | "after") time | ("before" | "after") time
               | "between" time "and" time
    time      := "now" | "today" | "yesterday" | "tomorrow" | date
    value     := string | number | "true" | "false" | "null" | date
    date      := "date" "(" integer "," integer "," integer ")"
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

from headwater.engines.segments.nodes import (
    COMPARE_OPS,
    UNIT_MS,
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
    RelativeTime,
    StringFunction,
    StringTest,
    Value,
    depends_on_events,
    event_paths,
    is_streamable,
    paths,
)

Direction = Literal["before", "after"]
TimeName = Literal["now", "today", "yesterday", "tomorrow"]

__all__ = ["PqlError", "depends_on_events", "event_paths", "is_streamable", "parse", "paths"]

MAX_LENGTH = 20_000
MAX_DEPTH = 64

STRING_FUNCTIONS: dict[str, tuple[StringFunction, bool]] = {  # name -> (function, negated)
    "startsWith": ("startsWith", False),
    "doesNotStartWith": ("startsWith", True),
    "endsWith": ("endsWith", False),
    "doesNotEndWith": ("endsWith", True),
    "contains": ("contains", False),
    "doesNotContain": ("contains", True),
    "equals": ("equals", False),
    "notEqualTo": ("equals", True),
    "matches": ("matches", False),
}
OBJECT_FUNCTIONS = {"isNull": False, "isNotNull": True}
FUNCTIONS = [*STRING_FUNCTIONS, *OBJECT_FUNCTIONS, "count"]
UNITS = {**{u: u for u in UNIT_MS}, **{u + "s": u for u in UNIT_MS}}
TIMES = ("now", "today", "yesterday", "tomorrow")
KEYWORDS = {"and", "or", "not", "in", "notIn", "like", "occurs", "true", "false", "null", "xEvent"}


class PqlError(ValueError):
    """Bad PQL: ``position`` is the 0-based offset of the problem, ``problem`` the message without it."""

    def __init__(self, problem: str, position: int, hint: str = "") -> None:
        self.problem = problem
        self.position = position
        super().__init__(f"{problem} at {position}{'; ' + hint if hint else ''}")


@dataclass(frozen=True)
class Token:
    kind: str  # "string", "number", "ident", "op", "end"
    text: str
    position: int
    value: object = None


_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<ident>[A-Za-z_$][A-Za-z0-9_$]*)
      | (?P<op><=|>=|!=|==|[=<>!()\[\],.])
      | (?P<quote>")""",
    re.VERBOSE,
)
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise PqlError(f"unexpected character {text[at]!r}", at)
        kind = cast(str, match.lastgroup)
        if kind == "quote":
            token, at = _string(text, at)
            tokens.append(token)
            continue
        if kind == "number":
            tokens.append(Token(kind, match.group(), at, float(match.group())))
        elif kind != "space":
            tokens.append(Token(kind, match.group(), at))
        at = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _string(text: str, start: int) -> tuple[Token, int]:
    """A double-quoted string with JSON's escapes, from the quote at ``start``."""
    out: list[str] = []
    at = start + 1
    while at < len(text):
        char = text[at]
        if char == '"':
            return Token("string", text[start : at + 1], start, "".join(out)), at + 1
        if char == "\\":
            escaped, at = _escape(text, at)
            out.append(escaped)
            continue
        out.append(char)
        at += 1
    raise PqlError("unterminated string", start)


def _escape(text: str, at: int) -> tuple[str, int]:
    code = text[at + 1 : at + 2]
    if code in _ESCAPES:
        return _ESCAPES[code], at + 2
    if code == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[at + 2 : at + 6]):
        return chr(int(text[at + 2 : at + 6], 16)), at + 6
    raise PqlError("unknown escape in string", at)


def parse(text: str) -> Expr:
    """The AST of ``text``; PqlError for anything outside the documented subset."""
    if not isinstance(text, str) or not text.strip():
        raise PqlError("empty expression", 0)
    if len(text) > MAX_LENGTH:
        raise PqlError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH)
    return _Parser(tokenize(text)).document()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.at = 0
        self.depth = 0
        self.in_event = False

    # -- token helpers ------------------------------------------------------------------------------

    @property
    def token(self) -> Token:
        return self.tokens[self.at]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.at + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.token
        self.at += 1
        return token

    def is_(self, text: str, kind: str | None = None) -> bool:
        token = self.token
        return token.text == text and token.kind in ((kind,) if kind else ("op", "ident"))

    def expect(self, text: str, after: Token | None = None) -> Token:
        if self.is_(text):
            return self.advance()
        where = f" after {after.text!r}" if after is not None else ""
        raise PqlError(f"expected {text!r}{where}", self.token.position, f"found {self.describe()}")

    def describe(self) -> str:
        token = self.token
        return "the end of the expression" if token.kind == "end" else repr(token.text)

    # -- expressions --------------------------------------------------------------------------------

    def document(self) -> Expr:
        expr = self.expr()
        if self.token.kind != "end":
            raise PqlError(
                f"unexpected {self.describe()}", self.token.position, "expected 'and', 'or' or the end"
            )
        return expr

    def expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise PqlError(f"expression nested deeper than {MAX_DEPTH}", self.token.position)
        items = [self.conjunction()]
        while self.is_("or", "ident"):
            self.advance()
            items.append(self.conjunction())
        self.depth -= 1
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self) -> Expr:
        items = [self.unary()]
        while self.is_("and", "ident"):
            self.advance()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Expr:
        if self.is_("not", "ident") or self.is_("!", "op"):
            self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise PqlError(f"expression nested deeper than {MAX_DEPTH}", self.token.position)
            item = self.unary()
            self.depth -= 1
            return Not(item)
        return self.primary()

    def primary(self) -> Expr:
        token = self.token
        if self.is_("(", "op"):
            self.advance()
            inner = self.expr()
            self.expect(")")
            return inner
        if token.kind == "ident" and token.text in ("true", "false"):
            self.advance()
            return Const(token.text == "true")
        if token.kind == "ident" and token.text == "xEvent":
            return self.events()
        if token.kind == "ident" and token.text not in KEYWORDS:
            return self.test(self.path())
        raise PqlError("expected a condition", token.position, f"found {self.describe()}")

    def events(self) -> Expr:
        start = self.advance()
        if self.in_event:
            raise PqlError("xEvent inside an xEvent condition is not supported", start.position)
        where: Expr | None = None
        if self.is_("[", "op"):
            self.advance()
            self.in_event = True
            where = self.expr()
            self.in_event = False
            self.expect("]")
        self.expect(".", start)
        name = self.token
        if name.kind != "ident" or name.text != "count":
            self.unknown_function(name, ["count"])
        self.advance()
        self.expect("(", name)
        self.expect(")")
        op = self.compare_op("after 'count()'")
        return EventCount(where, op, self.integer(op))

    def path(self) -> Path:
        parts = [self.advance().text]
        while self.is_(".", "op") and self.peek().kind == "ident" and self.peek(2).text != "(":
            self.advance()
            parts.append(self.advance().text)
        return Path(tuple(parts))

    # -- tests on a path ----------------------------------------------------------------------------

    def test(self, path: Path) -> Expr:
        token = self.token
        if token.kind == "op" and token.text in (*COMPARE_OPS, "=="):
            return self.comparison(path)
        if token.kind == "ident" and token.text in ("in", "notIn"):
            self.advance()
            return In(path, self.list_(token), negated=token.text == "notIn")
        if token.kind == "ident" and token.text == "like":
            self.advance()
            return StringTest(path, "like", self.string_argument(token))
        if token.kind == "ident" and token.text == "occurs":
            self.advance()
            return self.occurs(path, token)
        if self.is_(".", "op"):
            self.advance()
            return self.method(path)
        raise PqlError(
            f"expected a comparison, 'in', 'like', 'occurs' or a function after {path.dotted!r}",
            token.position,
            f"found {self.describe()}",
        )

    def comparison(self, path: Path) -> Expr:
        op_token = self.token
        op = self.compare_op("")
        value = self.value(op_token)
        if value is None:
            if op not in ("=", "!="):
                raise PqlError(f"null can only be compared with '=' or '!=', not {op!r}", op_token.position)
            return IsNull(path, negated=op == "!=")
        return Compare(path, op, value)

    def compare_op(self, context: str) -> CompareOp:
        token = self.token
        if token.kind == "op" and token.text == "==":
            raise PqlError("'==' is not PQL; use '='", token.position)
        if token.kind != "op" or token.text not in COMPARE_OPS:
            where = f" {context}" if context else ""
            raise PqlError(
                f"expected a comparison (=, !=, <, <=, >, >=){where}",
                token.position,
                f"found {self.describe()}",
            )
        self.advance()
        return cast(CompareOp, token.text)

    def method(self, path: Path) -> Expr:
        name = self.token
        if name.kind != "ident" or name.text not in (*STRING_FUNCTIONS, *OBJECT_FUNCTIONS):
            self.unknown_function(name, [*STRING_FUNCTIONS, *OBJECT_FUNCTIONS])
        self.advance()
        paren = self.expect("(", name)
        if name.text in OBJECT_FUNCTIONS:
            self.expect(")")
            return IsNull(path, negated=OBJECT_FUNCTIONS[name.text])
        function, negated = STRING_FUNCTIONS[name.text]
        argument = self.string_argument(paren)
        case_sensitive = True
        if self.is_(",", "op") and function != "matches":
            comma = self.advance()
            case_sensitive = self.boolean(comma)
        self.expect(")")
        if function == "matches":
            _check_regex(argument, name.position)
        return StringTest(path, function, argument, case_sensitive, negated)

    def unknown_function(self, token: Token, known: list[str]) -> None:
        if token.kind != "ident":
            raise PqlError("expected a function name", token.position, f"found {self.describe()}")
        close = difflib.get_close_matches(token.text, known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known functions: {', '.join(known)}"
        raise PqlError(f"unknown function {token.text!r}", token.position, hint)

    def occurs(self, path: Path, keyword: Token) -> Expr:
        token = self.token
        if token.kind == "ident" and token.text == "between":
            self.advance()
            start = self.time(token)
            and_ = self.expect("and")
            return OccursBetween(path, start, self.time(and_))
        if token.kind == "ident" and token.text in ("before", "after"):
            self.advance()
            return Occurs(path, _direction(token), self.time(token))
        if token.kind == "op" and token.text in COMPARE_OPS:
            op = self.compare_op("")
            if op in ("=", "!="):
                raise PqlError(f"occurs {op} is not supported; use <, <=, > or >=", token.position)
            amount = self.integer(token)
            unit_token = self.token
            if unit_token.kind != "ident" or unit_token.text not in UNITS:
                raise PqlError(
                    "expected a time unit (days, hours, ...) after the amount",
                    unit_token.position,
                    f"found {self.describe()}",
                )
            self.advance()
            direction = self.token
            if direction.kind != "ident" or direction.text not in ("before", "after"):
                raise PqlError("expected 'before' or 'after'", direction.position, f"found {self.describe()}")
            self.advance()
            anchor = self.time(direction)
            return Occurs(path, _direction(direction), anchor, op, amount, UNITS[unit_token.text])
        raise PqlError(
            "expected a comparison, 'before', 'after' or 'between' after 'occurs'",
            token.position,
            f"found {self.describe()}",
        )

    # -- values -------------------------------------------------------------------------------------

    def value(self, after: Token) -> Value | None:
        token = self.token
        if token.kind == "string":
            self.advance()
            return cast(str, token.value)
        if token.kind == "number":
            self.advance()
            return cast(float, token.value)
        if token.kind == "ident" and token.text in ("true", "false"):
            self.advance()
            return token.text == "true"
        if token.kind == "ident" and token.text == "null":
            self.advance()
            return None
        if token.kind == "ident" and token.text == "date":
            return self.date()
        raise PqlError(f"expected a value after {after.text!r}", token.position, f"found {self.describe()}")

    def list_(self, after: Token) -> tuple[Value, ...]:
        self.expect("[", after)
        values: list[Value] = []
        while not self.is_("]", "op"):
            if values:
                self.expect(",")
            value = self.value(self.tokens[self.at - 1])
            if value is None:
                raise PqlError("null is not allowed in a list", self.tokens[self.at - 1].position)
            values.append(value)
        if not values:
            raise PqlError("empty list", self.token.position)
        if len({_kind(v) for v in values}) > 1:
            raise PqlError("a list mixes types; use values of one type", after.position)
        self.advance()
        return tuple(values)

    def string_argument(self, after: Token) -> str:
        token = self.token
        if token.kind != "string":
            raise PqlError(
                f"expected a string after {after.text!r}", token.position, f"found {self.describe()}"
            )
        self.advance()
        return cast(str, token.value)

    def boolean(self, after: Token) -> bool:
        token = self.token
        if token.kind != "ident" or token.text not in ("true", "false"):
            raise PqlError(
                f"expected true or false after {after.text!r}", token.position, f"found {self.describe()}"
            )
        self.advance()
        return token.text == "true"

    def integer(self, after: Token | str) -> int:
        token = self.token
        text = after if isinstance(after, str) else after.text
        if token.kind != "number" or not re.fullmatch(r"\d+", token.text):
            raise PqlError(
                f"expected a non-negative integer after {text!r}", token.position, f"found {self.describe()}"
            )
        self.advance()
        return int(token.text)

    def time(self, after: Token) -> Anchor:
        token = self.token
        if token.kind == "ident" and token.text in TIMES:
            self.advance()
            return RelativeTime(cast(TimeName, token.text))
        if token.kind == "ident" and token.text == "date":
            return self.date()
        raise PqlError(
            f"expected now, today, yesterday, tomorrow or date(y, m, d) after {after.text!r}",
            token.position,
            f"found {self.describe()}",
        )

    def date(self) -> Instant:
        start = self.advance()
        self.expect("(", start)
        year = self.integer("(")
        self.expect(",")
        month = self.integer(",")
        self.expect(",")
        day = self.integer(",")
        self.expect(")")
        try:
            moment = datetime(year, month, day, tzinfo=UTC)
        except ValueError as exc:
            raise PqlError(f"invalid date: {exc}", start.position) from None
        return Instant(int(moment.timestamp() * 1000))


def _direction(token: Token) -> Direction:
    return cast(Direction, token.text)


def _kind(value: Value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else "time"


def _check_regex(pattern: str, position: int) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise PqlError(f"invalid regular expression: {exc}", position) from None
