"""Console sessions: a signed cookie naming a server-side session, a CSRF token, and sign-in throttling.

The cookie ``hw_session`` holds ``{user id, organization, username, expiry, csrf, sid}`` signed with an
HMAC key derived from the token signing key; it is HttpOnly, SameSite=Lax, and Secure whenever the public
URL is https. ``sid`` is a random secret whose SHA-256 digest names a row of the metadata store's
``console_sessions`` table: a cookie works only while that row exists, so signing out (which deletes
it), a password change or disabling the user (which delete all of the user's rows, services/users.py)
end the session at once, in every server process. Pages carry the CSRF token in a ``<meta>`` tag and the
console's JavaScript sends it as ``X-CSRF-Token`` on every API call; a request authenticated by the
cookie without that header is refused, so another site can neither read nor write through a visitor's
session.

Sign-in throttling (:class:`Throttle`) never locks a person out because of someone else's failures:

- per (address, username): after ``PAIR_FREE`` failures, the pair waits an exponential backoff
  (4 s, 8 s, 16 s, ... at most ``PAIR_MAX_WAIT``) after each further failure; an attempt during the wait
  is refused (429) without looking at the password. Another user at the same address, or the same user
  at another address, is not affected.
- per username, over every address: past ``USER_FREE`` failures the username is locked, which slows
  every attempt for it by a delay that doubles with the failures (at most ``USER_MAX_DELAY``) before the
  password is checked, but never refuses it: the real user still signs in with the right password, a
  few seconds later; a guesser spread over many addresses gets few guesses.

The address is the TCP peer, or the client a trusted proxy names in ``X-Forwarded-For`` when
``HEADWATER_TRUSTED_PROXIES`` lists that proxy (edge/auth.py ``client_host``). Failures are counted in the
memory of each server process: with several processes the limits apply per process.
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

from headwater.stores.metadata import ConsoleSession, MetadataStore

COOKIE = "hw_session"
CSRF_HEADER = "x-csrf-token"
LIFETIME_SECONDS = 8 * 3600
PAIR_FREE = 5  # failures of one (address, username) before its backoff starts
PAIR_FIRST_WAIT = 4.0  # seconds: the first backoff of one (address, username), doubled per failure
PAIR_MAX_WAIT = 60.0  # seconds: the longest backoff of one (address, username)
USER_FREE = 20  # failures of one username, all addresses together, before it is locked (slowed)
USER_MAX_DELAY = 8.0  # seconds an attempt for a locked username is held before its password is checked
WINDOW_SECONDS = 900.0  # failures older than this are forgotten
MAX_KEYS = 100_000  # keys kept in memory; beyond, the stalest go first
_KEPT = USER_FREE + 64  # failure times kept per key (enough for every threshold)


@dataclass(frozen=True)
class Session:
    user_id: str
    org_id: str
    username: str
    expires: int
    csrf: str
    sid: str = ""  # the secret whose digest names the server-side session


class SessionSigner:
    """Issues, verifies and ends console sessions (cookie signed here, session kept in ``store``)."""

    def __init__(self, signing_key: bytes | str, store: MetadataStore) -> None:
        key = signing_key.encode() if isinstance(signing_key, str) else signing_key
        self._key = hmac.new(key, b"headwater console session v1", hashlib.sha256).digest()
        self.store = store

    def issue(self, user_id: str, org_id: str, username: str) -> tuple[str, Session]:
        """A new session of the user: its row stored, and the cookie value that names it."""
        now = time.time()
        session = Session(
            user_id,
            org_id,
            username,
            int(now) + LIFETIME_SECONDS,
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(32),
        )
        row = ConsoleSession(_digest(session.sid), org_id, user_id, int(now * 1000), session.expires * 1000)
        self.store.create_session(row)
        payload = base64.urlsafe_b64encode(orjson.dumps(session.__dict__)).rstrip(b"=")
        return (payload + b"." + self._mac(payload)).decode(), session

    def verify(self, cookie: str | None) -> Session | None:
        """The session a cookie names, while it lasts and has not been ended; None otherwise."""
        session = self._parse(cookie)
        if session is None or not session.sid:
            return None
        row = self.store.get_session(_digest(session.sid))
        if row is None or row.expires_at <= time.time() * 1000:
            return None
        if (row.user_id, row.org_id) != (session.user_id, session.org_id):
            return None
        return session

    def end(self, session: Session) -> None:
        """Sign-out: the session's cookie stops working everywhere."""
        if session.sid:
            self.store.delete_session(_digest(session.sid))

    def _parse(self, cookie: str | None) -> Session | None:
        if not cookie or cookie.count(".") != 1 or len(cookie) > 4096:
            return None
        payload, signature = cookie.encode().split(b".")
        if not hmac.compare_digest(signature, self._mac(payload)):
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
            session = Session(**data)
        except (ValueError, TypeError, orjson.JSONDecodeError):
            return None
        return session if session.expires > time.time() else None

    def _mac(self, payload: bytes) -> bytes:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).rstrip(b"=")


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    """What the throttle says about a sign-in attempt: refuse it for ``wait`` seconds (when > 0), else
    hold it ``delay`` seconds before checking the password."""

    wait: float
    delay: float


class Throttle:
    """Failed sign-ins per (address, username) and per username, in a sliding window (module docstring)."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, address: str, username: str) -> Verdict:
        now = time.monotonic()
        with self._lock:
            pair = self._recent(_pair(address, username), now)
            user = self._recent(_user(username), now)
        wait = 0.0
        if len(pair) >= PAIR_FREE:
            backoff = min(PAIR_FIRST_WAIT * 2.0 ** (len(pair) - PAIR_FREE), PAIR_MAX_WAIT)
            wait = max(0.0, pair[-1] + backoff - now)
        delay = 0.0
        if len(user) >= USER_FREE:
            delay = min(2.0 ** ((len(user) - USER_FREE) // 10), USER_MAX_DELAY)
        return Verdict(wait, delay)

    def failed(self, address: str, username: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= MAX_KEYS:
                self._prune(now)
            for key in (_pair(address, username), _user(username)):
                times = self._failures.setdefault(key, deque(maxlen=_KEPT))
                times.append(now)

    def succeeded(self, address: str, username: str) -> None:
        """The right password from this address: its backoff ends (the username's count decays alone, so
        that a guesser elsewhere stays slowed)."""
        with self._lock:
            self._failures.pop(_pair(address, username), None)

    def _recent(self, key: str, now: float) -> list[float]:
        times = self._failures.get(key)
        if not times:
            return []
        while times and now - times[0] > WINDOW_SECONDS:
            times.popleft()
        return list(times)

    def _prune(self, now: float) -> None:
        """Forget keys with no failure in the window; if that is not enough, the stalest half."""
        stale = [k for k, v in self._failures.items() if not v or now - v[-1] > WINDOW_SECONDS]
        for key in stale:
            del self._failures[key]
        if len(self._failures) >= MAX_KEYS:
            by_age = sorted(self._failures, key=lambda k: self._failures[k][-1])
            for key in by_age[: len(by_age) // 2]:
                del self._failures[key]


def _pair(address: str, username: str) -> str:
    return f"pair:{address}\n{username.strip().lower()}"


def _user(username: str) -> str:
    return f"user:{username.strip().lower()}"
