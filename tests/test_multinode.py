"""Issue 17's acceptance: 2 API servers and 2 workers, separate processes with no shared folder (each its
own empty home), PostgreSQL for metadata and the Iceberg catalog, NATS JetStream for the streaming log,
an S3 bucket (moto) for the lake. Batch ingestion, a streaming flow and a streaming activation run
through either API server; mid-load one worker and one API server are killed with `kill -9` (clients fail
over to the other server, as behind a load balancer); afterwards every acknowledged record is found
exactly once: streaming messages and batch rows in the lake (read here with pyiceberg on S3, and through
the surviving API server's Query Service), activated records at the sink, each under one idempotency key.

A shortened load; bench/multinode.py runs the same with a larger one and prints records/s."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.activation_helpers import activation_flow, dead_letters, destination, inlet_source
from tests.fakes.s3 import S3Server
from tests.fakes.sink import SinkFake
from tests.flows_helpers import dataset, profile_schema
from tests.multinode_harness import Balancer, Cluster
from tests.multinode_load import ActivationLoad, BatchLoad, StreamLoad
from tests.streaming_helpers import http_api_flow
from tests.support import ApiClient, wait_until

FS = "/data/foundation/flowservice"
CAT = "/data/foundation/catalog"
QS = "/data/foundation/query"


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
    sink_delay: float = 0.01


SHORT = Size()


@pytest.fixture
def cluster(tmp_path: Path, s3_server: S3Server, postgres_url: str) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, postgres_url, s3_server)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def sink() -> Iterator[SinkFake]:
    with SinkFake() as fake:
        yield fake


@dataclass
class Scenario:
    pipeline: dict[str, Any]  # the streaming flow (tests/streaming_helpers.py http_api_flow)
    activation: str  # the activation flow's id
    inlet: str  # its inlet's path
    batch_dataset: str


def prepare(apis: list[ApiClient], sink: SinkFake) -> Scenario:
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
    return Scenario(pipeline, flow, inlet, batch_dataset)


def query_counts(lb: Balancer, table: str) -> tuple[int, int]:
    """count(*) and count(DISTINCT _id) through Query Service (a worker runs it; results on S3)."""
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


def test_two_api_servers_and_two_workers_survive_kill_9_of_one_of_each_exactly_once(
    cluster: Cluster, sink: SinkFake
) -> None:
    size = SHORT
    token = cluster.token(cluster.apis[0])  # issued by one server, checked by the other
    apis = [cluster.client(node, token) for node in cluster.apis]
    lb = cluster.balancer(token)
    try:
        s = prepare(apis, sink)
        sink.delay(size.sink_delay)
        org = cluster.creds["orgId"]
        stream = StreamLoad(
            lb, s.pipeline, org, size.stream_batches, size.stream_per_batch, size.stream_rate
        )
        activation = ActivationLoad(
            lb, s.inlet, size.activation_batches, size.activation_per_batch, size.activation_rate
        )
        batches = BatchLoad(lb, s.batch_dataset, size.batches, size.batch_rows, size.batch_chunks, 100)
        loads = (stream, activation, batches)
        for load in loads:
            load.start()

        # Kill from live progress: each load has acknowledged some and has more to send.
        def mid_load() -> bool:
            for load in loads:
                assert load.error is None, load.error
            return (
                stream.done >= stream.count // 3
                and sink.count() >= size.activation_per_batch * 4
                and batches.completed >= 1
            )

        wait_until(mid_load, timeout=60, interval=0.05)
        assert all(load.done < load.count for load in loads), "the loads ended before the kill"
        killed_at = time.monotonic()  # the sink's clock: ``Received.at`` is this process's monotonic
        cluster.kill(cluster.runners[0])
        cluster.kill(cluster.apis[0])
        survivor = cluster.apis[1]
        for load in loads:
            load.join(timeout=120)
        assert lb.by_server[0] > 0 and lb.by_server[1] > 0, lb.by_server

        check_batches(cluster, batches)
        check_stream(cluster, stream)
        check_activation(cluster, apis[1], sink, s.activation, activation, killed_at)
        survivor_lb = Balancer([survivor.base or ""], lb.headers)
        try:
            expected = len(set(stream.acked))
            n, d = query_counts(survivor_lb, table_of(survivor_lb, s.pipeline["datasetId"]))
            assert n == d >= expected, (n, d, expected)
            total = size.batches * size.batch_rows
            assert query_counts(survivor_lb, table_of(survivor_lb, s.batch_dataset)) == (total, total)
        finally:
            survivor_lb.close()
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        lb.close()
        for api in apis:
            api.close()


def check_batches(cluster: Cluster, load: BatchLoad) -> None:
    assert [o.status for o in load.outcomes] == ["success"] * load.count, [o.doc for o in load.outcomes]
    ids = cluster.ids("prod", load.dataset_id)
    expected = {f"b{b}-{i}" for b in range(load.count) for i in range(load.rows)}
    twice = [i for i, k in Counter(ids).items() if k > 1]
    assert not twice, f"{len(twice)} batch rows landed more than once, e.g. {twice[:3]}"
    assert set(ids) == expected, f"{len(expected - set(ids))} batch rows missing"


def check_stream(cluster: Cluster, load: StreamLoad) -> None:
    dataset_id = load.pipeline["datasetId"]
    acked = set(load.acked)
    assert len(acked) == len(load.acked)
    assert len(acked) >= load.per_batch * load.count // 3
    found: list[str] = []

    def complete() -> bool:
        nonlocal found
        found = cluster.ids("prod", dataset_id)
        return acked <= set(found)

    try:
        wait_until(complete, timeout=60, interval=0.3)
    except AssertionError:
        missing = acked - set(found)
        raise AssertionError(f"{len(missing)} of {len(acked)} acknowledged messages never landed") from None
    counts = Counter(found)
    twice = [i for i, k in counts.items() if k > 1]
    assert not twice, (
        f"{len(twice)} messages landed more than once ({sum(counts[i] for i in twice)} rows), "
        f"{len(set(twice) & acked)} of them acknowledged; e.g. {twice[:3]}"
    )
    assert set(found) <= set(load.sent)


def check_activation(
    cluster: Cluster, api: ApiClient, sink: SinkFake, flow: str, load: ActivationLoad, killed_at: float
) -> None:
    """Every acknowledged record is delivered (2xx at the sink) or dead-lettered; each record travels
    under one idempotency key and each key carries one record; a key is answered 2xx more than once
    only when its first 2xx came before the kill (in flight, or after the last checkpoint, at the crash:
    the retry the checkpoint allows)."""
    acked = set(load.acked)
    assert len(acked) >= load.per_batch * 4

    def settled() -> bool:
        delivered = {json.loads(r.body)["email"] for r in sink.delivered()}
        dead = {str(x["variables"]["email"]) for x in dead_letters(api, flow)}
        return acked <= delivered | dead

    try:
        wait_until(settled, timeout=60, interval=0.3)
    except AssertionError:
        delivered = {json.loads(r.body)["email"] for r in sink.delivered()}
        raise AssertionError(f"{len(acked - delivered)} of {len(acked)} acknowledged records undelivered")
    assert dead_letters(api, flow) == []
    keys: dict[str, set[str]] = {}
    records: dict[str, set[str]] = {}
    for r in sink.received():
        email, key = json.loads(r.body)["email"], r.header("idempotency-key") or ""
        keys.setdefault(email, set()).add(key)
        records.setdefault(key, set()).add(email)
    assert all(len(k) == 1 for k in keys.values()), "a record was sent again under another key"
    assert all(len(e) == 1 for e in records.values()), "two records shared a key"
    first: dict[str, float] = {}
    again: list[tuple[str, float, float]] = []
    for r in sorted(sink.delivered(), key=lambda r: r.at):
        key = r.header("idempotency-key") or ""
        if key in first:
            again.append((key, first[key], r.at))
        else:
            first[key] = r.at
    beyond = [(k, a - killed_at, b - killed_at) for k, a, b in again if a > killed_at or b < killed_at]
    assert not beyond, (
        f"{len(beyond)} of {len(first)} records delivered twice beyond the kill's retry "
        f"({len(again)} redeliveries in all); e.g. (key, first, again) seconds from the kill: {beyond[:3]}"
    )
