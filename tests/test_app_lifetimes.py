"""The lifetimes an external client app sets (issue 7, "App policies"), through a live server: the session
timeout as the lifetime of every access token issued, and the refresh token policies (valid until revoked,
immediately expire, expire after, expire if not used for), judged by the app's policy as it is now.

The app's trusted IP ranges, the validation of every policy field and the console's form are in
tests/test_app_policies.py; the clients and fixtures both use are in tests/app_policy_helpers.py.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt

from headwater.services.data360.consent import GRANT_KIND
from headwater.services.users import org_scope
from tests.app_policy_helpers import Client
from tests.app_policy_helpers import keys as keys
from tests.app_policy_helpers import make as make
from tests.app_policy_helpers import signed_in as signed_in
from tests.app_policy_helpers import user as user
from tests.support import LiveServer, wait_until
from tests.test_data360_identity import refusal


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


# --- session timeout ---
def test_session_timeout_is_the_access_token_lifetime(make: Any) -> None:
    client = make(sessionTimeoutSeconds=900)
    bearer = claims(client.jwt().json()["access_token"])
    assert bearer["exp"] - bearer["iat"] == 900

    tokens = client.consent.tokens()
    access = claims(tokens["access_token"])
    assert access["exp"] - access["iat"] == 900
    assert int(tokens["issued_at"]) // 1000 == access["iat"]
    exchanged = client.consent.exchange(tokens["access_token"]).json()
    assert exchanged["expires_in"] == 900
    ingestion = claims(exchanged["access_token"])
    assert ingestion["exp"] - ingestion["iat"] == 900

    client.patch(sessionTimeoutSeconds=14_400)  # applies to the next token issued
    refreshed = client.consent.refresh(tokens["refresh_token"]).json()
    again = claims(refreshed["access_token"])
    assert again["exp"] - again["iat"] == 14_400
    assert int(refreshed["issued_at"]) // 1000 == again["iat"]


def test_default_session_timeout_is_two_hours(make: Any) -> None:
    tokens = make().consent.tokens()
    access = claims(tokens["access_token"])
    assert access["exp"] - access["iat"] == 7200


# --- refresh token policies ---
def test_refresh_token_valid_until_revoked(make: Any) -> None:
    client = make(refreshTokenPolicy="Refresh token is valid until revoked")
    refresh = client.consent.tokens()["refresh_token"]
    for _ in range(3):
        response = client.consent.refresh(refresh)
        assert response.status_code == 200, response.text
        refresh = response.json()["refresh_token"]


def test_immediately_expire_refuses_every_refresh(make: Any) -> None:
    client = make(refreshTokenPolicy="Immediately expire refresh token")
    tokens = client.consent.tokens()
    assert "refresh_token" in tokens
    error, description = refusal(client.consent.refresh(tokens["refresh_token"]))
    assert error == "invalid_grant"
    assert "the refresh token expired" in description and "Immediately expire" in description
    # judged by the app's policy as it is now: relaxed, the same (unrotated) token works
    client.patch(refreshTokenPolicy="Refresh token is valid until revoked")
    assert client.consent.refresh(tokens["refresh_token"]).status_code == 200


def expired(response: httpx.Response) -> bool:
    if response.status_code == 200:
        return False
    error, description = refusal(response)
    assert error == "invalid_grant" and "the refresh token expired" in description, description
    return True


def refresh_until_refused(client: Client, refresh_token: str) -> str:
    """Refresh until the policy refuses (within a deadline); every success rotates, so the newest token is
    presented each time. The refusal's description."""
    current = refresh_token

    def refused() -> bool:
        nonlocal current
        response = client.consent.refresh(current)
        if expired(response):
            return True
        current = response.json()["refresh_token"]
        return False

    wait_until(refused, timeout=15, interval=0.1)
    return refusal(client.consent.refresh(current))[1]


def test_expire_after_refuses_once_the_lifetime_passes(make: Any) -> None:
    client = make(
        refreshTokenPolicy="Expire refresh token after", refreshTokenValidity={"value": 1, "unit": "Seconds"}
    )
    description = refresh_until_refused(client, client.consent.tokens()["refresh_token"])
    assert "'Expire refresh token after' 1 Seconds, and it was issued" in description


def test_tightening_the_policy_applies_to_issued_tokens_at_once(make: Any) -> None:
    client = make()
    refreshed = client.consent.refresh(client.consent.tokens()["refresh_token"])
    assert refreshed.status_code == 200
    client.patch(
        refreshTokenPolicy="Expire refresh token after", refreshTokenValidity={"value": 1, "unit": "Seconds"}
    )
    assert "it was issued" in refresh_until_refused(client, refreshed.json()["refresh_token"])


def test_expire_if_not_used_is_reset_by_each_use(make: Any, server: LiveServer) -> None:
    idle = 2.0
    client = make(
        refreshTokenPolicy="Expire refresh token if not used for",
        refreshTokenValidity={"value": int(idle), "unit": "Seconds"},
    )
    started = time.monotonic()
    current, used = client.consent.tokens()["refresh_token"], started

    def used_past_the_idle_time() -> bool:
        """Refresh every quarter of the idle time: each succeeds, long after the family is older than it."""
        nonlocal current, used
        if time.monotonic() - used >= idle / 4:
            response = client.consent.refresh(current)
            assert response.status_code == 200, response.text
            current, used = response.json()["refresh_token"], time.monotonic()
        return time.monotonic() - started > 2 * idle

    wait_until(used_past_the_idle_time, timeout=20, interval=0.05)
    grant = server.services.store.get(GRANT_KIND, org_scope(server.creds["orgId"]), current.split(".")[1])
    assert grant is not None and grant.doc["lastUsedAt"] - grant.doc["issuedAt"] > idle * 1000

    # Unused for longer than the idle time: refused (the clock is what the policy reads).
    wait_until(lambda: time.monotonic() - used > idle + 0.5, timeout=10, interval=0.05)
    error, description = refusal(client.consent.refresh(current))
    assert error == "invalid_grant" and "the refresh token expired" in description
    assert "if not used for' 2 Seconds, and it was last used" in description
