"""The mapping engine over Arrow batches: the seeds' mappings, source paths, STATIC and EXPRESSION
mappings, type conversion and validation failures scoped to their rows, and the Arrow shape of XDM."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest

from headwater.engines.mapping import (
    INVALID_VALUE,
    MAPPING_FAILED,
    REQUIRED_MISSING,
    MappingResult,
    compile_mapping,
    identity_compile,
)
from headwater.engines.mapping.arrays import bisect
from headwater.engines.xdm_arrow import arrow_schema, field_paths
from headwater.engines.xdm_compose import Composer
from headwater.errors import ValidationFailed
from headwater.services.schemas.registry import header
from headwater.services.schemas.xdm import global_catalog

PROFILE = "https://ns.adobe.com/xdm/context/profile"
PERSON = "https://ns.adobe.com/xdm/context/profile-person-details"
PERSONAL = "https://ns.adobe.com/xdm/context/profile-personal-details"
IDENTITY_MAP = "https://ns.adobe.com/xdm/context/identitymap"
LOYALTY = "https://ns.adobe.com/xdm/mixins/profile/profile-loyalty-details"
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
JAN5 = datetime(2024, 1, 5, 10, 0, tzinfo=UTC)


def compose(*parts: dict[str, Any] | str) -> dict[str, Any]:
    """A fully resolved schema composed from shipped classes and field groups (or part documents)."""
    catalog = global_catalog()
    composer = Composer()
    for part in parts:
        doc = part if isinstance(part, dict) else catalog.classes.get(part) or catalog.fieldgroups[part]
        composer.add(doc, str(doc.get("title")))
    assert not composer.errors
    return header({"$id": "https://ns.adobe.com/headwater/schemas/test", "title": "Test"}, composer.root)


def tenant_part(tenant: str, fields: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    group: dict[str, Any] = {"type": "object", "properties": fields}
    if required:
        group["required"] = required
    return {
        "title": "Tenant fields",
        "definitions": {"fields": {"properties": {f"_{tenant}": group}}},
        "allOf": [{"$ref": "#/definitions/fields"}],
    }


PROFILE_SCHEMA = compose(PROFILE, PERSON, PERSONAL, IDENTITY_MAP, LOYALTY)

# Seed 002's mapping, as conversion.py stores and renders it.
SEED_002 = {
    "mappings": [
        {
            "sourceType": "ATTRIBUTE",
            "source": source,
            "destination": destination,
            "identity": False,
            "primaryIdentity": False,
            "namespaceCode": None,
            "sourceAttribute": source,
            "destinationXdmPath": destination,
        }
        for source, destination in (
            ("first_name", "person.name.firstName"),
            ("last_name", "person.name.lastName"),
            ("email", "personalEmail.address"),
        )
    ]
}


def mapping(*rules: tuple[str, str, str]) -> dict[str, Any]:
    return {"mappings": [{"sourceType": t, "source": s, "destination": d} for t, s, d in rules]}


def apply(doc: dict[str, Any], rows: list[Any], schema: dict[str, Any] = PROFILE_SCHEMA) -> MappingResult:
    batch = pa.RecordBatch.from_struct_array(pa.array(rows))
    return compile_mapping(doc, schema).apply(batch, now=NOW)


def at(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = None if value is None else value[part]
    return value


def failed(result: MappingResult) -> list[int]:
    return [i for i, bad in enumerate(result.failed_rows.to_pylist()) if bad]


# --- seeds ---
def test_seed_002_mapping_moves_names_and_email() -> None:
    rows = [
        {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "Id": "1"},
        {"first_name": "Alan", "last_name": "Turing", "email": "alan@example.com", "Id": "2"},
    ]
    compiled = compile_mapping(SEED_002, PROFILE_SCHEMA)
    result = compiled.apply(pa.RecordBatch.from_pylist(rows))
    assert result.errors == [] and failed(result) == [] and result.input_rows == 2
    assert result.output.schema == compiled.target == arrow_schema(PROFILE_SCHEMA)
    out = result.output.to_pylist()
    assert [at(r, "person.name.firstName") for r in out] == ["Ada", "Alan"]
    assert [at(r, "person.name.lastName") for r in out] == ["Lovelace", "Turing"]
    assert [at(r, "personalEmail.address") for r in out] == ["ada@example.com", "alan@example.com"]
    assert out[0]["homeAddress"] is None and out[0]["person"]["birthYear"] is None


def test_legacy_keys_and_source_type_aliases() -> None:
    doc = {
        "mappings": [
            {"sourceAttribute": "first_name", "destinationXdmPath": "person.name.firstName"},
            {
                "sourceType": "text/x.aep-xl",
                "source": "upper(first_name)",
                "destination": "person.name.lastName",
            },
        ]
    }
    out = apply(doc, [{"first_name": "ada"}]).output.to_pylist()[0]
    assert out["person"]["name"]["firstName"] == "ada" and out["person"]["name"]["lastName"] == "ADA"


def test_seed_004_nested_source_paths() -> None:
    fields = {
        name: {"type": "string"} for name in ("cio_id", "email", "event_id0", "metricx", "object_type1")
    }
    fields["timestampx"] = {"type": "string", "format": "date-time"}
    schema = compose(PROFILE, tenant_part("extconndev", fields))
    doc = mapping(
        ("ATTRIBUTE", "data.identifiers.cio_id", "_extconndev.cio_id"),
        ("ATTRIBUTE", "data.identifiers.email", "_extconndev.email"),
        ("ATTRIBUTE", "event_id", "_extconndev.event_id0"),
        ("ATTRIBUTE", "metric", "_extconndev.metricx"),
        ("ATTRIBUTE", "object_type", "_extconndev.object_type1"),
        ("ATTRIBUTE", "timestamp", "_extconndev.timestampx"),
    )
    rows = [
        {
            "data": {"identifiers": {"cio_id": "d9c106000001", "email": "ada@example.com", "id": "42"}},
            "event_id": "01E4C4CT6YDC7Y5M7FE1GWWPQJ",
            "metric": "subscribed",
            "object_type": "customer",
            "timestamp": 1704448800,
        },
        {
            "data": None,
            "event_id": "e2",
            "metric": "sent",
            "object_type": "email",
            "timestamp": 1704448800000,
        },
    ]
    result = apply(doc, rows, schema)
    assert result.errors == []
    first, second = (r["_extconndev"] for r in result.output.to_pylist())
    assert first == {
        "cio_id": "d9c106000001",
        "email": "ada@example.com",
        "event_id0": "01E4C4CT6YDC7Y5M7FE1GWWPQJ",
        "metricx": "subscribed",
        "object_type1": "customer",
        "timestampx": JAN5,
    }
    assert second["cio_id"] is None and second["timestampx"] == JAN5  # epoch milliseconds too


# --- source paths ---
def test_source_path_syntax() -> None:
    doc = mapping(
        ("ATTRIBUTE", "contact.names[0]", "person.name.firstName"),
        ("ATTRIBUTE", "contact.names[1]", "person.name.middleName"),
        ("ATTRIBUTE", r"last\.name", "person.name.lastName"),
        ("ATTRIBUTE", "Courtesy Title", "person.name.courtesyTitle"),
        ("ATTRIBUTE", "${Name Suffix}", "person.name.suffix"),
        ("ATTRIBUTE", "ids.crm", "personID"),
        ("ATTRIBUTE", "cards[*].number", "loyalty.loyaltyID"),
        ("ATTRIBUTE", "not_there", "person.taxId"),
        ("ATTRIBUTE", "contact.not_there.deeper", "homeAddress.city"),
    )
    rows = [
        {
            "contact": {"names": ["Ada", "Augusta"]},
            "last.name": "Lovelace",
            "Courtesy Title": "Lady",
            "Name Suffix": "Countess",
            "ids": [("crm", "C-1"), ("ecid", "E-1")],
            "cards": [{"number": "L1"}, {"number": "L2"}],
        },
        {"contact": {"names": ["Alan"]}, "last.name": None, "ids": [], "cards": None},
        {"contact": None},
    ]
    batch = pa.RecordBatch.from_struct_array(
        pa.array(
            rows,
            pa.struct(
                [
                    ("contact", pa.struct([("names", pa.list_(pa.string()))])),
                    ("last.name", pa.string()),
                    ("Courtesy Title", pa.string()),
                    ("Name Suffix", pa.string()),
                    ("ids", pa.map_(pa.string(), pa.string())),
                    ("cards", pa.list_(pa.struct([("number", pa.string())]))),
                ]
            ),
        )
    )
    result = compile_mapping(doc, PROFILE_SCHEMA).apply(batch)
    assert result.errors == []
    ada, alan, empty = result.output.to_pylist()
    assert ada["person"]["name"] == {
        "firstName": "Ada",
        "lastName": "Lovelace",
        "middleName": "Augusta",
        "fullName": None,
        "courtesyTitle": "Lady",
        "suffix": "Countess",
    }
    assert ada["personID"] == "C-1" and ada["loyalty"]["loyaltyID"] == ["L1", "L2"]
    assert ada["person"]["taxId"] is None and ada["homeAddress"] is None
    assert alan["person"]["name"]["firstName"] == "Alan" and alan["person"]["name"]["middleName"] is None
    assert alan["personID"] is None and alan["loyalty"] is None
    assert empty["person"] is None  # no mapped field present: the object is absent


def test_a_missing_source_is_null_unless_the_destination_is_required() -> None:
    fields = {"crmId": {"type": "string"}, "note": {"type": "string"}}
    schema = compose(PROFILE, tenant_part("acme", fields, required=["crmId"]))
    schema["required"] = ["_acme"]  # as a primary identity at _acme.crmId makes it
    doc = mapping(("ATTRIBUTE", "id", "_acme.crmId"), ("ATTRIBUTE", "nowhere", "_acme.note"))
    result = apply(doc, [{"id": "c1"}], schema)
    assert result.errors == [] and result.output.to_pylist()[0]["_acme"] == {"crmId": "c1", "note": None}
    result = apply(mapping(("ATTRIBUTE", "nowhere", "_acme.crmId")), [{"id": "c1"}], schema)
    assert failed(result) == [0]
    assert [(e.code, e.path) for e in result.errors] == [(REQUIRED_MISSING, "_acme")]


# --- STATIC ---
def test_static_values_are_converted_to_the_destination_type() -> None:
    doc = mapping(
        ("STATIC", "1990", "person.birthYear"),
        ("STATIC", "true", "personalEmail.primary"),
        ("STATIC", "female", "person.gender"),
        ("STATIC", "2024-01-05", "person.birthDate"),
        ("STATIC", "42.5", "loyalty.points"),
        ("STATIC", "gold", "loyalty.loyaltyID"),
    )
    out = apply(doc, [{}, {}]).output.to_pylist()
    assert len(out) == 2
    person = out[1]["person"]
    assert person["birthYear"] == 1990 and person["gender"] == "female"
    assert person["birthDate"] == date(2024, 1, 5)
    assert out[1]["personalEmail"]["primary"] is True
    assert out[1]["loyalty"]["points"] == 42.5 and out[1]["loyalty"]["loyaltyID"] == ["gold"]


def test_a_static_value_the_type_cannot_hold_is_refused_at_compile_time() -> None:
    with pytest.raises(ValidationFailed) as info:
        compile_mapping(
            mapping(("ATTRIBUTE", "a", "person.name.firstName"), ("STATIC", "abc", "person.birthYear")),
            PROFILE_SCHEMA,
        )
    assert info.value.code == "CONV-1400-400"
    assert info.value.errors[0]["path"] == "mappings[1].source"
    assert "'abc'" in info.value.errors[0]["message"] and "integer" in info.value.errors[0]["message"]


# --- EXPRESSION ---
def test_expression_mappings() -> None:
    doc = mapping(
        ("EXPRESSION", 'concat(upper(last_name), ", ", first_name)', "person.name.fullName"),
        ("EXPRESSION", "to_integer(substr(birth, 0, 4))", "person.birthYear"),
        ("EXPRESSION", "date(birth, 'yyyy-MM-dd')", "person.birthDate"),
        ("EXPRESSION", "now()", "loyalty.joinDate"),
        ("EXPRESSION", "iif(points > 100, 'gold', 'silver')", "loyalty.tier"),
        ("EXPRESSION", "lower(trim(email))", "personalEmail.address"),
    )
    rows = [
        {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "birth": "1815-12-10",
            "points": 150,
            "email": " ADA@X.ORG ",
        }
    ]
    out = apply(doc, rows).output.to_pylist()[0]
    assert out["person"]["name"]["fullName"] == "LOVELACE, Ada"
    assert out["person"]["birthYear"] == 1815 and out["person"]["birthDate"] == date(1815, 12, 10)
    assert out["loyalty"]["joinDate"] == NOW and out["loyalty"]["tier"] == "gold"
    assert out["personalEmail"]["address"] == "ada@x.org"


def test_a_bad_expression_is_refused_naming_the_mapping_source() -> None:
    doc = mapping(
        ("ATTRIBUTE", "a", "person.name.firstName"),
        ("EXPRESSION", "concat(a, ", "person.name.lastName"),
        ("EXPRESSION", "__import__('os')", "person.name.middleName"),
    )
    with pytest.raises(ValidationFailed) as info:
        compile_mapping(doc, PROFILE_SCHEMA)
    errors = info.value.errors
    assert [e["path"] for e in errors] == ["mappings[1].source", "mappings[2].source"]
    assert "at position 11" in errors[0]["message"]
    assert "unknown function '__import__'" in errors[1]["message"]


@pytest.mark.parametrize(
    ("rule", "path", "words"),
    [
        (("ATTRIBUTE", "a", "person.nope"), "mappings[1].destination", "not a field"),
        (("ATTRIBUTE", "a", "person.name.firstName"), "mappings[1].destination", "mapped twice"),
        (("ATTRIBUTE", "a", "loyalty.loyaltyID"), None, None),
        (("PYTHON", "a", "person.taxId"), "mappings[1].sourceType", "ATTRIBUTE, STATIC or EXPRESSION"),
    ],
)
def test_destination_and_type_problems(
    rule: tuple[str, str, str], path: str | None, words: str | None
) -> None:
    doc = mapping(("ATTRIBUTE", "a", "person.name.firstName"), rule)
    if path is None:
        compile_mapping(doc, PROFILE_SCHEMA)
        return
    with pytest.raises(ValidationFailed) as info:
        compile_mapping(doc, PROFILE_SCHEMA)
    assert info.value.errors[0]["path"] == path and words and words in info.value.errors[0]["message"]


def test_whole_arrays_cannot_also_be_mapped_inside() -> None:
    doc = mapping(
        ("ATTRIBUTE", "exp", "loyalty.pointsExpiration"),
        ("ATTRIBUTE", "pts", "loyalty.pointsExpiration.pointsExpiring"),
    )
    with pytest.raises(ValidationFailed) as info:
        compile_mapping(doc, PROFILE_SCHEMA)
    assert info.value.errors[0]["path"] == "mappings[1].destination"


# --- failures scoped to rows ---
def test_conversion_failures_fail_only_their_rows() -> None:
    doc = mapping(
        ("ATTRIBUTE", "first_name", "person.name.firstName"),
        ("ATTRIBUTE", "year", "person.birthYear"),
        ("ATTRIBUTE", "joined", "loyalty.joinDate"),
        ("ATTRIBUTE", "points", "loyalty.points"),
    )
    rows = [
        {"first_name": "Ada", "year": "1815", "joined": "2024-01-05T10:00:00Z", "points": "10"},
        {"first_name": "Bob", "year": "abc", "joined": "2024-01-05T10:00:00Z", "points": "10"},
        {"first_name": "Cy", "year": "1990", "joined": "last tuesday", "points": "10"},
        {"first_name": "Di", "year": "1990", "joined": "2024-02-30T00:00:00Z", "points": "1e999"},
        {"first_name": "Ed", "year": None, "joined": None, "points": None},
    ]
    result = apply(doc, rows)
    assert failed(result) == [1, 2, 3]
    assert [r["person"]["name"]["firstName"] for r in result.output.to_pylist()] == ["Ada", "Ed"]
    assert result.output.to_pylist()[0]["loyalty"]["joinDate"] == JAN5
    assert [(e.row, e.code, e.path) for e in result.errors] == [
        (1, MAPPING_FAILED, "person.birthYear"),
        (2, MAPPING_FAILED, "loyalty.joinDate"),
        (3, MAPPING_FAILED, "loyalty.joinDate"),
        (3, MAPPING_FAILED, "loyalty.points"),
    ]
    assert result.errors[0].message == (
        "row 1: mappings[1] (ATTRIBUTE to person.birthYear): cannot convert 'abc' to an integer"
    )
    assert "'last tuesday' is not an ISO 8601 date-time" in result.errors[1].message
    assert "'2024-02-30T00:00:00Z' is not a valid date and time" in result.errors[2].message


def test_expression_runtime_errors_name_mapping_destination_function_and_row() -> None:
    doc = mapping(
        ("ATTRIBUTE", "name", "person.name.firstName"),
        ("EXPRESSION", "to_integer(year) + 1", "person.birthYear"),
    )
    result = apply(doc, [{"name": "a", "year": "1"}, {"name": "b", "year": "x1"}, {"name": "c", "year": "3"}])
    assert failed(result) == [1] and result.output.num_rows == 2
    (error,) = result.errors
    assert (error.row, error.code, error.path) == (1, MAPPING_FAILED, "person.birthYear")
    assert error.message == (
        "row 1: mappings[1] (EXPRESSION to person.birthYear): to_integer(): cannot convert 'x1' to an integer"
    )
    assert "Traceback" not in error.message


def test_required_fields_at_every_level() -> None:
    fields = {
        "crmId": {"type": "string"},
        "contact": {
            "type": "object",
            "required": ["email"],
            "properties": {"email": {"type": "string"}, "phone": {"type": "string"}},
        },
    }
    schema = compose(PROFILE, tenant_part("acme", fields, required=["crmId"]))
    schema["required"] = ["_acme"]
    doc = mapping(
        ("ATTRIBUTE", "id", "_acme.crmId"),
        ("ATTRIBUTE", "email", "_acme.contact.email"),
        ("ATTRIBUTE", "phone", "_acme.contact.phone"),
    )
    rows = [
        {"id": "1", "email": "a@x.org", "phone": "1"},
        {"id": None, "email": "b@x.org", "phone": None},  # crmId missing
        {"id": "3", "email": None, "phone": "3"},  # contact present without its required email
        {"id": "4", "email": None, "phone": None},  # no contact at all: its required email is not
        {"id": None, "email": None, "phone": None},  # nothing: _acme itself is missing
    ]
    result = apply(doc, rows, schema)
    assert failed(result) == [1, 2, 4]
    assert [(e.row, e.code, e.path) for e in result.errors] == [
        (1, REQUIRED_MISSING, "_acme.crmId"),
        (2, REQUIRED_MISSING, "_acme.contact.email"),
        (4, REQUIRED_MISSING, "_acme"),
    ]
    assert result.errors[0].message == "row 1: _acme.crmId: required field is missing"


def test_enum_pattern_length_format_and_bounds() -> None:
    doc = mapping(
        ("ATTRIBUTE", "gender", "person.gender"),
        ("ATTRIBUTE", "nationality", "person.nationality"),
        ("ATTRIBUTE", "pobox", "homeAddress.postOfficeBox"),
        ("ATTRIBUTE", "email", "personalEmail.address"),
        ("ATTRIBUTE", "year", "person.birthYear"),
        ("ATTRIBUTE", "status", "homeAddress.status"),  # meta:enum only suggests values
    )
    good = {"gender": "female", "nationality": "GB", "pobox": "PO 1", "email": "a@x.org", "year": 1815}
    rows = [
        {**good, "status": "anything"},
        {**good, "gender": "unknown"},
        {**good, "nationality": "gbr"},
        {**good, "pobox": "x" * 21},
        {**good, "email": "not-an-email"},
        {**good, "year": 0},
        {**good, "year": 40000, "email": "two words@x.org"},
    ]
    result = apply(doc, rows)
    assert failed(result) == [1, 2, 3, 4, 5, 6]
    assert all(e.code == INVALID_VALUE for e in result.errors)
    assert [(e.row, e.path) for e in result.errors] == [
        (1, "person.gender"),
        (2, "person.nationality"),
        (3, "homeAddress.postOfficeBox"),
        (4, "personalEmail.address"),
        (5, "person.birthYear"),
        (6, "person.birthYear"),
        (6, "personalEmail.address"),
    ]
    messages = [e.message for e in result.errors]
    assert "'unknown' is not one of: male, female, not_specified, non_specific" in messages[0]
    assert "does not match the pattern '^[A-Z]{2}$'" in messages[1]
    assert "is longer than 20 characters" in messages[2]
    assert "'not-an-email' is not a valid email address" in messages[3]
    assert "0 is less than the minimum 1" in messages[4]
    assert "40000 is greater than the maximum 32767" in messages[5]


# --- nested destinations ---
def test_arrays_of_objects_and_maps() -> None:
    doc = mapping(
        ("ATTRIBUTE", "expiring[*].points", "loyalty.pointsExpiration[*].pointsExpiring"),
        ("ATTRIBUTE", "expiring[*].on", "loyalty.pointsExpiration.pointsExpirationDate"),
        ("ATTRIBUTE", "email", "identityMap.Email[*].id"),
        ("STATIC", "true", "identityMap.Email[*].primary"),
        ("ATTRIBUTE", "crm", "identityMap.CRMID[0].id"),
    )
    rows = [
        {
            "expiring": [{"points": 5, "on": "2024-01-05T10:00:00Z"}, {"points": 7, "on": None}],
            "email": "ada@x.org",
            "crm": "C1",
        },
        {"expiring": [], "email": None, "crm": "C2"},
        {"expiring": None, "email": "cy@x.org", "crm": None},
    ]
    result = apply(doc, rows)
    assert result.errors == []
    one, two, three = result.output.to_pylist()
    assert one["loyalty"]["pointsExpiration"] == [
        {"pointsExpiring": 5.0, "pointsExpirationDate": JAN5},
        {"pointsExpiring": 7.0, "pointsExpirationDate": None},
    ]
    assert dict(one["identityMap"]) == {
        "Email": [{"id": "ada@x.org", "authenticatedState": None, "primary": True}],
        "CRMID": [{"id": "C1", "authenticatedState": None, "primary": None}],
    }
    assert two["loyalty"] is None
    assert dict(two["identityMap"]) == {
        "Email": [{"id": None, "authenticatedState": None, "primary": True}],
        "CRMID": [{"id": "C2", "authenticatedState": None, "primary": None}],
    }
    assert dict(three["identityMap"])["Email"][0]["id"] == "cy@x.org"


def test_lists_of_different_lengths_in_one_array_fail_the_row() -> None:
    doc = mapping(
        ("ATTRIBUTE", "points", "loyalty.pointsExpiration.pointsExpiring"),
        ("ATTRIBUTE", "dates", "loyalty.pointsExpiration.pointsExpirationDate"),
    )
    rows = [
        {"points": [1, 2], "dates": ["2024-01-05T10:00:00Z", "2024-01-06T10:00:00Z"]},
        {"points": [1, 2, 3], "dates": ["2024-01-05T10:00:00Z"]},
        {"points": [4], "dates": None},
        {"points": [1], "dates": ["nope"]},
    ]
    result = apply(doc, rows)
    assert failed(result) == [1, 3]
    assert (
        "does not line up with the other lists mapped into loyalty.pointsExpiration"
        in result.errors[0].message
    )
    assert result.errors[1].row == 3 and "'nope'" in result.errors[1].message
    kept = result.output.to_pylist()
    assert [len(r["loyalty"]["pointsExpiration"]) for r in kept] == [2, 1]
    assert kept[1]["loyalty"]["pointsExpiration"][0] == {"pointsExpiring": 4.0, "pointsExpirationDate": None}


def test_whole_objects_and_field_overrides() -> None:
    doc = mapping(
        ("ATTRIBUTE", "name", "person.name"), ("EXPRESSION", "upper(name.lastName)", "person.name.lastName")
    )
    rows = [{"name": {"firstName": "Ada", "lastName": "Lovelace", "extra": 1}}, {"name": None}]
    result = apply(doc, rows)
    one, two = result.output.to_pylist()
    assert one["person"]["name"]["firstName"] == "Ada" and one["person"]["name"]["lastName"] == "LOVELACE"
    assert one["person"]["name"]["suffix"] is None
    assert two["person"] is None


def test_open_objects_are_json_text() -> None:
    schema = compose(PROFILE, tenant_part("acme", {"attributes": {"type": "object"}}))
    result = apply(
        mapping(("ATTRIBUTE", "attrs", "_acme.attributes")), [{"attrs": {"a": 1, "b": [True]}}], schema
    )
    assert result.output.to_pylist()[0]["_acme"]["attributes"] == '{"a":1,"b":[true]}'


# --- identity mapping, batches, errors inside the engine ---
def test_identity_mapping_copies_same_named_columns() -> None:
    compiled = identity_compile(PROFILE_SCHEMA)
    rows = [
        {
            "person": {"name": {"firstName": "Ada"}, "birthYear": "1815", "unknown": 1},
            "personalEmail.address": "a@x.org",
            "other": "x",
        },
        {"person": None, "personalEmail.address": "bad", "other": "y"},
    ]
    result = compiled.apply(pa.RecordBatch.from_pylist(rows))
    assert failed(result) == [1] and result.errors[0].path == "personalEmail.address"
    out = result.output.to_pylist()[0]
    assert out["person"]["name"]["firstName"] == "Ada" and out["person"]["birthYear"] == 1815
    assert out["personalEmail"]["address"] == "a@x.org"
    again = compiled.apply(pa.RecordBatch.from_pylist([{"personID": "p1"}]))
    assert again.output.to_pylist()[0]["personID"] == "p1"


def test_empty_batches_and_output_shape() -> None:
    compiled = compile_mapping(SEED_002, PROFILE_SCHEMA)
    empty = pa.RecordBatch.from_pylist([], schema=pa.schema([("first_name", pa.string())]))
    result = compiled.apply(empty)
    assert result.output.num_rows == 0 and result.output.schema == compiled.target and result.errors == []
    assert len(result.failed_rows) == 0


def test_rows_keep_their_order_and_the_mask_matches() -> None:
    doc = mapping(("ATTRIBUTE", "v", "person.birthYear"))
    rows = [{"v": str(i) if i % 3 else "x"} for i in range(1, 31)]
    result = apply(doc, rows)
    mask = result.failed_rows.to_pylist()
    assert mask == [(i % 3 == 0) for i in range(1, 31)]
    assert [r["person"]["birthYear"] for r in result.output.to_pylist()] == [i for i in range(1, 31) if i % 3]
    assert [e.row for e in result.errors] == [i - 1 for i in range(1, 31) if i % 3 == 0]


def test_bisection_isolates_the_rows_a_vectorized_step_fails_on() -> None:
    values = pa.array(list(range(100)))
    calls = []

    def step(offset: int, length: int) -> pa.Array:
        calls.append(length)
        part = values.slice(offset, length).to_pylist()
        if 13 in part or 77 in part:
            raise pa.ArrowInvalid(f"bad value in {offset}..{offset + length}")
        return pa.array([v * 2 for v in part])

    result, failures = bisect(step, 100, pa.int64())
    assert [row for row, _ in failures] == [13, 77]
    assert failures[0][1] == "bad value in 13..14"
    assert result.to_pylist() == [None if v in (13, 77) else v * 2 for v in range(100)]
    assert len(calls) < 40


# --- the Arrow shape of XDM ---
def test_arrow_schema_shapes() -> None:
    schema = arrow_schema(PROFILE_SCHEMA)
    assert schema.names[:3] == ["_id", "_repo", "createdByBatchID"]
    assert schema.field("_repo").type == pa.struct(
        [("createDate", pa.timestamp("us", tz="UTC")), ("modifyDate", pa.timestamp("us", tz="UTC"))]
    )
    person = schema.field("person").type
    assert person.field("name").type.field("firstName").type == pa.string()
    assert person.field("birthDate").type == pa.date32()
    assert person.field("birthYear").type == pa.int64()
    loyalty = schema.field("loyalty").type
    assert loyalty.field("loyaltyID").type == pa.list_(pa.string())
    assert loyalty.field("points").type == pa.float64()
    assert loyalty.field("pointsExpiration").type == pa.list_(
        pa.struct([("pointsExpiring", pa.float64()), ("pointsExpirationDate", pa.timestamp("us", tz="UTC"))])
    )
    identity_map = schema.field("identityMap").type
    assert pa.types.is_map(identity_map) and identity_map.key_type == pa.string()
    assert identity_map.item_type == pa.list_(
        pa.struct([("id", pa.string()), ("authenticatedState", pa.string()), ("primary", pa.bool_())])
    )
    assert schema.field("personalEmail").type.field("primary").type == pa.bool_()
    assert all(f.nullable for f in schema)
    assert arrow_schema(PROFILE_SCHEMA) == schema  # deterministic


def test_arrow_schema_of_odd_shapes_and_field_paths() -> None:
    resolved = {
        "type": "object",
        "properties": {
            "open": {"type": "object"},
            "tags": {"type": "array"},
            "nullable": {"type": ["null", "integer"]},
            "implicit": {"properties": {"a": {"type": "boolean"}}},
            "scores": {"type": "object", "additionalProperties": {"type": "number"}},
            "when": {"type": "string", "format": "date-time"},
            "nested": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "string"}}}},
        },
    }
    schema = arrow_schema(resolved)
    assert [f.type for f in schema] == [
        pa.string(),
        pa.list_(pa.string()),
        pa.int64(),
        pa.struct([("a", pa.bool_())]),
        pa.map_(pa.string(), pa.float64()),
        pa.timestamp("us", tz="UTC"),
        pa.list_(pa.struct([("x", pa.string())])),
    ]
    assert field_paths(schema) == ["open", "tags", "nullable", "implicit.a", "scores", "when", "nested[*].x"]
    assert "person.name.firstName" in field_paths(arrow_schema(PROFILE_SCHEMA))


def test_a_value_of_no_convertible_type_is_named_in_xdm_words() -> None:
    from headwater.engines.mapping.coerce import coerce

    messages: list[str] = []

    def report(positions: pa.Array, values: pa.Array, describe: Any) -> None:
        messages.extend(describe(v) for v in values.to_pylist())

    stamps = pa.array([0], pa.timestamp("us", tz="UTC"))
    out = coerce(pa.array([[1]]), pa.int64(), report)
    coerce(stamps, pa.struct([("a", pa.string())]), report)
    assert out.null_count == 1
    assert messages and all("[" not in m.split("(")[-1] for m in messages), messages
    assert "(an array value)" in messages[0]
