"""Nothing lost or doubled across `kill -9`: every membership transition of an activated audience ends up
delivered (2xx at the sink) or dead-lettered, whether the worker dies at a checkpoint or at a moment
chosen from live progress. Real `headwater serve` and `headwater worker` processes; the transitions are
written into the deployment's profile store from this process (as segment evaluation would, in another
process), and the sink is a real server in this process."""

from __future__ import annotations

import json
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater.runtime.delivery.activation import idempotency_key
from headwater.stores.metadata import Scope
from headwater.stores.profiles import REALIZED, Transition
from tests.activation_helpers import FS, dead_letters, delivery_totals, destination
from tests.audience_helpers import (
    ENTER_BODY,
    EXIT_BODY,
    audience_body,
    audience_source,
    enter,
    leave,
    segment_definition,
)
from tests.fakes.sink import SinkFake
from tests.flows_helpers import created_id
from tests.support import wait_until
from tests.test_activation_crash import _deployment
from tests.test_streaming_crash import StreamingDeployment

PEOPLE, EXITS, RETURNS = 200, 60, 30  # transitions: everyone enters, some exit, some of those return


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[StreamingDeployment]:
    yield from _deployment(tmp_path / "home", "local")


@pytest.fixture
def sink() -> Iterator[SinkFake]:
    with SinkFake() as fake:
        yield fake


@pytest.fixture
def services(deployment: StreamingDeployment) -> Iterator[Any]:
    """The deployment's stores, opened in this process."""
    from headwater.container import Services
    from headwater.settings import Settings

    opened = Services(Settings(home=deployment.home, environment="development", stream_log="local"))
    yield opened
    opened.close()


class Audience:
    """An audience activation flow of the deployment and the transitions written for its segment."""

    def __init__(self, d: StreamingDeployment, services: Any, sink: SinkFake) -> None:
        org = d.api.headers["x-gw-ims-org-id"]
        sandbox = services.store.get_sandbox(org, "prod")
        self.scope = Scope(org, sandbox.id)
        self.segment = str(uuid.uuid4())
        self.profiles = services.profiles
        self.store = services.store
        segment_definition(services.store, self.scope, self.segment)
        conn, enter_target = destination(d.api, sink.url + "/enter/${email}", body=ENTER_BODY)
        exit_target = created_id(
            d.api.post(
                f"{FS}/targetConnections",
                json={
                    "name": "exit request",
                    "baseConnectionId": conn,
                    "connectionSpec": {"id": "ce55fc04-f79b-4668-a8b7-2565a5c65ad4", "version": "1.0"},
                    "params": {"method": "POST", "url": sink.url + "/exit/${email}", "body": EXIT_BODY},
                },
            )
        )
        body = audience_body(
            audience_source(d.api), [enter_target, exit_target], self.segment,
            maxInFlight=4, retryInitialDelayMs=50, retryMaxDelayMs=300,
        )  # fmt: skip
        self.flow = created_id(d.api.post(f"{FS}/flows", json=body))
        self.written: list[Transition] = []

    def enter_and_exit(self) -> None:
        for start in range(1, PEOPLE + 1, 50):
            self.written += enter(self.profiles, self.scope, self.segment, *range(start, start + 50))
        self.written += leave(self.profiles, self.scope, self.segment, *range(1, EXITS + 1))

    def come_back(self) -> None:
        self.written += enter(self.profiles, self.scope, self.segment, *range(1, RETURNS + 1))

    def expected(self) -> dict[str, tuple[str, str]]:
        """idempotency key -> (path, email) of each transition's request."""
        out = {}
        for t in self.written:
            email = f"p{t.cluster_id}@example.com"
            path = f"/enter/{email}" if t.status == REALIZED else f"/exit/{email}"
            out[idempotency_key(self.flow, f"seq:{t.seq}")] = (path, email)
        return out

    def covered(self) -> set[str]:
        """The keys of the transitions the flow's saved checkpoint counts as finished."""
        state = self.store.get("activationState", self.scope, self.flow)
        assert state is not None
        offset, done = int(state.doc.get("offset", 0)), set(state.doc.get("done") or [])
        return {
            idempotency_key(self.flow, f"seq:{t.seq}")
            for t in self.written
            if t.seq < offset or t.seq in done
        }


def settle(d: StreamingDeployment, sink: SinkFake, audience: Audience) -> tuple[set[str], set[str]]:
    """Wait until every transition is delivered or dead-lettered; (delivered keys, dead-lettered keys)."""
    wanted = set(audience.expected())
    state: dict[str, set[str]] = {}

    def complete() -> bool:
        state["delivered"] = {r.header("idempotency-key") or "" for r in sink.delivered()}
        state["dead"] = {str(letter["idempotencyKey"]) for letter in dead_letters(d.api, audience.flow)}
        return wanted <= state["delivered"] | state["dead"]

    wait_until(complete, timeout=90, interval=0.3)
    return state["delivered"], state["dead"]


def assert_each_request_is_its_transitions(sink: SinkFake, audience: Audience) -> None:
    """Every request carries the key of one transition and that transition's request: a key is never
    reused for another transition, and a transition never goes with another key."""
    expected = audience.expected()
    for r in sink.received():
        key = r.header("idempotency-key") or ""
        assert key in expected, f"a request with an unknown key: {r.path}"
        path, email = expected[key]
        assert (r.path, json.loads(r.body)["email"]) == (path, email)


@pytest.mark.parametrize("fault", ["activation_before_checkpoint:3", "activation_after_checkpoint:3"])
def test_kill_9_at_a_checkpoint_then_restart_delivers_every_transition(
    deployment: StreamingDeployment, sink: SinkFake, services: Any, fault: str
) -> None:
    d = deployment
    audience = Audience(d, services, sink)
    audience.enter_and_exit()
    # At 50 ms a request the deliveries last 2.5 s or more, so the third checkpoint (one is saved every 0.5 s
    # while deliveries finish) comes while they run. At 20 ms they could all finish within the second, and
    # a worker with nothing left to save saves nothing: it never reached the crash point.
    sink.delay(0.05)
    sink.fail(400, times=3)  # three dead letters, which must not be doubled by the restart
    worker = d.start_worker(fault)
    assert d.wait_exit(worker) == -signal.SIGKILL
    covered = audience.covered()
    assert covered, "the worker was killed at its third checkpoint: earlier ones were saved"
    d.start_worker()
    delivered, dead = settle(d, sink, audience)
    assert len(dead) == 3 and len(dead_letters(d.api, audience.flow)) == 3
    assert delivered == set(audience.expected()) - dead
    assert_each_request_is_its_transitions(sink, audience)
    sent = Counter(r.header("idempotency-key") for r in sink.delivered())
    twice = {key for key, n in sent.items() if n > 1}
    # Only what was in flight or finished after the saved checkpoint goes twice; nothing it covered does.
    assert not twice & covered, sorted(twice & covered)[:5]


def test_kill_9_while_delivering_loses_nothing(
    deployment: StreamingDeployment, sink: SinkFake, services: Any
) -> None:
    d = deployment
    audience = Audience(d, services, sink)
    audience.enter_and_exit()
    sink.delay(0.01)
    worker = d.start_worker()
    total = PEOPLE + EXITS
    wait_until(lambda: sink.count() >= total // 3, timeout=60, interval=0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    d.start_worker()
    audience.come_back()  # written by this process while the new worker runs: found by its poll
    delivered, dead = settle(d, sink, audience)
    assert dead == set() and delivered == set(audience.expected())
    assert_each_request_is_its_transitions(sink, audience)
    enters = {r.header("idempotency-key") for r in sink.delivered() if r.path.startswith("/enter/")}
    assert len(enters) == PEOPLE + RETURNS  # a profile that came back was delivered twice, two keys
    # Counts may include what was delivered twice; they never miss a delivery.
    wait_until(lambda: delivery_totals(d.api, audience.flow)["delivered"] >= total + RETURNS, timeout=10)
