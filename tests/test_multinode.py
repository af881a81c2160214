"""Issue 17's acceptance: 2 API servers and 2 workers, separate processes with no shared folder (each its
own empty home), PostgreSQL for metadata and the Iceberg catalog, NATS JetStream for the streaming log,
an S3 bucket (moto) for the lake. Batch ingestion, a streaming flow, a streaming activation and a
partitioned batch run over a folder of files in the bucket (its partitions shared by the workers) run
through either API server; mid-load one worker and one API server are killed with `kill -9` (clients fail
over to the other server, as behind a load balancer); afterwards every acknowledged record is found
exactly once: streaming messages and batch rows in the lake (read here with pyiceberg on S3, and through
the surviving API server's Query Service), activated records at the sink, each under one idempotency key.

The scenario and its checks: tests/multinode_scenario.py. A shortened load here; bench/multinode.py runs
it with a larger one and prints records/s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.s3 import S3Server
from tests.fakes.sink import SinkFake
from tests.multinode_harness import Cluster
from tests.multinode_partitions import PARTITIONED
from tests.multinode_scenario import Size, run

SHORT = Size()


@pytest.fixture
def cluster(tmp_path: Path, s3_server: S3Server, postgres_url: str) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, postgres_url, s3_server, extra_env=PARTITIONED)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def sink() -> Iterator[SinkFake]:
    with SinkFake() as fake:
        yield fake


def test_two_api_servers_and_two_workers_survive_kill_9_of_one_of_each_exactly_once(
    cluster: Cluster, sink: SinkFake
) -> None:
    try:
        outcome = run(cluster, sink, SHORT)
    except BaseException:
        print(cluster.logs())
        raise
    print("\n".join(outcome.notes))
    if outcome.problems:
        print(cluster.logs())
    assert not outcome.problems, "\n".join(outcome.problems)
