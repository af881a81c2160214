"""Console sessions: a signed cookie, a CSRF token, and sign-in throttling.

The cookie ``hw_session`` holds ``{user id, organization, username, expiry, csrf}`` signed with an HMAC
key derived from the token signing key; it is HttpOnly and SameSite=Lax. Pages carry the CSRF token in
a ``<meta>`` tag and the console's JavaScript sends it as ``X-CSRF-Token`` on every API call; a request
authenticated by the cookie without that header is refused, so another site can neither read nor write
through a visitor's session. Nothing is stored server-side: signing out clears the cookie, and a
disabled user's session stops working within seconds (the API checks the user on every call).

Sign-in attempts are throttled per username (``MAX_FAILURES`` failures in ``WINDOW_SECONDS``) and per
client address (``MAX_FAILURES_PER_ADDRESS``, higher: many people may share one address behind a NAT):
past that, attempts are refused for the rest of the window, whatever the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

import orjson

COOKIE = "hw_session"
CSRF_HEADER = "x-csrf-token"
LIFETIME_SECONDS = 8 * 3600
MAX_FAILURES = 5
MAX_FAILURES_PER_ADDRESS = 50
WINDOW_SECONDS = 300.0


@dataclass(frozen=True)
class Session:
    user_id: str
    org_id: str
    username: str
    expires: int
    csrf: str


class SessionSigner:
    def __init__(self, signing_key: bytes | str) -> None:
        key = signing_key.encode() if isinstance(signing_key, str) else signing_key
        self._key = hmac.new(key, b"headwater console session v1", hashlib.sha256).digest()

    def issue(self, user_id: str, org_id: str, username: str) -> tuple[str, Session]:
        session = Session(
            user_id, org_id, username, int(time.time()) + LIFETIME_SECONDS, secrets.token_urlsafe(24)
        )
        payload = base64.urlsafe_b64encode(orjson.dumps(session.__dict__)).rstrip(b"=")
        signature = base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).rstrip(
            b"="
        )
        return (payload + b"." + signature).decode(), session

    def verify(self, cookie: str | None) -> Session | None:
        if not cookie or cookie.count(".") != 1:
            return None
        payload, signature = cookie.encode().split(b".")
        expected = base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).rstrip(
            b"="
        )
        if not hmac.compare_digest(signature, expected):
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
            session = Session(**data)
        except (ValueError, TypeError, orjson.JSONDecodeError):
            return None
        return session if session.expires > time.time() else None


class Throttle:
    """Failed sign-ins per key (username, address) in a sliding window."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, *keys: str) -> float:
        """Seconds until another attempt is allowed (0: allowed now). Keys starting ``addr:`` have the
        per-address limit, others the per-user one."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for key in keys:
                limit = MAX_FAILURES_PER_ADDRESS if key.startswith("addr:") else MAX_FAILURES
                times = self._failures.get(key)
                while times and now - times[0] > WINDOW_SECONDS:
                    times.popleft()
                if times and len(times) >= limit:
                    wait = max(wait, WINDOW_SECONDS - (now - times[-limit]))
        return wait

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 100_000:
                self._failures.clear()
            for key in keys:
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
