"""The PQL parser: each construct of docs/pql.md to its AST, and errors that name the position."""

from __future__ import annotations

import pytest

from headwater.engines.segments.nodes import (
    And,
    Compare,
    Const,
    EventCount,
    In,
    Instant,
    IsNull,
    Not,
    Occurs,
    OccursBetween,
    Or,
    Path,
    RelativeTime,
    StringTest,
)
from headwater.engines.segments.pql import (
    PqlError,
    depends_on_events,
    event_paths,
    is_streamable,
    parse,
    paths,
)

FIRST = Path(("person", "name", "firstName"))
CITY = Path(("homeAddress", "city"))
POINTS = Path(("_tenant", "loyalty", "points"))
NOW = RelativeTime("now")
PURCHASE = Compare(Path(("eventType",)), "=", "commerce.purchases")
LAST_7_DAYS = Occurs(Path(("timestamp",)), "before", NOW, "<=", 7, "day")

CASES = [
    ('person.name.firstName = "Ada"', Compare(FIRST, "=", "Ada")),
    ('homeAddress.city != "Paris"', Compare(CITY, "!=", "Paris")),
    ("_tenant.loyalty.points >= 100", Compare(POINTS, ">=", 100.0)),
    ("_tenant.loyalty.points < -2.5", Compare(POINTS, "<", -2.5)),
    ("_tenant.loyalty.points <= 1e3", Compare(POINTS, "<=", 1000.0)),
    ("_tenant.loyalty.points > 0", Compare(POINTS, ">", 0.0)),
    ("consents.email = true", Compare(Path(("consents", "email")), "=", True)),
    ("consents.email != false", Compare(Path(("consents", "email")), "!=", False)),
    ('x = "say \\"hi\\"\\n\\u00e9"', Compare(Path(("x",)), "=", 'say "hi"\n\u00e9')),
    ("person.name.firstName = null", IsNull(FIRST)),
    ("person.name.firstName != null", IsNull(FIRST, negated=True)),
    ("person.name.firstName.isNull()", IsNull(FIRST)),
    ("person.name.firstName.isNotNull()", IsNull(FIRST, negated=True)),
    ('homeAddress.city in ["London", "Paris"]', In(CITY, ("London", "Paris"))),
    ("_tenant.loyalty.points notIn [1, 2]", In(POINTS, (1.0, 2.0), negated=True)),
    ('person.name.firstName.startsWith("Jo")', StringTest(FIRST, "startsWith", "Jo")),
    ('person.name.firstName.startsWith("jo", false)', StringTest(FIRST, "startsWith", "jo", False)),
    ('person.name.firstName.doesNotStartWith("Jo")', StringTest(FIRST, "startsWith", "Jo", negated=True)),
    ('person.name.firstName.endsWith("a")', StringTest(FIRST, "endsWith", "a")),
    ('person.name.firstName.doesNotEndWith("a", true)', StringTest(FIRST, "endsWith", "a", negated=True)),
    ('person.name.firstName.contains("d")', StringTest(FIRST, "contains", "d")),
    ('person.name.firstName.doesNotContain("d")', StringTest(FIRST, "contains", "d", negated=True)),
    ('person.name.firstName.equals("ada", false)', StringTest(FIRST, "equals", "ada", False)),
    ('person.name.firstName.notEqualTo("Ada")', StringTest(FIRST, "equals", "Ada", negated=True)),
    ('person.name.firstName.matches("^A.a$")', StringTest(FIRST, "matches", "^A.a$")),
    ('homeAddress.city like "%on_on"', StringTest(CITY, "like", "%on_on")),
    ("b occurs <= 7 days before now", Occurs(Path(("b",)), "before", NOW, "<=", 7, "day")),
    ("b occurs >= 1 week after today", Occurs(Path(("b",)), "after", RelativeTime("today"), ">=", 1, "week")),
    (
        "b occurs < 2 hours before yesterday",
        Occurs(Path(("b",)), "before", RelativeTime("yesterday"), "<", 2, "hour"),
    ),
    ("b occurs before now", Occurs(Path(("b",)), "before", NOW)),
    ("b occurs after tomorrow", Occurs(Path(("b",)), "after", RelativeTime("tomorrow"))),
    (
        "b occurs between date(2020, 3, 14) and now",
        OccursBetween(Path(("b",)), Instant(1_584_144_000_000), NOW),
    ),
    ("b < date(2000, 1, 1)", Compare(Path(("b",)), "<", Instant(946_684_800_000))),
    ("xEvent.count() > 0", EventCount(None, ">", 0)),
    (
        'xEvent[eventType = "commerce.purchases" and timestamp occurs <= 7 days before now].count() >= 2',
        EventCount(And((PURCHASE, LAST_7_DAYS)), ">=", 2),
    ),
    (
        "a = 1 and b = 2 or c = 3",
        Or(
            (
                And((Compare(Path(("a",)), "=", 1.0), Compare(Path(("b",)), "=", 2.0))),
                Compare(Path(("c",)), "=", 3.0),
            )
        ),
    ),
    (
        "a = 1 and (b = 2 or c = 3)",
        And(
            (
                Compare(Path(("a",)), "=", 1.0),
                Or((Compare(Path(("b",)), "=", 2.0), Compare(Path(("c",)), "=", 3.0))),
            )
        ),
    ),
    ('not (homeAddress.city = "CA")', Not(Compare(CITY, "=", "CA"))),
    ('not(homeAddress.city = "CA")', Not(Compare(CITY, "=", "CA"))),
    ('!(homeAddress.city = "CA")', Not(Compare(CITY, "=", "CA"))),
    (
        'not homeAddress.city = "CA" and a = 1',
        And((Not(Compare(CITY, "=", "CA")), Compare(Path(("a",)), "=", 1.0))),
    ),
    ("true", Const(True)),
    ("(false)", Const(False)),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:40] for c in CASES])
def test_each_construct_parses_to_its_node(text: str, expected: object) -> None:
    assert parse(text) == expected


ERRORS = [
    ("person.name.firstName = ", 24, "expected a value after '='"),
    ("person.name.firstName =  and x = 1", 25, "expected a value after '='"),
    ('person.name.startWith("a")', 12, "unknown function 'startWith'", "did you mean startsWith?"),
    ("person.name.isNotNul()", 12, "unknown function 'isNotNul'", "did you mean isNotNull?"),
    ("xEvent.cuont() > 1", 7, "unknown function 'cuont'", "did you mean count?"),
    ("xEvent.size() > 1", 7, "unknown function 'size'", "known functions: count"),
    ('a = "x', 4, "unterminated string"),
    ("a = 1 b = 2", 6, "unexpected 'b'"),
    ("a == 1", 2, "'==' is not PQL; use '='"),
    ("(a = 1", 6, "expected ')'"),
    ("a in []", 6, "empty list"),
    ('a in [1, "x"]', 2, "a list mixes types"),
    ("a occurs = 3 days before now", 9, "occurs = is not supported"),
    ("a occurs <= 3 fortnights before now", 14, "expected a time unit"),
    ("a occurs <= 3 days since now", 19, "expected 'before' or 'after'"),
    ("a occurs <= 3 days before noon", 26, "expected now, today, yesterday, tomorrow or date"),
    ("a occurs <= 1.5 days before now", 12, "expected a non-negative integer"),
    ("xEvent[a = 1].count()", 21, "expected a comparison"),
    ("xEvent[xEvent.count() > 1].count() > 1", 7, "xEvent inside an xEvent condition"),
    ("a.startsWith(1)", 13, "expected a string after '('"),
    ('a.startsWith("x", "y")', 18, "expected true or false after ','"),
    ('a.matches("(")', 2, "invalid regular expression"),
    ("a < null", 2, "null can only be compared with '=' or '!='"),
    ("b < date(2000, 13, 1)", 4, "invalid date"),
    ("a = 1 and", 9, "expected a condition"),
    ("a # 1", 2, "unexpected character '#'"),
    ("", 0, "empty expression"),
    ("a", 1, "expected a comparison, 'in', 'like', 'occurs' or a function after 'a'"),
]


@pytest.mark.parametrize("case", ERRORS, ids=[c[0] or "empty" for c in ERRORS])
def test_errors_name_the_position_and_the_problem(case: tuple[str, ...]) -> None:
    text, position, problem, *hint = case
    with pytest.raises(PqlError) as caught:
        parse(text)
    assert caught.value.position == position
    assert str(caught.value).startswith(f"{problem}")
    assert f" at {position}" in str(caught.value)
    for words in hint:
        assert words in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_the_brief_example_message_reads_as_documented() -> None:
    with pytest.raises(
        PqlError, match=r"^expected a value after '=' at 24; found the end of the expression$"
    ):
        parse("person.name.firstName = ")


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(PqlError, match="nested deeper"):
        parse("(" * 500 + "a = 1" + ")" * 500)
    with pytest.raises(PqlError, match="nested deeper"):
        parse("not " * 500 + "a = 1")


def test_paths_and_event_paths_split_the_two_worlds() -> None:
    expr = parse(
        'homeAddress.city = "Oslo" and not _tenant.loyalty.points.isNull()'
        ' and xEvent[eventType = "x" and commerce.order.priceTotal > 1].count() > 0'
    )
    assert paths(expr) == {"homeAddress.city", "_tenant.loyalty.points"}
    assert event_paths(expr) == {"eventType", "commerce.order.priceTotal"}
    assert depends_on_events(expr)
    assert not depends_on_events(parse('homeAddress.city = "Oslo"'))


@pytest.mark.parametrize(
    ("text", "streamable"),
    [
        ('homeAddress.city = "Oslo"', True),
        ("b < date(2000, 1, 1)", True),
        ('xEvent[eventType = "x"].count() > 0', True),
        ('xEvent[eventType = "x"].count() >= 2', False),
        ('xEvent[eventType = "x" and timestamp occurs <= 24 hours before now].count() >= 2', True),
        ('xEvent[eventType = "x" and timestamp occurs <= 2 days before now].count() >= 2', False),
        ("lastVisit occurs <= 30 days before now", False),
    ],
)
def test_streamability_follows_aep_rules(text: str, streamable: bool) -> None:
    assert is_streamable(parse(text)) is streamable
