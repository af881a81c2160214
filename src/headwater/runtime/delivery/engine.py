"""The delivery engine: one request per record to an HTTP destination, concurrent, limited, retried.

    Deliverer.submit(item)  -> returns once the item is admitted (waits while too many are pending)
    on_finished(item, dead) -> called in the event loop when an item is delivered (dead is None) or
                               given up (dead holds the dead letter); never both, exactly once per item

Per destination: at most ``max_in_flight`` requests at a time and at most ``requests_per_second``
started per second; a 429 with Retry-After pauses the whole destination until then. Connect errors,
timeouts, 5xx, 408 and 429 are retried with exponential backoff and equal jitter (honouring
Retry-After) until ``max_age`` after the first attempt; other answers (3xx, 4xx) are dead letters at
once. A 401 refreshes an OAuth token and sends again once. Every request carries the item's
idempotency key, the same on every attempt, after a restart and on replay.

One Deliverer per destination, each with its own limits and its own pending window, so a slow or
failing destination only ever holds up its own records. The destination itself (template, auth, client,
what is shown of a request) is the HTTP destination connector's (connectors/http_destination/).
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from headwater.connectors.http import retry_after_seconds
from headwater.connectors.http_destination.client import Response
from headwater.connectors.http_destination.destination import Destination
from headwater.connectors.http_destination.errors import AuthError, TransportError
from headwater.engines.latency import LATENCY_BOUNDS
from headwater.engines.template import RenderedRequest, RenderError

TRANSIENT_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class Limits:
    max_in_flight: int = 64
    requests_per_second: float = 0.0  # 0: unlimited
    initial_backoff: float = 0.5
    max_backoff: float = 300.0
    max_age: float = 4 * 3600.0  # Segment retries for 4 hours
    max_pending: int = 10_000
    idempotency_header: str = "Idempotency-Key"


@dataclass
class Item:
    """One record on its way: where it came from (``position``), its idempotency key, its variables."""

    position: int
    next_position: int
    key: str
    variables: dict[str, Any] | None
    error: str | None = None  # the variables could not be bound: a dead letter without a request
    run_id: str | None = None
    taken: float = field(default_factory=time.monotonic)
    attempts: int = 0
    first_attempt_ms: int | None = None
    rendered: RenderedRequest | None = None


@dataclass
class DeadLetter:
    item: Item
    reason: str
    request: dict[str, Any] | None
    response: dict[str, Any] | None
    attempts: int
    first_attempt_ms: int | None
    last_attempt_ms: int

    def doc(self) -> dict[str, Any]:
        return {
            "position": self.item.position,
            "idempotencyKey": self.item.key,
            "variables": self.item.variables,
            "reason": self.reason,
            "request": self.request,
            "response": self.response,
            "attempts": self.attempts,
            "firstAttemptAt": self.first_attempt_ms,
            "lastAttemptAt": self.last_attempt_ms,
        }


class Stats:
    """Counts of one accounting period, and a latency histogram (ms from record taken to 2xx) that adds up
    across periods and processes, for p50/p99 over a run. ``requests`` splits what finished by the
    request that carried it (a target connection id): an audience activation sends entering and exiting
    profiles with two requests, and says how many of each went out."""

    def __init__(self) -> None:
        self.delivered = self.retried = self.failed = self.dead = self.taken = 0
        self.histogram = [0] * (len(LATENCY_BOUNDS) + 1)
        self.requests: dict[str, list[int]] = {}  # target connection id -> [delivered, dead-lettered]

    def latency(self, ms: float) -> None:
        self.histogram[bisect.bisect_left(LATENCY_BOUNDS, ms)] += 1

    def finished(self, target_id: str, dead: bool) -> None:
        """One record of request ``target_id`` finished: delivered, or dead-lettered."""
        self.requests.setdefault(target_id, [0, 0])[1 if dead else 0] += 1

    def take(self) -> Stats:
        """This period's stats, starting a new one."""
        out = Stats()
        out.__dict__.update(self.__dict__)
        self.__init__()  # type: ignore[misc]
        return out

    @property
    def empty(self) -> bool:
        return not (self.taken or self.delivered or self.retried or self.failed or self.dead)

    def add_to(self, summary: dict[str, Any]) -> dict[str, Any]:
        """``summary`` (a run's deliverySummary, possibly empty) with this period added."""
        histogram = list(summary.get("latencyHistogram") or [0] * len(self.histogram))
        histogram = [a + b for a, b in zip(histogram, self.histogram, strict=False)]
        return {
            "taken": int(summary.get("taken", 0)) + self.taken,
            "delivered": int(summary.get("delivered", 0)) + self.delivered,
            "retried": int(summary.get("retried", 0)) + self.retried,
            "failed": int(summary.get("failed", 0)) + self.failed,
            "deadLettered": int(summary.get("deadLettered", 0)) + self.dead,
            "latencyMs": percentiles(histogram),
            "latencyHistogram": histogram,
            "requests": self._requests_added(summary.get("requests")),
        }

    def _requests_added(self, before: Any) -> list[dict[str, Any]]:
        """``deliverySummary.requests`` (one entry per request, in first-use order) with this period's."""
        rows = [dict(r) for r in before if isinstance(r, dict)] if isinstance(before, list) else []
        by_id = {r.get("targetConnectionId"): r for r in rows}
        for target_id, (delivered, dead) in self.requests.items():
            row = by_id.get(target_id)
            if row is None:
                row = by_id[target_id] = {"targetConnectionId": target_id, "delivered": 0, "deadLettered": 0}
                rows.append(row)
            row["delivered"] = int(row.get("delivered", 0)) + delivered
            row["deadLettered"] = int(row.get("deadLettered", 0)) + dead
        return rows


def percentiles(histogram: list[int]) -> dict[str, float | None]:
    """p50 and p99 from a latency histogram: the upper bound of the bucket holding the quantile."""
    total = sum(histogram)
    if not total:
        return {"p50": None, "p99": None}
    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.50), ("p99", 0.99)):
        rank, seen = q * total, 0
        for index, count in enumerate(histogram):
            seen += count
            if seen >= rank:
                out[name] = float(LATENCY_BOUNDS[min(index, len(LATENCY_BOUNDS) - 1)])
                break
    return out


@dataclass
class Attempt:
    rendered: RenderedRequest | None = None
    response: Response | None = None
    error: str | None = None
    transient: bool = False
    retry_after: float | None = None


class Deliverer:
    """``max_in_flight`` worker coroutines take items from a ready queue; an item to retry waits on a
    timer (holding no worker) and goes back to the front of the queue. ``pending`` counts items taken
    and not finished, retries included; ``submit`` waits while it is at ``max_pending``."""

    def __init__(
        self,
        destination: Destination,
        limits: Limits,
        on_finished: Callable[[Item, DeadLetter | None], None],
        stats: Stats | None = None,
    ) -> None:
        self.destination = destination
        self.limits = limits
        self.on_finished = on_finished
        self.stats = stats or Stats()
        self.pending = 0
        self._ready: deque[Item] = deque()
        self._idle: deque[asyncio.Future[None]] = deque()  # workers waiting for an item
        self._room: asyncio.Future[None] | None = None  # submit waiting for room
        self._drained: asyncio.Future[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._paused_until = 0.0
        self._next_start = 0.0

    @property
    def has_room(self) -> bool:
        return self.pending < self.limits.max_pending

    def put(self, item: Item) -> None:
        """Take ``item`` (the caller checked ``has_room``)."""
        if not self._workers:
            self._workers = [asyncio.create_task(self._work()) for _ in range(self.limits.max_in_flight)]
        self.pending += 1
        self.stats.taken += 1
        self._ready.append(item)
        self._wake()

    async def submit(self, item: Item) -> None:
        while not self.has_room:
            self._room = asyncio.get_running_loop().create_future()
            await self._room
        self.put(item)

    async def drain(self) -> None:
        while self.pending:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    async def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    def _wake(self) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _finish(self, item: Item, dead: DeadLetter | None) -> None:
        self.pending -= 1
        self.on_finished(item, dead)
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        if not self.pending and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _requeue(self, item: Item, timer: list[asyncio.TimerHandle]) -> None:
        self._timers.discard(timer[0])
        self.stats.retried += 1
        self._ready.appendleft(item)
        self._wake()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        ready = self._ready
        while True:
            if not ready:
                waiter = loop.create_future()
                self._idle.append(waiter)
                await waiter
                continue
            item = ready.popleft()
            try:
                await self._deliver(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not lose the record: it becomes a dead letter
                self._dead(item, f"internal error while delivering: {type(exc).__name__}: {exc}", None, None)

    # --- one attempt of one record ---
    async def _deliver(self, item: Item) -> None:
        rendered = item.rendered
        if rendered is None:
            if item.variables is None:
                self._dead(item, item.error or "the record's variables could not be bound", None, None)
                return
            try:
                rendered = item.rendered = self.destination.template.render(item.variables)
            except RenderError as exc:
                self._dead(item, str(exc), None, None)
                return
        if self._paused_until or self.limits.requests_per_second:
            await self._pace()
        item.attempts += 1
        if item.first_attempt_ms is None:
            item.first_attempt_ms = int(time.time() * 1000)
        headers = [*rendered.headers, (self.limits.idempotency_header, item.key)]
        try:
            attempt = await self._send(rendered, headers)
        except AuthError as exc:
            attempt = Attempt(rendered, None, f"authentication failed: {exc}", exc.transient)
        except TransportError as exc:
            attempt = Attempt(rendered, None, f"{exc.kind}: {exc}", exc.transient)
        except ValueError as exc:  # the client refused to send it (a header it cannot encode safely)
            attempt = Attempt(rendered, None, f"not sent: {exc}", False)
        response = attempt.response
        if response is not None and 200 <= response.status < 300:
            self.stats.delivered += 1
            self.stats.latency((time.monotonic() - item.taken) * 1000)
            self._finish(item, None)
            return
        self.stats.failed += 1
        reason = attempt.error or _status_reason(response)
        if not attempt.transient:
            self._dead(item, reason, rendered, response)
            return
        delay = self._backoff(item.attempts, attempt.retry_after)
        age = time.time() - item.first_attempt_ms / 1000
        if age + delay > self.limits.max_age:
            message = f"gave up after {item.attempts} attempts over {age:.1f} s: {reason}"
            self._dead(item, message, rendered, response)
            return
        holder: list[asyncio.TimerHandle] = []
        holder.append(asyncio.get_running_loop().call_later(delay, self._requeue, item, holder))
        self._timers.add(holder[0])

    async def _send(self, rendered: RenderedRequest, headers: list[tuple[str, str]]) -> Attempt:
        response = await self.destination.exchange(rendered, headers)
        status = response.status
        retry_after = (
            retry_after_seconds(response.header("retry-after"), response.header("date"))
            if status in (429, 503)
            else None
        )
        if status == 429 and retry_after:
            self._paused_until = max(self._paused_until, time.monotonic() + retry_after)
        transient = status >= 500 or status in TRANSIENT_STATUS
        return Attempt(rendered, response, None, transient, retry_after)

    async def _pace(self) -> None:
        """Wait out a destination-wide pause (429) and the requests-per-second limit."""
        now = time.monotonic()
        if self._paused_until > now:
            await asyncio.sleep(self._paused_until - now)
        rate = self.limits.requests_per_second
        if rate > 0:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + 1.0 / rate
            if start > now:
                await asyncio.sleep(start - now)

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.limits.max_age)
        ceiling = min(self.limits.max_backoff, self.limits.initial_backoff * 2.0 ** max(attempts - 1, 0))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))

    def _dead(
        self, item: Item, reason: str, rendered: RenderedRequest | None, response: Response | None
    ) -> None:
        self.stats.dead += 1
        dest = self.destination
        letter = DeadLetter(
            item,
            dest.scrub(reason),
            dest.shown_request(rendered, self.limits.idempotency_header, item.key) if rendered else None,
            dest.shown_response(response) if response is not None else None,
            item.attempts,
            item.first_attempt_ms,
            int(time.time() * 1000),
        )
        self._finish(item, letter)


def _status_reason(response: Response | None) -> str:
    if response is None:
        return "no response"
    status = response.status
    if 300 <= status < 400:
        where = response.header("location") or "(no Location)"
        return (
            f"HTTP {status}: redirects are not followed (to {where}); point the destination at the final URL"
        )
    return f"HTTP {status} from the destination"


class Progress:
    """Which positions of an ordered feed are finished: the checkpoint is the first unfinished one.

    Positions are added in feed order; ``finish`` may come in any order. ``checkpoint()`` gives where to
    resume (``offset``) and the finished positions beyond it (``done``), so a restart skips them.
    """

    def __init__(self, offset: int, done: set[int] | None = None) -> None:
        self._offset = offset
        self._order: deque[tuple[int, int]] = deque()  # (position, next_position)
        self._finished: set[int] = set()
        self.skip = set(done or ())

    def add(self, position: int, next_position: int) -> None:
        self._order.append((position, next_position))

    def finish(self, position: int) -> None:
        self._finished.add(position)
        order = self._order
        while order and order[0][0] in self._finished:
            pos, nxt = order.popleft()
            self._finished.discard(pos)
            self._offset = nxt

    def checkpoint(self) -> tuple[int, list[int]]:
        if not self._order:
            return self._offset, []
        return self._order[0][0], sorted(self._finished)
