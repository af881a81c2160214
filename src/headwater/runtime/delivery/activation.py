"""Activation flows at work: records from a feed through the bindings and the deliverer, with a
checkpoint that survives ``kill -9``.

A feed is ordered and replayable: the activation flow's own streaming log (an inlet appends every
message to it before answering 2xx), the data files a dataset gained since the flow's last run, or an
audience's membership transitions in the profile store (runtime/delivery/audience.py). Each record has
a position. The checkpoint is the first position not yet finished (delivered or
dead-lettered) plus the finished positions beyond it; it is saved at most every ``FLUSH_SECONDS``,
after the dead letters it covers. After a crash the feed resumes from the checkpoint and skips what
was finished, so a record is delivered, dead-lettered, or sent again: only requests in flight at the
crash (or answered since the last checkpoint) go twice, with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from headwater.connectors.http_destination.destination import Destination
from headwater.engines.bindings import Bindings
from headwater.faults import crash_point
from headwater.runtime.delivery.engine import (
    DeadLetter,
    Deliverer,
    Item,
    Limits,
    Progress,
    Stats,
)
from headwater.services.ids import new_etag, now_ms
from headwater.services.ledger import Hourly, RunLedger
from headwater.services.plans import FlowPlan
from headwater.stores.metadata import AlreadyExists, Resource

if TYPE_CHECKING:
    from headwater.runtime.context import Runtime

log = logging.getLogger("headwater.activation")
FLUSH_SECONDS = 0.5
READ_CHUNK = 1000
IDLE_POLL_SECONDS = 0.05
KEYS = b"headwater-activation-keys"


def idempotency_key(flow_id: str, where: str) -> str:
    """Stable for a record of a flow: the same on every attempt, after restarts and on replay (32 hex)."""
    return hashlib.blake2b(f"{flow_id}:{where}".encode(), digest_size=16, key=KEYS).hexdigest()


@dataclass
class Plan:
    """What one activation flow needs, resolved from its resources. ``exit_destination`` is the request
    an audience activation sends when a profile exits (None: exits send nothing)."""

    flow: Resource
    target_id: str
    destination: Destination
    bindings: Bindings
    limits: Limits
    segment_id: str | None = None
    exit_destination: Destination | None = None
    exit_target_id: str | None = None

    @classmethod
    def open(cls, services: Runtime, flow: Resource) -> Plan:
        """The plan of activation flow ``flow``, resolved (services/plans.py) and its destination opened."""
        return cls.of(services, services.plans.resolve_flow(flow.scope, flow))

    @classmethod
    def of(cls, services: Runtime, resolved: FlowPlan) -> Plan:
        """The deliverer's plan of ``resolved``: its destination opened, its bindings and limits."""
        from headwater.runtime.delivery.destination import open_destination

        limits = limits_of(resolved.options)
        target = resolved.target.resource
        destination = open_destination(services, resolved.scope, target, max_connections=limits.max_in_flight)
        exit_destination = exit_id = None
        if resolved.exit_target is not None:
            exit_id = resolved.exit_target.id
            exit_destination = open_destination(
                services, resolved.scope, resolved.exit_target.resource, max_connections=limits.max_in_flight
            )
        bindings = (resolved.transformation("Variables") or {}).get("bindings") or {}
        return cls(
            resolved.flow, target.id, destination, Bindings(bindings), limits,
            resolved.segment_id, exit_destination, exit_id,
        )  # fmt: skip

    async def aclose(self) -> None:
        """Close the destinations' connections."""
        await self.destination.aclose()
        if self.exit_destination is not None:
            await self.exit_destination.aclose()


def limits_of(options: Mapping[str, Any]) -> Limits:
    """A flow's delivery limits, from its options."""
    return Limits(
        max_in_flight=int(options.get("maxInFlight", 64)),
        requests_per_second=float(options.get("requestsPerSecond", 0)),
        initial_backoff=float(options.get("retryInitialDelayMs", 500)) / 1000,
        max_backoff=float(options.get("retryMaxDelayMs", 300_000)) / 1000,
        max_age=float(options.get("retryMaxAgeSeconds", 14_400)),
        idempotency_header=str(options.get("idempotencyHeader", "Idempotency-Key")),
    )


class Pump:
    """Moves one feed's records into a deliverer and keeps the checkpoint; subclasses say where records
    come from, which deliverer each goes to (:meth:`deliverer_for`), and where the checkpoint and the
    counts go. Every deliverer shares the one checkpoint and the one period's counts."""

    def __init__(self, services: Runtime, plan: Plan, offset: int, done: Sequence[int]) -> None:
        self.services = services
        self.plan = plan
        self.progress = Progress(offset, set(done))
        self.stats = Stats()
        self.dead: list[tuple[DeadLetter, str]] = []  # and the target connection of its request
        self.deliverers: list[Deliverer] = []
        self.deliverer = self.add_deliverer(plan.destination, plan.target_id)
        self._last_flush = time.monotonic()
        self.delivered_total = self.dead_total = 0  # since this pump started

    def add_deliverer(self, destination: Destination, target_id: str) -> Deliverer:
        """A deliverer of another request (target connection ``target_id``), sharing this pump's
        checkpoint and counts; its dead letters name ``target_id``."""

        def finished(item: Item, dead: DeadLetter | None) -> None:
            self._finished(item, dead, target_id)

        deliverer = Deliverer(destination, self.plan.limits, finished, self.stats)
        self.deliverers.append(deliverer)
        return deliverer

    @property
    def pending(self) -> int:
        """Records taken and not finished, in every deliverer."""
        return sum(d.pending for d in self.deliverers)

    def deliverer_for(self, record: Any) -> Deliverer | None:
        """Where ``record`` goes; None: it sends nothing and is finished as it is fed."""
        return self.deliverer

    async def cancel(self) -> None:
        """Stop every deliverer (what is pending is sent again by the next pump, from the checkpoint)."""
        for deliverer in self.deliverers:
            await deliverer.cancel()

    async def drain(self) -> None:
        for deliverer in self.deliverers:
            await deliverer.drain()

    def _finished(self, item: Item, dead: DeadLetter | None, target_id: str) -> None:
        self.stats.finished(target_id, dead is not None)
        if dead is not None:
            self.dead.append((dead, target_id))
            self.dead_total += 1
        else:
            self.delivered_total += 1
        self.progress.finish(item.position)

    async def feed(self, items: Sequence[tuple[int, int, str, Any]], run_id: str | None) -> None:
        """Hand records (position, next position, key, record) to the deliverer, in feed order."""
        bound = self.plan.bindings.bind([record for *_, record in items])
        for (position, next_position, key, record), (variables, error) in zip(items, bound, strict=True):
            self.progress.add(position, next_position)
            if position in self.progress.skip:  # finished before a restart
                self.progress.skip.discard(position)
                self.progress.finish(position)
                continue
            deliverer = self.deliverer_for(record)
            if deliverer is None:  # nothing to send for it
                self.progress.finish(position)
                continue
            item = Item(position, next_position, key, variables, error, run_id)
            if deliverer.has_room:
                deliverer.put(item)
            else:
                await deliverer.submit(item)
            if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
                await self.flush()

    async def flush(self) -> None:
        """Persist dead letters, then the checkpoint that covers them, then the counts."""
        self._last_flush = time.monotonic()
        offset, done = self.progress.checkpoint()
        dead, self.dead = self.dead, []
        stats = self.stats.take()
        await asyncio.to_thread(self._persist, dead, offset, done, stats)

    def _persist(
        self, dead: list[tuple[DeadLetter, str]], offset: int, done: list[int], stats: Stats
    ) -> None:
        for letter, target_id in dead:
            self._keep(letter, target_id)
        crash_point("activation_before_checkpoint")
        self.save_checkpoint(offset, done, stats)

    def _keep(self, letter: DeadLetter, target_id: str) -> None:
        flow = self.plan.flow
        ident = idempotency_key(flow.id, f"dead:{letter.item.key}")
        now = now_ms()
        doc = {
            **letter.doc(),
            "flowId": flow.id,
            "runId": letter.item.run_id,
            "targetConnectionId": target_id,
            "state": "dead",
            "createdAt": now,
            "updatedAt": now,
            "sandboxName": flow.doc.get("sandboxName"),
            "imsOrgId": flow.scope.org_id,
        }
        resource = Resource("deadLetter", ident, flow.scope, doc, new_etag(), None, None, now, now)
        with contextlib.suppress(AlreadyExists):  # written before a crash that lost the checkpoint
            self.services.store.insert(resource)

    def save_checkpoint(self, offset: int, done: list[int], stats: Stats) -> None:
        raise NotImplementedError


class StreamPump(Pump):
    """A streaming activation: the flow's log, checkpoint in an ``activationState`` resource, counts in
    one run per hour (as streaming ingestion flows have)."""

    def __init__(self, services: Runtime, plan: Plan) -> None:
        state = services.store.get("activationState", plan.flow.scope, plan.flow.id)
        doc = state.doc if state is not None else {}
        super().__init__(services, plan, int(doc.get("offset", 0)), doc.get("done") or [])
        self.read_offset = self.progress.checkpoint()[0]

    async def step(self) -> bool:
        """Read and hand over what the log holds; False when there was nothing new."""
        room = self.plan.limits.max_pending - self.pending
        if room <= 0:
            await asyncio.sleep(IDLE_POLL_SECONDS)
            return True
        flow_id = self.plan.flow.id
        log_ = self.services.streams.log
        records = await asyncio.to_thread(log_.read, flow_id, self.read_offset, min(READ_CHUNK, room))
        if not records:
            return False
        items = []
        for record in records:
            try:
                message = orjson.loads(record.payload)
                body = message.get("r") if isinstance(message, dict) else None
            except orjson.JSONDecodeError:
                body = None
            items.append(
                (record.offset, record.next_offset, idempotency_key(flow_id, str(record.offset)), body)
            )
        self.read_offset = records[-1].next_offset
        run_id = stream_run_id(flow_id, now_ms())
        await self.feed(items, run_id)
        return True

    def save_checkpoint(self, offset: int, done: list[int], stats: Stats) -> None:
        """Counts first, then the position: a crash between them counts a period twice (its records are
        sent again, and were delivered twice) rather than never."""
        flow = self.plan.flow
        if not stats.empty:
            from headwater.runtime.delivery.activationruns import account

            account(self.services, flow, stats)
        store = self.services.store
        state = store.get("activationState", flow.scope, flow.id)
        doc = {"flowId": flow.id, "offset": offset, "done": done, "updatedAt": now_ms()}
        if state is None:
            now = now_ms()
            resource = Resource("activationState", flow.id, flow.scope, doc, new_etag(), None, None, now, now)
            with contextlib.suppress(AlreadyExists):
                store.insert(resource)
        else:
            self.services.ledger.save(state, doc)
        crash_point("activation_after_checkpoint")
        self.release(offset)

    def release(self, offset: int) -> None:
        """The log may drop what is before ``offset`` (every record there is finished)."""
        with contextlib.suppress(Exception):
            self.services.streams.log.release(self.plan.flow.id, offset)


def stream_run_id(flow_id: str, now: int) -> str:
    """The streaming activation run of the hour ``now`` falls in (services/ledger.py)."""
    return RunLedger.hour_run_id(Hourly.ACTIVATION, flow_id, now)
