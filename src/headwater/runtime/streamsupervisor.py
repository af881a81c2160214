"""Running streaming flows: one scheduler thread for every enabled streaming flow, in any process that
runs a worker, stepping the flows that have work on a bounded pool of threads. Only one process of a
deployment steps a flow at a time: it holds the flow's lock ``streams/.batchers/<flow>`` (stores/locks: a
file lock in the home with SQLite, a PostgreSQL advisory lock, on any machine, with PostgreSQL). The
others stand by, trying the lock every :data:`REFRESH_SECONDS`, and one takes over when the holder exits
or dies. A holder that loses its lock (its PostgreSQL session broke) notices before its next step, steps
no more, and stands by like the others. The lock saves work; it is not what makes a commit exactly once:
a step already under way when the lock was lost may still try to commit, and the commit's compare-and-
swap of the log position refuses it when another batcher committed those records first
(runtime/streaming.py).

When a flow is stepped: when its log gains records (the log wakes the scheduler:
``StreamLog.wait_appended``), at most every ``HEADWATER_STREAM_FLUSH_SECONDS`` after its last commit (as
before, a commit waits for the flush interval to pass since the one before), when its cadence makes
records due, when a failed micro-batch is retried (with backoff), once when the flow starts, and once
an hour (to complete the run of the hour that is over). An idle flow costs nothing: no thread, no read
of its plan, its table or its log. The idle cost of the process is a watcher thread waiting on the log
(``wait_appended``, up to :data:`WATCH_SECONDS` a call) and a look at the flows' version every
:data:`REFRESH_SECONDS` (the flows wanted are filtered again only after a rescan). The scheduler thread
sleeps until its next timer, or until a step, the watcher or a refresh arms an earlier one (``_kick``).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from headwater.errors import NotFound
from headwater.runtime.context import Runtime
from headwater.runtime.flowwatch import FlowWatch
from headwater.runtime.streaming import MicroBatcher, StepResult, is_streaming
from headwater.stores.locks import Lock
from headwater.stores.metadata import Resource, Scope

log = logging.getLogger("headwater.streaming")

STANDBY_POLL_SECONDS = 1.0
REFRESH_SECONDS = 1.0
WATCH_SECONDS = 0.5  # the longest the watcher waits on the log before it looks at the stop flag
BATCHER_NICENESS = 10
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
HOUR_SECONDS = 3600.0
POOL_THREADS = min(16, 4 * (os.cpu_count() or 1))


@dataclass
class _Flow:
    """One flow the scheduler keeps: its batcher, its lock, and when it is to be stepped next."""

    batcher: MicroBatcher
    lock: Lock
    held: bool = False
    due: float | None = None  # monotonic time of the next step (None: when its log gains records)
    not_before: float = 0.0  # a commit waits for the flush interval since the one before
    running: Future[None] | None = None
    again: bool = False  # its log gained records while it was being stepped
    gone: bool = False  # no longer wanted: closed once its step is over
    housekeeping: float = field(default_factory=lambda: time.monotonic() + _to_next_hour())
    backoff: float = FIRST_BACKOFF_SECONDS
    attempts: int = 0
    last_error: str = ""


def _report_failure(batcher: MicroBatcher, error: Exception, attempts: int, retry_in: float) -> None:
    """Show the failure in the flow's runs; when that fails too (the metadata database is what is down),
    the log has it."""
    try:
        batcher.failed(error, attempts, retry_in)
    except Exception:
        log.warning(
            "streaming flow %s: could not record the failure in its run", batcher.flow_id, exc_info=True
        )


def _lower_priority() -> None:
    """Run this thread at a lower CPU priority (Linux: per thread). Where the inlets share cores with the
    micro-batchers, an acknowledgement is waited on by a client and a commit is not: acknowledging first
    keeps the inlets' tail latency down, and the micro-batches catch up in the idle time."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BATCHER_NICENESS)


def _to_next_hour() -> float:
    """Seconds to a moment in the first minute of the next hour (spread, so flows do not all step at
    once): a flow's run of the hour is completed then."""
    now = time.time()
    return HOUR_SECONDS - now % HOUR_SECONDS + random.uniform(1.0, 59.0)


class StreamingSupervisor:
    """Steps every enabled streaming flow (of ``scopes``, when given) from one scheduler thread (see the
    module's docstring); the steps run on a pool of :data:`POOL_THREADS`, one step of a flow at a time."""

    def __init__(
        self, services: Runtime, scopes: Collection[Scope] | None = None, watch: FlowWatch | None = None
    ) -> None:
        self.services = services
        self.scopes = scopes
        self.stop_event = threading.Event()
        self._flows: dict[str, _Flow] = {}
        self._mutex = threading.Lock()  # the flows' schedule, between the scheduler and the steps
        self._pool: ThreadPoolExecutor | None = None
        self._flush = services.settings.stream_flush_seconds
        self._watch = watch or FlowWatch(services.store)
        self._timers: list[tuple[float, int, _Flow]] = []  # (when, tie, flow): steps and hourly steps
        self._ties = itertools.count()
        self._kick = threading.Event()  # a timer was armed: the scheduler looks at its timers again
        self._scanned: list[Resource] | None = None  # the scan ``_wanted`` was filtered from
        self._wanted: dict[str, Resource] = {}

    # --- which flows ---
    def wanted(self) -> dict[str, Resource]:
        """The enabled streaming flows (of ``scopes``), filtered again when the flows were rescanned."""
        flows = self._watch.flows()
        if flows is self._scanned:
            return self._wanted
        out: dict[str, Resource] = {}
        for flow in flows:
            if self.scopes is not None and flow.scope not in self.scopes:
                continue
            if flow.doc.get("state") == "enabled" and is_streaming(flow):
                out[flow.id] = flow
        self._scanned, self._wanted = flows, out
        return out

    def refresh(self) -> None:
        """Keep a flow per enabled streaming flow; stand-by flows try their lock again (outside the
        mutex: with PostgreSQL a try is a round trip), once no step of theirs is under way."""
        wanted = self.wanted()
        with self._mutex:
            for flow_id in [f for f in self._flows if f not in wanted]:
                self._drop(flow_id)
            for flow_id, flow in wanted.items():
                if flow_id not in self._flows:
                    self._flows[flow_id] = self._new_flow(flow)
            for state in self._flows.values():
                if state.held and not state.lock.held():
                    self._lost(state)
            standing_by = [s for s in self._flows.values() if not s.held and s.running is None]
        for state in standing_by:
            if not state.lock.acquire():
                continue
            with self._mutex:
                if state.gone:  # dropped meanwhile
                    if state.running is None:
                        state.lock.release()
                    continue
                state.held = True
                state.batcher.taken_over()
                self._arm(state, time.monotonic())  # its first step, once it holds the lock

    def _new_flow(self, flow: Resource) -> _Flow:
        lock = self.services.locks.lock(f"streams/.batchers/{flow.id}")
        state = _Flow(MicroBatcher(self.services, flow), lock)
        heapq.heappush(self._timers, (state.housekeeping, next(self._ties), state))
        return state

    def _arm(self, state: _Flow, at: float) -> None:
        """Step ``state`` at ``at`` (under the mutex); the scheduler is woken when that is its next timer."""
        state.due = at
        heapq.heappush(self._timers, (at, next(self._ties), state))
        if self._timers[0][2] is state:
            self._kick.set()

    def _drop(self, flow_id: str) -> None:
        state = self._flows.pop(flow_id)
        state.gone = True
        if state.running is None:
            state.lock.release()

    def _lost(self, state: _Flow) -> None:
        """``state``'s lock was lost (under the mutex): no step more until it is acquired again."""
        log.warning("streaming flow %s: lost its lock; standing by", state.batcher.flow_id)
        state.held = False
        state.due = None

    # --- the scheduler ---
    def run_forever(self) -> None:
        """Schedule the steps until :meth:`stop`; the watcher thread wakes the flows whose log grew."""
        self._pool = ThreadPoolExecutor(POOL_THREADS, "stream", initializer=_lower_priority)
        watcher = threading.Thread(target=self._watch_log, name="streaming-watch", daemon=True)
        watcher.start()
        next_refresh = 0.0
        try:
            while not self.stop_event.is_set():
                self._kick.clear()  # before looking at the timers: one armed from now on sets it again
                now = time.monotonic()
                if now >= next_refresh:
                    next_refresh = now + REFRESH_SECONDS
                    try:
                        self.refresh()
                    except Exception:
                        log.exception("streaming supervisor: refresh failed")
                self._start_due(now)
                self._kick.wait(max(0.0, min(next_refresh, self._next_due()) - time.monotonic()))
        finally:
            self.stop_event.set()
            watcher.join(timeout=WATCH_SECONDS * 4)
            self.stop_all()

    def _watch_log(self) -> None:
        """In a thread of its own: wake the flows whose streams gained records (see
        ``StreamLog.wait_appended``), until the supervisor stops."""
        streams, token = self.services.streams.log, None
        with contextlib.suppress(Exception):  # else the first wait says "any may have": each is checked
            token, _ = streams.appended(None)
        while not self.stop_event.is_set():
            if not self._flows:  # nothing to wake: the log is not asked
                self.stop_event.wait(WATCH_SECONDS)
                continue
            try:
                token, changed = streams.wait_appended(token, WATCH_SECONDS)
            except Exception:  # the log is unavailable: the steps say so; watch again later
                log.warning("streaming supervisor: watching the log failed", exc_info=True)
                self.stop_event.wait(REFRESH_SECONDS)
                continue
            if changed is None or changed:
                self._woken(changed)

    def _next_due(self) -> float:
        with self._mutex:
            return self._timers[0][0] if self._timers else float("inf")

    def _woken(self, changed: frozenset[str] | None) -> None:
        """The log gained records in ``changed`` (None: in any stream; each flow looks at its log's end)."""
        if changed is None:
            with self._mutex:
                flows = list(self._flows.items())
            changed = frozenset(f for f, state in flows if state.running is not None or self._news(state))
        with self._mutex:  # the step's end reads ``again`` under it: no wake-up is lost
            for flow_id in changed:
                state = self._flows.get(flow_id)
                if state is None:
                    continue
                if state.running is not None:
                    state.again = True
                elif state.due is None:
                    self._arm(state, max(time.monotonic(), state.not_before))

    def _news(self, state: _Flow) -> bool:
        try:
            return state.batcher.has_news()
        except Exception:  # the log is unavailable: the step will say so
            return True

    def _start_due(self, now: float) -> None:
        """Start the steps that are due (timers no longer matching their flow are dropped)."""
        pool = self._pool
        if pool is None:  # stopping
            return
        with self._mutex:
            while self._timers and self._timers[0][0] <= now:
                at, _, state = heapq.heappop(self._timers)
                if state.gone:
                    continue
                if at == state.housekeeping:  # the hourly step
                    state.housekeeping = now + _to_next_hour()
                    heapq.heappush(self._timers, (state.housekeeping, next(self._ties), state))
                    state.due = now
                elif at != state.due:
                    continue
                if state.running is not None:
                    state.again = True
                elif state.held:
                    state.due = None
                    with contextlib.suppress(RuntimeError):  # the pool shut down: stopping
                        state.running = pool.submit(self._step, state)

    # --- one step of one flow ---
    def _step(self, state: _Flow) -> None:
        """Step the flow and decide when it is stepped next (see :func:`_next_step`); not when its lock
        was lost since the step was due."""
        batcher = state.batcher
        if not state.lock.held():
            with self._mutex:
                state.running = None
                if state.held:
                    self._lost(state)
                if state.gone:
                    state.lock.release()
            return
        try:
            result: StepResult | None = batcher.step()
        except NotFound:  # the flow, its dataset or its schema is gone: taken up again by a refresh
            result = None
            with self._mutex:
                if self._flows.get(batcher.flow_id) is state:
                    self._drop(batcher.flow_id)
        except Exception as exc:
            result = None
            self._failed(state, exc)
        with self._mutex:
            state.running = None
            if state.gone:
                state.lock.release()
                return
            if result is not None:
                self._next_step(state, result)
            state.again = False

    def _next_step(self, state: _Flow, result: StepResult) -> None:
        """After a commit: again once the flush interval has passed; records not committed (another
        batcher was first): at once; records waiting for the cadence: when due; nothing: when the log
        gains records."""
        batcher, now = state.batcher, time.monotonic()
        if state.attempts:
            log.info(
                "streaming flow %s: micro-batches succeed again after %d failed",
                batcher.flow_id,
                state.attempts,
            )
        state.backoff, state.attempts, state.last_error = FIRST_BACKOFF_SECONDS, 0, ""
        if result.committed:
            state.not_before = batcher.last_commit + self._flush
            self._arm(state, state.not_before)
        elif result.consumed:
            self._arm(state, now)
        elif result.wait:
            self._arm(state, now + result.wait)
        elif state.again:
            self._arm(state, max(now, state.not_before))
        else:
            state.due = None

    def _failed(self, state: _Flow, exc: Exception) -> None:
        """A step raised: not one message's fault (those are row errors inside the step). Retried with
        exponential backoff (:data:`FIRST_BACKOFF_SECONDS` doubling to :data:`MAX_BACKOFF_SECONDS`),
        the flow's run shows it failing meanwhile. The traceback is logged once per failing episode and
        when the error changes, then one line per retry."""
        batcher = state.batcher
        state.attempts += 1
        error = f"{type(exc).__name__}: {exc}"
        if error != state.last_error:
            log.exception(
                "streaming flow %s: micro-batch failed; retrying in %.0fs", batcher.flow_id, state.backoff
            )
        else:
            log.warning(
                "streaming flow %s: micro-batch failed again (%d attempts): %s; retrying in %.0fs",
                batcher.flow_id,
                state.attempts,
                error,
                state.backoff,
            )
        state.last_error = error
        _report_failure(batcher, exc, state.attempts, state.backoff)
        batcher.reset()
        with self._mutex:
            self._arm(state, time.monotonic() + state.backoff)
        state.backoff = min(state.backoff * 2, MAX_BACKOFF_SECONDS)

    # --- stopping ---
    def stop_all(self) -> None:
        """Let the steps in progress finish, then release every flow's lock."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._mutex:
            for flow_id in list(self._flows):
                self._drop(flow_id)

    def stop(self) -> None:
        self.stop_event.set()
        self._kick.set()


def start_in_background(
    services: Runtime, scopes: Collection[Scope] | None = None, watch: FlowWatch | None = None
) -> StreamingSupervisor:
    """A supervisor in a daemon thread; ``watch`` is the process's shared view of the flows, if any."""
    supervisor = StreamingSupervisor(services, scopes, watch)
    threading.Thread(target=supervisor.run_forever, name="headwater-streaming", daemon=True).start()
    return supervisor
