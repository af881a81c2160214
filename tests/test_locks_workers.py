"""Two workers on two "machines": real `headwater worker` processes, each with its own empty home,
sharing only PostgreSQL (metadata, the Iceberg catalog and the locks), NATS JetStream (the streaming log)
and S3 (the lake). Exactly one steps a streaming flow (it holds the flow's advisory lock, seen in
pg_locks); when its lock session is ended under it, it stops stepping and the lock is taken again;
killed with SIGKILL mid-load, the other takes over; every message an inlet acknowledged is in the dataset
once. The same for an activation flow's deliveries: one worker delivers, the other
takes over, every record reaches the sink, always with its one idempotency key. The API node (the
inlets) runs in this process, with a third home."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from headwater.stores.locks.postgresql import key_of
from tests.activation_helpers import activation_flow, destination, event, inlet_source
from tests.conftest import POSTGRES_ADMIN_URL, make_settings
from tests.fakes.s3 import S3Server
from tests.fakes.sink import SinkFake
from tests.streaming_helpers import http_api_flow
from tests.support import ApiClient, LiveServer, start_server, token_for, wait_until
from tests.test_crash_recovery import EXE
from tests.test_streaming_crash import NATS_URL, _envelope

BATCHES = 60
PER_BATCH = 20


def _key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


class Nodes:
    """The shared settings of every node, the API node in this process, and the workers."""

    def __init__(self, tmp: Path, database_url: str, s3: dict[str, object]) -> None:
        self.tmp = tmp
        self.database = database_url.rsplit("/", 1)[1]
        shared: dict[str, object] = {
            "database_url": database_url,
            "stream_log": NATS_URL,
            "encryption_key": _key(),
            "token_signing_key": _key(),
            "stream_flush_seconds": 0.1,
            "worker_poll_seconds": 0.1,
            **s3,
        }
        self.live: LiveServer = start_server(make_settings(tmp / "api-home", **shared))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
        self.env.update(
            {f"HEADWATER_{k.upper()}": str(v).lower() if v is True else str(v) for k, v in shared.items()}
        )
        self.env.update(
            HEADWATER_ENVIRONMENT="development",
            HEADWATER_LOG_LEVEL="warning",
            HEADWATER_DEFAULT_TENANT_ID=self.live.settings.default_tenant_id,
            HEADWATER_OUTBOUND_ALLOW="127.0.0.1",  # the sink of the activation test
        )
        self.workers: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        c = self.live.creds
        token = token_for(self.live.base_url, c["apiKey"], c["clientSecret"])
        self.api = ApiClient(self.live.base_url, token, c["apiKey"], c["orgId"], "prod", c["tenantId"])

    def worker(self) -> subprocess.Popen[bytes]:
        """A worker on a machine of its own: a new, empty home."""
        n = len(self.workers)
        env = {**self.env, "HEADWATER_HOME": str(self.tmp / f"worker-{n}-home")}
        log = self.tmp / f"worker-{n}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            process = subprocess.Popen([EXE, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=out)
        self.workers.append(process)
        return process

    def holder(self, flow_id: str, kind: str = "batchers") -> int | None:
        """The pid of the process holding the flow's lock (of its micro-batcher, or of its activation
        deliveries), from the name of its lock session."""
        key = key_of(f"streams/.{kind}/{flow_id}") & 0xFFFF_FFFF_FFFF_FFFF
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            row = admin.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
                "(SELECT oid FROM pg_database WHERE datname = %s) "
                "AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 1",
                (self.database, key >> 32, key & 0xFFFF_FFFF),
            ).fetchone()
        return int(row[0].rsplit(" ", 1)[1]) if row else None

    def end_lock_session(self, pid: int) -> int:
        """End the lock session of the worker ``pid`` from the server's side; how many were ended."""
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
                (f"headwater-locks % {pid}",),
            ).fetchall()
        return len(rows)

    def ids(self, dataset_id: str) -> list[str]:
        lake = self.live.services.lake
        table = lake.load(self.api_scope(), dataset_id)
        if table is None:
            return []
        return [str(v) for v in lake.query(table, "SELECT _id FROM dataset").column("_id").to_pylist()]

    def api_scope(self) -> Any:
        from headwater.stores.metadata import Scope

        sandbox = self.live.services.store.get_sandbox(self.api.org_id, "prod")
        assert sandbox is not None
        return Scope(sandbox.org_id, sandbox.id)

    def worker_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs)

    def stop(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
        for process in self.workers:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.api.close()
        self.live.stop()
        self.live.services.close()


@pytest.fixture
def nodes(tmp_path: Path, postgres_url: str, s3_server: S3Server) -> Iterator[Nodes]:
    deployment = Nodes(tmp_path, postgres_url, s3_server.settings(s3_server.new_bucket()))
    yield deployment
    deployment.stop()


class Sender:
    """Posts batches of unique messages to the inlet; remembers every message acknowledged."""

    def __init__(self, nodes: Nodes, pipeline: dict[str, Any]) -> None:
        self.url = pipeline["inletUrl"].replace("/collection/", "/collection/batch/")
        self.pipeline, self.org = pipeline, nodes.api.org_id
        self.acked: list[str] = []
        self.done = 0

    def send(self, batches: int) -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(batches):
                ids = [uuid.uuid4().hex for _ in range(PER_BATCH)]
                body = {"messages": [_envelope(self.pipeline, self.org, i) for i in ids]}
                response = client.post(self.url, json=body)
                assert response.status_code == 207, response.text
                answers = response.json()["responses"]
                self.acked.extend(i for i, a in zip(ids, answers, strict=True) if "xactionId" in a)
                self.done += 1


def test_one_of_two_workers_steps_a_flow_and_the_other_takes_over_after_kill_9(nodes: Nodes) -> None:
    pipeline = http_api_flow(nodes.api, options={"deduplicate": False})  # a double would show as two rows
    flow_id, dataset_id = pipeline["flowId"], pipeline["datasetId"]
    workers = [nodes.worker(), nodes.worker()]
    pids = {w.pid for w in workers}
    sender = Sender(nodes, pipeline)
    sender.send(BATCHES // 4)
    wait_until(lambda: nodes.holder(flow_id) in pids, timeout=30, interval=0.1)
    first = nodes.holder(flow_id)
    wait_until(lambda: nodes.ids(dataset_id), timeout=30, interval=0.2)

    thread = threading.Thread(target=sender.send, args=(BATCHES - sender.done,))
    thread.start()
    wait_until(lambda: sender.done >= BATCHES * 3 // 8, timeout=60)
    assert nodes.holder(flow_id) == first  # one holder all along; the other stood by
    # Its lock session ends under it (a PostgreSQL restart, an operator): it notices and stops stepping;
    # it or the other worker takes the lock again.
    assert nodes.end_lock_session(first) == 1
    wait_until(lambda: nodes.holder(flow_id) in pids, timeout=30, interval=0.1)
    second = nodes.holder(flow_id)
    wait_until(lambda: sender.done >= BATCHES * 5 // 8, timeout=60)
    holder = next(w for w in workers if w.pid == second)
    holder.send_signal(signal.SIGKILL)  # mid-load: messages are still coming
    assert holder.wait(timeout=10) == -signal.SIGKILL
    other = next(w for w in workers if w.pid != second)
    wait_until(lambda: nodes.holder(flow_id) == other.pid, timeout=30, interval=0.1)
    thread.join(timeout=60)
    assert sender.done == BATCHES and len(sender.acked) == BATCHES * PER_BATCH

    found: list[str] = []

    def landed() -> bool:
        nonlocal found
        found = nodes.ids(dataset_id)
        return set(sender.acked) <= set(found)

    try:
        wait_until(landed, timeout=60, interval=0.2)
    except AssertionError:
        raise AssertionError(f"{len(found)} of {len(sender.acked)} landed\n{nodes.worker_logs()}") from None
    assert len(found) == len(set(found)), "a message landed twice"
    assert other.poll() is None
    assert "lost the PostgreSQL session holding the locks streams/.batchers/" in nodes.worker_logs()


def test_one_of_two_workers_delivers_an_activation_flow_and_the_other_takes_over_after_kill_9(
    nodes: Nodes,
) -> None:
    records = 300
    with SinkFake() as sink:
        _, target = destination(nodes.api, sink.url + "/locks/${email}")
        source, inlet = inlet_source(nodes.api)
        flow = activation_flow(nodes.api, source, target, maxInFlight=8, retryInitialDelayMs=50)
        sink.delay(0.01)
        workers = [nodes.worker(), nodes.worker()]
        pids = {w.pid for w in workers}
        url = nodes.live.base_url + inlet.replace("/collection/", "/collection/batch/")
        with httpx.Client(timeout=10) as client:
            for start in range(0, records, 50):
                batch = {"messages": [event(n) for n in range(start, start + 50)]}
                assert client.post(url, json=batch).status_code == 207
        wait_until(lambda: sink.count() >= records // 3, timeout=60, interval=0.02)
        first = nodes.holder(flow, "activations")
        assert first in pids
        holder = next(w for w in workers if w.pid == first)
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=10) == -signal.SIGKILL
        other = next(w for w in workers if w.pid != first)
        wait_until(lambda: nodes.holder(flow, "activations") == other.pid, timeout=30, interval=0.1)
        wanted = {f"user{n}@example.com" for n in range(records)}

        def delivered() -> bool:
            return wanted <= {json.loads(r.body)["email"] for r in sink.delivered()}

        try:
            wait_until(delivered, timeout=60, interval=0.2)
        except AssertionError:
            raise AssertionError(nodes.worker_logs()) from None
        keys: dict[str, set[str]] = {}
        for r in sink.received():
            keys.setdefault(json.loads(r.body)["email"], set()).add(r.header("idempotency-key") or "")
        assert all(len(k) == 1 for k in keys.values()), "a record was sent again with another key"
