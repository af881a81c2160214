"""Keeps one delivery task per enabled streaming or audience activation flow, all in one event loop
thread.

Across processes, a flow is delivered by one worker at a time: each task holds the flow's lock
``streams/.activations/<flow>`` (stores/locks: a file lock in the home with SQLite, a PostgreSQL advisory
lock, on any machine, with PostgreSQL; released when the process dies, however it dies); the others
stand by, trying it every :data:`REFRESH_SECONDS`. A holder that loses its lock (its PostgreSQL session
broke) stops delivering without saving its checkpoint (the new holder may have moved it) and stands by
again; the deliveries it made since its last checkpoint are made again by the new holder, with the same
idempotency keys, as after a crash. A flow whose document changes (bindings, limits, state) is
restarted with the new version.

An idle flow costs nothing: one watcher thread waits on the log (``StreamLog.wait_appended``, up to
:data:`WATCH_SECONDS` a call) and wakes the flows whose streams gained records; the event loop is not
woken while nothing is appended. The flows wanted are filtered again only when the flows were
rescanned (runtime/flowwatch.py). A flow with deliveries in progress, or a checkpoint to save, looks
at its log every :data:`IDLE_POLL_SECONDS` and saves its checkpoint every ``FLUSH_SECONDS`` (as
before); one with neither waits for its wake-up, and saves nothing (its checkpoint has not moved).

Audience activation flows (runtime/delivery/audience.py) are woken by a second watcher thread: at once
when this process writes their segment's transitions (``ProfileStore.transitions_written``), and by a
poll every :data:`AUDIENCE_POLL_SECONDS` of each waiting flow's ``last_transition_seq`` for transitions
other processes wrote. With no audience flow, the poll asks nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from headwater.catalog.ids import FlowKind, flow_kind
from headwater.runtime.delivery.activation import (
    FLUSH_SECONDS,
    IDLE_POLL_SECONDS,
    Plan,
    StreamPump,
)
from headwater.runtime.delivery.audience import AudiencePump
from headwater.runtime.flowwatch import FlowWatch
from headwater.stores.locks import Lock
from headwater.stores.metadata import Resource, Scope

if TYPE_CHECKING:
    from headwater.runtime.context import Runtime

log = logging.getLogger("headwater.activation")
REFRESH_SECONDS = 1.0
WATCH_SECONDS = 0.5  # the longest the watcher waits on the log before it looks at the stop flag
AUDIENCE_POLL_SECONDS = 1.0  # how often waiting audience flows look for other processes' transitions
_Stop = list[bool]


class ActivationSupervisor:
    def __init__(
        self, services: Runtime, scopes: Collection[Scope] | None = None, watch: FlowWatch | None = None
    ) -> None:
        self.services = services
        self.scopes = scopes
        self.stop_event = threading.Event()
        self._tasks: dict[str, tuple[asyncio.Task[None], str, _Stop]] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._offsets: dict[str, int] = {}  # flow -> the log position its pump reads from next
        self._seqs: dict[str, int] = {}  # audience flow -> the transition seq its pump reads from next
        self._segments: dict[str, tuple[Scope, str]] = {}  # audience flow -> its scope and segment
        self._held: dict[str, Lock] = {}  # flow -> its lock, while this process delivers it
        self._flows = watch or FlowWatch(services.store)
        self._scanned: list[Resource] | None = None  # the scan ``_wanted`` was filtered from
        self._wanted: dict[str, Resource] = {}

    def wanted(self) -> dict[str, Resource]:
        """The enabled streaming and audience activation flows (of ``scopes``), filtered again when the
        flows were rescanned."""
        flows = self._flows.flows()
        if flows is self._scanned:
            return self._wanted
        out: dict[str, Resource] = {}
        for flow in flows:
            if self.scopes is not None and flow.scope not in self.scopes:
                continue
            if flow.doc.get("state") == "enabled" and flow_kind(flow.doc).delivers_continuously:
                out[flow.id] = flow
        self._scanned, self._wanted = flows, out
        return out

    async def refresh(self) -> None:
        for flow_id in [f for f, lock in self._held.items() if not lock.held()]:
            self._wake(flow_id)  # its lock was lost: it stops
        wanted = await asyncio.to_thread(self.wanted)
        for flow_id in list(self._tasks):
            task, etag, stop = self._tasks[flow_id]
            flow = wanted.get(flow_id)
            if flow is None or flow.etag != etag or task.done():
                stop[0] = True
                self._wake(flow_id)
                if task.done() or flow is None or flow.etag != etag:
                    del self._tasks[flow_id]
        for flow_id, flow in wanted.items():
            if flow_id not in self._tasks:
                stop = [False]
                task = asyncio.create_task(self._drive(flow, stop), name=f"activation-{flow_id[:8]}")
                self._tasks[flow_id] = (task, flow.etag, stop)

    async def _drive(self, flow: Resource, stop: list[bool]) -> None:
        lock = self.services.locks.lock(f"streams/.activations/{flow.id}")
        try:
            while not await asyncio.to_thread(lock.acquire):  # another worker delivers it; stand by
                if stop[0] or self.stop_event.is_set():
                    return
                await asyncio.sleep(REFRESH_SECONDS)
            self._held[flow.id] = lock
            try:
                await self._deliver(flow, lambda: stop[0] or self.stop_event.is_set(), lock.held)
            except Exception:
                log.exception("activation flow %s stopped on an error; restarting", flow.id)
                await asyncio.sleep(REFRESH_SECONDS)
            if not lock.held():  # the task ends; a refresh starts another, which stands by
                log.warning("activation flow %s: lost its lock; standing by", flow.id)
        finally:
            if self._held.get(flow.id) is lock:
                del self._held[flow.id]
            await asyncio.to_thread(lock.release)

    async def _deliver(self, flow: Resource, stop: Callable[[], bool], held: Callable[[], bool]) -> None:
        """Deliver an activation flow's feed until ``stop()`` says so, or its lock is no longer
        ``held()`` (see the module)."""
        plan = Plan.open(self.services, flow)
        audience = flow_kind(flow.doc) is FlowKind.AUDIENCE_ACTIVATION
        pump = AudiencePump(self.services, plan) if audience else StreamPump(self.services, plan)
        positions = self._seqs if audience else self._offsets
        if isinstance(pump, AudiencePump):
            self._segments[flow.id] = (flow.scope, pump.segment_id)
        wake = self._wakes.setdefault(flow.id, asyncio.Event())
        saved = pump.progress.checkpoint()
        try:
            while not stop() and held():
                wake.clear()
                positions[flow.id] = pump.read_offset
                progressed = await pump.step()
                positions[flow.id] = pump.read_offset
                if time.monotonic() - pump._last_flush >= FLUSH_SECONDS and _moved(pump, saved):
                    saved = pump.progress.checkpoint()
                    await pump.flush()
                if progressed:
                    continue
                if pump.pending > 0 or _moved(pump, saved):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), IDLE_POLL_SECONDS)
                else:  # idle: until its feed gains records, it is stopped or its lock is lost (all wake it)
                    await wake.wait()
            if held():
                await pump.flush()
        finally:
            positions.pop(flow.id, None)
            self._segments.pop(flow.id, None)
            await pump.cancel()
            await plan.aclose()

    def _wake(self, flow_id: str) -> None:
        event = self._wakes.get(flow_id)
        if event is not None:
            event.set()

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """In a thread of its own: wake the flows whose streams gained records (see
        ``StreamLog.wait_appended``), until the supervisor stops."""
        streams = self.services.streams.log
        token, _ = streams.appended(None)
        while not self.stop_event.is_set() and not loop.is_closed():
            if not self._offsets:  # no flow to wake: the log is not asked
                self.stop_event.wait(IDLE_POLL_SECONDS)
                continue
            try:
                token, news = self._news(token)
            except Exception:
                log.exception("activation supervisor: watching the log failed")
                self.stop_event.wait(REFRESH_SECONDS)
                continue
            if news:
                with contextlib.suppress(RuntimeError):  # the loop closed: the supervisor is gone
                    loop.call_soon_threadsafe(self._wake_all, news)

    def _wake_all(self, flow_ids: list[str]) -> None:
        for flow_id in flow_ids:
            self._wake(flow_id)

    def _news(self, token: object) -> tuple[object, list[str]]:
        """(the next token, the flows to wake): the streams the log names, or, when it cannot tell,
        the flows whose log ends past the position their pump reads from."""
        streams = self.services.streams.log
        token, changed = streams.wait_appended(token, WATCH_SECONDS)
        offsets = dict(self._offsets)
        if changed is not None:
            return token, [f for f in changed if f in offsets]
        return token, [f for f, at in offsets.items() if streams.end_offset(f) > at]

    def _watch_audiences(self, loop: asyncio.AbstractEventLoop) -> None:
        """In a thread of its own: wake the audience flows whose segment gained transitions (see the
        module), until the supervisor stops."""
        signal = self.services.profiles.transitions_written
        seen = signal.count()
        polled = time.monotonic()
        while not self.stop_event.is_set() and not loop.is_closed():
            seen, written = signal.wait(seen, WATCH_SECONDS)
            segments = dict(self._segments)
            wake = [f for f, where in segments.items() if where in written]
            if segments and time.monotonic() - polled >= AUDIENCE_POLL_SECONDS:
                polled = time.monotonic()
                try:
                    wake += self._grown(segments, set(wake))
                except Exception:
                    log.exception("activation supervisor: looking for new transitions failed")
            if wake:
                with contextlib.suppress(RuntimeError):  # the loop closed: the supervisor is gone
                    loop.call_soon_threadsafe(self._wake_all, wake)

    def _grown(self, segments: dict[str, tuple[Scope, str]], skip: set[str]) -> list[str]:
        """The audience flows (not in ``skip``) whose segment has a transition at or past the seq their
        pump reads from next."""
        last = self.services.profiles.last_transition_seq
        seqs = dict(self._seqs)
        return [
            f for f, (scope, segment) in segments.items()
            if f not in skip and f in seqs and last(scope, segment) >= seqs[f]
        ]  # fmt: skip

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        watcher = threading.Thread(target=self._watch, args=(loop,), name="activation-watch", daemon=True)
        watcher.start()
        audiences = threading.Thread(
            target=self._watch_audiences, args=(loop,), name="audience-watch", daemon=True
        )
        audiences.start()
        while not self.stop_event.is_set():
            try:
                await self.refresh()
            except Exception:
                log.exception("activation supervisor: refresh failed")
            await asyncio.sleep(REFRESH_SECONDS)
        for flow_id, (_, _, stop) in self._tasks.items():
            stop[0] = True
            self._wake(flow_id)
        await asyncio.to_thread(watcher.join)
        await asyncio.to_thread(audiences.join)
        await asyncio.gather(*(t for t, _, _ in self._tasks.values()), return_exceptions=True)
        self._tasks.clear()

    def run_forever(self) -> None:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(self.main())

    def stop(self) -> None:
        self.stop_event.set()


def _moved(pump: StreamPump, saved: tuple[int, list[int]]) -> bool:
    """Whether the pump has something to save: dead letters, counts, or a checkpoint that moved."""
    return bool(pump.dead) or not pump.stats.empty or pump.progress.checkpoint() != saved


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it comes with uvicorn[standard]): about a third less CPU per delivery."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return None
    return uvloop.new_event_loop


def start_in_background(
    services: Runtime, scopes: Collection[Scope] | None = None, watch: FlowWatch | None = None
) -> tuple[ActivationSupervisor, threading.Thread]:
    """A supervisor in a daemon thread; ``watch`` is the process's shared view of the flows, if any."""
    supervisor = ActivationSupervisor(services, scopes, watch)
    thread = threading.Thread(target=supervisor.run_forever, name="headwater-activation", daemon=True)
    thread.start()
    return supervisor, thread
