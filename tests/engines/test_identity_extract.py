"""Identities out of XDM rows (Arrow and JSON), and the star of links per row."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from headwater.engines.identity.extract import (
    Identity,
    IdentityField,
    identities,
    identities_of,
    links,
    star,
)

ITEM = pa.struct([("id", pa.string()), ("authenticatedState", pa.string()), ("primary", pa.bool_())])
MAP = pa.map_(pa.string(), pa.list_(ITEM))
FIELDS = [
    IdentityField("_tenant.crmId", "CRMID", primary=True),
    IdentityField("personalEmail.address", "Email"),
]
RECORDS = [
    {
        "_tenant": {"crmId": "c-1"},
        "personalEmail": {"address": "a@x.io"},
        "identityMap": {"ecid": [{"id": "1" * 38, "authenticatedState": "ambiguous", "primary": False}]},
    },
    {"_tenant": None, "personalEmail": {"address": "  "}, "identityMap": None},
    {
        "_tenant": {"crmId": None},
        "personalEmail": {"address": "b@x.io"},
        "identityMap": {"Email": [{"id": "b@x.io", "primary": True}], "4": [{"id": "2" * 38}, {"id": ""}]},
    },
    {"_tenant": {"crmId": "c-3"}, "personalEmail": None, "identityMap": {}},
]
SCHEMA = pa.schema(
    [
        ("_tenant", pa.struct([("crmId", pa.string())])),
        ("personalEmail", pa.struct([("address", pa.string())])),
        ("identityMap", MAP),
    ]
)
EXPECTED = [
    (0, "CRMID", "c-1", True),
    (0, "Email", "a@x.io", False),
    (0, "ECID", "1" * 38, False),
    (2, "Email", "b@x.io", True),
    (2, "ECID", "2" * 38, False),
    (3, "CRMID", "c-3", True),
]


def rows_of(found: pa.Table) -> list[tuple[object, ...]]:
    return list(
        zip(*(found.column(c).to_pylist() for c in ("row", "namespace", "id", "primary")), strict=True)
    )


def map_records() -> list[dict[str, object]]:
    """RECORDS with identityMap as pyarrow wants a map: a list of (key, value) pairs."""
    out = []
    for r in RECORDS:
        m = r["identityMap"]
        out.append({**r, "identityMap": None if m is None else list(m.items())})  # type: ignore[attr-defined]
    return out


def test_fields_and_a_map_identity_map_give_one_row_per_identity() -> None:
    table = pa.Table.from_pylist(map_records(), schema=SCHEMA)
    found = identities(table, FIELDS)
    assert found.schema.names == ["row", "namespace", "id", "primary"]
    assert rows_of(found) == EXPECTED


def test_chunked_and_sliced_tables_keep_their_row_numbers() -> None:
    table = pa.Table.from_pylist(map_records(), schema=SCHEMA)
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 2), table.slice(3)])
    assert chunked.column("identityMap").num_chunks == 3
    assert rows_of(identities(chunked, FIELDS)) == EXPECTED
    tail = identities(table.slice(2), FIELDS)
    assert rows_of(tail) == [(r - 2, *rest) for r, *rest in EXPECTED if r >= 2]


def test_a_struct_of_lists_identity_map_is_read_too() -> None:
    struct_map = pa.struct([("Email", pa.list_(ITEM)), ("ECID", pa.list_(ITEM))])
    table = pa.table(
        {
            "identityMap": pa.array(
                [
                    {
                        "Email": [{"id": "a@x.io", "primary": None}],
                        "ECID": [{"id": "9" * 38, "primary": True}],
                    },
                    None,
                    {"Email": None, "ECID": [{"id": None}]},
                ],
                struct_map,
            )
        }
    )
    found = identities(table, [])
    assert rows_of(found) == [(0, "Email", "a@x.io", False), (0, "ECID", "9" * 38, True)]


def test_list_and_integer_fields_and_duplicates() -> None:
    table = pa.table(
        {
            "emails": pa.array([["a@x.io", "b@x.io", "a@x.io"], None, []], pa.list_(pa.string())),
            "loyalty": pa.array([7, None, 9], pa.int64()),
        }
    )
    found = identities(table, [IdentityField("emails", "email"), IdentityField("loyalty", "Loyalty")])
    assert rows_of(found) == [
        (0, "Email", "a@x.io", False),
        (0, "Email", "b@x.io", False),
        (0, "Loyalty", "7", False),
        (2, "Loyalty", "9", False),
    ]


def test_a_path_the_table_does_not_have_is_refused() -> None:
    table = pa.Table.from_pylist(map_records(), schema=SCHEMA)
    with pytest.raises(ValueError, match="no column 'person'"):
        identities(table, [IdentityField("person.email", "Email")])
    with pytest.raises(ValueError, match="no field 'nope'"):
        identities(table, [IdentityField("personalEmail.nope", "Email")])


def test_links_are_a_star_on_the_primary_or_the_first_identity() -> None:
    table = pa.Table.from_pylist(map_records(), schema=SCHEMA)
    found = identities(table, [IdentityField("personalEmail.address", "Email")])
    got = list(zip(*(links(found).column(c).to_pylist() for c in links(found).column_names), strict=True))
    assert got == [
        ("Email", "a@x.io", "ECID", "1" * 38, 0),
        ("Email", "b@x.io", "ECID", "2" * 38, 2),
    ]
    assert links(identities(table.slice(3), FIELDS)).num_rows == 0
    assert links(identities(table.slice(0, 0), FIELDS)).num_rows == 0


def test_one_json_record_gives_what_its_row_gives() -> None:
    table = pa.Table.from_pylist(map_records(), schema=SCHEMA)
    for row, record in enumerate(RECORDS):
        expected = [Identity(ns, value, primary) for r, ns, value, primary in EXPECTED if r == row]
        assert identities_of(record, FIELDS) == expected
        pairs = [(a.namespace, a.id, b.namespace, b.id) for a, b in star(expected)]
        one = links(identities(table.slice(row, 1), FIELDS))
        assert pairs == list(zip(*(one.column(c).to_pylist() for c in one.column_names[:4]), strict=True))


def test_half_a_million_rows_take_about_a_second_with_no_loop_over_rows() -> None:
    n = 500_000
    numbers = pa.array(np.arange(n)).cast(pa.string())
    table = pa.table(
        {
            "_tenant": pa.StructArray.from_arrays([numbers], ["crmId"]),
            "personalEmail": pa.StructArray.from_arrays([numbers], ["address"]),
        }
    )
    started = time.perf_counter()
    found = identities(table, FIELDS)
    pairs = links(found)
    elapsed = time.perf_counter() - started
    assert found.num_rows == 2 * n and pairs.num_rows == n
    assert elapsed < 5, elapsed
