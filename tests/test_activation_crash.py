"""Nothing lost across `kill -9`: every record an inlet acknowledged for an activation flow ends up
delivered (2xx at the sink) or dead-lettered, whether the worker dies at a checkpoint or at a moment
chosen from live progress. Real `headwater serve` and `headwater worker` processes; the sink is a real
server in this process."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.activation_helpers import FS, activation_flow, dead_letters, destination, event, inlet_source
from tests.fakes.sink import SinkFake
from tests.support import wait_until
from tests.test_streaming_crash import NATS_URL, StreamingDeployment

RECORDS = 400


def _deployment(home: Path, log: str) -> Iterator[StreamingDeployment]:
    d = StreamingDeployment(home, log, {"HEADWATER_OUTBOUND_ALLOW": "127.0.0.1"})
    yield d
    d.stop()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[StreamingDeployment]:
    yield from _deployment(tmp_path / "home", "local")


@pytest.fixture(params=["local", "jetstream"])
def any_log_deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StreamingDeployment]:
    yield from _deployment(tmp_path / "home", "local" if request.param == "local" else NATS_URL)


@pytest.fixture
def sink() -> Iterator[SinkFake]:
    with SinkFake() as fake:
        yield fake


def send_all(d: StreamingDeployment, inlet: str) -> None:
    with httpx.Client(base_url=d.base, timeout=10) as client:
        for start in range(0, RECORDS, 50):
            batch = {"messages": [event(n) for n in range(start, start + 50)]}
            response = client.post(inlet.replace("/collection/", "/collection/batch/"), json=batch)
            assert response.status_code == 207
            assert all("xactionId" in r for r in response.json()["responses"])


def settle(d: StreamingDeployment, sink: SinkFake, flow: str) -> tuple[set[str], list[dict[str, object]]]:
    """Wait until every record is delivered or dead-lettered; return (delivered emails, dead letters)."""
    wanted = {f"user{n}@example.com" for n in range(RECORDS)}
    state: dict[str, object] = {}

    def complete() -> bool:
        delivered = {json.loads(r.body)["email"] for r in sink.delivered()}
        letters = dead_letters(d.api, flow)
        state.update(delivered=delivered, letters=letters)
        dead = {str(letter["variables"]["email"]) for letter in letters}  # type: ignore[index]
        return wanted <= delivered | dead

    wait_until(complete, timeout=90, interval=0.3)
    return state["delivered"], state["letters"]  # type: ignore[return-value]


def covered_by_checkpoint(d: StreamingDeployment, flow: str) -> set[str]:
    """The emails of the records the flow's saved checkpoint counts as finished (read from the home while
    no worker runs): those before its offset, and those it lists as done after it."""
    from headwater.container import Services
    from headwater.settings import Settings
    from headwater.stores.log.base import StreamLog

    services = Services(Settings(home=d.home, environment="development", stream_log="local"))
    try:
        [state] = [s for s in services.store.scan_kind("activationState") if s.id == flow]
        offset, done = int(state.doc.get("offset", 0)), set(state.doc.get("done") or [])
        records = services.streams.log.read(flow, StreamLog.START, max_records=10 * RECORDS)
    finally:
        services.close()
    return {json.loads(r.payload)["r"]["email"] for r in records if r.offset < offset or r.offset in done}


def prepare(d: StreamingDeployment, sink: SinkFake) -> tuple[str, str]:
    _, target = destination(d.api, sink.url + "/crash/${email}")
    source, inlet = inlet_source(d.api)
    flow = activation_flow(d.api, source, target, maxInFlight=8, retryInitialDelayMs=50, retryMaxDelayMs=300)
    return flow, inlet


@pytest.mark.parametrize("fault", ["activation_before_checkpoint:3", "activation_after_checkpoint:3"])
def test_kill_9_at_a_checkpoint_then_restart_delivers_every_record(
    deployment: StreamingDeployment, sink: SinkFake, fault: str
) -> None:
    d = deployment
    flow, inlet = prepare(d, sink)
    # At 50 ms a request the deliveries last 2.5 s or more, so the third checkpoint (one is saved every 0.5 s
    # while deliveries finish) comes while they run. At 20 ms they could all finish within the second, and
    # a worker with nothing left to save saves nothing: it never reached the crash point.
    sink.delay(0.05)
    sink.fail(400, times=3)  # three dead letters, which must not be doubled by the restart
    worker = d.start_worker(fault)
    send_all(d, inlet)
    assert d.wait_exit(worker) == -signal.SIGKILL
    covered = covered_by_checkpoint(d, flow)
    assert covered, "the worker was killed at its third checkpoint: earlier ones were saved"
    d.start_worker()
    delivered, letters = settle(d, sink, flow)
    assert len(letters) == 3
    assert len(delivered) == RECORDS - 3
    sent = Counter(json.loads(r.body)["email"] for r in sink.delivered())
    twice = {email for email, n in sent.items() if n > 1}
    # Only what was in flight or finished after the saved checkpoint goes twice; nothing it covered does.
    assert not twice & covered, sorted(twice & covered)[:5]
    by_email: dict[str, set[str]] = {}
    for r in sink.received():
        by_email.setdefault(json.loads(r.body)["email"], set()).add(r.header("idempotency-key") or "")
    assert all(len(k) == 1 for k in by_email.values()), "a record was sent again with another key"


def test_kill_9_while_delivering_loses_nothing(
    any_log_deployment: StreamingDeployment, sink: SinkFake
) -> None:
    d = any_log_deployment
    flow, inlet = prepare(d, sink)
    sink.delay(0.01)
    worker = d.start_worker()
    send_all(d, inlet)
    wait_until(lambda: sink.count() >= RECORDS // 3, timeout=60, interval=0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    d.start_worker()
    delivered, letters = settle(d, sink, flow)
    assert letters == [] and len(delivered) == RECORDS

    def counted() -> int:
        runs = d.api.get(f"{FS}/runs", params={"property": f"flowId=={flow}"}).json()["items"]
        return sum(r["metrics"]["deliverySummary"]["delivered"] for r in runs)

    # Counts may include what was delivered twice; they never miss a delivery.
    wait_until(lambda: counted() >= RECORDS, timeout=10)
