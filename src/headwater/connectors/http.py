"""What the HTTP API connectors (Salesforce, Dynamics) share on the wire: the retry policy, one retry
loop, GETs of JSON with the API's error mapping, paging by next links, reading ``Retry-After`` headers,
and scrubbing secrets from server text (their shared reader is connectors/httpapi.py).

:meth:`HttpClient.send` sends one request until it gets a response that is not retried, and returns it:

- connect errors and timeouts are retried with jittered exponential backoff (:class:`RetryPolicy`);
- a transient response (by default any 5xx) is retried after its ``Retry-After``, else the backoff;
- 429 is retried after its ``Retry-After``; one longer than ``max_retry_after`` is raised at once;
- with ``renew``, the first 401 calls it (a fresh login) and sends again without using up an attempt.

:meth:`HttpClient.get_json` sends an authenticated GET (the client's :meth:`~HttpClient.authorized_get`,
which logs in or renews tokens), maps an error status through :meth:`~HttpClient.api_error` and reads the
JSON body; :meth:`HttpClient.paged` follows an API's next links from a first page.

Each client names its service in a :class:`Service`: the error types raised when retrying gives up, and
the wording of their messages. Protocol matters (login, the shape of pages, error bodies) stay in the
connector.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import orjson

from headwater.connectors.errors import ConnectorError, OutboundRefused, RateLimited, SourceUnavailable
from headwater.connectors.outbound import OutboundPolicy

# One page of records, as an API returned them.
Records = list[dict[str, Any]]
# The URL and headers of one attempt, built again on each attempt because a re-login may change both.
Prepare = Callable[[], tuple[str, Mapping[str, str]]]


@dataclass(frozen=True)
class RetryPolicy:
    """How requests are retried. ``attempts`` bounds every request (logins and token requests included):
    with the defaults a request gives up after 5 attempts and at most ~7.5 s of backoff (0.5, 1, 2, 4 s,
    jittered down). A ``Retry-After`` up to ``max_retry_after`` seconds is waited out; a longer one is
    raised at once as :class:`RateLimited` so the caller can reschedule instead of holding a worker."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential, jittered."""
        ceiling = min(self.max_delay, self.base_delay * float(2 ** (attempt - 1)))
        return ceiling * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Service:
    """The other end of a client, as the shared code's errors name it. The message templates are
    :meth:`str.format` strings over ``host``, ``attempts``, ``status``, ``error`` (an exception's type
    name) and ``seconds``."""

    name: str  # e.g. "Salesforce", in "... answered with something that is not JSON ..."
    unavailable: type[SourceUnavailable]
    rate_limited: type[RateLimited]
    protocol_error: type[ConnectorError]
    unreachable: str  # connect errors and timeouts outlived the attempts
    down: str  # transient responses outlived the attempts, or asked for too long a wait
    wait_too_long: str  # a 429 asked to wait longer than ``max_retry_after``
    still_limited: str  # 429s outlived the attempts


class HttpClient:
    """A connector's HTTP session: one pool, opened on first use by the outbound policy, so every URL is
    checked before a byte is sent and every connection goes to the addresses that check resolved (see
    :meth:`OutboundPolicy.client`). Not thread-safe; ``close()`` releases the pool."""

    service: ClassVar[Service]

    def __init__(self, outbound: OutboundPolicy, retry: RetryPolicy, timeout_seconds: float) -> None:
        self.outbound = outbound
        self.retry = retry
        self._timeout_seconds = timeout_seconds
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            timeout = httpx.Timeout(self._timeout_seconds, connect=10.0)
            self._http = self.outbound.client(timeout=timeout, follow_redirects=False)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def send(
        self,
        method: str,
        prepare: Prepare,
        *,
        transient: Callable[[httpx.Response], bool] | None = None,
        renew: Callable[[], object] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries (module docstring); returns the first response that is not retried, which
        is a 401 when ``renew`` did not help."""
        is_transient = transient or server_error
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            url, headers = prepare()
            # Refuses a host httpx could not even parse (0177.0.0.1, ...) as the policy's error, not a 500.
            self.outbound.target(url)
            try:
                response = self.http.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.retry.attempts:
                    message = self.service.unreachable.format(
                        host=host(url), attempts=attempt, error=type(exc).__name__
                    )
                    raise self.service.unavailable(message) from None
                self.retry.sleep(self.retry.backoff(attempt))
                continue
            if renew is not None and response.status_code == 401 and not renewed:
                renewed, attempt = True, attempt - 1
                renew()
                continue
            delay = self._retry_delay(response, attempt, is_transient)
            if delay is None:
                return response
            self.retry.sleep(delay)

    def _retry_delay(
        self, response: httpx.Response, attempt: int, is_transient: Callable[[httpx.Response], bool]
    ) -> float | None:
        """Seconds to wait before sending again, None to hand ``response`` back; raises when out of tries."""
        status = response.status_code
        if status != 429 and not is_transient(response):
            return None
        seconds = retry_after(response)
        where = {"host": host(str(response.request.url)), "attempts": attempt, "status": status}
        if status == 429:
            if seconds is not None and seconds > self.retry.max_retry_after:
                message = self.service.wait_too_long.format(seconds=seconds, **where)
                raise self.service.rate_limited(message, retry_after=seconds)
            if attempt >= self.retry.attempts:
                message = self.service.still_limited.format(**where)
                raise self.service.rate_limited(message, retry_after=seconds)
        elif attempt >= self.retry.attempts or (seconds or 0) > self.retry.max_retry_after:
            raise self.service.unavailable(self.service.down.format(**where))
        return seconds if seconds is not None else self.retry.backoff(attempt)

    def get_json(
        self,
        target: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The JSON body of an authenticated GET of ``target`` (a path, or a URL on the API itself);
        :meth:`api_error` of the response when its status is 400 or above. ``what`` names the step in
        messages ("listing objects")."""
        response = self.authorized_get(target, params=params, headers=headers)
        if response.status_code >= 400:
            raise self.api_error(response, what)
        return self.json(response, what)

    def paged(
        self,
        first: Any,
        records: Callable[[Any], Records],
        next_target: Callable[[Any], str | None],
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[Records]:
        """The records of ``first`` and of each page after it, one list per page: ``next_target`` of a
        page names the next (None after the last), fetched by :meth:`get_json` with ``headers``."""
        page = first
        while True:
            yield records(page)
            target = next_target(page)
            if target is None:
                return
            page = self.get_json(target, headers=headers, what=what)

    def authorized_get(
        self, target: str, *, params: Mapping[str, str] | None, headers: Mapping[str, str] | None
    ) -> httpx.Response:
        """A GET of ``target`` with the client's credentials (logging in, renewing once on a 401)."""
        raise NotImplementedError

    def api_error(self, response: httpx.Response, what: str) -> ConnectorError:
        """The error an error response of the API means."""
        raise NotImplementedError

    def json(self, response: httpx.Response, what: str) -> Any:
        """The JSON body of ``response``; the service's protocol error if it is not JSON."""
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise self.service.protocol_error(
                f"{self.service.name} answered with something that is not JSON while {what} (HTTP "
                f"{response.status_code}, {response.headers.get('Content-Type', 'no content type')})."
            ) from None


@contextmanager
def field_named(name: str) -> Iterator[None]:
    """Name the connection field ``name`` (``auth.params.NAME``) in an :class:`OutboundRefused` raised
    inside: the policy knows the URL, the caller knows which field of the connection holds it."""
    try:
        yield
    except OutboundRefused as exc:
        raise type(exc)(f"auth.params.{name}: {exc.message}") from None


def json_or_none(response: httpx.Response) -> Any:
    """The JSON body of ``response``, None if it is not JSON (for reading error bodies)."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def server_error(response: httpx.Response) -> bool:
    return response.status_code >= 500


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds, or an HTTP date measured against ``Date``)."""
    return retry_after_seconds(response.headers.get("Retry-After"), response.headers.get("Date"))


def retry_after_seconds(value: str | None, date_header: str | None = None) -> float | None:
    """A ``Retry-After`` value in seconds: delta-seconds, or an HTTP date measured against the response's
    ``Date`` (else now). None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
        now = parsedate_to_datetime(date_header) if date_header else datetime.now(UTC)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - now).total_seconds())


def origin(url: str) -> str:
    """``scheme://netloc`` of ``url``, as written."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def host(url: str) -> str:
    return urlsplit(url).hostname or url


def scrub(text: str, secrets: Iterable[str | None], limit: int = 300) -> str:
    """``text`` (from a server) on one line, shortened, with every secret in ``secrets`` masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
