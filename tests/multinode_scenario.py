"""The multi-node scenario, shared by tests/test_multinode.py and bench/multinode.py: set the flows up
through alternating API servers, run the three loads (tests/multinode_load.py) through a
:class:`Balancer`, `kill -9` a worker and an API server from live progress, then check that every
acknowledged record is found exactly once.

Each check returns what it found wrong, in words (an empty list: nothing), so one run reports every
broken guarantee at once rather than the first.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tests import multinode_partitions as partitioned
from tests.activation_helpers import activation_flow, dead_letters, destination, inlet_source
from tests.fakes.sink import SinkFake
from tests.flows_helpers import dataset, profile_schema
from tests.multinode_harness import Balancer, Cluster
from tests.multinode_load import ActivationLoad, BatchLoad, Load, StreamLoad
from tests.streaming_helpers import http_api_flow
from tests.support import ApiClient, wait_until

FS = "/data/foundation/flowservice"
CAT = "/data/foundation/catalog"
QS = "/data/foundation/query"
IN_FLIGHT = 0.1  # seconds a request the killed worker sent may still take to reach the sink's handler


@dataclass(frozen=True)
class Size:
    """How much each load sends, and how fast (requests a second)."""

    stream_batches: int = 80
    stream_per_batch: int = 40
    stream_rate: float = 10.0
    activation_batches: int = 32
    activation_per_batch: int = 25
    activation_rate: float = 4.0
    batches: int = 4
    batch_rows: int = 3000
    batch_chunks: int = 4
    part_files: int = 6
    part_rows: int = 20000
    sink_delay: float = 0.01
    settle_seconds: float = 60.0


@dataclass
class Flows:
    pipeline: dict[str, Any]  # the streaming flow (tests/streaming_helpers.py http_api_flow)
    activation: str  # the activation flow's id
    inlet: str  # its inlet's path
    batch_dataset: str
    partitioned: partitioned.PartitionedRun


@dataclass
class Outcome:
    """What a run did, and what it found wrong."""

    stream: StreamLoad
    activation: ActivationLoad
    batches: BatchLoad
    killed_at: float | None = None
    load_seconds: float = 0.0  # from the first request of the loads to every record found
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts worth reading beside the problems

    @property
    def records(self) -> int:
        """Acknowledged records: streaming messages, activated records and batch rows."""
        rows = sum(o.rows for o in self.batches.outcomes if o.status == "success")
        return len(self.stream.acked) + len(self.activation.acked) + rows


def prepare(cluster: Cluster, apis: list[ApiClient], sink: SinkFake, size: Size) -> Flows:
    """Every flow set up through alternating API servers."""
    a, b = apis[0], apis[-1]
    # Duplicate suppression off: a message committed twice shows as two rows.
    pipeline = http_api_flow(b, options={"deduplicate": False})
    seen = a.get(f"{FS}/connections/{pipeline['connectionId']}").json()["items"][0]["auth"]["params"]
    assert seen["inletUrl"] == pipeline["inletUrl"], "both servers name the inlet by the public URL"
    _, target = destination(a, sink.url + "/multinode/${email}")
    source, inlet = inlet_source(b)
    flow = activation_flow(a, source, target, maxInFlight=8, retryInitialDelayMs=50, retryMaxDelayMs=300)
    batch_dataset = dataset(b, profile_schema(a))
    run = partitioned.prepare(cluster, b, size.part_files, size.part_rows)
    return Flows(pipeline, flow, inlet, batch_dataset, run)


def run(cluster: Cluster, sink: SinkFake, size: Size, kill: bool = True) -> Outcome:
    """The whole scenario on a started cluster; with ``kill``, worker 0 and API server 0 are killed
    mid-load and the checks read through API server 1."""
    token = cluster.token(cluster.apis[0])  # issued by one server, checked by the others
    apis = [cluster.client(node, token) for node in cluster.apis]
    lb = cluster.balancer(token)
    try:
        flows = prepare(cluster, apis, sink, size)
        sink.delay(size.sink_delay)
        org = cluster.creds["orgId"]
        outcome = Outcome(
            StreamLoad(lb, flows.pipeline, org, size.stream_batches, size.stream_per_batch, size.stream_rate),
            ActivationLoad(
                lb, flows.inlet, size.activation_batches, size.activation_per_batch, size.activation_rate
            ),
            BatchLoad(lb, flows.batch_dataset, size.batches, size.batch_rows, size.batch_chunks, 100),
        )
        loads: tuple[Load, ...] = (outcome.stream, outcome.activation, outcome.batches)
        started = time.monotonic()
        for load in loads:
            load.start()
        # Half way to the kill (at a third of the stream): the kill may catch its partitions.
        stream = outcome.stream
        wait_until(lambda: stream.done >= stream.count // 6 or stream.error, timeout=120, interval=0.05)
        partitioned.start(lb, flows.partitioned)
        if kill:
            progress = partial(partitioned.progress, cluster, flows.partitioned, outcome.notes)
            outcome.killed_at = kill_mid_load(cluster, sink, outcome, loads, before=progress)
        for load in loads:
            load.join(timeout=300)
        outcome.notes.append(f"clients: answers per API server {lb.by_server}, {lb.failovers} failovers")
        if len(cluster.apis) > 1 and not all(lb.by_server):
            outcome.problems.append(f"a server answered nothing: {lb.by_server}")
        survivor = cluster.apis[-1]
        reader = cluster.client(survivor, token)
        check(cluster, reader, sink, flows, outcome, size.settle_seconds)
        outcome.load_seconds = time.monotonic() - started
        check_queries(Balancer([survivor.base or ""], lb.headers), flows, outcome)
        reader.close()
        return outcome
    finally:
        lb.close()
        for api in apis:
            api.close()


def kill_mid_load(
    cluster: Cluster,
    sink: SinkFake,
    outcome: Outcome,
    loads: tuple[Load, ...],
    before: Callable[[], None] = lambda: None,
) -> float:
    """kill -9 of worker 0 and API server 0 once each load has acknowledged some and has more to send
    (``before`` is called just before)."""
    stream, batches = outcome.stream, outcome.batches

    def mid_load() -> bool:
        for load in loads:
            if load.error is not None:
                raise load.error
        return (
            stream.done >= stream.count // 3
            and sink.count() >= outcome.activation.per_batch * 4
            and batches.completed >= 1
        )

    wait_until(mid_load, timeout=120, interval=0.05)
    ended = [type(load).__name__ for load in loads if load.done >= load.count]
    if ended:
        outcome.problems.append(f"{', '.join(ended)} ended before the kill: not a kill mid-load")
    before()
    stream.sent_at_kill = len(stream.sent)
    cluster.kill(cluster.runners[0])  # returns once the worker is gone: it sends nothing after this
    killed_at = time.monotonic()  # the sink's clock too: ``Received.at`` is this process's monotonic
    cluster.kill(cluster.apis[0])
    return killed_at


def check(
    cluster: Cluster, api: ApiClient, sink: SinkFake, flows: Flows, outcome: Outcome, settle: float
) -> None:
    outcome.problems += check_batches(cluster, outcome.batches)
    problems, notes = check_stream(cluster, outcome.stream, settle)
    outcome.problems += problems
    outcome.notes += notes
    problems, notes = check_activation(api, sink, flows.activation, outcome, settle)
    outcome.problems += problems
    outcome.notes += notes
    problems, notes = partitioned.check(cluster, api, flows.partitioned, settle)
    outcome.problems += problems
    outcome.notes += notes


def check_batches(cluster: Cluster, load: BatchLoad) -> list[str]:
    """Every batch succeeded, and its rows are in the dataset once."""
    problems = [
        f"batch {o.batch_id} ended {o.status}: {o.doc}" for o in load.outcomes if o.status != "success"
    ]
    ids = cluster.ids("prod", load.dataset_id)
    expected = {f"b{b}-{i}" for b in range(load.count) for i in range(load.rows)}
    twice = [i for i, k in Counter(ids).items() if k > 1]
    if twice:
        problems.append(f"batch: {len(twice)} rows landed more than once, e.g. {twice[:3]}")
    if set(ids) != expected:
        problems.append(f"batch: {len(expected - set(ids))} of {len(expected)} rows missing")
    return problems


def check_stream(cluster: Cluster, load: StreamLoad, settle: float) -> tuple[list[str], list[str]]:
    """Every acknowledged message is in the dataset, none twice."""
    acked = set(load.acked)
    notes = [f"streaming: {len(acked)} of {len(load.sent)} messages acknowledged"]
    found: list[str] = []

    def complete() -> bool:
        nonlocal found
        found = cluster.ids("prod", load.pipeline["datasetId"])
        return acked <= set(found)

    try:
        wait_until(complete, timeout=settle, interval=0.3)
    except AssertionError:
        return [f"streaming: {len(acked - set(found))} of {len(acked)} acknowledged messages missing"], notes
    counts = Counter(found)
    twice = [i for i, k in counts.items() if k > 1]
    problems = []
    if twice:
        before = set(load.sent[: load.sent_at_kill]) if load.sent_at_kill is not None else set()
        problems.append(
            f"streaming: {len(twice)} messages landed more than once ({sum(counts[i] for i in twice)} rows "
            f"for them), {len(set(twice) & acked)} of them acknowledged, {len(set(twice) & before)} sent "
            f"before the kill; e.g. {twice[:2]}"
        )
    notes.append(f"streaming: {len(set(found) - acked)} unacknowledged messages landed (once each)")
    return problems, notes


def check_activation(
    api: ApiClient, sink: SinkFake, flow: str, outcome: Outcome, settle: float
) -> tuple[list[str], list[str]]:
    """Every acknowledged record is delivered (2xx at the sink) or dead-lettered; each record travels
    under one idempotency key and each key carries one record; a key is answered 2xx twice only when its
    first 2xx came before the kill and the second after (in flight, or finished after the last
    checkpoint, at the crash: the resend the checkpoint allows). Nothing else is sent twice."""
    acked = set(outcome.activation.acked)
    notes = [f"activation: {len(acked)} records acknowledged"]

    def delivered() -> set[str]:
        return {json.loads(r.body)["email"] for r in sink.delivered()}

    def settled() -> bool:
        dead = {str(x["variables"]["email"]) for x in dead_letters(api, flow)}
        return acked <= delivered() | dead

    try:
        wait_until(settled, timeout=settle, interval=0.3)
    except AssertionError:
        return [
            f"activation: {len(acked - delivered())} of {len(acked)} acknowledged records undelivered"
        ], notes
    problems = []
    letters = dead_letters(api, flow)
    if letters:
        problems.append(f"activation: {len(letters)} dead letters (the sink refused nothing)")
    keys: dict[str, set[str]] = {}
    records: dict[str, set[str]] = {}
    for r in sink.received():
        email, key = json.loads(r.body)["email"], r.header("idempotency-key") or ""
        keys.setdefault(email, set()).add(key)
        records.setdefault(key, set()).add(email)
    if any(len(k) != 1 for k in keys.values()):
        problems.append("activation: a record was sent again under another key")
    if any(len(e) != 1 for e in records.values()):
        problems.append("activation: two records shared a key")
    problems += _redeliveries(sink, outcome.killed_at, notes)
    return problems, notes


def _redeliveries(sink: SinkFake, killed_at: float | None, notes: list[str]) -> list[str]:
    first: dict[str, float] = {}
    again: list[tuple[float, float]] = []
    for r in sorted(sink.delivered(), key=lambda r: r.at):
        key = r.header("idempotency-key") or ""
        if key in first:
            again.append((first[key], r.at))
        else:
            first[key] = r.at
    notes.append(f"activation: {len(first)} records delivered, {len(again)} redeliveries")
    kill = killed_at if killed_at is not None else float("inf")
    # What the killed worker had written to a socket may reach the sink's handler a moment later.
    beyond = [(round(a - kill, 2), round(b - kill, 2)) for a, b in again if a > kill + IN_FLIGHT or b < kill]
    if not beyond:
        return []
    return [
        f"activation: {len(beyond)} redeliveries beyond the kill's resend (both before it, or both after); "
        f"e.g. (first, again) seconds from the kill: {beyond[:3]}"
    ]


def check_queries(lb: Balancer, flows: Flows, outcome: Outcome) -> None:
    """The same counts through the surviving API server's Query Service (a worker runs the query; its
    results go to S3)."""
    try:
        n, d = query_counts(lb, table_of(lb, flows.pipeline["datasetId"]))
        outcome.notes.append(f"Query Service: streaming dataset count(*) {n}, count(DISTINCT _id) {d}")
        if n != d or d < len(set(outcome.stream.acked)):
            outcome.problems.append(f"Query Service: streaming dataset {n} rows, {d} distinct ids")
        total = sum(o.rows for o in outcome.batches.outcomes)
        got = query_counts(lb, table_of(lb, flows.batch_dataset))
        if got != (total, total):
            outcome.problems.append(f"Query Service: batch dataset {got}, not {(total, total)}")
    finally:
        lb.close()


def query_counts(lb: Balancer, table: str) -> tuple[int, int]:
    sql = f"SELECT count(*) AS n, count(DISTINCT _id) AS d FROM {table}"
    created = lb.request("POST", f"{QS}/queries", json={"dbName": "prod:all", "sql": sql})
    assert created.status_code == 202, created.text
    query_id = created.json()["id"]

    def ended() -> dict[str, Any] | None:
        doc: dict[str, Any] = lb.request("GET", f"{QS}/queries/{query_id}").json()
        return doc if doc["state"] in ("SUCCESS", "FAILED", "CANCELLED") else None

    doc = wait_until(ended, timeout=60, interval=0.2)
    assert doc["state"] == "SUCCESS", doc
    rows = lb.request("GET", f"{QS}/queries/{query_id}/results").json()["rows"]
    return int(rows[0]["n"]), int(rows[0]["d"])


def table_of(lb: Balancer, dataset_id: str) -> str:
    doc = lb.request("GET", f"{CAT}/dataSets/{dataset_id}").json()[dataset_id]
    return str(doc["tags"]["adobe/pqs/table"][0])
