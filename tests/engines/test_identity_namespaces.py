"""Identity namespaces: AEP's standard ones as data, and the format of a value in each."""

from __future__ import annotations

import hashlib

import pytest

from headwater.engines.identity.namespaces import (
    CRMID_ID,
    MAX_VALUE_LENGTH,
    STANDARD,
    IdType,
    Namespace,
    check_value,
    normalize,
    parse_id_type,
    standard,
)

DIGEST = hashlib.sha256(b"jane@example.com").hexdigest()


def test_the_standard_namespaces_have_aeps_ids_and_codes() -> None:
    by_code = {n.code: n.id for n in STANDARD}
    assert by_code["ECID"] == 4
    assert by_code["Email"] == 6
    assert by_code["Phone"] == 7
    assert by_code["TNTID"] == 9
    assert by_code["AAID"] == 10
    assert by_code["Email_LC_SHA256"] == 11
    assert by_code["Phone_E.164"] == 17
    assert by_code["AdCloud"] == 411
    assert by_code["GAID"] == 20914
    assert by_code["IDFA"] == 20915
    assert len({n.id for n in STANDARD}) == len(STANDARD)
    assert len({n.code.lower() for n in STANDARD}) == len(STANDARD)


def test_an_item_has_the_shape_of_aeps_list() -> None:
    item = standard("ECID").to_aep()  # type: ignore[union-attr]
    assert item == {
        "id": 4,
        "code": "ECID",
        "name": "ECID",
        "description": "Adobe Experience Cloud ID",
        "idType": "COOKIE",
        "namespaceType": "Standard",
        "status": "ACTIVE",
        "custom": False,
        "createTime": 1551688425455,
        "updateTime": 1551688425455,
    }
    assert standard("Email_LC_SHA256").to_aep()["hashFunction"] == "SHA256"  # type: ignore[union-attr]


def test_crmid_is_shipped_as_the_custom_cross_device_namespace_orgs_create() -> None:
    crm = standard("CRMID")
    assert crm is not None and crm.id == CRMID_ID and crm.custom and crm.id_type is IdType.CROSS_DEVICE
    assert crm.to_aep()["namespaceType"] == "Custom"


def test_codes_match_in_any_case_and_ids_too() -> None:
    assert standard("ecid") is standard("ECID") is standard(4)
    assert standard("email_lc_sha256") is standard(11)
    assert standard("Nope") is None and standard(12345) is None


def test_id_types_parse_in_any_case() -> None:
    assert parse_id_type("Cross_device") is IdType.CROSS_DEVICE
    with pytest.raises(ValueError, match="NON_PEOPLE"):
        parse_id_type("PERSON")


def test_non_people_namespaces_stay_out_of_the_graph() -> None:
    sku = Namespace(10_000_001, "SKU", "SKU", "product", IdType.NON_PEOPLE, custom=True)
    assert not sku.in_graph
    assert all(n.in_graph for n in STANDARD)


@pytest.mark.parametrize(
    ("namespace", "value"),
    [
        ("Email", "jane@example.com"),
        ("email", "Jane.Doe+tag@sub.example.co.uk"),
        ("Phone", "+1 (555) 123-4567"),
        ("Phone", "555.123.4567"),
        ("Phone_E.164", "+14155550123"),
        ("ECID", "14575006536349286404619648085736425115"),
        ("Email_LC_SHA256", DIGEST),
        ("Phone_SHA256", DIGEST),
        ("GAID", "38400000-8cf0-11bd-b23e-10b96e40000d"),
        ("AAID", "2CCEEAE88503384F-1188000089CA"),
        ("CRMID", "any thing: 42"),
        ("Loyalty", "L-1"),
        ("EMAIL", "a@b.io"),
        ("CROSS_DEVICE", "whatever"),
    ],
)
def test_good_values_pass(namespace: str, value: str) -> None:
    assert check_value(namespace, value) is None


@pytest.mark.parametrize(
    ("namespace", "value", "says"),
    [
        ("Email", "jane.example.com", "email address"),
        ("Email", "jane@example", "email address"),
        ("Email", "jane doe@example.com", "email address"),
        ("Phone", "call me", "phone number"),
        ("Phone", "12", "phone number"),
        ("Phone_E.164", "4155550123", "E.164"),
        ("Phone_E.164", "+1415555012345678", "E.164"),
        ("ECID", "1234", "38 digits"),
        ("Email_LC_SHA256", DIGEST.upper(), "lowercase hexadecimal"),
        ("Email_LC_SHA256", "jane@example.com", "SHA-256"),
        ("IDFA", "not-a-uuid", "UUID"),
        ("EMAIL", "nope", "email address"),
        ("CRMID", "", "must not be empty"),
        ("Loyalty", "   ", "must not be empty"),
        ("CRMID", "x" * (MAX_VALUE_LENGTH + 1), "the limit is 1024"),
    ],
)
def test_bad_values_are_refused_with_a_reason(namespace: str, value: str, says: str) -> None:
    message = check_value(namespace, value)
    assert message is not None and says in message and namespace in message


def test_normalize_lowercases_digests_only() -> None:
    assert normalize("Email_LC_SHA256", DIGEST.upper()) == DIGEST
    assert check_value("Email_LC_SHA256", normalize("email_lc_sha256", DIGEST.upper())) is None
    assert normalize("Email", "Jane@Example.com") == "Jane@Example.com"
    assert normalize("Loyalty", "ABC") == "ABC"
