"""The OAuth policies of an external client app (Salesforce's External Client App Manager, Policies page)
beyond who may use it: where from (IP ranges and IP relaxation) and for how long (session timeout,
refresh token policy). apps.py validates an app with :func:`policies`; identity.py, jwtbearer.py,
authorize.py and consent.py ask the other functions here at every grant, on the consent page and when the
token exchange is given an access token.

Stored fields (defaults in :data:`DEFAULTS`, which also fill apps stored before they existed):

    ipRelaxation           a label of IP_RELAXATION (the Metadata API's name is accepted too)
    ipRanges               [{"start", "end", "description"?}], Salesforce's trusted IP range shape
    sessionTimeoutSeconds  lifetime of the access (and ingestion) tokens issued through the app
    refreshTokenPolicy     a label of REFRESH_TOKEN_POLICIES
    refreshTokenValidity   {"value", "unit"} with the two timed policies, null with the others

Who is checked (:func:`address_allowed`): every flow that issues or uses a token of the app, named by
FLOWS. An app without ranges restricts nothing. "Relax IP restrictions with second factor" is read as
"Relax IP restrictions": Headwater has no second factor to ask for. "Enforce IP restrictions, but relax
for refresh tokens" lets the refresh_token grant, and the access tokens it issues, through from anywhere.
The client address is the TCP peer as the ASGI server reports it (``request.client``; uvicorn's
``proxy_headers`` off), or, from a peer listed in HEADWATER_TRUSTED_PROXIES, the client that proxy names in
X-Forwarded-For (edge/auth.py ``client_host``).

Refresh tokens (:func:`refresh_refusal`) are judged at each refresh by the app's policy as it is then,
against their family's issue and last-use times, so a tightened policy applies at once.
"""

from __future__ import annotations

import ipaddress
from typing import Any

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Errors = list[dict[str, str]]

ENFORCE = "Enforce IP restrictions"
RELAX = "Relax IP restrictions"
RELAX_SECOND_FACTOR = "Relax IP restrictions with second factor"
RELAX_REFRESH = "Enforce IP restrictions, but relax for refresh tokens"
# UI label (stored) -> Metadata API name (also accepted), as ExtlClntAppOauthConfigurablePolicies
IP_RELAXATION = {
    ENFORCE: "Enforce",
    RELAX: "Bypass",
    RELAX_SECOND_FACTOR: "Bypass_2factor",
    RELAX_REFRESH: "Enforce_RelaxRefresh",
}
UNTIL_REVOKED = "Refresh token is valid until revoked"
IMMEDIATELY = "Immediately expire refresh token"
IF_NOT_USED = "Expire refresh token if not used for"
AFTER = "Expire refresh token after"
REFRESH_TOKEN_POLICIES = {
    UNTIL_REVOKED: "Infinite",
    IMMEDIATELY: "Zero",
    IF_NOT_USED: "SpecificInactivity",
    AFTER: "SpecificLifetime",
}
TIMED = (IF_NOT_USED, AFTER)
#: Salesforce's units are Hours, Days and Months; Seconds and Minutes are Headwater's (tests, short trials).
UNITS = {"Seconds": 1, "Minutes": 60, "Hours": 3600, "Days": 86_400, "Months": 30 * 86_400}
_UNIT_NAMES = {unit.lower(): unit for unit in UNITS}
MAX_VALIDITY_SECONDS = 10 * 365 * 86_400
ACCESS_TOKEN_SECONDS = 7200  # Salesforce's default session timeout
MIN_SESSION_SECONDS, MAX_SESSION_SECONDS = 60, 86_400
#: Salesforce's choices of session timeout, as the console offers them (the API takes any value between).
SESSION_TIMEOUTS = {
    900: "15 minutes",
    1800: "30 minutes",
    3600: "1 hour",
    7200: "2 hours",
    14_400: "4 hours",
    28_800: "8 hours",
    43_200: "12 hours",
    86_400: "24 hours",
}
MAX_RANGES = 100
MAX_DESCRIPTION = 255
DEFAULTS: dict[str, Any] = {
    "ipRelaxation": ENFORCE,
    "ipRanges": [],
    "sessionTimeoutSeconds": ACCESS_TOKEN_SECONDS,
    "refreshTokenPolicy": UNTIL_REVOKED,
    "refreshTokenValidity": None,
}
# What asks for an address check: the grants and the consent page. An access token given to the token
# exchange is checked as the flow that issued it (its claim ``flw``).
JWT_BEARER = "jwt_bearer"
AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"
CONSENT = "consent"
CLIENT_CREDENTIALS = "client_credentials"
PASSWORD = "password"
FLOWS = (JWT_BEARER, AUTHORIZATION_CODE, REFRESH_TOKEN, CONSENT, CLIENT_CREDENTIALS, PASSWORD)
IP_RESTRICTED = "ip restricted"  # Salesforce's error_description


# --- validation ---
def policies(body: dict[str, Any], errors: Errors) -> dict[str, Any]:
    """The policy fields of an app's stored document, from a request body (errors appended, by path)."""
    refresh = choice(body, "refreshTokenPolicy", REFRESH_TOKEN_POLICIES, UNTIL_REVOKED, errors)
    # kept only where the policy reads it, so switching to an untimed policy needs no second edit
    validity = _validity(body.get("refreshTokenValidity"), errors) if refresh in TIMED else None
    return {
        "ipRelaxation": choice(body, "ipRelaxation", IP_RELAXATION, ENFORCE, errors),
        "ipRanges": _ranges(body.get("ipRanges"), errors),
        "sessionTimeoutSeconds": _session(body.get("sessionTimeoutSeconds"), errors),
        "refreshTokenPolicy": refresh,
        "refreshTokenValidity": validity,
    }


def choice(body: dict[str, Any], key: str, labels: dict[str, str], default: str, errors: Errors) -> str:
    """A label of ``labels`` (or its Metadata API name), case-insensitive; ``default`` when absent."""
    value = body.get(key)
    if value is None:
        return default
    for label, name in labels.items():
        if isinstance(value, str) and value.strip().lower() in (label.lower(), name.lower()):
            return label
    choices = "; ".join(f"{label!r} ({name})" for label, name in labels.items())
    errors.append({"path": key, "message": f"must be one of {choices}"})
    return default


def _ranges(value: Any, errors: Errors) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append({"path": "ipRanges", "message": 'must be a list of {"start", "end", "description"}'})
        return []
    if len(value) > MAX_RANGES:
        errors.append({"path": "ipRanges", "message": f"may hold at most {MAX_RANGES} ranges"})
        return []
    ranges = [_range(item, f"ipRanges[{index}]", errors) for index, item in enumerate(value)]
    return [r for r in ranges if r is not None]


def _range(item: Any, path: str, errors: Errors) -> dict[str, str] | None:
    if not isinstance(item, dict):
        errors.append({"path": path, "message": 'must be an object {"start", "end", "description"}'})
        return None
    before = len(errors)
    for key in sorted(set(item) - {"start", "end", "description"}, key=str):
        errors.append(
            {"path": f"{path}.{key}", "message": "is not a field of an IP range: start, end, description"}
        )
    start = _address(item.get("start"), f"{path}.start", errors)
    end = _address(item.get("end"), f"{path}.end", errors)
    if start is not None and end is not None:
        if start.version != end.version:
            errors.append(
                {"path": f"{path}.end", "message": f"must be an IPv{start.version} address, as start is"}
            )
        elif int(end) < int(start):
            errors.append({"path": f"{path}.end", "message": f"must not be lower than start ({start})"})
    description = item.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION):
        errors.append(
            {
                "path": f"{path}.description",
                "message": f"must be a text of at most {MAX_DESCRIPTION} characters",
            }
        )
    if len(errors) > before or start is None or end is None:
        return None
    found = {"start": str(start), "end": str(end)}
    if isinstance(description, str) and description.strip():
        found["description"] = description.strip()
    return found


def _address(value: Any, path: str, errors: Errors) -> Address | None:
    if value is None or value == "":
        errors.append({"path": path, "message": "is required: an IPv4 or IPv6 address"})
        return None
    if isinstance(value, str) and "%" in value:
        errors.append({"path": path, "message": "must be an address without a zone (no %…)"})
        return None
    try:
        address = ipaddress.ip_address(value.strip()) if isinstance(value, str) else None
    except ValueError:
        address = None
    if address is None:
        errors.append(
            {"path": path, "message": "must be an IPv4 or IPv6 address, such as 203.0.113.10 or 2001:db8::1"}
        )
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        errors.append({"path": path, "message": f"write this IPv4 address as {address.ipv4_mapped}"})
        return None
    return address


def _session(value: Any, errors: Errors) -> int:
    if value is None:
        return ACCESS_TOKEN_SECONDS
    seconds = _integer(value)
    if seconds is None or not MIN_SESSION_SECONDS <= seconds <= MAX_SESSION_SECONDS:
        errors.append(
            {
                "path": "sessionTimeoutSeconds",
                "message": f"must be a whole number of seconds from {MIN_SESSION_SECONDS} to "
                f"{MAX_SESSION_SECONDS} (24 hours), such as {ACCESS_TOKEN_SECONDS}",
            }
        )
        return ACCESS_TOKEN_SECONDS
    return seconds


def _validity(value: Any, errors: Errors) -> dict[str, Any] | None:
    path = "refreshTokenValidity"
    if not isinstance(value, dict):
        message = "is required with this refreshTokenPolicy" if value is None else "must be an object"
        errors.append({"path": path, "message": f'{message}: {{"value": 30, "unit": "Days"}}'})
        return None
    before = len(errors)
    for key in sorted(set(value) - {"value", "unit"}, key=str):
        errors.append(
            {"path": f"{path}.{key}", "message": "is not a field of refreshTokenValidity: value, unit"}
        )
    amount = _integer(value.get("value"))
    if amount is None or amount < 1:
        errors.append({"path": f"{path}.value", "message": "must be a whole number of at least 1"})
    raw = value.get("unit")
    unit = _UNIT_NAMES.get(raw.strip().lower()) if isinstance(raw, str) else None
    if unit is None:
        errors.append({"path": f"{path}.unit", "message": f"must be one of {', '.join(UNITS)}"})
    if len(errors) > before or amount is None or unit is None:
        return None
    if amount * UNITS[unit] > MAX_VALIDITY_SECONDS:
        errors.append({"path": f"{path}.value", "message": "must make at most 10 years"})
        return None
    return {"value": amount, "unit": unit}


def _integer(value: Any) -> int | None:
    """An integer, also sent as a string of digits (as the reference documents send numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 12:
        return int(value.strip())
    return None


# --- enforcement ---
def address_allowed(doc: dict[str, Any], client: str | None, flow: str) -> bool:
    """Whether the app's IP policy lets ``flow`` through from ``client`` (the peer's address; None or
    something that is not an address counts as outside every range)."""
    ranges = doc.get("ipRanges") or []
    relaxation = doc.get("ipRelaxation", ENFORCE)
    if not ranges or relaxation in (RELAX, RELAX_SECOND_FACTOR):
        return True
    if relaxation == RELAX_REFRESH and flow == REFRESH_TOKEN:
        return True
    address = client_address(client)
    return address is not None and any(_inside(address, r) for r in ranges)


def client_address(host: str | None) -> Address | None:
    """The peer's address, IPv4-mapped IPv6 (a dual-stack listener's IPv4 peer) read as IPv4."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:
            return ipaddress.IPv6Address(int(address))
    return address


def _inside(address: Address, stored: dict[str, str]) -> bool:
    start, end = ipaddress.ip_address(stored["start"]), ipaddress.ip_address(stored["end"])
    if start.version != address.version:
        return False
    return int(start) <= int(address) <= int(end)


def session_seconds(doc: dict[str, Any]) -> int:
    """The lifetime of access tokens issued through the app."""
    return int(doc.get("sessionTimeoutSeconds") or ACCESS_TOKEN_SECONDS)


def refresh_refusal(doc: dict[str, Any], issued_ms: int, last_used_ms: int, now_ms: int) -> str | None:
    """Why the app's refresh token policy refuses a refresh token family issued at ``issued_ms`` and last
    used at ``last_used_ms`` (epoch milliseconds), or None when it is still good."""
    policy = doc.get("refreshTokenPolicy", UNTIL_REVOKED)
    if policy == UNTIL_REVOKED:
        return None
    if policy == IMMEDIATELY:
        return f"the refresh token expired: the app's refresh token policy is {IMMEDIATELY!r}"
    validity = doc.get("refreshTokenValidity") or {}
    unit = str(validity.get("unit"))
    lifetime = int(validity.get("value") or 0) * UNITS.get(unit, 0)
    since, event = (issued_ms, "issued") if policy == AFTER else (last_used_ms, "last used")
    age = (now_ms - since) // 1000
    if now_ms - since < lifetime * 1000:
        return None
    return (
        f"the refresh token expired: the app's refresh token policy is {policy!r} "
        f"{validity.get('value')} {unit}, and it was {event} {age} seconds ago"
    )
