"""A JSON object sent for a map field (XDM's identityMap) is read by Arrow as a struct of its keys; it lands
as the map it is, each row with the keys it holds, in order."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from headwater.engines.mapping.coerce import coerce

ITEM = pa.list_(pa.struct([("id", pa.string()), ("primary", pa.bool_())]))
IDENTITY_MAP = pa.map_(pa.string(), ITEM)


def test_an_object_of_identities_becomes_an_identity_map() -> None:
    sent = [
        {"ECID": [{"id": "1", "primary": True}], "Email": [{"id": "a@example.com"}]},
        None,
        {"Email": [{"id": "b@example.com"}, {"id": "c@example.com"}]},
    ]
    reported: list[Any] = []
    landed = coerce(pa.array([*sent, None]), IDENTITY_MAP, lambda *a: reported.append(a))
    assert reported == []
    assert landed.type == IDENTITY_MAP
    assert landed.to_pylist() == [
        [("ECID", [{"id": "1", "primary": True}]), ("Email", [{"id": "a@example.com", "primary": None}])],
        None,
        [("Email", [{"id": "b@example.com", "primary": None}, {"id": "c@example.com", "primary": None}])],
        None,
    ]


def test_a_value_that_is_not_a_list_of_identities_is_reported_and_left_out() -> None:
    reported: list[Any] = []
    landed = coerce(pa.array([{"Email": "a@example.com"}]), IDENTITY_MAP, lambda *a: reported.append(a))
    assert len(reported) == 1
    assert landed.to_pylist() == [[("Email", [None])]]  # no identity survives
