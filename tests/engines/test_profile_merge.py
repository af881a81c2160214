"""The merge of profile fragments under a policy, by hand-worked cases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from headwater.engines.profile_merge import Fragment, merge

TIMESTAMP = {"attributeMerge": {"type": "timestampOrdered"}}


def precedence(*order: str) -> dict[str, Any]:
    return {"attributeMerge": {"type": "dataSetPrecedence", "order": list(order)}}


CRM = Fragment(
    "crm",
    1_000,
    {"person": {"name": {"firstName": "Ada", "lastName": "Lovelace"}}, "homeAddress": {"city": "London"}},
)
WEB = Fragment("web", 2_000, {"person": {"name": {"firstName": "Augusta"}}, "loyalty": {"tier": "gold"}})
APP = Fragment("app", 3_000, {"person": {"name": {"lastName": "King"}}, "homeAddress": None})


def test_timestamp_ordered_takes_the_newest_value_per_leaf() -> None:
    assert merge([CRM, WEB, APP], TIMESTAMP) == {
        "person": {"name": {"firstName": "Augusta", "lastName": "King"}},
        "homeAddress": {"city": "London"},  # None in the newest fragment is no value
        "loyalty": {"tier": "gold"},
    }


def test_the_input_order_does_not_matter_only_the_timestamps() -> None:
    assert merge([APP, CRM, WEB], TIMESTAMP) == merge([CRM, WEB, APP], TIMESTAMP)


def test_dataset_precedence_takes_the_highest_dataset_per_leaf() -> None:
    merged = merge([CRM, WEB, APP], precedence("crm", "web", "app"))
    assert merged == {
        "person": {"name": {"firstName": "Ada", "lastName": "Lovelace"}},
        "homeAddress": {"city": "London"},
        "loyalty": {"tier": "gold"},  # only web has it
    }


def test_dataset_precedence_leaves_out_datasets_not_in_the_order() -> None:
    assert merge([CRM, WEB, APP], precedence("app", "web")) == {
        "person": {"name": {"firstName": "Augusta", "lastName": "King"}},
        "loyalty": {"tier": "gold"},
    }


def test_within_one_dataset_the_newest_fragment_wins() -> None:
    old = Fragment("crm", 1, {"email": "old@example.com", "tier": "silver"})
    new = Fragment("crm", 2, {"email": "new@example.com"})
    other = Fragment("web", 9, {"email": "web@example.com", "tier": "gold"})
    assert merge([new, other, old], precedence("crm", "web")) == {
        "email": "new@example.com",
        "tier": "silver",
    }


def test_arrays_are_leaves_replaced_whole() -> None:
    a = Fragment("a", 1, {"phones": [{"number": "1"}, {"number": "2"}], "tags": ["x"]})
    b = Fragment("b", 2, {"phones": [{"number": "3"}]})
    assert merge([a, b], TIMESTAMP) == {"phones": [{"number": "3"}], "tags": ["x"]}


def test_a_winning_scalar_replaces_an_object_and_back() -> None:
    obj = Fragment("a", 1, {"address": {"city": "Paris", "zip": "75001"}})
    scalar = Fragment("b", 2, {"address": "10 Downing Street"})
    assert merge([obj, scalar], TIMESTAMP) == {"address": "10 Downing Street"}
    later_obj = Fragment("a", 3, {"address": {"city": "Rome"}})
    assert merge([obj, scalar, later_obj], TIMESTAMP) == {"address": {"city": "Rome"}}


def test_ties_go_to_the_later_fragment_in_the_list() -> None:
    a, b = Fragment("a", 5, {"v": 1}), Fragment("b", 5, {"v": 2})
    assert merge([a, b], TIMESTAMP) == {"v": 2}
    assert merge([b, a], TIMESTAMP) == {"v": 1}


def test_fragments_may_be_tuples_or_objects_and_none_is_empty() -> None:
    @dataclass
    class Row:
        dataset_id: str
        ts_ms: int
        attributes: dict[str, Any]

    assert merge([("a", 1, {"x": 1}), Row("b", 2, {"y": {"z": 0}})], TIMESTAMP) == {"x": 1, "y": {"z": 0}}
    assert merge([], TIMESTAMP) == {}
    assert merge([CRM], {}) == merge([CRM], TIMESTAMP)  # no attributeMerge: timestampOrdered


def test_the_inputs_are_not_changed() -> None:
    attributes = {"a": {"b": 1}}
    merged = merge([Fragment("a", 1, attributes)], TIMESTAMP)
    merged["a"]["b"] = 2
    assert attributes == {"a": {"b": 1}}


def test_an_unknown_merge_type_is_refused() -> None:
    with pytest.raises(ValueError, match=r"attributeMerge\.type"):
        merge([CRM], {"attributeMerge": {"type": "mostFrequent"}})
