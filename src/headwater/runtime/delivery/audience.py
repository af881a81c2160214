"""Audience activation: an audience's membership transitions, in the profile store's order, through the
bindings and the deliverer (activation.py's pump, checkpoint and dead letters).

The feed is ``ProfileStore.transitions(scope, segment, after_seq)``: a transition's position is its
``seq`` (store-wide, commit order, gaps allowed) and the next position ``seq + 1``; a new flow starts at
the segment's first transition. Each transition is one record: the profile entity it carries, with
``segmentMembership.ups.<segment>`` set to that transition (``status``, ``lastQualificationTime``), as
AEP exports a profile. Entering (realized) goes to the flow's request, exiting to its exit request (its
second target connection); with no exit request an exit is finished without sending anything.

The idempotency key is the flow's and the seq's, so a profile that enters, exits and enters again is two
deliveries with two keys, and a restart resends an unfinished one with its own key. The checkpoint is an
``activationState`` resource and the counts go to one run per hour, as for a streaming activation.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from headwater.runtime.delivery.activation import (
    IDLE_POLL_SECONDS,
    READ_CHUNK,
    Plan,
    StreamPump,
    idempotency_key,
    stream_run_id,
)
from headwater.runtime.delivery.engine import Deliverer
from headwater.services.ids import now_ms
from headwater.stores.profiles import REALIZED, Transition

if TYPE_CHECKING:
    from headwater.runtime.context import Runtime


class AudiencePump(StreamPump):
    """The transitions of one audience activation flow's segment; ``read_offset`` is the next seq."""

    def __init__(self, services: Runtime, plan: Plan) -> None:
        if plan.segment_id is None:
            raise ValueError(f"audience activation flow {plan.flow.id} selects no segment")
        super().__init__(services, plan)
        self.segment_id = plan.segment_id
        self.exit_deliverer: Deliverer | None = None
        if plan.exit_destination is not None and plan.exit_target_id is not None:
            self.exit_deliverer = self.add_deliverer(plan.exit_destination, plan.exit_target_id)

    async def step(self) -> bool:
        """Read and hand over the segment's next transitions; False when there was nothing new."""
        room = self.plan.limits.max_pending - self.pending
        if room <= 0:
            await asyncio.sleep(IDLE_POLL_SECONDS)
            return True
        flow = self.plan.flow
        read = self.services.profiles.transitions
        after, limit = self.read_offset - 1, min(READ_CHUNK, room)
        transitions = await asyncio.to_thread(read, flow.scope, self.segment_id, after, limit)
        if not transitions:
            return False
        items = [
            (t.seq, t.seq + 1, idempotency_key(flow.id, f"seq:{t.seq}"), record_of(t)) for t in transitions
        ]
        self.read_offset = transitions[-1].seq + 1
        await self.feed(items, stream_run_id(flow.id, now_ms()))
        return True

    def deliverer_for(self, record: Any) -> Deliverer | None:
        entered = record["segmentMembership"]["ups"][self.segment_id]["status"] == REALIZED
        return self.deliverer if entered else self.exit_deliverer

    def release(self, offset: int) -> None:
        """Transitions are the profile store's history: nothing to release."""


def record_of(transition: Transition) -> dict[str, Any]:
    """What the bindings read of ``transition``: its profile entity, with the segment's membership set
    to this transition."""
    entity = transition.profile if isinstance(transition.profile, dict) else {}
    membership = entity.get("segmentMembership")
    membership = dict(membership) if isinstance(membership, dict) else {}
    ups = dict(membership["ups"]) if isinstance(membership.get("ups"), dict) else {}
    ups[transition.segment_id] = {
        "status": transition.status,
        "lastQualificationTime": _iso(transition.at_ms),
    }
    return {**entity, "segmentMembership": {**membership, "ups": ups}}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
