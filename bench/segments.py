"""Batch segmentation: 10 simple and 5 event-window segment definitions over synthetic profiles.

Builds, inside DuckDB (vectorized, deterministic: values are hashes of the row number), ``--profiles``
profiles as fragments from two datasets (``crm`` for every profile, ``web`` for two in three) and
``--events`` experience events over the last 60 days, as the Arrow tables the segment engine reads
(attributes and bodies as JSON text). Then, in the same run and over the same registered tables:

- ``evaluate``: headwater.engines.segments.compile.evaluate (compile + run + Arrow result);
- the baseline: the same generated SQL executed directly on DuckDB (``con.sql(sql, params)``);

each ``--repeat`` times, alternating, printing the best and all times and the ratio, and the number of
qualifying profiles per segment (equal between the two, or the script exits 1).

    PYTHONPATH=src .venv/bin/python bench/segments.py [--profiles 1000000] [--events 10000000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from headwater.engines.segments.compile import compile_segments, evaluate
from headwater.engines.segments.pql import parse

NOW_MS = 1_796_601_600_000  # 2026-12-07T00:00:00Z
DAY_MS = 86_400_000

SIMPLE = {
    "s01_first_name": 'person.name.firstName = "Ada"',
    "s02_city": 'homeAddress.city in ["London", "Paris", "Berlin"]',
    "s03_points": "_tenant.loyalty.points >= 500",
    "s04_gold_gb": '_tenant.loyalty.tier = "gold" and homeAddress.countryCode = "GB"',
    "s05_mc": 'person.name.lastName.startsWith("mc", false)',
    "s06_example_mail": 'personalEmail.address.endsWith("@example.com")',
    "s07_born_before_1980": "person.birthDate occurs before date(1980, 1, 1)",
    "s08_not_north_america": 'not (homeAddress.countryCode in ["US", "CA"])',
    "s09_consent_or_low": "consents.marketing.email = true or _tenant.loyalty.points < 10",
    "s10_recent_visit": "lastVisit occurs <= 30 days before now and person.name.firstName.isNotNull()",
}
EVENTS = {
    "e1_two_purchases_7d": (
        'xEvent[eventType = "commerce.purchases" and timestamp occurs <= 7 days before now].count() >= 2'
    ),
    "e2_viewed_24h": (
        'xEvent[eventType = "commerce.productViews" and timestamp occurs <= 24 hours before now].count() > 0'
    ),
    "e3_five_pages_30d": (
        'xEvent[eventType = "web.webpagedetails.pageViews" and timestamp occurs <= 30 days before now]'
        ".count() >= 5"
    ),
    "e4_big_order_14d": (
        'xEvent[eventType = "commerce.purchases" and commerce.order.priceTotal >= 100'
        " and timestamp occurs <= 14 days before now].count() >= 1"
    ),
    "e5_abandoned_3d": (
        'xEvent[eventType = "commerce.checkouts" and timestamp occurs <= 3 days before now].count() > 0'
        ' and not (xEvent[eventType = "commerce.purchases" and timestamp occurs <= 3 days before now]'
        ".count() > 0)"
    ),
}
POLICY = {"attributeMerge": {"type": "dataSetPrecedence", "order": ["crm", "web"]}}

FRAGMENTS_SQL = """
WITH p AS (SELECT range AS i, (hash(range) >> 1)::BIGINT AS h,
                  (hash(range + 1000000007) >> 1)::BIGINT AS g FROM range({profiles}))
SELECT i AS cluster_id, 'crm' AS dataset_id, {now} - 90 * {day} + (h % (60 * {day}))::BIGINT AS ts_ms,
  json_object(
    'person', json_object(
      'name', json_object('firstName', ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald'][h % 6 + 1],
                          'lastName', ['McCarthy', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth',
                                       'Mcintyre'][g % 7 + 1]),
      'birthDate', strftime(TIMESTAMP '1950-01-01' + to_days((h % 20000)::INTEGER), '%Y-%m-%d')),
    'homeAddress', json_object('city', ['London', 'Paris', 'Berlin', 'Boston', 'Toronto', 'Oslo'][g % 6 + 1],
                               'countryCode', ['GB', 'FR', 'DE', 'US', 'CA', 'NO'][g % 6 + 1]),
    'personalEmail', json_object('address', 'user' || i || ['@example.com', '@mail.test'][h % 2 + 1]),
    '_tenant', json_object('loyalty', json_object('points', (g % 1000)::INTEGER,
                                                  'tier', ['gold', 'silver', 'bronze'][h % 3 + 1]))
  )::VARCHAR AS attributes
FROM p
UNION ALL
SELECT i, 'web', {now} - 30 * {day} + (g % (30 * {day}))::BIGINT,
  json_object(
    'person', json_object('name', json_object('firstName', CASE WHEN g % 5 = 0 THEN 'Ada' END)),
    'lastVisit', strftime(to_timestamp(({now} - (g % (60 * {day}))) / 1000), '%Y-%m-%dT%H:%M:%SZ'),
    'consents', json_object('marketing', json_object('email', g % 4 = 0)),
    '_tenant', json_object('loyalty', json_object('points', CASE WHEN h % 2 = 0 THEN (h % 1000)::INTEGER END))
  )::VARCHAR
FROM p WHERE i % 3 <> 0
"""

EVENTS_SQL = """
WITH e AS (SELECT range AS i, (hash(range * 31 + 7) >> 1)::BIGINT AS h FROM range({events}))
SELECT (h % {profiles})::BIGINT AS cluster_id, {now} - ((h >> 20) % (60 * {day}))::BIGINT AS ts_ms,
  json_object('eventType', ['commerce.purchases', 'commerce.productViews', 'commerce.checkouts',
                            'web.webpagedetails.pageViews', 'web.webpagedetails.pageViews',
                            'commerce.productViews'][(h >> 8) % 6 + 1],
              'commerce', json_object('order', json_object('priceTotal', ((h >> 12) % 20000) / 100.0)),
              'web', json_object('webPageDetails', json_object('name', 'page' || ((h >> 16) % 50))))::VARCHAR
    AS body
FROM e
"""


def build(profiles: int, events: int) -> tuple[pa.Table, pa.Table, float]:
    started = time.perf_counter()
    con = duckdb.connect()
    values = {"profiles": profiles, "events": events, "now": NOW_MS, "day": f"{DAY_MS}::BIGINT"}
    fragments = con.sql(FRAGMENTS_SQL.format(**values)).to_arrow_table()
    event_rows = con.sql(EVENTS_SQL.format(**values)).to_arrow_table()
    con.close()
    return fragments, event_rows, time.perf_counter() - started


def timed(run: Any) -> tuple[float, pa.Table]:
    started = time.perf_counter()
    table = run()
    return time.perf_counter() - started, table


def counts(table: pa.Table, names: list[str]) -> dict[str, int]:
    return {name: int(pc.sum(table.column(name)).as_py() or 0) for name in names}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="DuckDB threads (0: DuckDB's default)")
    args = parser.parse_args()

    fragments, events, build_s = build(args.profiles, args.events)
    print(f"built {fragments.num_rows:,} fragments and {events.num_rows:,} events in {build_s:.1f} s")
    con = duckdb.connect()
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    con.register("fragments", fragments)
    con.register("events", events)
    definitions = {name: parse(text) for name, text in {**SIMPLE, **EVENTS}.items()}
    compiled = compile_segments(definitions, POLICY)
    names = list(definitions)

    ours: list[float] = []
    base: list[float] = []
    expected: dict[str, int] | None = None
    for _ in range(args.repeat):
        seconds, table = timed(lambda: evaluate(con, definitions, POLICY, NOW_MS))
        ours.append(seconds)
        got = counts(table, names)
        seconds, table = timed(
            lambda: con.sql(compiled.sql, params=compiled.parameters(NOW_MS)).to_arrow_table()
        )
        base.append(seconds)
        if counts(table, names) != got or (expected is not None and got != expected):
            print("MISMATCH between evaluate and the direct SQL", file=sys.stderr)
            return 1
        expected = got
    assert expected is not None
    print(f"profiles {table.num_rows:,}; qualifying per segment:")
    for name, count in expected.items():
        print(f"  {name:24} {count:>10,}")
    best, best_base = min(ours), min(base)
    runs = ", ".join(f"{s:.2f}" for s in ours)
    base_runs = ", ".join(f"{s:.2f}" for s in base)
    print(f"evaluate:   best {best:.2f} s ({runs})")
    print(f"direct SQL: best {best_base:.2f} s ({base_runs})")
    print(
        f"ratio evaluate / direct: {best / best_base:.2f}x; target < 60 s: {'met' if best < 60 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
