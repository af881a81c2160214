"""The mapping expression language: parsing, checking, every function (nulls included), row errors."""

from __future__ import annotations

import hashlib
import uuid
import zlib
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest

from headwater.engines.mapping.evaluate import Scope, compile_expression, evaluate
from headwater.engines.mapping.expressions import Binary, Call, ExpressionError, Field, Literal, Unary, parse

NOW = datetime(2024, 3, 1, 12, 30, 0, tzinfo=UTC)
JAN5 = datetime(2024, 1, 5, 10, 0, tzinfo=UTC)


def run(expression: str, rows: list[Any] | None = None) -> tuple[list[Any], list[tuple[int, str]]]:
    """Evaluate over ``rows`` (default: one empty row); the values and the (row, message) failures."""
    node = compile_expression(expression)
    batch = pa.RecordBatch.from_struct_array(pa.array(rows or [{}]))
    failures: list[tuple[int, str]] = []

    def sink(where: pa.Array, values: pa.Array, function: str, describe: Any) -> None:
        for row, value in zip(where.to_pylist(), values.to_pylist(), strict=True):
            failures.append((row, f"{function}: {describe(value)}"))

    result = evaluate(node, Scope(batch, NOW, sink))
    assert len(result) == batch.num_rows
    return result.to_pylist(), sorted(failures)


def value(expression: str, **row: Any) -> Any:
    values, failures = run(expression, [row])
    assert not failures, failures
    return values[0]


def column(expression: str, name: str, items: list[Any]) -> list[Any]:
    values, failures = run(expression, [{name: v} for v in items])
    assert not failures, failures
    return values


def error_at(expression: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(expression)
    return info.value


# --- parsing ---
def test_precedence_of_arithmetic_and_logic() -> None:
    assert value("1 + 2 * 3") == 7
    assert value("(1 + 2) * 3") == 9
    assert value("10 - 4 - 3") == 3
    assert value("-2 * 3") == -6
    assert value("7 / 2") == 3.5
    assert value("7 % 3") == 1 and value("-7 % 3") == -1
    assert value("true || false && false") is True
    assert value("(true || false) && false") is False
    assert value("!1 == 2") is True  # ! binds looser than ==: !(1 == 2)
    assert value("not 1 > 2 and 2 > 1") is True
    assert value("1 lt 2 and 3 ge 3 or false") is True
    assert value("8 div 2 mod 3") == 1.0


def test_tree_shape() -> None:
    node = parse("a + b * 2 > 3 && !c")
    assert isinstance(node, Binary) and node.op == "&&"
    left, right = node.left, node.right
    assert isinstance(left, Binary) and left.op == ">"
    assert isinstance(left.left, Binary) and left.left.op == "+"
    assert isinstance(right, Unary) and right.op == "!" and isinstance(right.operand, Field)
    call = parse("CONCAT(x, 'y')")
    assert isinstance(call, Call) and call.name == "concat" and call.written == "CONCAT"
    assert isinstance(call.args[1], Literal) and call.args[1].value == "y"


def test_strings_quotes_and_escapes() -> None:
    assert value('"double"') == "double"
    assert value("'single'") == "single"
    assert value(r'"a \"quoted\" word"') == 'a "quoted" word'
    assert value(r"'it\'s'") == "it's"
    assert value(r'"tab\tnew\nline \\ \u0041"') == "tab\tnew\nline \\ A"
    assert value('"it\'s"') == "it's" and value("'say \"hi\"'") == 'say "hi"'


def test_numbers_and_literals() -> None:
    assert value("42") == 42 and value("4.5") == 4.5 and value("1e3") == 1000.0 and value("2.5E-1") == 0.25
    assert value("true") is True and value("false") is False and value("null") is None


def test_field_references() -> None:
    row = {"first_name": "Ada", "First Name": "Lady", "a.b": "dotted", "data": {"id": 7, "if": "kw"}}
    assert value("first_name", **row) == "Ada"
    assert value("${First Name}", **row) == "Lady"
    assert value(r"a\.b", **row) == "dotted"
    assert value("${a.b}", **row) == "dotted"
    assert value("data.id + 1", **row) == 8
    assert value("${data.if}", **row) == "kw"
    assert value("missing", **row) is None
    assert value("data.missing.deeper", **row) is None
    items = {"items": [{"sku": "a"}, {"sku": "b"}]}
    assert value("items[1].sku", **items) == "b" and value("items[5].sku", **items) is None
    assert value("items[*].sku", **items) == ["a", "b"]
    assert value("size_of(items.sku)", **items) == 2


@pytest.mark.parametrize(
    ("expression", "position", "words"),
    [
        ("concat(a,", 10, "expected a value"),
        ("concat(a b)", 10, "expected ',' or ')'"),
        ("(1 + 2", 7, "expected ')'"),
        ("1 + ", 5, "expected a value"),
        ('"unterminated', 1, "unterminated string"),
        ("a = b", 3, "use == to compare"),
        ("1abc", 1, "malformed number"),
        ("1 < 2 < 3", 7, "comparisons do not chain"),
        ("a ; b", 3, "unexpected character ';'"),
        ("a b", 3, "unexpected 'b'"),
        ("${unclosed", 1, "'${' without its closing '}'"),
        ("${}", 1, "empty field name"),
        ("if", 1, "reserved word"),
        ("while.x", 1, "reserved word"),
        (r'"\q"', 2, "unknown escape"),
        ("items[x]", 6, "[n] or [*]"),
        ("", 1, "empty"),
    ],
)
def test_syntax_errors_name_the_position(expression: str, position: int, words: str) -> None:
    error = error_at(expression)
    assert words in str(error)
    assert error.position + 1 == position and f"at position {position}" in str(error)


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("eval('1')", "unknown function 'eval'"),
        ("exec('x = 1')", "unknown function 'exec'"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("getattr(x, '__class__')", "unknown function 'getattr'"),
        ("a.__class__.__bases__(1)", "is not a function name"),
        ("upper()", "upper() takes 1 argument, not 0"),
        ("substr(s)", "substr() takes 2 to 3 arguments, not 1"),
        ("concat()", "at least 1 argument"),
        ("now(1)", "now() takes 0 arguments"),
        ("substr(s, start)", "argument 2 of substr() must be a constant"),
        ("split(s, sep)", "argument 2 of split() must be a constant: a string"),
        ("substr(s, '1')", "must be a constant: a whole number"),
        ("date(s, 'yyyy zzz')", "zone names are not supported"),
        ("date(s, 'yyyy-MM-dd', 'Mars/Olympus')", "unknown time zone"),
        ("format(t, 'qqq')", "unsupported letter 'q'"),
        ("date_part('fortnight', t)", "unknown date part"),
        ("lpad(s, 3, 'ab')", "exactly one character"),
        ("replacestr(s, '', 'x')", "must not be empty"),
        ("matches_regex(s, '(')", "invalid regular expression"),
    ],
)
def test_checks_refuse_before_any_data(expression: str, words: str) -> None:
    assert words in str(error_at(expression))


def test_dunder_names_are_only_field_names() -> None:
    # A path is looked up among the input's columns, never as a Python attribute.
    assert value("__class__") is None
    assert value("a.__class__.__init__", a={"b": 1}) is None
    assert value("${__import__('os')}") is None


def test_depth_and_length_limits() -> None:
    assert "nests deeper" in str(error_at("(" * 200 + "1" + ")" * 200))
    assert "nests deeper" in str(error_at("-" * 300 + "1"))
    assert "nests deeper" in str(error_at("upper(" * 60 + "x" + ")" * 60))
    assert "more than 200 nested operations" in str(error_at("1" + "+1" * 300))
    assert "longer than" in str(error_at("1+" * 20_000 + "1"))
    assert value("(" * 40 + "1" + ")" * 40) == 1
    assert value("1" + "+1" * 150) == 151


# --- functions, nulls included ---
@pytest.mark.parametrize(
    ("expression", "name", "items", "expected"),
    [
        ("concat(x, '-', x)", "x", ["a", None], ["a-a", "-"]),
        ("concat(x)", "x", [1, None], ["1", None]),
        ("concat(x, y)", "x", [None], [None]),
        ("lower(x)", "x", ["AbC", None], ["abc", None]),
        ("lcase(x)", "x", ["ÀB"], ["àb"]),
        ("upper(x)", "x", ["abc", None], ["ABC", None]),
        ("ucase(x)", "x", ["éa"], ["ÉA"]),
        ("trim(x)", "x", ["  a b  ", None], ["a b", None]),
        ("ltrim(x)", "x", ["  a  "], ["a  "]),
        ("rtrim(x)", "x", ["  a  "], ["  a"]),
        ("substr(x, 1, 3)", "x", ["abcdef", "ab", None], ["bcd", "b", None]),
        ("substr(x, 2)", "x", ["abcdef"], ["cdef"]),
        ("substr(x, -3, 2)", "x", ["abcdef"], ["de"]),
        ("left(x, 2)", "x", ["abc", None], ["ab", None]),
        ("right(x, 2)", "x", ["abc", None], ["bc", None]),
        ("right(x, 0)", "x", ["abc"], [""]),
        ("lpad(x, 4, '0')", "x", ["7", None], ["0007", None]),
        ("rpad(x, 3)", "x", ["a"], ["a  "]),
        ("replacestr(x, 'o', '0')", "x", ["foo", None], ["f00", None]),
        ("split(x, ',')", "x", ["a,b,,c", None], [["a", "b", "", "c"], None]),
        ("join('|', x)", "x", [["a", None, "b"], [], None], ["a|b", "", None]),
        ("join('-', x, 'b', null)", "x", ["a", None], ["a-b", "b"]),
        ("equals(x, 'a')", "x", ["a", "A", None], [True, False, False]),
        ("equals(x, null)", "x", ["a", None], [False, True]),
        ("equalsIgnoreCase(x, 'a')", "x", ["A", "b", None], [True, False, False]),
        ("matches_regex(x, '^[A-Z]{2}$')", "x", ["US", "usa", None], [True, False, None]),
        ("len(x)", "x", ["héllo", "", None], [5, 0, None]),
        ("size_of(x)", "x", [[1, 2, 3], [], None], [3, 0, None]),
        ("is_empty(x)", "x", ["", "a", None], [True, False, True]),
        ("is_empty(x)", "x", [[], [1], None], [True, False, True]),
        ("to_integer(x)", "x", ["42", " -7 ", "42.0", None], [42, -7, 42, None]),
        ("to_integer(x)", "x", [3.9, -3.9, None], [3, -3, None]),
        ("to_integer(x)", "x", [True, False], [1, 0]),
        ("to_bigint(x)", "x", ["9007199254740993"], [9007199254740993]),
        ("to_float(x)", "x", ["4.5", "-1e3", ".5", None], [4.5, -1000.0, 0.5, None]),
        ("to_decimal(x)", "x", ["19.99", "3"], [19.99, 3.0]),
        ("to_decimal(x)", "x", [3, None], [3.0, None]),
        ("to_string(x)", "x", [42, None], ["42", None]),
        ("to_string(x)", "x", [True], ["true"]),
        ("to_string(x)", "x", [{"a": [1, 2]}], ['{"a":[1,2]}']),
        ("min(x, 5)", "x", [3, 9, None], [3, 5, 5]),
        ("max(x, 5)", "x", [3, 9, None], [5, 9, 5]),
        ("max(x, 2.5)", "x", [2], [2.5]),
        ("coalesce(x, 'none')", "x", ["a", None], ["a", "none"]),
        ("coalesce(x, null)", "x", [None], [None]),
        ("coalesce(x, 0, 1)", "x", [None, 7], [0, 7]),
        ("iif(x > 1, 'big', 'small')", "x", [2, 1, None], ["big", "small", "small"]),
        ("iif(x, 1, 2.5)", "x", [True, False], [1.0, 2.5]),
        ("decode(x, 'a', 1, 'b', 2, 0)", "x", ["a", "b", "c", None], [1, 2, 0, 0]),
        ("decode(x, 'a', 'A', 'b', 'B')", "x", ["b", "z"], ["B", None]),
        ("decode(x, null, 'missing', 'other')", "x", [None, "q"], ["missing", "other"]),
        ("first(x)", "x", [[1, 2], [], None], [1, None, None]),
        ("last(x)", "x", [[1, 2], [], None], [2, None, None]),
        ("nullify()", "x", [1], [None]),
        ("x + 1", "x", [1, None], [2, None]),
        ("x + 'b'", "x", ["a", None], ["ab", None]),
        ("x * 2", "x", [1.5, None], [3.0, None]),
        ("-x", "x", [2, None], [-2, None]),
        ("x == null", "x", [None, 1], [True, False]),
        ("x != null", "x", [None, 1], [False, True]),
        ("x > 1", "x", [2, None], [True, None]),
        ("!x", "x", [True, None], [False, None]),
        ("x && false", "x", [True, None], [False, False]),
        ("x || true", "x", [False, None], [True, True]),
        ("x || false", "x", [False, None], [False, None]),
    ],
)
def test_functions_and_operators(expression: str, name: str, items: list[Any], expected: list[Any]) -> None:
    assert column(expression, name, items) == expected


def test_hashes_and_uuids() -> None:
    text = "ada@example.com"
    assert value("sha256(x)", x=text) == hashlib.sha256(text.encode()).hexdigest()
    assert value("sha1(x)", x=text) == hashlib.sha1(text.encode()).hexdigest()
    assert value("sha512(x)", x=text) == hashlib.sha512(text.encode()).hexdigest()
    assert value("md5(x)", x=text) == hashlib.md5(text.encode()).hexdigest()
    assert value("crc32(x)", x=text) == zlib.crc32(text.encode())
    assert value("sha256(x)", x=None) is None and value("crc32(x)", x=None) is None
    ids, _ = run("uuid()", [{}] * 50)
    assert len(set(ids)) == 50 and all(uuid.UUID(i).version == 4 for i in ids)
    assert len(value("guid()")) == 36


def test_dates_and_times() -> None:
    assert value("now()") == NOW
    assert value("timestamp()") == int(NOW.timestamp() * 1000)
    assert value("date(x)", x="2024-01-05T10:00:00Z") == JAN5
    assert value("date(x)", x="2024-01-05T11:00:00+01:00") == JAN5
    assert value("date(x)", x="2024-01-05 10:00") == JAN5
    assert value("date(x)", x=1704448800) == JAN5
    assert value("date(x)", x=1704448800000) == JAN5
    assert value("date(x)", x=None) is None
    assert value("date(x, \"yyyy-MM-dd'T'HH:mm:ssX\")", x="2024-01-05T10:00:00Z") == JAN5
    assert value("date(x, 'dd/MM/yyyy HH:mm:ss.SSS')", x="05/01/2024 10:00:00.250") == JAN5.replace(
        microsecond=250_000
    )
    assert value("date(x, 'MMM d, yyyy h:mm a')", x="Jan 5, 2024 10:00 AM") == JAN5
    assert value("date(x, 'yyyy-MM-dd HH:mm', 'Europe/Paris')", x="2024-01-05 11:00") == JAN5
    assert value("date(x, 'yyMMdd')", x="240105") == JAN5.replace(hour=0)
    assert value("format(x, 'yyyy-MM-dd')", x=JAN5) == "2024-01-05"
    assert value("dformat(x, \"yyyy-MM-dd'T'HH:mm:ss.SSSX\")", x=1704448800123) == "2024-01-05T10:00:00.123Z"
    assert value("format(x, 'dd/MM/yy h:mm a EEE MMMM')", x=JAN5) == "05/01/24 10:00 AM Fri January"
    assert value("format(x, 'HH:mm XXX', 'Europe/Paris')", x=JAN5) == "11:00 +01:00"
    assert value("format(x, 'yyyy')", x=None) is None
    assert value("format(date(x), 'M/d/yyyy')", x="2024-01-05") == "1/5/2024"
    assert value("format(x, 'yyyy-MM-dd')", x=date(2024, 1, 5)) == "2024-01-05"
    for part, expected in (("year", 2024), ("month", 1), ("day", 5), ("hour", 10), ("dayofweek", 5)):
        assert value(f"date_part('{part}', x)", x=JAN5) == expected
    assert value("date(x) > date('2024-01-01')", x="2024-01-05T10:00:00Z") is True
    assert value("x > '2024-01-01T00:00:00Z'", x=JAN5) is True


def test_type_coercion_in_operators() -> None:
    assert value("x > 9", x="10") is True  # text meeting a number is read as a number
    assert value("x == 10", x="10") is True
    assert value("x + 1", x="4") == "41"  # + with text concatenates
    assert value("to_integer(x) + 1", x="4") == 5
    assert value("x - 1", x="4") == 3.0  # other arithmetic reads text as a number
    assert value("x + y", x=1, y=2.5) == 3.5
    assert value("x * y", x=True, y=3) == 3
    assert value("x == y", x=1, y=1.0) is True
    assert value("x == 'true'", x=True) is True


# --- row errors ---
def test_runtime_errors_fail_only_their_rows() -> None:
    values, failures = run("to_integer(x)", [{"x": "1"}, {"x": "abc"}, {"x": None}, {"x": "3"}])
    assert values == [1, None, None, 3]
    assert failures == [(1, "to_integer(): cannot convert 'abc' to an integer")]


@pytest.mark.parametrize(
    ("expression", "rows", "failed"),
    [
        ("to_float(x)", ["1.5", "x1"], [1]),
        ("to_float(x)", ["nan"], [0]),
        ("date(x)", ["2024-01-05", "yesterday", "2024-02-30T00:00:00Z"], [1, 2]),
        ("date(x, 'dd/MM/yyyy')", ["05/01/2024", "2024-01-05", "31/02/2024"], [1, 2]),
        ("date(x, 'MMM yyyy')", ["Jan 2024", "Foo 2024"], [1]),
        ("10 / x", [2, 0, None], [1]),
        ("10 % x", [3, 0], [1]),
        ("x + 1", [1, 9223372036854775807], [1]),
        ("x * x", [3, 4294967296 * 4], [1]),
        ("-x", [-9223372036854775808], [0]),
        ("x - 1", ["5", "five"], [1]),
        ("iif(x, 1, 2)", ["true", "maybe"], [1]),
    ],
)
def test_each_failing_row_is_named(expression: str, rows: list[Any], failed: list[int]) -> None:
    _, failures = run(expression, [{"x": r} for r in rows])
    assert sorted({row for row, _ in failures}) == failed, failures


def test_failures_are_scoped_to_the_branch_that_is_used() -> None:
    rows = [{"x": "12"}, {"x": "abc"}, {"x": None}]
    values, failures = run("iif(matches_regex(x, '^[0-9]+$'), to_integer(x), -1)", rows)
    assert values == [12, -1, -1] and failures == []
    values, failures = run("coalesce(x, to_integer('bad'))", [{"x": "set"}, {"x": None}])
    assert values == ["set", None] and [row for row, _ in failures] == [1]
    values, failures = run("is_empty(x) || to_integer(x) > 3", [{"x": None}, {"x": "7"}, {"x": "zz"}])
    assert values == [True, True, None] and [row for row, _ in failures] == [2]
    values, failures = run("!is_empty(x) && to_integer(x) > 3", [{"x": ""}, {"x": "zz"}])
    assert values == [False, None] and [row for row, _ in failures] == [1]


def test_messages_name_the_function_and_the_value() -> None:
    _, failures = run("date(x, 'yyyy-MM-dd')", [{"x": "05/01/2024"}])
    assert failures == [(0, "date(): '05/01/2024' does not match 'yyyy-MM-dd'")]
    _, failures = run("x / 0", [{"x": 1}])
    assert failures == [(0, "'/': division by zero")]
