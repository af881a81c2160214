"""The compiled segment query against the brute-force evaluator, over random seeded profiles and events."""

from __future__ import annotations

import json
import random
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from headwater.engines.segments.brute import evaluate_population
from headwater.engines.segments.compile import compile_segments, evaluate
from headwater.engines.segments.pql import parse

NOW = 1_796_601_600_000  # 2026-12-07T00:00:00Z
DAY = 86_400_000
INJECTION = "'; DROP TABLE x; --"
NAMES = ["Ada", "ada", "Grace", "Alan", "Zoë", INJECTION, "", 'quote"d', 42, True, None]
CITIES = ["London", "Paris", "Oslo", "london", None]
DATASETS = ["crm", "web", "app", "other"]
EVENT_TYPES = ["commerce.purchases", "commerce.productViews", "web.pageViews", 7, None]

TIMESTAMP = {"attributeMerge": {"type": "timestampOrdered"}}
PRECEDENCE = {"attributeMerge": {"type": "dataSetPrecedence", "order": ["web", "crm", "app"]}}

DEFINITIONS = {
    "name_eq": 'person.name.firstName = "Ada"',
    "name_ne": 'person.name.firstName != "Ada"',
    "not_name_eq": 'not (person.name.firstName = "Ada")',
    "name_ci": 'person.name.firstName.equals("ADA", false) or person.name.firstName.startsWith("z", false)',
    "name_funcs": 'person.name.firstName.contains("ra") or person.name.firstName.endsWith("an")'
    ' or person.name.firstName like "G_a%"',
    "name_negated": 'person.name.firstName.doesNotStartWith("A")',
    "name_matches": 'person.name.firstName.matches("^[A-Z][a-z]+$")',
    "injection": f"person.name.firstName = {json.dumps(INJECTION)}",
    "quote": 'person.name.firstName = "quote\\"d"',
    "city_in": 'homeAddress.city in ["London", "Oslo"]',
    "city_not_in": 'homeAddress.city notIn ["London", "Oslo"]',
    "points": "_tenant.loyalty.points >= 500 and _tenant.loyalty.points < 900",
    "points_list": "_tenant.loyalty.points in [100, 250.5]",
    "flag": "consents.email = true",
    "missing": "person.name.firstName.isNull() or homeAddress.isNotNull()",
    "null_literal": "homeAddress.city = null",
    "birth_before": "person.birthDate occurs before date(1990, 1, 1)",
    "birth_between": "person.birthDate occurs between date(1980, 1, 1) and date(1995, 6, 30)",
    "visit_recent": "lastVisit occurs <= 10 days before now",
    "visit_old": "lastVisit occurs >= 20 days before today",
    "visit_future": "lastVisit occurs < 3 days after now",
    "two_purchases_7d": (
        'xEvent[eventType = "commerce.purchases" and timestamp occurs <= 7 days before now].count() >= 2'
    ),
    "any_event": "xEvent.count() > 0",
    "no_views_30d": 'xEvent[eventType = "commerce.productViews" and timestamp occurs <= 30 days before now]'
    ".count() = 0",
    "big_order": 'xEvent[commerce.order.priceTotal > 50 and not (eventType = "web.pageViews")].count() >= 1'
    ' and homeAddress.city = "London"',
    "event_strings": 'xEvent[eventType.startsWith("commerce.") and web.page.name.isNotNull()'
    " and timestamp occurs between yesterday and now].count() > 0",
    "event_time_field": "xEvent[placedAt occurs <= 5 days before now].count() >= 1",
    "constant": "true and not false",
}


def _maybe(rng: random.Random, value: Any, p: float = 0.75) -> Any:
    return value if rng.random() < p else None


def _time(rng: random.Random, center: int, spread_days: int) -> Any:
    ms = center + rng.randint(-spread_days * DAY, spread_days * DAY)
    form = rng.randrange(6)
    if form == 0:
        return ms
    from datetime import UTC, datetime, timedelta

    moment = datetime.fromtimestamp(ms / 1000, UTC)
    if form == 1:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if form == 2:
        return (moment + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+02:00"
    if form == 3:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if form == 4:
        return moment.strftime("%Y-%m-%d")
    return rng.choice(["not a date", True, None])


def _attributes(rng: random.Random) -> dict[str, Any]:
    born = -400_000_000_000 + rng.randint(0, 40 * 365) * DAY
    attributes: dict[str, Any] = {
        "person": {"name": {"firstName": rng.choice(NAMES)}, "birthDate": _maybe(rng, _time(rng, born, 10))},
        "homeAddress": rng.choice([{"city": rng.choice(CITIES)}, None, {}]),
        "_tenant": {
            "loyalty": {"points": _maybe(rng, rng.choice([100, 250.5, rng.randint(0, 1000), "700"]))}
        },
        "consents": {"email": rng.choice([True, False, "true", None])},
        "lastVisit": _maybe(rng, _time(rng, NOW, 30)),
    }
    if rng.random() < 0.2:
        del attributes["person"]
    return attributes


def _event(rng: random.Random) -> tuple[int, dict[str, Any]]:
    ts = NOW + rng.randint(-20 * DAY, DAY)
    body: dict[str, Any] = {
        "eventType": rng.choice(EVENT_TYPES),
        "commerce": {"order": {"priceTotal": rng.choice([10, 99.5, 51, "60", None])}},
        "placedAt": _maybe(rng, _time(rng, NOW, 10)),
    }
    if rng.random() < 0.5:
        body["web"] = {"page": {"name": rng.choice(["home", None])}}
    return ts, body


def population(seed: int, clusters: int = 400) -> tuple[list[Any], list[Any]]:
    rng = random.Random(seed)
    fragments: list[tuple[int, str, int, dict[str, Any]]] = []
    events: list[tuple[int, int, dict[str, Any]]] = []
    times = iter(rng.sample(range(NOW - 100 * DAY, NOW), clusters * 4))  # distinct: no ties to break
    for cluster in range(clusters):
        for dataset in rng.sample(DATASETS, rng.randint(1, 3)):
            fragments.append((cluster, dataset, next(times), _attributes(rng)))
        events.extend((cluster, *_event(rng)) for _ in range(rng.choice([0, 0, 1, 3, 6, 12])))
    events.append((clusters + 5, NOW, {"eventType": "commerce.purchases"}))  # events of no profile
    return fragments, events


def connect(fragments: list[Any], events: list[Any]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register(
        "fragments",
        pa.table(
            {
                "cluster_id": pa.array([f[0] for f in fragments], pa.int64()),
                "dataset_id": pa.array([f[1] for f in fragments], pa.string()),
                "ts_ms": pa.array([f[2] for f in fragments], pa.int64()),
                "attributes": pa.array([json.dumps(f[3]) for f in fragments], pa.string()),
            }
        ),
    )
    con.register(
        "events",
        pa.table(
            {
                "cluster_id": pa.array([e[0] for e in events], pa.int64()),
                "ts_ms": pa.array([e[1] for e in events], pa.int64()),
                "body": pa.array([json.dumps(e[2]) for e in events], pa.string()),
            }
        ),
    )
    return con


def by_cluster(table: pa.Table) -> dict[int, dict[str, bool]]:
    return {row.pop("cluster_id"): row for row in table.to_pylist()}


@pytest.mark.parametrize("policy", [TIMESTAMP, PRECEDENCE], ids=["timestampOrdered", "dataSetPrecedence"])
@pytest.mark.parametrize("seed", [1, 2])
def test_the_compiled_query_agrees_with_brute_force(policy: dict[str, Any], seed: int) -> None:
    fragments, events = population(seed)
    definitions = {name: parse(text) for name, text in DEFINITIONS.items()}
    con = connect(fragments, events)
    got = by_cluster(evaluate(con, definitions, policy, NOW))
    expected = evaluate_population(fragments, events, definitions, policy, NOW)
    assert got.keys() == expected.keys()
    for name in definitions:
        wrong = [c for c in expected if got[c][name] != expected[c][name]]
        assert not wrong, f"{name}: clusters {wrong[:5]} differ (got {[got[c][name] for c in wrong[:5]]})"
    # the generator must exercise each definition both ways, or the comparison proves little
    for name in definitions:
        if name != "constant":
            assert {row[name] for row in expected.values()} == {True, False}, name


def test_string_literals_are_parameters_not_sql() -> None:
    fragments = [(1, "crm", 1, {"person": {"name": {"firstName": INJECTION}}}), (2, "crm", 1, {})]
    con = connect(fragments, [])
    con.execute("CREATE TABLE x (a INTEGER)")
    definitions = {"evil": parse(f"person.name.firstName = {json.dumps(INJECTION)}")}
    compiled = compile_segments(definitions, TIMESTAMP)
    assert INJECTION not in compiled.sql and "DROP" not in compiled.sql
    assert by_cluster(evaluate(con, definitions, TIMESTAMP, NOW)) == {1: {"evil": True}, 2: {"evil": False}}
    assert con.sql("SELECT count(*) FROM x").fetchall() == [(0,)]


def test_segment_ids_are_quoted_identifiers() -> None:
    con = connect([(1, "crm", 1, {"a": 1})], [])
    weird = 'seg"; DROP TABLE fragments; --'
    table = evaluate(con, {weird: parse("a = 1")}, TIMESTAMP, NOW)
    assert table.column_names == ["cluster_id", weird]
    assert table.column(weird).to_pylist() == [True]
    with pytest.raises(ValueError, match="cluster_id"):
        compile_segments({"cluster_id": parse("a = 1")}, TIMESTAMP)


def test_every_cluster_appears_even_when_the_policy_merges_none_of_its_datasets() -> None:
    fragments = [(1, "other", 5, {"a": 1}), (2, "crm", 5, {"a": 1})]
    con = connect(fragments, [(1, NOW, {"eventType": "x"})])
    definitions = {"a": parse("a = 1"), "unset": parse("a.isNull()"), "ev": parse("xEvent.count() > 0")}
    got = by_cluster(
        evaluate(con, definitions, {"attributeMerge": {"type": "dataSetPrecedence", "order": ["crm"]}}, NOW)
    )
    assert got == {1: {"a": False, "unset": True, "ev": True}, 2: {"a": True, "unset": False, "ev": False}}


def test_now_is_a_parameter_the_sql_does_not_hold() -> None:
    definitions = {"recent": parse("t occurs <= 1 days before now")}
    compiled = compile_segments(definitions, TIMESTAMP)
    assert str(NOW) not in compiled.sql
    con = connect([(1, "crm", 1, {"t": NOW - DAY // 2})], [])
    assert by_cluster(evaluate(con, definitions, TIMESTAMP, NOW)) == {1: {"recent": True}}
    assert by_cluster(evaluate(con, definitions, TIMESTAMP, NOW + 2 * DAY)) == {1: {"recent": False}}


def test_an_unknown_merge_type_is_refused() -> None:
    with pytest.raises(ValueError, match=r"attributeMerge\.type"):
        compile_segments({"a": parse("a = 1")}, {"attributeMerge": {"type": "random"}})
