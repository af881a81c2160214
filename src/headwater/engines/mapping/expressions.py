r"""The mapping expression language: reference, tokenizer and parser.

An EXPRESSION mapping's ``source`` is one expression. It is parsed by the hand-written recursive-descent
parser below (user text is never given to Python's ``eval``, ``exec`` or ``ast``), checked (functions
exist, argument counts, constant arguments, date patterns), and evaluated over whole Arrow arrays by
:mod:`headwater.engines.mapping.evaluate`: one call per batch, not per row.

Grammar
-------

::

    expression := or
    or         := and ( ("||" | "or") and )*
    and        := not ( ("&&" | "and") not )*
    not        := ("!" | "not") not | comparison
    comparison := sum [ ("==" | "eq" | "!=" | "ne" | "<" | "lt" | "<=" | "le" | ">" | "gt" | ">=" | "ge")
                        sum ]
    sum        := product ( ("+" | "-") product )*
    product    := unary ( ("*" | "/" | "div" | "%" | "mod") unary )*
    unary      := "-" unary | primary
    primary    := NUMBER | STRING | "true" | "false" | "null"
                | NAME "(" [ expression ( "," expression )* ] ")"      a function call
                | PATH | "${" any text except "}" "}"                  a field of the input row
                | "(" expression ")"
    PATH       := NAME ( "." NAME | "[" DIGITS "]" | "[*]" )*           NAME may contain "\." (a dot)
    NAME       := [A-Za-z_@] [A-Za-z0-9_@]*
    NUMBER     := DIGITS [ "." DIGITS ] [ ("e" | "E") [ "+" | "-" ] DIGITS ]
    STRING     := "..." or '...'; escapes \" \' \\ \n \r \t \uXXXX

Precedence, loosest first: ``or``, ``and``, ``not``, comparisons (which do not chain: ``a < b < c`` is an
error), ``+ -``, ``* / %``, unary minus. So ``!a == b`` is ``!(a == b)`` and ``-a * b`` is ``(-a) * b``.
Words are case-sensitive; function names are not (``UPPER`` is ``upper``).

Field references follow source paths (:mod:`headwater.engines.mapping.paths`): ``first_name``,
``data.identifiers.cio_id``, ``items[0].sku``, ``items[*].sku`` (a list), ``a\.b`` (a column named
``a.b``), and ``${First Name}`` for names that are not plain identifiers or are reserved words (new,
mod, or, break, var, lt, for, false, while, eq, gt, div, not, null, continue, else, and, ne, true,
le, if, ge, return). A field the input lacks is null.

Values and operators
--------------------

Values are strings, integers (int64), numbers (float64), booleans, date-times (UTC instants), dates,
lists and nulls. ``+`` adds numbers and concatenates when either side is a string; ``- * %`` are
numeric; ``/`` (``div``) always divides as float64. Integer overflow and division by zero fail the row.
A string compared with a number is read as a number. ``==`` and ``!=`` treat null as a value
(``null == null`` is true; ``x == null`` tests for null); ``< <= > >=`` with a null give null. Logic is
three-valued (``null && false`` is false); the right side of ``&&`` can fail a row only where the left
is not false (of ``||``: not true); ``iif`` takes a null condition as false. Functions return null for
a null input unless said otherwise. An expression is at most 20,000 characters, 50 nested parentheses
or calls, and 200 operations deep. A function's value is at most 1 MiB of text (a longer one fails its
row: ``replacestr`` is checked before it runs), and all the values one expression computes for a batch
at most 64 MiB or 64 KiB a row, whichever is more (past it, the batch's rows fail).

Functions
---------

Arguments marked *constant* must be written as literals (they configure a vectorized kernel).

Strings
    ``concat(a, b, ...)``           the arguments as text, joined; nulls count as empty text; null only
                                    when every argument is null
    ``lower(s)`` ``lcase(s)``       lower case;  ``upper(s)`` ``ucase(s)``: upper case
    ``trim(s)`` ``ltrim(s)`` ``rtrim(s)``   remove whitespace at both ends / the start / the end
    ``substr(s, start, length?)``   *constant* start (0-based; negative counts from the end) and length
    ``left(s, n)`` ``right(s, n)``  the first / last n characters (*constant* n)
    ``lpad(s, n, pad?)`` ``rpad(s, n, pad?)``  pad to n characters with pad (default " ") (*constant*;
                                    n at most 65,536)
    ``replacestr(s, find, repl)``   replace every occurrence of the *constant* text find by *constant* repl
    ``split(s, sep)``               a list of the parts of s between occurrences of *constant* text sep
    ``join(sep, list)``             the non-null elements of a list joined by *constant* sep;
                                    ``join(sep, a, b, ...)`` joins the non-null arguments
    ``equals(a, b)``                a and b have the same text (true when both are null);
                                    ``equalsIgnoreCase(a, b)`` the same ignoring case
    ``matches_regex(s, re)``        s contains a match of the *constant* RE2 regular expression re
    ``len(x)`` ``size_of(x)``       characters of a string, elements of a list, entries of a map
    ``is_empty(x)``                 true for null, "", an empty list or map (never null)

Numbers and conversion
    ``to_integer(x)`` ``to_bigint(x)``   an int64 from text ("42", " 7 ", "42.0"), a number (truncated
                                    toward zero) or a boolean; other text fails the row
    ``to_float(x)`` ``to_decimal(x)``    a float64 from text ("4.5", "-1e3") or a number; other text
                                    fails the row. XDM's ``number`` is a double, so to_decimal is float64
    ``to_string(x)``                any value as text (date-times as ISO 8601 with Z)
    ``min(a, b, ...)`` ``max(a, b, ...)``  the smallest / largest non-null argument

Dates and times (patterns: see :mod:`headwater.engines.mapping.datetimes`, e.g. yyyy-MM-dd'T'HH:mm:ssX)
    ``now()``                       the time of the run (one value for the whole batch), a date-time
    ``timestamp()``                 the same as epoch milliseconds (int64)
    ``date(s)``                     ISO 8601 text (or epoch seconds / milliseconds) as a date-time
    ``date(s, pattern, zone?)``     text in a *constant* pattern as a date-time; text without an offset
                                    is in *constant* zone (an IANA name such as Europe/Paris; default
                                    UTC). Text that does not match fails the row
    ``format(t, pattern, zone?)`` ``dformat(t, pattern, zone?)``  a date-time as text in a *constant*
                                    pattern, in *constant* zone (default UTC); t may also be ISO text
                                    or epoch milliseconds
    ``date_part(part, t)``          a *constant* part of a date-time as int64: year, quarter, month,
                                    week, day, dayofyear, dayofweek (1 = Monday), hour, minute,
                                    second, millisecond

Logic, nulls and lists
    ``iif(cond, a, b)``             a where cond is true, b elsewhere (only the chosen branch can fail
                                    a row)
    ``coalesce(a, b, ...)``         the first non-null argument (later arguments can fail a row only
                                    where the earlier ones are null)
    ``decode(key, k1, v1, k2, v2, ..., default?)``  the v of the first k equal to key, else default
    ``first(list)`` ``last(list)``  the first / last element of a list
    ``nullify()``                   null

Identifiers and hashes
    ``uuid()`` ``guid()``           a new random UUID per row
    ``sha256(s)`` ``sha1(s)`` ``sha512(s)`` ``md5(s)``  lowercase hex digest of the UTF-8 text of s
    ``crc32(s)``                    CRC-32 of the UTF-8 text, int64

Errors
------

A syntax error names the 1-based position: ``unexpected ')' at position 14``. Unknown functions (such
as ``__import__``), wrong argument counts and non-constant *constant* arguments are refused before any
data is read. At run time a value a function cannot handle (``to_integer("abc")``, an impossible date,
an overflow) fails that row only, with a message naming the mapping, its destination, the function
and the value; the other rows of the batch go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from headwater.engines.mapping import paths

MAX_LENGTH = 20_000
MAX_DEPTH = 50  # nested parentheses, calls and unary operators
MAX_HEIGHT = 200  # operations below one another in the tree (a + b + c + ... counts each +)
RESERVED = frozenset(
    {
        *("new", "mod", "or", "break", "var", "lt", "for", "false", "while", "eq", "gt", "div"),
        *("not", "null", "continue", "else", "and", "ne", "true", "le", "if", "ge", "return"),
    }
)
_WORD_OPERATORS = {
    "or": "||",
    "and": "&&",
    "not": "!",
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "div": "/",
    "mod": "%",
}
_SYMBOLS = ("||", "&&", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "!", "(", ")", ",")
_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "/": "/"}


class ExpressionError(ValueError):
    """An expression that cannot be parsed or checked. ``position`` is 0-based; messages say 1-based."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position + 1}")
        self.reason = message
        self.position = position


# --- syntax tree ---
@dataclass(frozen=True)
class Literal:
    value: Any  # None, bool, int, float or str
    pos: int


@dataclass(frozen=True)
class Field:
    path: paths.SourcePath
    pos: int


@dataclass(frozen=True)
class Call:
    name: str  # lower case
    written: str  # as written, for messages
    args: tuple[Node, ...]
    pos: int


@dataclass(frozen=True)
class Unary:
    op: str  # "!" or "-"
    operand: Node
    pos: int


@dataclass(frozen=True)
class Binary:
    op: str  # one of the symbols of the grammar (word operators are normalized)
    left: Node
    right: Node
    pos: int


Node = Literal | Field | Call | Unary | Binary


# --- tokens ---
@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "str", "name", "field", "op", "end"
    value: Any
    pos: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char.isdigit():
            i = _number(text, i, out)
        elif char in "\"'":
            i = _string(text, i, out)
        elif text.startswith("${", i):
            end = text.find("}", i + 2)
            if end < 0:
                raise ExpressionError("'${' without its closing '}'", i)
            if end == i + 2:
                raise ExpressionError("empty field name '${}'", i)
            out.append(_Token("field", text[i + 2 : end], i))
            i = end + 1
        elif char.isalpha() or char in "_@":
            i = _name(text, i, out)
        else:
            symbol = next((s for s in _SYMBOLS if text.startswith(s, i)), None)
            if symbol is None:
                hint = " (use == to compare)" if char == "=" else ""
                raise ExpressionError(f"unexpected character {char!r}{hint}", i)
            out.append(_Token("op", symbol, i))
            i += len(symbol)
    out.append(_Token("end", None, len(text)))
    return out


def _number(text: str, i: int, out: list[_Token]) -> int:
    start = i
    while i < len(text) and text[i].isdigit():
        i += 1
    is_float = False
    if i + 1 < len(text) and text[i] == "." and text[i + 1].isdigit():
        is_float, i = True, i + 1
        while i < len(text) and text[i].isdigit():
            i += 1
    if i < len(text) and text[i] in "eE":
        j = i + 1 + (i + 1 < len(text) and text[i + 1] in "+-")
        if j < len(text) and text[j].isdigit():
            is_float, i = True, j
            while i < len(text) and text[i].isdigit():
                i += 1
    if i < len(text) and (text[i].isalpha() or text[i] == "_"):
        raise ExpressionError(f"malformed number {text[start : i + 1]!r}", start)
    raw = text[start:i]
    out.append(_Token("num", float(raw) if is_float else int(raw), start))
    return i


def _string(text: str, i: int, out: list[_Token]) -> int:
    quote, start = text[i], i
    chars: list[str] = []
    i += 1
    while True:
        if i >= len(text):
            raise ExpressionError("unterminated string", start)
        char = text[i]
        if char == quote:
            out.append(_Token("str", "".join(chars), start))
            return i + 1
        if char != "\\":
            chars.append(char)
            i += 1
            continue
        code = text[i + 1] if i + 1 < len(text) else ""
        if code == "u" and _is_hex(text[i + 2 : i + 6]):
            chars.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        elif code in _ESCAPES:
            chars.append(_ESCAPES[code])
            i += 2
        else:
            raise ExpressionError(f"unknown escape '\\{code}' in a string", i)


def _is_hex(text: str) -> bool:
    return len(text) == 4 and all(c in "0123456789abcdefABCDEF" for c in text)


def _name(text: str, i: int, out: list[_Token]) -> int:
    start = i
    while i < len(text):
        char = text[i]
        if char.isalnum() or char in "_@":
            i += 1
        elif text.startswith("\\.", i):
            i += 2
        elif char == "." and i + 1 < len(text) and (text[i + 1].isalnum() or text[i + 1] in "_@"):
            i += 1
        elif char == "[":
            end = text.find("]", i)
            inside = text[i + 1 : end] if end > 0 else ""
            if not (inside == "*" or inside.isdigit()):
                raise ExpressionError("a path index must be [n] or [*]", i)
            i = end + 1
        else:
            break
    out.append(_Token("name", text[start:i], start))
    return i


# --- parser ---
def parse(text: str) -> Node:
    """Parse an expression (ExpressionError names the position of the first problem)."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the expression is empty", 0)
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    node = _Parser(_tokens(text)).parse()
    if _height(node) > MAX_HEIGHT:
        raise ExpressionError(f"the expression has more than {MAX_HEIGHT} nested operations", 0)
    return node


def _height(root: Node) -> int:
    """The height of the tree, computed without recursion (evaluation recurses once per level)."""
    highest, stack = 0, [(root, 1)]
    while stack:
        node, level = stack.pop()
        highest = max(highest, level)
        if isinstance(node, Binary):
            stack += [(node.left, level + 1), (node.right, level + 1)]
        elif isinstance(node, Unary):
            stack.append((node.operand, level + 1))
        elif isinstance(node, Call):
            stack += [(arg, level + 1) for arg in node.args]
    return highest


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.at = 0
        self.depth = 0

    def parse(self) -> Node:
        node = self.expression()
        token = self.peek()
        if token.kind != "end":
            raise ExpressionError(f"unexpected {_show(token)}", token.pos)
        return node

    # helpers
    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def operator(self, *ops: str) -> _Token | None:
        token = self.peek()
        value = token.value
        if token.kind == "name" and value in _WORD_OPERATORS:
            value = _WORD_OPERATORS[value]
        if token.kind in ("op", "name") and value in ops:
            self.at += 1
            return _Token("op", value, token.pos)
        return None

    def expect(self, symbol: str, what: str) -> None:
        token = self.take()
        if token.kind != "op" or token.value != symbol:
            raise ExpressionError(f"expected {what} but found {_show(token)}", token.pos)

    # grammar
    def expression(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"the expression nests deeper than {MAX_DEPTH} levels", self.peek().pos)
        node = self.binary_chain(0)
        self.depth -= 1
        return node

    _LEVELS: tuple[tuple[str, ...], ...] = (("||",), ("&&",))

    def binary_chain(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.negation()
        node = self.binary_chain(level + 1)
        while (op := self.operator(*self._LEVELS[level])) is not None:
            node = Binary(op.value, node, self.binary_chain(level + 1), op.pos)
        return node

    def negation(self) -> Node:
        op = self.operator("!")
        if op is None:
            return self.comparison()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"the expression nests deeper than {MAX_DEPTH} levels", op.pos)
        node = Unary("!", self.negation(), op.pos)
        self.depth -= 1
        return node

    def comparison(self) -> Node:
        node = self.sum()
        op = self.operator(*_COMPARISONS)
        if op is None:
            return node
        node = Binary(op.value, node, self.sum(), op.pos)
        again = self.operator(*_COMPARISONS)
        if again is not None:
            raise ExpressionError("comparisons do not chain: use && between them", again.pos)
        return node

    def sum(self) -> Node:
        node = self.product()
        while (op := self.operator("+", "-")) is not None:
            node = Binary(op.value, node, self.product(), op.pos)
        return node

    def product(self) -> Node:
        node = self.unary()
        while (op := self.operator("*", "/", "%")) is not None:
            node = Binary(op.value, node, self.unary(), op.pos)
        return node

    def unary(self) -> Node:
        op = self.operator("-")
        if op is None:
            return self.primary()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"the expression nests deeper than {MAX_DEPTH} levels", op.pos)
        operand = self.unary()
        self.depth -= 1
        if isinstance(operand, Literal) and type(operand.value) in (int, float):
            return Literal(-operand.value, op.pos)
        return Unary("-", operand, op.pos)

    def primary(self) -> Node:
        token = self.take()
        if token.kind in ("num", "str"):
            return Literal(token.value, token.pos)
        if token.kind == "field":
            return Field(paths.parse(token.value), token.pos)
        if token.kind == "op" and token.value == "(":
            node = self.expression()
            self.expect(")", "')'")
            return node
        if token.kind == "name":
            return self.name(token)
        raise ExpressionError(f"expected a value but found {_show(token)}", token.pos)

    def name(self, token: _Token) -> Node:
        raw: str = token.value
        if raw in ("true", "false"):
            return Literal(raw == "true", token.pos)
        if raw == "null":
            return Literal(None, token.pos)
        head = raw.split(".", 1)[0].split("[", 1)[0]
        if head in RESERVED:
            raise ExpressionError(
                f"{head!r} is a reserved word: write a field with this name as ${{{raw}}}", token.pos
            )
        following = self.peek()
        if following.kind == "op" and following.value == "(":
            if not raw.replace("_", "a").replace("@", "a").isalnum():
                raise ExpressionError(f"{raw!r} is not a function name", token.pos)
            self.at += 1
            return Call(raw.lower(), raw, self.arguments(), token.pos)
        return Field(paths.parse(raw), token.pos)

    def arguments(self) -> tuple[Node, ...]:
        args: list[Node] = []
        if self.operator(")") is not None:
            return ()
        while True:
            args.append(self.expression())
            token = self.take()
            if token.kind == "op" and token.value == ")":
                return tuple(args)
            if not (token.kind == "op" and token.value == ","):
                raise ExpressionError(f"expected ',' or ')' but found {_show(token)}", token.pos)


def _show(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    if token.kind == "str":
        return "a string"
    return repr(str(token.value))
