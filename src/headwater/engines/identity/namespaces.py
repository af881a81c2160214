"""Identity namespaces as AEP's Identity Service has them, and the format of a value in each.

:data:`STANDARD` holds the namespaces every sandbox starts with: AEP's Standard namespaces with their
real ids, codes and names (as ``GET /data/core/idnamespace/identities`` lists them), and ``CRMID``.
AEP itself ships no CRMID: organizations create it as a custom CROSS_DEVICE namespace, so an org's list
shows it with ``custom: true`` and an id of its own. Headwater pre-creates it the same way (custom, id
:data:`CRMID_ID`, the first id of the custom range) because payloads written for AEP use the code
``CRMID`` as if it were always there.

Codes are matched case-insensitively (:func:`standard`): AEP's own identityMap examples write ``ecid``
and ``email_lc_sha256`` for ``ECID`` and ``Email_LC_SHA256``.

Values are case-sensitive, as in AEP: ``Jane@Example.com`` and ``jane@example.com`` are two identities
of the Email namespace. :func:`normalize` changes only what cannot change the identity: it lowercases
the hex digest of a hashed namespace (an uppercase digest is the same hash). Lowercasing emails is
what AEP recommends to the sender, not what it does, so it stays the sender's (or a mapping's) choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAX_VALUE_LENGTH = 1024
CRMID_ID = 10_000_000
# AEP's createTime/updateTime of the Standard namespaces (milliseconds since the epoch).
_CREATED = 1551688425455


class IdType(StrEnum):
    """A namespace's identity type (AEP's ``idType``)."""

    COOKIE = "COOKIE"
    CROSS_DEVICE = "CROSS_DEVICE"
    DEVICE = "DEVICE"
    EMAIL = "EMAIL"
    MOBILE = "MOBILE"
    NON_PEOPLE = "NON_PEOPLE"
    PHONE = "PHONE"


def parse_id_type(text: str) -> IdType:
    """The IdType named by ``text``, in any case (AEP accepts ``Cross_device``); ValueError otherwise."""
    try:
        return IdType(text.strip().upper())
    except ValueError:
        allowed = ", ".join(t.value for t in IdType)
        raise ValueError(f"idType {text!r} is not one of {allowed}") from None


@dataclass(frozen=True)
class Namespace:
    """One identity namespace. ``in_graph`` is False for NON_PEOPLE: AEP builds no graph from those."""

    id: int
    code: str
    name: str
    description: str
    id_type: IdType
    custom: bool = False
    created: int = _CREATED
    hash_function: str | None = None

    @property
    def in_graph(self) -> bool:
        return self.id_type is not IdType.NON_PEOPLE

    def to_aep(self) -> dict[str, Any]:
        """The namespace as an item of ``GET /data/core/idnamespace/identities``."""
        body: dict[str, Any] = {
            "id": self.id,
            "code": self.code,
            "name": self.name,
            "description": self.description,
            "idType": self.id_type.value,
            "namespaceType": "Custom" if self.custom else "Standard",
            "status": "ACTIVE",
            "custom": self.custom,
            "createTime": self.created,
            "updateTime": self.created,
        }
        if self.hash_function:
            body["hashFunction"] = self.hash_function
        return body


def _ns(id_: int, code: str, name: str, description: str, id_type: IdType, **kw: Any) -> Namespace:
    return Namespace(id_, code, name, description, id_type, **kw)


STANDARD: tuple[Namespace, ...] = (
    _ns(0, "CORE", "CORE", "Adobe Audience Manager UUID", IdType.COOKIE),
    _ns(4, "ECID", "ECID", "Adobe Experience Cloud ID", IdType.COOKIE),
    _ns(6, "Email", "Email", "Email", IdType.EMAIL),
    _ns(7, "Phone", "Phone", "Phone", IdType.PHONE),
    _ns(8, "WAID", "Windows AID", "Windows AID", IdType.DEVICE),
    _ns(9, "TNTID", "TNTID", "Adobe Target (TNTID)", IdType.COOKIE),
    _ns(10, "AAID", "Adobe Analytics (Legacy ID)", "Adobe Analytics (Legacy ID)", IdType.COOKIE),
    _ns(
        11,
        "Email_LC_SHA256",
        "Emails (SHA256, lowercased)",
        "Email addresses hashed with SHA256 after lowercasing and trimming",
        IdType.EMAIL,
        hash_function="SHA256",
    ),
    _ns(
        15,
        "Phone_SHA256",
        "Phone (SHA256)",
        "Phone numbers hashed with SHA256, symbols, letters and leading zeroes removed, country code first",
        IdType.PHONE,
        hash_function="SHA256",
    ),
    _ns(17, "Phone_E.164", "Phone (E.164)", "Raw phone numbers in E.164 format; + is required", IdType.PHONE),
    _ns(
        18,
        "Phone_SHA256_E.164",
        "Phone (SHA256_E.164)",
        "Phone numbers in E.164 format hashed with SHA256",
        IdType.PHONE,
        hash_function="SHA256",
    ),
    _ns(411, "AdCloud", "AdCloud", "Adobe AdCloud - ID Syncing Partner", IdType.COOKIE),
    _ns(20914, "GAID", "Google Ad ID (GAID)", "Google Advertising ID", IdType.DEVICE),
    _ns(20915, "IDFA", "Apple IDFA (ID for Advertisers)", "Apple ID for Advertisers", IdType.DEVICE),
    _ns(20919, "FCM", "Firebase Cloud Messaging", "Push identities collected via Google", IdType.DEVICE),
    _ns(
        20920, "APNS", "Apple Push Notification service", "Push identities collected via Apple", IdType.DEVICE
    ),
    _ns(CRMID_ID, "CRMID", "CRMID", "CRM customer id", IdType.CROSS_DEVICE, custom=True),
)
_BY_CODE = {n.code.lower(): n for n in STANDARD}
_BY_ID = {n.id: n for n in STANDARD}


def standard(code_or_id: str | int) -> Namespace | None:
    """The namespace of :data:`STANDARD` with this code (any case) or id, or None."""
    if isinstance(code_or_id, int):
        return _BY_ID.get(code_or_id)
    return _BY_CODE.get(code_or_id.lower())


_SHA256 = re.compile(r"[0-9a-f]{64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_PHONE = re.compile(r"\+?[0-9 ().\-]+")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_ECID = re.compile(r"[0-9]{38}")
_AAID = re.compile(r"[0-9A-Fa-f]{1,16}-[0-9A-Fa-f]{1,16}")

# code (lowercased) -> (pattern, what a value must look like)
_BY_CODE_FORMAT: dict[str, tuple[re.Pattern[str], str]] = {
    "ecid": (_ECID, "38 digits"),
    "email": (_EMAIL, "an email address (name@domain.tld)"),
    "phone": (_PHONE, "a phone number: digits with an optional leading + and separators ( ) . - space"),
    "email_lc_sha256": (_SHA256, "a SHA-256 digest: 64 lowercase hexadecimal characters"),
    "phone_sha256": (_SHA256, "a SHA-256 digest: 64 lowercase hexadecimal characters"),
    "phone_sha256_e.164": (_SHA256, "a SHA-256 digest: 64 lowercase hexadecimal characters"),
    "phone_e.164": (_E164, "a phone number in E.164 format: + then up to 15 digits"),
    "gaid": (_UUID, "a UUID (8-4-4-4-12 hexadecimal)"),
    "idfa": (_UUID, "a UUID (8-4-4-4-12 hexadecimal)"),
    "aaid": (_AAID, "two hexadecimal numbers separated by a dash"),
}
_BY_TYPE_FORMAT = {IdType.EMAIL: _BY_CODE_FORMAT["email"], IdType.PHONE: _BY_CODE_FORMAT["phone"]}


def check_value(namespace: str, value: str) -> str | None:
    """Why ``value`` is not an identity of ``namespace``, or None when it is one.

    ``namespace`` is a namespace code (any case) or, for a namespace of the tenant's own, its idType:
    a known code's format wins (Email_LC_SHA256 is of type EMAIL but holds digests), then the idType's
    (EMAIL and PHONE have one), else only the rules for every namespace: not empty or blank, at most
    :data:`MAX_VALUE_LENGTH` characters. Hashed namespaces want the lowercase digest; :func:`normalize`
    gives it.
    """
    if not value or not value.strip():
        return f"an identity of {namespace} must not be empty"
    if len(value) > MAX_VALUE_LENGTH:
        return f"an identity of {namespace} has {len(value)} characters; the limit is {MAX_VALUE_LENGTH}"
    rule = _format_of(namespace)
    if rule is None:
        return None
    pattern, wanted = rule
    if pattern.fullmatch(value) is None or (pattern is _PHONE and _digits(value) < 3):
        return f"{value[:64]!r} is not an identity of {namespace}: it must be {wanted}"
    return None


def normalize(namespace: str, value: str) -> str:
    """``value`` in the form the graph stores: the digest of a hashed namespace lowercased, else as is."""
    ns = standard(namespace)
    return value.lower() if ns is not None and ns.hash_function else value


def _format_of(namespace: str) -> tuple[re.Pattern[str], str] | None:
    rule = _BY_CODE_FORMAT.get(namespace.lower())
    if rule is not None or standard(namespace) is not None:
        return rule
    try:
        return _BY_TYPE_FORMAT.get(parse_id_type(namespace))
    except ValueError:
        return None


def _digits(value: str) -> int:
    return sum(c.isdigit() for c in value)
